"""Custom actions, run as rasa-sdk runs them: a Tracker from a JSON fixture, a CollectingDispatcher, and
the messages and events compared exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions import store
from actions.checkin import ActionCheckinAnswer
from actions.crisis import ActionCrisisSupport
from actions.guidance import all_guidance, guidance_for, sections
from actions.handoff import ActionHandoff, ActionShareHotlines
from actions.topics import ActionTopicReply
from tests.unit.dispatched import response, text
from tests.unit.store_reads import audit_log, cases
from triage_protocols import protocol_version
from triage_protocols.directory import hotline_list

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "trackers"


def tracker(name: str) -> Tracker:
    return Tracker.from_dict(json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8")))


def guidance_texts(topic: str) -> list[dict[str, Any]]:
    return [text(t) for t in all_guidance()[topic].messages(sections())]


async def run(action: Action, fixture: str, domain: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Any]]:
    dispatcher = CollectingDispatcher()
    events = await action.run(dispatcher, tracker(fixture), domain)
    return dispatcher.messages, events


async def audit_entries(url: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """What the actions recorded themselves (the case entries are checked on their own)."""
    return [(r.actor, r.action, r.subject, r.detail) for r in await audit_log(url)]


async def test_a_student_topic_gets_the_student_reply(domain: dict[str, Any]) -> None:
    messages, events = await run(ActionTopicReply(), "student_exam_stress", domain)
    assert (messages, events) == ([response("utter_exam_stress")], [])


async def test_a_parent_topic_gets_the_guidance_file(domain: dict[str, Any]) -> None:
    messages, events = await run(ActionTopicReply(), "parent_exam_stress", domain)
    # the guidance, then the offer of a counsellor, as after action_parent_topic
    assert (messages, events) == (guidance_texts("exam_stress"), [FollowupAction("utter_offer_counsellor")])


async def test_a_parent_in_a_students_words_still_gets_parent_guidance(domain: dict[str, Any]) -> None:
    messages, _ = await run(ActionTopicReply(), "parent_uses_student_words", domain)
    assert messages == guidance_texts("bullying")


async def test_an_intent_without_a_reply_falls_back_to_the_default(domain: dict[str, Any]) -> None:
    messages, _ = await run(ActionTopicReply(), "unknown_intent", domain)
    assert messages == [response("utter_default")]


async def test_crisis_support_sends_the_numbers_and_records_a_request(
    domain: dict[str, Any], recorded: str
) -> None:
    messages, events = await run(ActionCrisisSupport(), "student_suicidal_thoughts", domain)
    assert (messages, events) == ([response("utter_crisis_hotlines", hotline_list=hotline_list())], [])
    [(actor, action, subject, detail)] = await audit_entries(recorded)
    assert (actor, action, subject) == ("action_server", "handoff_requested", "c0ffee04")
    # Rasa's crisis intent maps to a level through the protocol; no screen came with this message.
    assert detail["reason"] == "crisis:suicidal_thoughts"
    assert (detail["level"], detail["intent_level"], detail["screen_level"]) == ("orange", "orange", None)
    assert detail["protocol_version"] == protocol_version()


async def test_a_red_screen_outranks_the_intent_and_is_recorded(
    domain: dict[str, Any], recorded: str
) -> None:
    messages, _ = await run(ActionCrisisSupport(), "external_risk_red", domain)
    assert messages == [response("utter_crisis_hotlines", hotline_list=hotline_list())]
    [(_, action, subject, detail)] = await audit_entries(recorded)
    assert (action, subject, detail["level"], detail["screen_level"]) == (
        "handoff_requested",
        "c0ffee10",
        "red",
        "red",
    )
    assert detail["signals"] == ["suicide.ideation", "suicide.timing"]  # ids only, never the words


async def test_a_yellow_student_is_offered_a_check_in(domain: dict[str, Any]) -> None:
    messages, events = await run(ActionTopicReply(), "student_exam_stress_yellow", domain)
    assert [m["response"] for m in messages] == ["utter_exam_stress", "utter_offer_checkin"]
    assert events == [SlotSet("checkin_offered", True)]


async def test_a_green_student_is_not_offered_a_check_in(domain: dict[str, Any]) -> None:
    _, events = await run(ActionTopicReply(), "student_exam_stress", domain)
    assert events == []


async def test_an_accepted_check_in_is_recorded(domain: dict[str, Any], recorded: str) -> None:
    messages, events = await run(ActionCheckinAnswer(), "student_accepts_checkin", domain)
    assert (messages, events) == ([response("utter_checkin_accepted")], [SlotSet("checkin_offered", False)])
    assert [(a, s) for _, a, s, _ in await audit_entries(recorded)] == [("checkin_accepted", "c0ffee12")]


async def test_crisis_support_for_a_parent_adds_the_guidance(domain: dict[str, Any], recorded: str) -> None:
    messages, _ = await run(ActionCrisisSupport(), "parent_child_death_talk", domain)
    assert messages == [response("utter_crisis_hotlines", hotline_list=hotline_list())] + guidance_texts(
        "child_death_talk"
    )


async def test_handoff_says_how_to_reach_a_person_and_is_recorded(
    domain: dict[str, Any], recorded: str
) -> None:
    messages, events = await run(ActionHandoff(), "student_request_human", domain)
    assert (messages, events) == ([response("utter_handoff", hotline_list=hotline_list())], [])
    assert await audit_entries(recorded) == [
        ("action_server", "handoff_requested", "c0ffee06", {"reason": "request:request_human"})
    ]


async def test_crisis_support_opens_a_case_at_the_combined_level(
    domain: dict[str, Any], recorded: str
) -> None:
    await run(ActionCrisisSupport(), "external_risk_red", domain)
    [case] = await cases(recorded)
    assert (case.conversation_id, case.level, case.status) == ("c0ffee10", "red", "open")
    assert case.signals == ["suicide.ideation", "suicide.timing"]
    assert case.protocol_version == protocol_version()
    await run(ActionCrisisSupport(), "external_risk_red", domain)  # the same turn again: no second case
    assert len(await cases(recorded)) == 1


async def test_rasas_crisis_intent_alone_opens_an_orange_case(domain: dict[str, Any], recorded: str) -> None:
    await run(ActionCrisisSupport(), "student_suicidal_thoughts", domain)
    assert [(c.level, c.opened_reason) for c in await cases(recorded)] == [
        ("orange", "crisis:suicidal_thoughts")
    ]


async def test_asking_for_a_person_opens_a_yellow_case(domain: dict[str, Any], recorded: str) -> None:
    await run(ActionHandoff(), "student_request_human", domain)
    assert [(c.level, c.opened_reason) for c in await cases(recorded)] == [
        ("yellow", "request:request_human")
    ]


async def test_a_check_in_opens_a_yellow_case_and_a_no_opens_none(
    domain: dict[str, Any], recorded: str
) -> None:
    declined = tracker("student_accepts_checkin")
    declined.latest_message["intent"]["name"] = "deny"
    await ActionCheckinAnswer().run(CollectingDispatcher(), declined, domain)
    assert await cases(recorded) == []
    await run(ActionCheckinAnswer(), "student_accepts_checkin", domain)
    assert [(c.level, c.opened_reason) for c in await cases(recorded)] == [("yellow", "checkin")]


async def test_the_user_is_answered_even_when_the_store_is_down(
    domain: dict[str, Any], tmp_path: Path
) -> None:
    store.use_database(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'none.db'}")
    try:
        messages, _ = await run(ActionCrisisSupport(), "student_suicidal_thoughts", domain)
    finally:
        store._sessions = None
    assert messages == [response("utter_crisis_hotlines", hotline_list=hotline_list())]


async def test_share_hotlines(domain: dict[str, Any]) -> None:
    messages, _ = await run(ActionShareHotlines(), "student_request_human", domain)
    assert messages == [response("utter_hotlines", hotline_list=hotline_list())]


def test_an_escalated_parent_message_gets_guidance_chosen_by_its_signals() -> None:
    def topic(audience: str, signals: list[str]) -> str | None:
        found = guidance_for("EXTERNAL_risk_orange", audience, signals)
        return found.topic if found else None

    assert topic("parent", ["low_mood.words", "ideation.want_to_die"]) == "child_death_talk"
    assert topic("parent", ["self_harm.cutting"]) == "child_self_harm"
    assert topic("parent", ["exam_stress.exams"]) is None
    assert topic("student", ["ideation.want_to_die"]) is None  # a child gets the crisis reply, not advice
