"""Messages pushed to a user's channel: queued with the message only for conversations with a contact,
once per message, and handed out strictly in order per conversation (the outbox's topics), while other
users' messages and the pages to staff go on regardless."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from records import deliveries, messages, outbox, paging
from records.deliveries import DELIVER
from records.models import Author, Direction, Message, OutboxItem
from tests.records.conftest import Sessions, Staff, open_case
from tests.records.support import push_counsellor_words, sms_conversation


async def _lease(sessions: Sessions, at: datetime) -> list[int]:
    async with sessions() as session:
        items = await outbox.lease(session, kind=DELIVER, now=at)
        return [int(item.payload["message_id"]) for item in items]


async def test_one_sender_makes_one_conversation_with_its_contact(sessions: Sessions) -> None:
    first = await sms_conversation(sessions, "+8613800138000")
    assert await sms_conversation(sessions, "+8613800138000") == first
    assert await sms_conversation(sessions, "+8613900139000") != first


async def test_a_web_chat_conversation_is_never_pushed_to(sessions: Sessions) -> None:
    async with sessions() as session:
        conversation = await messages.create_conversation(session, "webchat")
        message = Message(
            conversation_id=conversation.id,
            direction=Direction.OUTBOUND,
            author=Author.BOT,
            channel="webchat",
            text="你好",
        )
        session.add(message)
        await session.flush()
        assert not await deliveries.push(session, message)


async def test_a_users_messages_are_handed_out_one_at_a_time_in_order(
    sessions: Sessions, now: datetime
) -> None:
    one = await sms_conversation(sessions, "+8613800138000")
    other = await sms_conversation(sessions, "+8613900139000")
    first, second = (
        await push_counsellor_words(sessions, one, "第一句"),
        await push_counsellor_words(sessions, one, "第二句"),
    )
    elsewhere = await push_counsellor_words(sessions, other, "别人的")
    later = now + timedelta(minutes=1)  # every push is due by then
    assert await _lease(sessions, later) == [first, elsewhere]  # the second waits behind the first
    assert await _lease(sessions, later) == []  # … also while the first is being sent
    async with sessions() as session:
        [sent] = await session.scalars(
            select(OutboxItem).where(OutboxItem.dedupe_key == f"{DELIVER}:{elsewhere}")
        )
        await outbox.mark_sent(session, {sent.id: ["sms"]})
    async with sessions() as session:
        [item] = await session.scalars(
            select(OutboxItem).where(OutboxItem.dedupe_key == f"{DELIVER}:{first}")
        )
        await outbox.mark_failed_attempt(session, item, delivered_via=[], error="sms:Timeout", max_attempts=2)
    assert await _lease(sessions, later + timedelta(minutes=5)) == [first]  # retried; the second still waits
    async with sessions() as session:
        [item] = await session.scalars(
            select(OutboxItem).where(OutboxItem.dedupe_key == f"{DELIVER}:{first}")
        )
        await outbox.mark_failed_attempt(session, item, delivered_via=[], error="sms:Timeout", max_attempts=2)
    # failed for good (audited for a supervisor): the next message is not held back for ever
    assert await _lease(sessions, later + timedelta(minutes=10)) == [second]


async def test_deliveries_and_pages_do_not_wait_for_each_other(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    _, case_id = await open_case(sessions, "orange", now=now)
    conversation = await sms_conversation(sessions, "+8613800138000")
    pushed = await push_counsellor_words(sessions, conversation, "你好")
    later = now + timedelta(minutes=1)
    async with sessions() as session:
        pages = await outbox.lease(session, now=later)
    assert pages and {item.kind for item in pages} == {paging.PAGE}
    assert await _lease(sessions, later) == [pushed]
    assert case_id
