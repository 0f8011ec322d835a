"""The command line, run as other tools run it: `python -m triage_protocols …` in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.triage.conftest import ROOT
from triage_protocols import protocol_version


def run(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "triage_protocols", *args],
        input=stdin.encode("utf-8"),
        capture_output=True,
        cwd=ROOT,
        timeout=60,
        env=env,
        check=False,
    )


def lines(out: bytes) -> list[dict]:
    return [json.loads(line) for line in out.decode("utf-8").splitlines()]


def test_assess_writes_one_line_per_input_in_order() -> None:
    inputs = [
        {"id": 1, "text": "你好", "audience": "student"},
        {"id": "b", "text": "我已经吞了一整瓶安眠药", "audience": "student"},
        {"id": 3, "text": "孩子说不想活了", "audience": "parent"},
        {"id": 4, "text": "期末考试好紧张"},
    ]
    done = run("assess", stdin="".join(json.dumps(i, ensure_ascii=False) + "\n" for i in inputs))
    assert done.returncode == 0
    out = lines(done.stdout)
    assert [o["id"] for o in out] == [1, "b", 3, 4]
    assert [o["level"] for o in out] == ["green", "red", "orange", "yellow"]
    for o in out:
        assert set(o) == {"id", "level", "signals", "protocol_version"}
        assert o["protocol_version"] == protocol_version()
    signal = out[1]["signals"][0]
    assert set(signal) == {"id", "category", "span", "status", "subject", "source"}
    assert done.stderr == b""


def test_bad_lines_get_an_error_line_and_the_rest_goes_on() -> None:
    stdin = "\n".join(  # noqa: FLY002 - one input line a row reads better
        [
            "this is not json",
            '{"id": 7}',
            '["a list"]',
            '{"id": 8, "text": "我想死", "audience": "teacher"}',
            "",
            '{"id": 9, "text": "我想死", "audience": "Parent"}',
        ]
    )
    done = run("assess", stdin=stdin + "\n")
    assert done.returncode == 0
    out = lines(done.stdout)
    assert [o.get("id") for o in out] == [None, 7, None, 8, 9]
    assert [("error" in o) for o in out] == [True, True, True, True, False]
    assert [o.get("line") for o in out[:4]] == [1, 2, 3, 4]
    assert out[4]["level"] == "orange"
    errors = done.stderr.decode("utf-8")
    assert errors.count("\n") == 4 and "我想死" not in errors


def test_strict_exits_non_zero_on_error_lines() -> None:
    assert run("assess", "--strict", stdin="oops\n").returncode == 1
    assert run("assess", "--strict", stdin='{"id": 1, "text": "hi"}\n').returncode == 0


def test_utf8_whatever_the_locale_and_bad_bytes() -> None:
    import os

    env = dict(os.environ, LC_ALL="C", LANG="C", PYTHONIOENCODING="ascii")
    done = subprocess.run(
        [sys.executable, "-m", "triage_protocols", "assess"],
        input='{"id": "中", "text": "我想自殺"}\n'.encode() + b'{"id": 2, "text": "\xff\xfe"}\n',
        capture_output=True,
        cwd=ROOT,
        timeout=60,
        env=env,
        check=False,
    )
    out = lines(done.stdout)
    assert out[0] == {**out[0], "id": "中", "level": "orange"}
    assert out[1]["id"] == 2 and "level" in out[1]


def test_empty_input_gives_empty_output() -> None:
    done = run("assess", stdin="")
    assert (done.returncode, done.stdout) == (0, b"")


def test_check_passes_and_summarises() -> None:
    done = run("check")
    assert done.returncode == 0, done.stdout.decode()
    text = done.stdout.decode("utf-8")
    assert protocol_version() in text and "examples pass" in text
