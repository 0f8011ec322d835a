"""The blind batches (tests/triage/data/blind_*.tsv, each with its README), kept as regression sets after
their first run: both screens together must not fall below the figures measured after the fixes. The
floors are whole-batch figures, not row by row: no pattern was written from a batch's rows. Raise a floor
when the screen gets better; never lower one.

First runs (benchmarks/triage_eval.py <file> prints the figures, with the confusion matrix):
- 2026-12-04 (248; lexicon of 2026.11.26-1, no learned screen): red 36/62, escalation 102/140, false
  alarms 3 of 60, level accuracy 189/248;
- 2026-12-07a (240) and 2026-12-07b (200), both on protocol 2026.12.04-1 and learned screen c2b3b42f68f8:
  red 43/60 and 38/50, escalation 114/135 and 96/110, false alarms 3 of 60 and 3 of 50, level accuracy
  177/240 and 157/200. Batch b was held out of every change until its last run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.triage.conftest import require_learned_model
from triage_protocols import Level, screen

DATA = Path(__file__).parent / "data"
ESCALATED = (Level.ORANGE, Level.RED)


@dataclass(frozen=True)
class Floors:
    """A batch's size and its after-fix figures (protocol 2026.12.07-1, both screens)."""

    rows: int
    red: int
    red_found_at_least: int
    escalated_found_at_least: int
    false_alarms_at_most: int
    correct_at_least: int


BATCHES = {
    "blind_2026-12-04.tsv": Floors(248, 62, 60, 138, 3, 223),
    "blind_2026-12-07a.tsv": Floors(240, 60, 56, 128, 2, 198),
    "blind_2026-12-07b.tsv": Floors(200, 50, 48, 106, 3, 172),
}


def rows(name: str) -> list[tuple[Level, str, str]]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [
        (Level(level), audience, text)
        for level, audience, text in (line.split("\t", 2) for line in lines[1:] if line.strip())
    ]


@pytest.mark.parametrize("name", sorted(BATCHES))
def test_the_batch_is_intact(name: str) -> None:
    found = rows(name)
    assert len(found) == BATCHES[name].rows
    assert sum(label == Level.RED for label, _, _ in found) == BATCHES[name].red


@pytest.mark.parametrize("name", sorted(BATCHES))
def test_blind_batch_stays_above_its_after_fix_figures(name: str) -> None:
    require_learned_model()
    floors = BATCHES[name]
    results = [(label, screen(text, audience).level) for label, audience, text in rows(name)]
    red = sum(label == Level.RED and got == Level.RED for label, got in results)
    escalated = sum(label in ESCALATED and got in ESCALATED for label, got in results)
    alarms = sum(label == Level.GREEN and got in ESCALATED for label, got in results)
    correct = sum(label == got for label, got in results)
    figures = f"red {red}, escalation {escalated}, false alarms {alarms}, correct {correct} of {len(results)}"
    assert red >= floors.red_found_at_least, figures
    assert escalated >= floors.escalated_found_at_least, figures
    assert alarms <= floors.false_alarms_at_most, figures
    assert correct >= floors.correct_at_least, figures
