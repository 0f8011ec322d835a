"""The command line: `python -m triage_protocols assess` and `python -m triage_protocols check`.

assess
    Reads JSON lines {"id": …, "text": …, "audience": "student"|"parent"} on standard input and writes one
    JSON line per input line, in the same order, flushed at once (so a tool may keep the process open and
    write one line, read one line):

        {"id": …, "level": "green"|"yellow"|"orange"|"red", "signals": [...], "protocol_version": "…"}

    `id` is echoed exactly as given (any JSON value; null when absent). `audience` defaults to "student"
    and is case-insensitive. Each signal is {"id", "category", "span": [start, end], "status", "subject",
    "source"}; spans count code points of the given text; status "negated" or "resolved" marks a signal
    that matched but does not count. Blank lines are skipped and produce no output.

    A line that cannot be assessed (not JSON, not an object, text missing or not a string, an unknown
    audience) still gets exactly one output line, so outputs stay aligned with inputs:

        {"id": <id if it could be read, else null>, "error": "<what is wrong>", "line": <line number>,
         "protocol_version": "…"}

    and the same short description goes to standard error (never the text of the message). Processing
    goes on with the next line. The exit status is 0 when every line was read, even with error lines;
    with --strict it is 1 when any line was an error. Output is UTF-8 whatever the locale.

check
    Loads and validates every protocol file, runs every example embedded in them, prints a short summary,
    and exits 1 on any failure (2 when the files themselves do not load).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from triage_protocols.results import AUDIENCES


def _reconfigure(stream: Any, **kwargs: Any) -> None:
    if hasattr(stream, "reconfigure"):
        stream.reconfigure(**kwargs)


def _error_line(ident: Any, problem: str, number: int, version: str) -> dict[str, Any]:
    return {"id": ident, "error": problem, "line": number, "protocol_version": version}


def assess_line(line: str, number: int, version: str) -> dict[str, Any]:
    """The output record for one input line (an assessment, or an error record)."""
    from triage_protocols.engine import screen

    try:
        record = json.loads(line)
    except ValueError as error:
        return _error_line(None, f"not valid JSON ({error.msg})", number, version)
    if not isinstance(record, dict):
        return _error_line(None, "not a JSON object", number, version)
    ident = record.get("id")
    text = record.get("text")
    if not isinstance(text, str):
        return _error_line(ident, "text is missing or not a string", number, version)
    audience = record.get("audience", "student")
    if audience is None:
        audience = "student"
    if not isinstance(audience, str) or audience.strip().lower() not in AUDIENCES:
        return _error_line(ident, 'audience must be "student" or "parent"', number, version)
    result = screen(text, audience.strip().lower())
    return {
        "id": ident,
        "level": result.level.value,
        "signals": [s.to_dict() for s in result.signals],
        "protocol_version": result.protocol_version,
    }


def assess(stdin: TextIO, stdout: TextIO, stderr: TextIO, strict: bool = False) -> int:
    from triage_protocols.loader import load_protocol

    version = load_protocol().version
    errors = 0
    number = 0
    while True:
        line = stdin.readline()
        if not line:
            break
        number += 1
        if not line.strip():
            continue
        out = assess_line(line, number, version)
        if "error" in out:
            errors += 1
            print(f"line {number}: {out['error']}", file=stderr, flush=True)
        stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
        stdout.flush()
    return 1 if strict and errors else 0


def check(stdout: TextIO) -> int:
    from triage_protocols import checks
    from triage_protocols.directory import load_directory
    from triage_protocols.loader import ProtocolError, load_protocol

    try:
        protocol = load_protocol()
        load_directory()
    except ProtocolError as error:
        print(f"protocol files do not load ({len(error.problems)} problems):", file=stdout)
        for problem in error.problems:
            print(f"  {problem}", file=stdout)
        return 2
    except Exception as error:  # noqa: BLE001 - the directory's own validation error, shown as it is
        print(f"directory does not load: {error}", file=stdout)
        return 2
    total, failures = checks.run(protocol)
    missing = checks.not_run(protocol)
    if missing:
        print(
            f"WARNING: {missing} examples of {checks.LEARNED_FILE} NOT RUN: the learned screen has no "
            "trained model (run `make learned`); screening runs on the lexicon alone",
            file=stdout,
        )
    signals = sum(len(c.signals) for c in protocol.categories.values())
    print(
        f"protocol {protocol.version}: {len(protocol.files)} files valid; "
        f"{len(protocol.categories)} categories, "
        f"{signals} signals, {len(protocol.matchers)} patterns, {len(protocol.rules)} rules, "
        f"{len(protocol.instruments)} instruments; directory valid",
        file=stdout,
    )
    if failures:
        print(f"{len(failures)} of {total} embedded examples FAILED:", file=stdout)
        for failure in failures:
            print(f"  {failure}", file=stdout)
        return 1
    print(f"all {total} embedded examples pass", file=stdout)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m triage_protocols", description="Xinqiao triage protocols"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    assess_parser = commands.add_parser("assess", help="screen JSON lines from standard input")
    assess_parser.add_argument(
        "--strict", action="store_true", help="exit 1 when any input line was an error"
    )
    commands.add_parser("check", help="validate every protocol file and run every embedded example")
    args = parser.parse_args(argv)
    # UTF-8 whatever the locale; undecodable input bytes become U+FFFD instead of stopping the run, and a
    # lone surrogate in an id is written as a JSON escape.
    _reconfigure(sys.stdin, encoding="utf-8", errors="replace")
    _reconfigure(sys.stdout, encoding="utf-8", errors="backslashreplace")
    _reconfigure(sys.stderr, encoding="utf-8", errors="backslashreplace")
    if args.command == "assess":
        return assess(sys.stdin, sys.stdout, sys.stderr, strict=args.strict)
    return check(sys.stdout)
