"""Run every example embedded in the protocol files and report what fails.

Used by `python -m triage_protocols check` and by the tests, so a reviewer who adds an example to a file
adds a test, and `check` and `pytest` can never disagree about it.
"""

from __future__ import annotations

from dataclasses import dataclass

from triage_protocols.combine import assess_intent, gate_crisis_intent
from triage_protocols.engine import Screener
from triage_protocols.instruments import score
from triage_protocols.loader import Protocol, load_protocol

# its examples run through both screens, so they need the trained learned screen (`make learned`)
LEARNED_FILE = "learned.yml"


@dataclass(frozen=True, slots=True)
class Failure:
    file: str
    example: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}: {self.example}: {self.problem}"


@dataclass(frozen=True, slots=True)
class Case:
    """One embedded example, runnable on its own (the tests parametrize over these)."""

    file: str
    label: str
    run: object  # Callable[[], str | None]: the problem, or None when the example holds


def cases(protocol: Protocol | None = None) -> list[Case]:
    """Every embedded example of every protocol file, as a runnable case."""
    loaded = protocol or load_protocol()
    screener = Screener(loaded)
    found: list[Case] = []
    for file, examples in loaded.examples.items():
        if file == LEARNED_FILE and screener.learned.model is None:
            continue  # they need the trained model; `check` says so (not_run)
        for example in examples:
            found.append(Case(file, f"[{example.audience}] {example.text}", _screen_case(screener, example)))
    for item in loaded.normalise_spec.normalise_examples:
        found.append(
            Case(
                "normalise.yml",
                f"normalise {item.text!r}",
                _normalise_case(loaded, item.text, item.normalised),
            )
        )
    for item in loaded.intents.intent_examples:
        found.append(
            Case("intents.yml", f"intent {item.intent}", _intent_case(loaded, item.intent, item.level))
        )
    for number, gate in enumerate(loaded.intents.crisis_gate_examples, start=1):
        found.append(Case("intents.yml", f"crisis gate {number} ({gate.intent})", _gate_case(loaded, gate)))
    for name, spec in loaded.instruments.items():
        for number, example in enumerate(spec.examples, start=1):
            found.append(
                Case(f"instruments/{name}.yml", f"example {number}", _instrument_case(loaded, name, example))
            )
    return found


def not_run(protocol: Protocol | None = None) -> int:
    """How many examples of learned.yml cannot run because the learned screen has no trained model."""
    loaded = protocol or load_protocol()
    if Screener(loaded).learned.model is not None:
        return 0
    return len(loaded.examples.get(LEARNED_FILE, ()))


def run(protocol: Protocol | None = None) -> tuple[int, list[Failure]]:
    """(number of examples run, the failures)."""
    all_cases = cases(protocol)
    failures = []
    for case in all_cases:
        problem = case.run()  # type: ignore[operator]
        if problem:
            failures.append(Failure(case.file, case.label, problem))
    return len(all_cases), failures


def _screen_case(screener: Screener, example):  # type: ignore[no-untyped-def]
    def check() -> str | None:
        result = screener.screen(example.text, example.audience, list(example.context) or None)
        problems = []
        if result.level != example.level:
            problems.append(f"expected {example.level}, got {result.level} (rule {result.rule})")
        if example.unsure is not None and (result.unsure or "none") != example.unsure:
            problems.append(f"expected unsure {example.unsure}, got {result.unsure or 'none'}")
        missing = set(example.signals) - result.categories()
        if missing:
            problems.append(f"expected signals of {sorted(missing)}, got {sorted(result.categories())}")
        return "; ".join(problems) or None

    return check


def _normalise_case(protocol: Protocol, text: str, expected: str):  # type: ignore[no-untyped-def]
    def check() -> str | None:
        got = protocol.normaliser(text).text
        return None if got == expected else f"expected {expected!r}, got {got!r}"

    return check


def _intent_case(protocol: Protocol, intent: str, level):  # type: ignore[no-untyped-def]
    def check() -> str | None:
        got = assess_intent(intent, protocol=protocol).level
        return None if got == level else f"expected {level}, got {got}"

    return check


def _gate_case(protocol: Protocol, example):  # type: ignore[no-untyped-def]
    def check() -> str | None:
        got = gate_crisis_intent(example.intent, example.confidence, example.score, example.rule, protocol)
        return None if got == example.outcome else f"expected {example.outcome}, got {got}"

    return check


def _instrument_case(protocol: Protocol, name: str, example):  # type: ignore[no-untyped-def]
    def check() -> str | None:
        try:
            result = score(name, example.answers, protocol)
        except ValueError as error:
            return f"scoring failed: {error}"
        problems = []
        if result.outcome != example.outcome:
            problems.append(f"expected outcome {example.outcome}, got {result.outcome}")
        if result.level != example.level:
            problems.append(f"expected {example.level}, got {result.level}")
        if example.total is not None and result.total != example.total:
            problems.append(f"expected total {example.total}, got {result.total}")
        if result.next != example.next:
            problems.append(f"expected next {example.next}, got {result.next}")
        return "; ".join(problems) or None

    return check
