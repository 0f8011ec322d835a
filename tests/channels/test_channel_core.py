"""What every channel shares, through a minimal channel plugged into the real app and store: one
conversation per sender with the address encrypted, a redelivery answered from the store, the per-sender
limit that never holds back a red message, a store that is down, and messages no webhook waits for (a
counsellor's words, the hand-back, a retried answer) sent on the channel in order, with retries."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from integrations.channels import base
from integrations.channels.base import ChannelMessage, ChannelPlugin
from integrations.content import gateway_texts
from records.models import AuditEntry, Contact, Conversation, InboundStatus, Message, OutboxItem, OutboxStatus
from tests.channels.line import Line, Sessions, line_for

RED = "药已经准备好了，今晚我就吃下去"
ADDRESS = "+8613800138000"


class Unreachable(base.PermanentDeliveryError):
    pass


@dataclass
class RecordingSender:
    channel: str = "testchan"
    sent: list[tuple[str, str]] = field(default_factory=list)
    failures: int = 0  # how many sends fail before they succeed
    refuse: bool = False  # every send is refused for good

    async def send_text(self, address: str, text: str) -> None:
        if self.refuse:
            raise Unreachable("test: the user cannot be reached on this channel")
        if self.failures:
            self.failures -= 1
            raise ConnectionError("test: channel down")
        self.sent.append((address, text))


def _plugin(sender: RecordingSender) -> ChannelPlugin:
    routes = Blueprint(f"testchan_{uuid.uuid4().hex[:6]}", url_prefix="/testchan")

    @routes.post("/in")
    async def inbound(request: Request) -> HTTPResponse:
        body = request.json
        answer = await base.receive(
            request.app, ChannelMessage("testchan", body["from"], body["id"], body.get("text"))
        )
        return json({"texts": answer.texts, "error": answer.error, "conversation": answer.conversation_id})

    return ChannelPlugin("testchan", routes, sender=sender)


@pytest.fixture
def sender() -> RecordingSender:
    return RecordingSender()


@pytest.fixture
def line(database_url: str, sessions: Sessions, sender: RecordingSender) -> Iterator[Line]:
    yield line_for(database_url, sessions, _plugin(sender))


async def _send(line: Line, text: object, *, address: str = ADDRESS, message_id: str | None = None) -> dict:
    _, response = await line.app.asgi_client.post(
        "/testchan/in", json={"from": address, "id": message_id or uuid.uuid4().hex, "text": text}
    )
    assert response.status == 200
    return response.json


async def test_one_conversation_per_sender_with_the_address_encrypted(line: Line) -> None:
    first = await _send(line, "你好")
    again = await _send(line, "还在吗")
    other = await _send(line, "你好", address="+8613900139000")
    assert first["conversation"] == again["conversation"] != other["conversation"]
    async with line.sessions() as session:
        conversation = await session.get_one(Conversation, first["conversation"])
        contact = await session.get_one(Contact, conversation.contact_id)
        assert contact.address == ADDRESS  # decrypted by the column type
        raw = (
            await session.execute(text("SELECT address FROM contact WHERE id = :id"), {"id": contact.id})
        ).scalar()
    assert ADDRESS not in raw
    assert line.engine.calls[0][0] == first["conversation"]  # the engine sees the pseudonymous id only


async def test_a_redelivered_message_is_answered_from_the_store(line: Line) -> None:
    first = await _send(line, "你好", message_id="m-1")
    again = await _send(line, "你好", message_id="m-1")
    assert again["texts"] == first["texts"] and len(line.engine.calls) == 1


async def test_empty_and_oversize_messages_get_a_clear_text_and_are_not_processed(line: Line) -> None:
    assert (await _send(line, "   "))["error"] == "empty"
    too_long = await _send(line, "字" * 2001)
    assert too_long["error"] == "too_long" and "2000" in too_long["texts"][0]
    assert (await _send(line, {"not": "text"}))["error"] == "bad_request"
    assert line.engine.calls == []


async def test_over_the_sender_limit_a_message_is_kept_and_slowed_but_red_is_answered(line: Line) -> None:
    for _ in range(base.SENDER_LIMIT):
        await _send(line, "你好")
    slowed = await _send(line, "再说一句")
    assert slowed["texts"] == [gateway_texts().slow_down.format(hotline_list=base.hotline_list())]
    red = await _send(line, RED)
    assert line.engine.triggered, "the red message still reached the crisis path"
    assert red["texts"] != slowed["texts"]
    async with line.sessions() as session:
        statuses = [m.status for m in await session.scalars(select(Message).where(Message.direction == "in"))]
    assert statuses.count(InboundStatus.SLOWED) == 1 and len(statuses) == base.SENDER_LIMIT + 2
    assert len(line.engine.calls) == base.SENDER_LIMIT  # the slowed one never reached the engine


async def test_a_store_that_is_down_answers_with_the_numbers(
    line: Line, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: object, **__: object) -> None:
        raise OperationalError("SELECT", {}, Exception("test: database down"))

    monkeypatch.setattr(base.contacts, "conversation_for", broken)
    answer = await _send(line, "你好")
    assert answer["error"] == "store_down" and "12356" in answer["texts"][0]


async def test_a_counsellors_words_reach_the_user_on_their_channel_in_order(
    line: Line, sender: RecordingSender
) -> None:
    await line.staff()
    conversation = (await _send(line, RED))["conversation"]
    await line.counsellor_writes(conversation, "我是心理老师，我在。", "你现在安全吗？")
    assert sender.sent == [(ADDRESS, "我是心理老师，我在。"), (ADDRESS, "你现在安全吗？")]
    assert await line.deliver() == 0  # sent once


async def test_a_failed_delivery_is_retried_and_later_messages_wait_for_it(
    line: Line, sender: RecordingSender
) -> None:
    await line.staff()
    conversation = (await _send(line, RED))["conversation"]
    sender.failures = 1
    await line.counsellor_writes(conversation, "第一句", "第二句")
    assert sender.sent == []
    async with line.sessions() as session:
        items = list(
            await session.scalars(
                select(OutboxItem).where(OutboxItem.kind == "deliver").order_by(OutboxItem.id)
            )
        )
        for item in items:  # due now instead of after the back-off
            item.available_at = item.created_at
        await session.commit()
    assert [(i.attempts, i.status) for i in items] == [(1, "pending"), (0, "pending")]  # the second waits
    await line.deliver()
    assert [t for _, t in sender.sent] == ["第一句", "第二句"]


async def test_a_delivery_that_keeps_failing_is_audited(
    database_url: str, sessions: Sessions, sender: RecordingSender
) -> None:
    line = line_for(database_url, sessions, _plugin(sender), page_max_attempts=1)
    await line.staff()
    conversation = (await _send(line, RED))["conversation"]
    sender.failures = 5
    await line.counsellor_writes(conversation, "我在。")
    async with line.sessions() as session:
        item = await session.scalar(select(OutboxItem).where(OutboxItem.kind == "deliver"))
        failed = await session.scalar(select(AuditEntry).where(AuditEntry.action == "delivery_failed"))
    assert item is not None and item.status == OutboxStatus.FAILED
    assert failed is not None and ADDRESS not in str(failed.detail) and "我在" not in str(failed.detail)
    assert failed.subject == conversation  # in the conversation's history, so it shows in an export


async def test_a_refusal_no_retry_can_change_fails_at_once_and_is_audited(
    line: Line, sender: RecordingSender
) -> None:
    await line.staff()
    conversation = (await _send(line, RED))["conversation"]
    sender.refuse = True
    await line.counsellor_writes(conversation, "我在。", "你还好吗？")
    async with line.sessions() as session:
        items = list(await session.scalars(select(OutboxItem).where(OutboxItem.kind == "deliver")))
        failed = list(await session.scalars(select(AuditEntry).where(AuditEntry.action == "delivery_failed")))
    assert [(i.status, i.attempts, i.last_error) for i in items] == [
        (OutboxStatus.FAILED, 1, "testchan:Unreachable")
    ] * 2  # the second is not held behind a message that can never go
    assert len(failed) == 2


async def test_an_answer_given_on_retry_is_pushed_to_the_channel(line: Line, sender: RecordingSender) -> None:
    line.engine.down = True
    failsafe = await _send(line, "你好")
    assert "12356" in "".join(failsafe["texts"])
    line.engine.down = False
    assert await line.app.ctx.switchboard.retry_pending() == 1
    await line.deliver()
    assert sender.sent == [(ADDRESS, "你好，我在。")]


async def test_the_web_chat_is_never_pushed_to(line: Line, sender: RecordingSender) -> None:
    await line.staff()
    await line.sign_in("s1")  # starts the app's listeners
    conversation, _ = await line.red_case()  # a web-chat conversation: no contact, no address
    await line.counsellor_writes(conversation, "我在。")
    async with line.sessions() as session:
        pushed = await session.scalar(select(OutboxItem).where(OutboxItem.kind == "deliver"))
    assert pushed is None and sender.sent == []
