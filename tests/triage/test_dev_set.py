"""The shared development set (../shared/eval/risk_dev.tsv), scored as its README says, one row a test.

Goals: every red message red; every orange or red message at least orange; no green message at orange or
red. The dev set is for measuring: none of its sentences are copied into the protocol files.
"""

from __future__ import annotations

import pytest

from tests.triage.conftest import DEV_SET, require_dev_set
from triage_protocols import Level, screen


def rows() -> list[tuple[str, str, str]]:
    if not DEV_SET.exists():
        return []
    found = []
    for number, line in enumerate(DEV_SET.read_text(encoding="utf-8").splitlines(), start=1):
        if number == 1 and line.startswith("level\t") or not line.strip():
            continue
        level, audience, text = line.split("\t", 2)
        found.append((level, audience, text))
    return found


ROWS = rows()
# yellow rows count only towards level accuracy (the README scores no other figure on them)
SCORED = [r for r in ROWS if r[0] != "yellow"]


def test_dev_set_is_there() -> None:
    require_dev_set()
    assert len(ROWS) >= 60


@pytest.mark.parametrize(("label", "audience", "text"), SCORED, ids=[f"{r[0]}:{r[2]}" for r in SCORED])
def test_dev_row(label: str, audience: str, text: str) -> None:
    got = screen(text, audience).level
    expected = Level(label)
    if expected == Level.RED:
        assert got == Level.RED, "red recall: a red message must come out red"
    elif expected == Level.ORANGE:
        assert got.at_least(Level.ORANGE), "escalation recall: orange must come out orange or red"
    else:
        assert not got.at_least(Level.ORANGE), "false alarm: green came out orange or red"


def test_dev_set_level_accuracy() -> None:
    require_dev_set()
    correct = sum(screen(text, audience).level == Level(label) for label, audience, text in ROWS)
    assert correct / len(ROWS) >= 0.9
