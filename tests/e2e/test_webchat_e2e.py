"""End to end: the real engine with the trained model, the action server and the gateway, started on
loopback ports by the same launcher `make run` uses, holding Chinese conversations through the web chat
API. The last tests stop the action server, then the engine, and check that nobody meets silence."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from actions.guidance import all_guidance, sections
from integrations.content import failsafe_text
from integrations.launcher import Stack, StackConfig, running
from records.db import with_session
from records.migrate import upgrade
from records.models import (
    Assignment,
    AuditEntry,
    Case,
    Counsellor,
    FamilyContact,
    Message,
    OutboxItem,
)
from records.roster import put_on_call
from tests.support import require_trained_model, variations
from triage_protocols import instrument, score
from triage_protocols.directory import hotline_list

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_trained_model()
    work = tmp_path_factory.mktemp("stack")
    config = StackConfig.isolated(
        work,
        {
            "XINQIAO_ENGINE_TIMEOUT_SECONDS": "20",
            "XINQIAO_PROBE_INTERVAL_SECONDS": "0.5",
            "XINQIAO_RETRY_INTERVAL_SECONDS": "3600",
        },
    )
    upgrade(config.database_url)
    # three volunteers on shift now, and a supervisor with no shift (reached all the same)
    asyncio.run(
        with_session(
            config.database_url,
            lambda s: put_on_call(
                s, volunteers=["v1", "v2", "v3"], supervisors=["s1"], supervisors_on_shift=False
            ),
        )
    )
    with running(config, timeout=300) as started:
        yield started


def read(stack: Stack, work: Any) -> Any:
    """Runs `work(session)` against the stack's store of record."""
    return asyncio.run(with_session(stack.config.database_url, work))


class Chat:
    """One web chat user, as the page behaves: a session (opened for a reader when the user chose one on
    the page), then messages with fresh ids."""

    def __init__(self, stack: Stack, audience: str | None = None) -> None:
        self.http = httpx.Client(base_url=stack.config.gateway_url, timeout=60)
        body = {"audience": audience} if audience else {}
        self.session = self.http.post("/api/sessions", json=body).json()["session"]

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


def audit(stack: Stack) -> list[tuple[str, dict]]:
    """(action, detail) of every audit entry, oldest first."""

    async def entries(session: Any) -> list[tuple[str, dict]]:
        rows = (await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()
        return [(r.action, r.detail) for r in rows]

    return read(stack, entries)


def test_a_student_conversation(stack: Stack) -> None:
    chat = Chat(stack)
    greeting = chat.say("你好呀")
    assert greeting[0]["text"] in variations("utter_greet_unknown")
    assert [b["title"] for b in greeting[0]["buttons"]] == ["我是学生", "我是家长"]
    assert chat.say("我是学生")[0]["text"] in variations("utter_audience_student_ack")
    assert chat.say("下周就期中考试了，我复习不完，压力好大")[0]["text"] in variations("utter_exam_stress")
    assert chat.say("晚上躺在床上翻来覆去睡不着，一直到两三点")[0]["text"] in variations(
        "utter_sleep_problem"
    )
    assert chat.say("谢谢你")[0]["text"] in variations("utter_thanks")


def test_a_student_at_orange_gets_the_numbers_then_the_asq_one_question_at_a_time(stack: Stack) -> None:
    chat = Chat(stack)
    first = chat.say("我真的不想活了，活着太累了")
    replies = texts(first)
    assert replies[0] in variations("utter_crisis_orange")
    assert replies[1] in variations("utter_crisis_hotlines", hotline_list=hotline_list())
    assert "110" in replies[1] and "12356" in replies[1]
    items = [item.text for item in instrument("asq").items]
    assert replies[-1] == items[0]  # the question comes from the protocol file
    assert [b["title"] for b in first[-1]["buttons"]] == [o.text for o in instrument("asq").options]
    requests = [d for action, d in audit(stack) if action == "handoff_requested"]
    assert any(
        d.get("reason") == "crisis:EXTERNAL_risk_orange" and d.get("level") == "orange" for d in requests
    )
    assert texts(chat.say("是"))[-1] == items[1]
    assert texts(chat.say("不是"))[-1] == items[2]
    assert texts(chat.say("不是"))[-1] == items[3]
    acuity = texts(chat.say("不是"))
    assert acuity[-1] == instrument("asq").acuity.text == "你现在有想要结束自己生命的念头吗？"  # one was yes
    outcome = texts(chat.say("不是"))  # non-acute positive: orange
    assert next(iter(variations("utter_crisis_hotlines", hotline_list=hotline_list()))) in outcome
    assert outcome[-1] in variations("utter_offer_counsellor")


def test_a_parent_conversation(stack: Stack) -> None:
    chat = Chat(stack)
    chat.say("您好")
    assert chat.say("我是家长")[0]["text"] in variations("utter_audience_parent_ack")
    replies = chat.say("孩子天天抱着手机打游戏，一说就摔门，我该怎么办")
    assert texts(replies)[:4] == guidance("phone_overuse")
    assert replies[4]["text"] in variations("utter_offer_counsellor", "parent")
    handoff = texts(chat.say("好的"))
    assert handoff == [t for t in handoff if t in variations("utter_handoff", hotline_list=hotline_list())]
    assert handoff
    assert chat.say("您好")[0]["text"] in variations("utter_greet_parent")  # the slot remembers


def test_a_question_nobody_has_said_whose_is_asked_about_once(stack: Stack) -> None:
    """Who is writing is never guessed from the NLU's intent: a question that could be either reader's,
    in a session opened for nobody, is met with one kind question; a parent who names their own child
    is answered as a parent at once."""
    asked = Chat(stack).say("最近考试压力好大，晚上老是睡不着")
    assert asked[-1]["text"] in variations("utter_ask_audience") | variations("utter_exam_stress")
    parent = texts(Chat(stack).say("孩子天天抱着手机打游戏，一说就摔门，我该怎么办"))
    assert parent[:4] == guidance("phone_overuse")


def test_a_parent_in_crisis_reads_what_a_parent_needs(stack: Stack) -> None:
    chat = Chat(stack)
    chat.say("我是家长")
    replies = texts(chat.say("儿子昨天跟我说活着没意思，想去死，我该怎么办"))
    assert replies[0] in variations("utter_crisis_orange", audience="parent")
    assert replies[1] in variations("utter_crisis_hotlines", hotline_list=hotline_list())
    assert replies[2:-1] == guidance("child_death_talk")  # then what to do, from data/guidance/
    assert replies[-1] in variations("utter_ask_safe_now", audience="parent")
    assert not set(replies) & variations("utter_crisis_orange")  # never the words meant for a child
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


def test_a_self_check_on_request_asks_the_protocol_questions_and_explains_the_result(stack: Stack) -> None:
    chat = Chat(stack)
    gad7 = instrument("gad7")
    first = chat.say("我想测测自己是不是太焦虑了")
    assert gad7.items[0].text in first[-1]["text"]  # the item, in the protocol's words
    assert [b["title"] for b in first[-1]["buttons"]] == [o.text for o in gad7.options]
    for _ in gad7.items[1:]:
        chat.say("完全没有")
    result = texts(chat.say("完全没有"))
    assert score("gad7", [0] * len(gad7.items)).explanation in result


def parse(stack: Stack, text: str) -> str:
    """What the NLU alone would make of a text."""
    response = httpx.post(
        f"{stack.config.engine_url}/model/parse",
        params={"token": stack.config.rasa_token},
        json={"text": text},
    )
    return response.json()["intent"]["name"]


def test_a_red_message_gets_the_red_response_whatever_the_nlu_predicts(stack: Stack) -> None:
    text = "考完这场试，今晚我就从楼顶跳下去"
    assert parse(stack, text) not in ("suicidal_thoughts", "self_harm")  # the model alone would miss it
    chat = Chat(stack)
    replies = texts(chat.say(text))
    assert replies == [
        next(iter(variations("utter_crisis_red"))),
        next(iter(variations("utter_crisis_hotlines", hotline_list=hotline_list()))),
        next(iter(variations("utter_counsellor_being_called"))),
        next(iter(variations("utter_ask_safe_now"))),
    ]
    assert "110" in replies[1] and "12356" in replies[1]
    assert ("risk_screened", "red") in [(action, detail.get("level")) for action, detail in audit(stack)]

    # The case: opened at red with the message, staffed 三包一 from the shift, the family task open, and
    # the on-call lead and the supervisor paged, the pages already sent by the gateway's dispatcher.
    async def the_case(session: Any) -> tuple[Any, ...]:
        message = await session.scalar(select(Message).where(Message.text == text))
        case = await session.scalar(select(Case).where(Case.conversation_id == message.conversation_id))
        staff = (await session.scalars(select(Assignment).where(Assignment.case_id == case.id))).all()
        family = (await session.scalars(select(FamilyContact).where(FamilyContact.case_id == case.id))).all()
        pages = (await session.scalars(select(OutboxItem).where(OutboxItem.case_id == case.id))).all()
        people = {c.id: c.handle for c in (await session.scalars(select(Counsellor))).all()}
        return case, staff, family, pages, people

    deadline = time.monotonic() + 10
    while True:
        case, staff, family, pages, people = read(stack, the_case)
        if all(p.status == "sent" for p in pages) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert (case.level, case.status, case.opened_reason) == ("red", "open", f"screen:{case.rule}")
    assert case.signals and case.protocol_version
    assert sorted(a.role for a in staff) == ["lead", "second", "third"]
    assert {people[a.counsellor_id] for a in staff} == {"v1", "v2", "v3"}
    assert [f.status for f in family] == ["due"]
    lead = next(a.counsellor_id for a in staff if a.role == "lead")
    assert sorted((people[p.counsellor_id], p.payload["reason"]) for p in pages) == sorted(
        [(people[lead], "case_opened"), ("s1", "case_opened")]
    )
    assert all(p.status == "sent" and "console" in p.delivered_via for p in pages)


def test_a_yellow_message_gets_support_and_an_offer_to_check_in(stack: Stack) -> None:
    chat = Chat(stack, "student")
    replies = texts(chat.say("最近考试压力好大，晚上老是睡不着"))
    assert replies[-1] in variations("utter_offer_checkin")
    assert texts(chat.say("好的")) == [next(iter(variations("utter_checkin_accepted")))]


def test_messages_and_replies_are_stored(stack: Stack) -> None:
    chat = Chat(stack)
    chat.say("我是学生")

    async def count(session: Any) -> tuple[int, int]:
        rows = (await session.scalars(select(Message))).all()
        return sum(m.direction == "in" for m in rows), sum(m.direction == "out" for m in rows)

    inbound, outbound = read(stack, count)
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
    assert replies[0] in variations("utter_crisis_orange")  # a domain response: no action server needed
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
