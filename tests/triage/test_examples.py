"""Every example embedded in a protocol file is a test: whoever adds a case to a file adds a test."""

from __future__ import annotations

import pytest

from tests.triage.conftest import require_learned_model
from triage_protocols import checks

CASES = checks.cases()


@pytest.mark.parametrize("case", CASES, ids=[f"{c.file}: {c.label}" for c in CASES])
def test_embedded_example(case: checks.Case) -> None:
    problem = case.run()  # type: ignore[operator]
    assert problem is None, f"{case.file}: {case.label}: {problem}"


def test_every_protocol_file_has_examples() -> None:
    files = {c.file for c in CASES}
    expected = {"levels.yml", "terms.yml", "normalise.yml", "modifiers.yml", "rules.yml", "intents.yml"}
    expected |= {
        f"signals/{n}.yml" for n in ("suicide", "self_harm", "abuse", "mental_health", "distress", "parent")
    }
    expected |= {f"instruments/{n}.yml" for n in ("asq", "phq_a", "gad7")}
    assert expected <= files


def test_every_level_has_an_example_in_every_direction() -> None:
    """The examples cover each level, so a rule that silently stops firing shows up."""
    from triage_protocols.loader import load_protocol

    levels = {e.level for examples in load_protocol().examples.values() for e in examples}
    assert {level.value for level in levels} == {"green", "yellow", "orange", "red"}


def test_the_learned_screens_examples_run() -> None:
    """They need the trained model: skipped without it on a developer's machine, a failure under CI."""
    require_learned_model()
    assert checks.not_run() == 0
    assert any(c.file == checks.LEARNED_FILE for c in CASES)
