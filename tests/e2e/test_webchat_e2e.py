"""End to end: the real engine with the trained model, the action server and the gateway, started on
loopback ports by the same launcher `make run` uses, holding Chinese conversations through the web chat
API. The last tests stop the action server, then the engine, and check that nobody meets silence."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from actions.guidance import all_guidance, sections
from integrations.content import failsafe_text
from integrations.launcher import Stack, StackConfig, running
from records.db import create_engine, session_factory
from records.migrate import upgrade
from records.models import AuditEntry, Message
from tests.support import require_trained_model, variations
from triage_protocols.directory import hotline_list

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_trained_model()
    work = tmp_path_factory.mktemp("stack")
    config = StackConfig.isolated(
        work,
        {"XINQIAO_ENGINE_TIMEOUT_SECONDS": "20", "XINQIAO_PROBE_INTERVAL_SECONDS": "0.5",
         "XINQIAO_RETRY_INTERVAL_SECONDS": "3600"},
    )
    upgrade(config.database_url)
    with running(config, timeout=300) as started:
        yield started


class Chat:
    """One web chat user, as the page behaves: a session, then messages with fresh ids."""

    def __init__(self, stack: Stack) -> None:
        self.http = httpx.Client(base_url=stack.config.gateway_url, timeout=60)
        self.session = self.http.post("/api/sessions", json={}).json()["session"]

    def say(self, text: str) -> list[dict]:
        response = self.http.post(
            "/api/messages", json={"session": self.session, "message_id": uuid.uuid4().hex, "text": text}
        )
        assert response.status_code == 200, response.text
        return response.json()["replies"]


def texts(replies: list[dict]) -> list[str]:
    return [r["text"] for r in replies]


def guidance(topic: str) -> list[str]:
    return all_guidance()[topic].messages(sections())


def audit(stack: Stack) -> list[tuple[str, str]]:
    async def read() -> list[tuple[str, str]]:
        engine = create_engine(stack.config.database_url)
        try:
            async with session_factory(engine)() as session:
                rows = (await session.scalars(select(AuditEntry))).all()
                return [(r.subject, r.detail.get("reason", "")) for r in rows]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_a_student_conversation(stack: Stack) -> None:
    chat = Chat(stack)
    greeting = chat.say("你好呀")
    assert greeting[0]["text"] in variations("utter_greet_unknown")
    assert [b["title"] for b in greeting[0]["buttons"]] == ["我是学生", "我是家长"]
    assert chat.say("我是学生")[0]["text"] in variations("utter_audience_student_ack")
    assert chat.say("下周就期中考试了，我复习不完，压力好大")[0]["text"] in variations("utter_exam_stress")
    assert chat.say("晚上躺在床上翻来覆去睡不着，一直到两三点")[0]["text"] in variations("utter_sleep_problem")
    assert chat.say("谢谢你")[0]["text"] in variations("utter_thanks")


def test_a_student_in_crisis_gets_the_numbers_and_a_recorded_request(stack: Stack) -> None:
    chat = Chat(stack)
    replies = texts(chat.say("我真的不想活了，活着太累了"))
    assert replies[0] in variations("utter_crisis_suicidal_thoughts")
    assert replies[1] in variations("utter_crisis_hotlines", hotline_list=hotline_list())
    assert replies[2] in variations("utter_ask_safe_now")
    assert "110" in replies[1] and "12356" in replies[1]
    assert [reason for _, reason in audit(stack)].count("crisis:suicidal_thoughts") >= 1
    followup = texts(chat.say("不，我现在不安全"))
    assert followup[0] in variations("utter_not_safe_now")
    assert followup[1] in variations("utter_handoff", hotline_list=hotline_list())


def test_a_parent_conversation(stack: Stack) -> None:
    chat = Chat(stack)
    chat.say("您好")
    assert chat.say("我是家长")[0]["text"] in variations("utter_audience_parent_ack")
    replies = chat.say("孩子天天抱着手机打游戏，一说就摔门，我该怎么办")
    assert texts(replies)[:4] == guidance("phone_overuse")
    assert replies[4]["text"] in variations("utter_offer_counsellor")
    handoff = texts(chat.say("好的"))
    assert handoff == [t for t in handoff if t in variations("utter_handoff", hotline_list=hotline_list())]
    assert handoff
    assert chat.say("您好")[0]["text"] in variations("utter_greet_parent")  # the slot remembers


def test_a_parent_in_crisis_reads_what_a_parent_needs(stack: Stack) -> None:
    chat = Chat(stack)
    chat.say("我是家长")
    replies = texts(chat.say("儿子昨天跟我说活着没意思，想去死，我该怎么办"))
    crisis = variations("utter_crisis_parent_child_death_talk") | variations(
        "utter_crisis_suicidal_thoughts", audience="parent"
    )
    assert replies[0] in crisis
    assert replies[1] in variations("utter_crisis_hotlines", hotline_list=hotline_list())
    assert replies[2:-1] == guidance("child_death_talk")  # then what to do, from data/guidance/
    assert replies[-1] in variations("utter_ask_safe_now", audience="parent")
    assert not set(replies) & variations("utter_crisis_suicidal_thoughts")  # never the child's words
    followup = texts(chat.say("孩子现在不安全"))
    assert followup[0] in variations("utter_not_safe_now", audience="parent")


def test_every_conversation_can_reach_a_human(stack: Stack) -> None:
    for phrase in ("转人工", "找真人", "我想和老师聊"):
        chat = Chat(stack)
        assert texts(chat.say(phrase)) == [
            next(iter(variations("utter_handoff", hotline_list=hotline_list())))
        ], phrase


def test_an_injected_restart_is_only_text(stack: Stack) -> None:
    chat = Chat(stack)
    chat.say("我是家长")
    chat.say("/restart")
    # The parent is still known: "/restart" reached the engine as the word "restart", not as a command.
    assert chat.say("你好")[0]["text"] in variations("utter_greet_parent")


def test_messages_and_replies_are_stored(stack: Stack) -> None:
    chat = Chat(stack)
    chat.say("我是学生")

    async def count() -> tuple[int, int]:
        engine = create_engine(stack.config.database_url)
        try:
            async with session_factory(engine)() as session:
                rows = (await session.scalars(select(Message))).all()
                return sum(m.direction == "in" for m in rows), sum(m.direction == "out" for m in rows)
        finally:
            await engine.dispose()

    inbound, outbound = asyncio.run(count())
    assert inbound >= 1 and outbound >= inbound


def _wait_until(condition, seconds: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_action_server_down_still_gives_the_numbers(stack: Stack) -> None:
    actions = stack.processes["actions"]
    actions.terminate()
    actions.wait(timeout=15)
    health = httpx.get(f"{stack.config.gateway_url}/healthz", timeout=10)
    assert health.status_code == 503 and health.json()["checks"]["action_server"]["ok"] is False
    _wait_until(lambda: httpx.get(f"{stack.config.gateway_url}/healthz", timeout=10).status_code == 503)
    time.sleep(1.5)  # past two probe intervals, so the switchboard knows too
    replies = texts(Chat(stack).say("我不想活了"))
    assert replies[0] in variations("utter_crisis_suicidal_thoughts")
    assert replies[-1] == failsafe_text()


def test_engine_down_gives_the_failsafe_and_keeps_the_message(stack: Stack) -> None:
    engine = stack.processes["engine"]
    engine.terminate()
    engine.wait(timeout=30)
    chat = Chat(stack)
    response = chat.http.post(
        "/api/messages", json={"session": chat.session, "message_id": "kept", "text": "有人吗，我好害怕"}
    ).json()
    assert texts(response["replies"]) == [failsafe_text()]
    assert response["status"] == "retry_pending"
