"""Ask, don't guess (issue 12): the crisis gate on the NLU's crisis intents, the question when the screens
are unsure, and the answers. Actions run as rasa-sdk runs them, on trackers built here event by event."""

from __future__ import annotations

from typing import Any

import pytest
from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.risk_question import (
    ActionAskWhenUnsure,
    ActionCrisisGate,
    ActionRiskQuestionNo,
    ActionRiskQuestionYes,
)
from tests.unit.dispatched import response
from tests.unit.store_reads import audit_log, cases
from triage_protocols import load_protocol
from triage_protocols.directory import hotline_list

SENDER = "c0ffee77"


def own(
    text: str, intent: str, confidence: float = 0.95, score: float | None = None, rule: str = "no_signal"
) -> dict[str, Any]:
    """A message the person wrote, as the gateway sends it (the screen's assessment in the metadata)."""
    metadata = {"risk": {"level": "green", "rule": rule, "score": score}} if score is not None else {}
    return {
        "event": "user",
        "text": text,
        "parse_data": {"intent": {"name": intent, "confidence": confidence}, "entities": []},
        "metadata": metadata,
    }


def trigger(intent: str = "EXTERNAL_risk_unsure") -> dict[str, Any]:
    """The gateway's trigger_intent (no words)."""
    return {"event": "user", "text": None, "parse_data": {"intent": {"name": intent, "confidence": 1.0}}}


def did(*names: str) -> list[dict[str, Any]]:
    return [{"event": "action", "name": name} for name in names]


def tracker(events: list[dict[str, Any]], audience: str | None = None) -> Tracker:
    latest = next(e for e in reversed(events) if e["event"] == "user")
    return Tracker.from_dict(
        {
            "sender_id": SENDER,
            "slots": {"audience": audience},
            "latest_message": {**latest["parse_data"], "text": latest["text"], "metadata": latest.get("metadata")},
            "events": [*did("action_session_start"), {"event": "session_started"}, *events],
            "paused": False,
            "followup_action": None,
            "active_loop": {},
            "latest_action_name": "action_listen",
        }
    )


async def run(action: Action, events: list[dict[str, Any]], domain: dict[str, Any], audience: str | None = None):
    dispatcher = CollectingDispatcher()
    result = await action.run(dispatcher, tracker(events, audience), domain)
    return dispatcher.messages, result


async def actions_recorded(url: str) -> list[tuple[str, dict[str, Any]]]:
    return [(entry.action, entry.detail) for entry in await audit_log(url)]


# ---------------------------------------------------------------- the crisis gate


@pytest.mark.parametrize(
    ("confidence", "score", "outcome"),
    [
        (0.96, 0.55, "crisis"),
        (0.97, 0.25, "ask"),
        (0.6, 0.5, "ask"),
        (0.92, 0.02, "none"),
        (0.43, 0.3, "none"),
        (0.9, None, "crisis"),
    ],
)
async def test_the_gate_weighs_the_nlu_against_the_screen(
    domain: dict[str, Any], recorded: str, confidence: float, score: float | None, outcome: str
) -> None:
    events = [*did("action_listen"), own("…", "suicidal_thoughts", confidence, score)]
    messages, result = await run(ActionCrisisGate(), events, domain)
    assert (messages, result) == ([], [SlotSet("crisis_gate", outcome)])
    recorded_actions = [action for action, _ in await actions_recorded(recorded)]
    expected = {"crisis": [], "ask": ["crisis_intent_gated", "risk_question_asked"], "none": ["crisis_intent_gated"]}
    assert recorded_actions == expected[outcome]
    assert await cases(recorded) == []  # the gate never opens a case; the crisis path does


async def test_the_gate_records_codes_and_numbers_never_words(domain: dict[str, Any], recorded: str) -> None:
    events = [*did("action_listen"), own("笑死我了哈哈哈", "suicidal_thoughts", 0.45, 0.01)]
    await run(ActionCrisisGate(), events, domain)
    [(action, detail)] = await actions_recorded(recorded)
    assert (action, detail) == (
        "crisis_intent_gated",
        {"intent": "suicidal_thoughts", "confidence": 0.45, "score": 0.01, "outcome": "none"},
    )


async def test_a_denial_the_lexicon_read_is_asked_about_never_escalated_by_the_nlu(
    domain: dict[str, Any], recorded: str
) -> None:
    said = own("我不想死，就是有点烦，想聊聊", "suicidal_thoughts", 0.95, 0.45, rule="risk_denied_or_resolved")
    _, result = await run(ActionCrisisGate(), [*did("action_listen"), said], domain)
    assert result == [SlotSet("crisis_gate", "ask")]


async def test_a_believed_parent_crisis_intent_says_a_parent_writes(domain: dict[str, Any], recorded: str) -> None:
    events = [*did("action_listen"), own("女儿说想死", "parent_child_death_talk", 0.95, 0.7)]
    _, result = await run(ActionCrisisGate(), events, domain)
    assert result == [SlotSet("crisis_gate", "crisis"), SlotSet("audience", "parent")]


async def test_a_student_stays_a_student_whatever_the_nlu_read(domain: dict[str, Any], recorded: str) -> None:
    events = [*did("action_listen"), own("我不会自杀的，只是想找人聊聊", "parent_child_death_talk", 0.95, 0.7)]
    _, result = await run(ActionCrisisGate(), events, domain, audience="student")
    assert result == [SlotSet("crisis_gate", "crisis")]


async def test_a_misread_parent_intent_does_not_make_anyone_a_parent(domain: dict[str, Any], recorded: str) -> None:
    events = [*did("action_listen"), own("我不会自杀的，只是想找人聊聊", "parent_child_death_talk", 0.4, 0.1)]
    _, result = await run(ActionCrisisGate(), events, domain)
    assert result == [SlotSet("crisis_gate", "none")]


# ---------------------------------------------------------------- asking when the screens are unsure


def unsure_turn(*answered_by: str) -> list[dict[str, Any]]:
    """A message below orange the screens were unsure of, its answer, then the gateway's trigger."""
    return [*did("action_listen"), own("最近什么都提不起劲", "low_mood"), *did(*answered_by, "action_listen"), trigger()]


async def test_unsure_asks_the_question(domain: dict[str, Any], recorded: str) -> None:
    messages, result = await run(ActionAskWhenUnsure(), unsure_turn("action_topic_reply"), domain)
    assert (messages, result) == ([], [SlotSet("risk_question", "ask")])
    assert [action for action, _ in await actions_recorded(recorded)] == ["risk_question_asked"]


@pytest.mark.parametrize("answered_by", ["action_crisis_support", "action_handoff", "utter_ask_risk_question"])
async def test_unsure_does_not_ask_after_a_turn_that_went_to_a_person_or_asked(
    domain: dict[str, Any], recorded: str, answered_by: str
) -> None:
    _, result = await run(ActionAskWhenUnsure(), unsure_turn(answered_by), domain)
    assert result == [SlotSet("risk_question", "skip")]
    assert await actions_recorded(recorded) == []


def asked_then_messages(count: int) -> list[dict[str, Any]]:
    events = [*unsure_turn("action_topic_reply"), *did("action_ask_when_unsure", "utter_ask_risk_question")]
    for _ in range(count - 1):
        events += [*did("action_listen"), own("嗯", "affirm"), *did("utter_thanks")]
    return events + unsure_turn("action_topic_reply")


async def test_nobody_is_asked_twice_in_a_short_talk(domain: dict[str, Any], recorded: str) -> None:
    again_after = load_protocol().unsure.ask_again_after  # type: ignore[union-attr]
    _, soon = await run(ActionAskWhenUnsure(), asked_then_messages(again_after), domain)
    _, later = await run(ActionAskWhenUnsure(), asked_then_messages(again_after + 1), domain)
    assert (soon, later) == ([SlotSet("risk_question", "skip")], [SlotSet("risk_question", "ask")])


# ---------------------------------------------------------------- the answer decides


async def test_yes_opens_an_orange_case_and_gives_the_numbers(domain: dict[str, Any], recorded: str) -> None:
    events = [*did("utter_ask_risk_question", "action_listen"), own("是的，有过", "affirm")]
    messages, result = await run(ActionRiskQuestionYes(), events, domain)
    assert messages == [
        response("utter_risk_question_yes"),
        response("utter_crisis_hotlines", hotline_list=hotline_list()),
    ]
    assert result == []
    [case] = await cases(recorded)
    assert (case.conversation_id, case.level) == (SENDER, "orange")
    [(action, detail)] = await actions_recorded(recorded)
    assert (action, detail["reason"], detail["level"]) == ("handoff_requested", "risk_question:yes", "orange")


async def test_a_parents_yes_is_about_the_child(domain: dict[str, Any], recorded: str) -> None:
    events = [*did("utter_ask_risk_question", "action_listen"), own("是的，我担心", "affirm")]
    await run(ActionRiskQuestionYes(), events, domain, audience="parent")
    [case] = await cases(recorded)
    assert (case.level, case.subject) == ("orange", "other")


async def test_no_is_recorded_and_opens_nothing(domain: dict[str, Any], recorded: str) -> None:
    events = [*did("utter_ask_risk_question", "action_listen"), own("没有", "deny")]
    messages, result = await run(ActionRiskQuestionNo(), events, domain)
    assert (messages, result) == ([response("utter_risk_question_no")], [])
    assert [action for action, _ in await actions_recorded(recorded)] == ["risk_question_denied"]
    assert await cases(recorded) == []
