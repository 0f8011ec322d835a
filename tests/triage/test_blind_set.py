"""The blind batch of 2026-12-04 (tests/triage/data/blind_2026-12-04.tsv, see its README), kept as a
regression set after its first run: both screens together must not fall below the figures measured after
the fixes of issue 12. The floors are the whole-batch figures, not row by row: the batch was held out, and
no pattern was written from its rows. Raise a floor when the screen gets better; never lower one.

First run (protocol 2026.11.26-1, lexicon only): red 36/62, escalation 102/140, false alarms 3 of 60,
level accuracy 189/248. The figures, with the confusion matrix: benchmarks/triage_eval.py <this file>.
"""

from __future__ import annotations

from pathlib import Path

from tests.triage.conftest import require_learned_model
from triage_protocols import Level, screen

DATA = Path(__file__).parent / "data" / "blind_2026-12-04.tsv"
ESCALATED = (Level.ORANGE, Level.RED)

# after the fixes (protocol 2026.12.04-1, both screens)
RED_FOUND_AT_LEAST = 52
ESCALATED_FOUND_AT_LEAST = 129
FALSE_ALARMS_AT_MOST = 3
CORRECT_AT_LEAST = 212


def rows() -> list[tuple[Level, str, str]]:
    lines = DATA.read_text(encoding="utf-8").splitlines()
    return [
        (Level(level), audience, text)
        for level, audience, text in (line.split("\t", 2) for line in lines[1:] if line.strip())
    ]


def test_the_batch_is_intact() -> None:
    found = rows()
    assert len(found) == 248
    assert sum(label == Level.RED for label, _, _ in found) == 62


def test_blind_batch_stays_above_its_after_fix_figures() -> None:
    require_learned_model()
    results = [(label, screen(text, audience).level) for label, audience, text in rows()]
    red = sum(label == Level.RED and got == Level.RED for label, got in results)
    escalated = sum(label in ESCALATED and got in ESCALATED for label, got in results)
    alarms = sum(label == Level.GREEN and got in ESCALATED for label, got in results)
    correct = sum(label == got for label, got in results)
    figures = f"red {red}/62, escalation {escalated}/140, false alarms {alarms}/60, correct {correct}/248"
    assert red >= RED_FOUND_AT_LEAST, figures
    assert escalated >= ESCALATED_FOUND_AT_LEAST, figures
    assert alarms <= FALSE_ALARMS_AT_MOST, figures
    assert correct >= CORRECT_AT_LEAST, figures
