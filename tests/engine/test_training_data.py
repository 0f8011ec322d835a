"""The training data, read as YAML: enough varied examples per intent, none repeated, none shared with the
held-out evaluation set, and nothing a user could not type."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT, domain_responses

MIN_EXAMPLES = 25
MIN_RETRIEVAL_EXAMPLES = 12


def examples_by_intent(*paths: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in paths:
        for block in yaml.safe_load(path.read_text(encoding="utf-8")).get("nlu", []):
            if "intent" not in block:
                continue
            lines = [
                line.strip()[2:].strip()
                for line in block["examples"].splitlines()
                if line.strip().startswith("- ")
            ]
            found.setdefault(block["intent"], []).extend(lines)
    return found


def normalise(text: str) -> str:
    """Two examples that differ only in punctuation, spacing, width or case are the same example."""
    text = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"[\W_]+", "", text)


TRAINING = examples_by_intent(*sorted((ROOT / "data" / "nlu").glob("*.yml")))
HELD_OUT = examples_by_intent(ROOT / "benchmarks" / "data" / "nlu_heldout.yml")


def domain_intents() -> list[str]:
    """Every intent a user's words can carry. External intents are sent by the gateway, never typed."""
    names: list[str] = []
    for path in sorted((ROOT / "bot" / "domain").glob("*.yml")):
        for intent in yaml.safe_load(path.read_text(encoding="utf-8")).get("intents") or []:
            name = intent if isinstance(intent, str) else next(iter(intent))
            if not name.startswith("EXTERNAL_"):
                names.append(name)
    return names


DOMAIN_INTENTS = domain_intents()


def test_every_domain_intent_has_training_examples() -> None:
    base_intents = {name.split("/")[0] for name in TRAINING}
    assert set(DOMAIN_INTENTS) == base_intents


@pytest.mark.parametrize("intent", sorted(TRAINING))
def test_each_intent_has_enough_examples(intent: str) -> None:
    minimum = MIN_RETRIEVAL_EXAMPLES if "/" in intent else MIN_EXAMPLES
    assert len(TRAINING[intent]) >= minimum


def test_no_example_is_repeated_even_with_other_punctuation() -> None:
    counts = Counter(normalise(e) for examples in TRAINING.values() for e in examples)
    assert [text for text, n in counts.items() if n > 1] == []


def test_held_out_examples_never_appear_in_training() -> None:
    training = {normalise(e) for examples in TRAINING.values() for e in examples}
    leaked = [e for examples in HELD_OUT.values() for e in examples if normalise(e) in training]
    assert leaked == []


def test_held_out_set_covers_every_intent_with_at_least_200_examples() -> None:
    assert set(HELD_OUT) == set(TRAINING)
    assert sum(len(v) for v in HELD_OUT.values()) >= 200


def test_no_example_starts_with_a_slash() -> None:
    """The gateway strips a leading slash, so an example that starts with one could never be seen."""
    assert [e for v in TRAINING.values() for e in v if e.lstrip().startswith(("/", "／"))] == []


def test_human_handoff_phrases_are_taught() -> None:
    taught = {normalise(e) for e in TRAINING["request_human"]}
    for phrase in ("转人工", "找真人", "我想和老师聊"):
        assert normalise(phrase) in taught


def test_every_guidance_topic_can_be_chosen_by_its_button() -> None:
    """The clarifying question's buttons send "我想了解：<title>" (data/guidance/_finding.yml): the NLU has
    seen each title that way, so a new topic or referral comes with its line in data/nlu/parent.yml."""
    from actions.guidance import all_answers
    from actions.topic_finder import load_settings

    prefix = load_settings().choice_prefix
    chosen = set(TRAINING["choose_topic"])
    missing = sorted(g.title for g in all_answers().values() if f"{prefix}{g.title}" not in chosen)
    assert missing == []


def _may_both_match(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> bool:
    """Two slot conditions both hold in some state unless they ask one slot for different values."""
    wanted = {c["name"]: c.get("value") for c in first}
    return all(wanted.get(c["name"], c.get("value")) == c.get("value") for c in second)


def test_no_two_conditional_variations_of_a_response_may_both_match() -> None:
    """Rasa picks at random among the conditional variations that match: a parent writing about a friend
    got the student's wording of utter_crisis_red half the time."""
    overlapping = [
        name
        for name, every in domain_responses().items()
        for i, first in enumerate(every)
        for second in every[i + 1 :]
        if first.get("condition") and second.get("condition")
        and _may_both_match(first["condition"], second["condition"])
        and first.get("channel") == second.get("channel")
    ]
    assert overlapping == []
