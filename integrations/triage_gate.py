"""How a screened message reaches the engine: as text for the NLU, or as the crisis path itself.

Escalation must not depend on the model's guess. At orange and red the gateway does not ask Rasa what the
message means; it triggers an external intent that carries the level, the signal ids and who is at risk,
and the rules in data/rules/triage.yml answer it whatever the NLU would have predicted. Below orange the
text goes to the NLU with the assessment in the message metadata, where the actions can read it (a
yellow message is offered a check-in; a crisis intent is weighed against the screen's score).

Ask, don't guess: a message below orange that the screens are unsure of (the assessment's `unsure`) is
answered as usual and then followed by EXTERNAL_risk_unsure, whose rule asks one gentle, direct question
(unless the assistant has just asked it, or the turn already took the crisis path). It opens no case;
the person's answer decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ESCALATING = ("orange", "red")
# triggered after the reply to a message the screens are unsure of: the assistant asks one question
ASK_WHEN_UNSURE = "EXTERNAL_risk_unsure"
# Forms whose answers are expected to screen orange: the ASQ asks about thoughts of suicide, so "是的，
# 我想过" is its answer, not a new escalation. Red still interrupts them.
ANSWERS_EXPECTED_AT_ORANGE = frozenset({"asq_form"})


@dataclass(frozen=True, slots=True)
class Route:
    kind: Literal["text", "intent"]
    intent: str = ""
    entities: dict[str, Any] = field(default_factory=dict)


def subject_at_risk(assessment: dict[str, Any]) -> Literal["self", "other"]:
    """ "other" when every signal that counts is about someone else (a friend, a classmate, a child):
    then the writer is asked to bring in an adult, not screened with the ASQ about themself."""
    present = [s for s in assessment.get("signals", []) if s.get("status", "present") == "present"]
    if present and all(s.get("subject") == "other" for s in present):
        return "other"
    return "self"


def present_signal_ids(assessment: dict[str, Any]) -> list[str]:
    """The ids of the signals that count (negated and resolved ones are kept in the record, not here)."""
    return sorted({s["id"] for s in assessment.get("signals", []) if s.get("status", "present") == "present"})


def asks_when_unsure(assessment: dict[str, Any]) -> bool:
    """The screens are unsure of a message below orange: after its answer, the assistant asks."""
    return bool(assessment.get("unsure")) and assessment.get("level") not in ESCALATING


def route_for(assessment: dict[str, Any], active_loop: str | None = None) -> Route:
    level = assessment.get("level")
    if level not in ESCALATING or (level == "orange" and active_loop in ANSWERS_EXPECTED_AT_ORANGE):
        return Route("text")
    subject = subject_at_risk(assessment)
    intent = (
        "EXTERNAL_risk_red"
        if level == "red"
        else f"EXTERNAL_risk_orange{'_other' if subject == 'other' else ''}"
    )
    return Route(
        "intent",
        intent,
        {"risk_level": level, "risk_subject": subject, "risk_signals": present_signal_ids(assessment)},
    )


def risk_metadata(assessment: dict[str, Any]) -> dict[str, Any]:
    """What the actions may read from a message's metadata: codes and the learned screen's score (the
    crisis gate weighs the NLU's crisis intents against it), never words or spans."""
    learned = assessment.get("learned") or {}
    return {
        "level": assessment.get("level"),
        "rule": assessment.get("rule"),
        "signals": present_signal_ids(assessment),
        "protocol_version": assessment.get("protocol_version"),
        "score": learned.get("score"),
        "unsure": assessment.get("unsure"),
    }
