"""A labelled set written for this project (tests/triage/data/own_labelled.tsv), scored like the dev set.

Different phrasings from the development set and from the protocol examples: imminent danger said in
other words, third parties, parents, and everyday sentences full of words that only look risky. Run
`benchmarks/triage_eval.py tests/triage/data/own_labelled.tsv` for the figures.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from triage_protocols import Level, screen

DATA = Path(__file__).parent / "data" / "own_labelled.tsv"
ROWS = [line.split("\t", 2) for line in DATA.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]


@pytest.mark.parametrize(("label", "audience", "text"), ROWS, ids=[f"{r[0]}:{r[2]}" for r in ROWS])
def test_own_row(label: str, audience: str, text: str) -> None:
    got = screen(text, audience).level
    expected = Level(label)
    if expected == Level.RED:
        assert got == Level.RED
    elif expected == Level.ORANGE:
        assert got.at_least(Level.ORANGE)
    elif expected == Level.GREEN:
        assert not got.at_least(Level.ORANGE)
    else:
        assert got in (Level.YELLOW, Level.ORANGE)
