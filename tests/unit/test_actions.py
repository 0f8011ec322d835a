"""Custom actions, run as rasa-sdk runs them: a Tracker from a JSON fixture, a CollectingDispatcher, and
the messages and events compared exactly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from actions import store
from actions.crisis import ActionCrisisSupport
from actions.guidance import all_guidance, sections
from actions.handoff import ActionHandoff, ActionShareHotlines
from actions.topics import ActionTopicReply
from records.db import create_engine, session_factory
from records.models import AuditEntry
from triage_protocols.directory import hotline_list

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "trackers"
DOMAIN_DIR = Path(__file__).resolve().parents[2] / "bot" / "domain"


@pytest.fixture(scope="module")
def domain() -> dict[str, Any]:
    """The responses of the real domain, as Rasa sends them to the action server."""
    responses: dict[str, Any] = {}
    for path in sorted(DOMAIN_DIR.glob("*.yml")):
        responses.update(yaml.safe_load(path.read_text(encoding="utf-8")).get("responses") or {})
    return {"responses": responses}


@pytest.fixture
def recorded(database_url: str) -> Iterator[str]:
    store.use_database(database_url)
    yield database_url
    store._sessions = None


def tracker(name: str) -> Tracker:
    return Tracker.from_dict(json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8")))


def response(name: str, **kwargs: Any) -> dict[str, Any]:
    return {"text": None, "buttons": [], "elements": [], "custom": {}, "template": name, "response": name,
            "image": None, "attachment": None, **kwargs}


def text(value: str) -> dict[str, Any]:
    return {"text": value, "buttons": [], "elements": [], "custom": {}, "template": None, "response": None,
            "image": None, "attachment": None}


def guidance_texts(topic: str) -> list[dict[str, Any]]:
    return [text(t) for t in all_guidance()[topic].messages(sections())]


async def run(action: Action, fixture: str, domain: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Any]]:
    dispatcher = CollectingDispatcher()
    events = await action.run(dispatcher, tracker(fixture), domain)
    return dispatcher.messages, events


async def audit_entries(url: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            rows = (await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()
            return [(r.actor, r.action, r.subject, r.detail) for r in rows]
    finally:
        await engine.dispose()


async def test_a_student_topic_gets_the_student_reply(domain: dict[str, Any]) -> None:
    messages, events = await run(ActionTopicReply(), "student_exam_stress", domain)
    assert (messages, events) == ([response("utter_exam_stress")], [])


async def test_a_parent_topic_gets_the_guidance_file(domain: dict[str, Any]) -> None:
    messages, events = await run(ActionTopicReply(), "parent_exam_stress", domain)
    assert (messages, events) == (guidance_texts("exam_stress"), [])


async def test_a_parent_in_a_students_words_still_gets_parent_guidance(domain: dict[str, Any]) -> None:
    messages, _ = await run(ActionTopicReply(), "parent_uses_student_words", domain)
    assert messages == guidance_texts("bullying")


async def test_an_intent_without_a_reply_falls_back_to_the_default(domain: dict[str, Any]) -> None:
    messages, _ = await run(ActionTopicReply(), "unknown_intent", domain)
    assert messages == [response("utter_default")]


async def test_crisis_support_sends_the_numbers_and_records_a_request(domain: dict[str, Any], recorded: str) -> None:
    messages, events = await run(ActionCrisisSupport(), "student_suicidal_thoughts", domain)
    assert (messages, events) == ([response("utter_crisis_hotlines", hotline_list=hotline_list())], [])
    assert await audit_entries(recorded) == [
        ("action_server", "handoff_requested", "c0ffee04", {"reason": "crisis:suicidal_thoughts"})
    ]


async def test_crisis_support_for_a_parent_adds_the_guidance(domain: dict[str, Any], recorded: str) -> None:
    messages, _ = await run(ActionCrisisSupport(), "parent_child_death_talk", domain)
    assert messages == [response("utter_crisis_hotlines", hotline_list=hotline_list())] + guidance_texts(
        "child_death_talk"
    )


async def test_handoff_says_how_to_reach_a_person_and_is_recorded(domain: dict[str, Any], recorded: str) -> None:
    messages, events = await run(ActionHandoff(), "student_request_human", domain)
    assert (messages, events) == ([response("utter_handoff", hotline_list=hotline_list())], [])
    assert await audit_entries(recorded) == [
        ("action_server", "handoff_requested", "c0ffee06", {"reason": "request:request_human"})
    ]


async def test_the_user_is_answered_even_when_the_store_is_down(domain: dict[str, Any], tmp_path: Path) -> None:
    store.use_database(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'none.db'}")
    try:
        messages, _ = await run(ActionCrisisSupport(), "student_suicidal_thoughts", domain)
    finally:
        store._sessions = None
    assert messages == [response("utter_crisis_hotlines", hotline_list=hotline_list())]


async def test_share_hotlines(domain: dict[str, Any]) -> None:
    messages, _ = await run(ActionShareHotlines(), "student_request_human", domain)
    assert messages == [response("utter_hotlines", hotline_list=hotline_list())]
