"""What became of each message pushed to a user's channel, as the console shows it: pending (with the
attempts so far) until the channel takes it (sent) or it fails for good (failed, with an error code), read
for a whole history in one query; and who must hear at once of a message that failed for good."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import event, select

from records import deliveries, handoff, outbox
from records.deliveries import DELIVER, DeliveryState, FailedDelivery
from records.models import Author, Direction, Message, OutboxItem, OutboxStatus
from tests.records.conftest import Sessions, Staff, assignments, escalate
from tests.records.support import push_counsellor_words, sms_conversation

ADDRESS = "+8613800138000"  # made up


async def _item(sessions: Sessions, message_id: int) -> OutboxItem:
    async with sessions() as session:
        item = await session.scalar(
            select(OutboxItem).where(OutboxItem.dedupe_key == deliveries.dedupe_key(message_id))
        )
    assert item is not None and item.kind == DELIVER
    return item


async def _states(sessions: Sessions, *message_ids: int) -> dict[int, DeliveryState]:
    async with sessions() as session:
        return await deliveries.delivery_states(session, message_ids)


async def _fail(sessions: Sessions, message_id: int, *, max_attempts: int, error: str = "sms:Timeout") -> str:
    item = await _item(sessions, message_id)
    async with sessions() as session:
        return await outbox.mark_failed_attempt(
            session,
            item,
            delivered_via=[],
            error=error,
            max_attempts=max_attempts,
            failure_action="delivery_failed",
        )


async def test_a_message_is_pending_until_the_channel_takes_it(sessions: Sessions) -> None:
    message_id = await push_counsellor_words(
        sessions, await sms_conversation(sessions, ADDRESS), "我在，你先把药放远一点"
    )
    assert await _states(sessions, message_id) == {message_id: DeliveryState("pending", 0)}
    async with sessions() as session:  # taken by a dispatcher: still on its way
        [leased] = await outbox.lease(session, kind=DELIVER)
    assert (await _states(sessions, message_id))[message_id].state == "pending"
    async with sessions() as session:
        await outbox.mark_sent(session, {leased.id: ["sms"]})
    assert await _states(sessions, message_id) == {message_id: DeliveryState("sent", 1)}


async def test_a_message_that_keeps_failing_is_pending_with_its_attempts_then_failed(
    sessions: Sessions,
) -> None:
    message_id = await push_counsellor_words(
        sessions, await sms_conversation(sessions, ADDRESS), "你现在安全吗？"
    )
    assert await _fail(sessions, message_id, max_attempts=3) == OutboxStatus.PENDING
    assert await _states(sessions, message_id) == {message_id: DeliveryState("pending", 1)}
    assert await _fail(sessions, message_id, max_attempts=3) == OutboxStatus.PENDING
    assert await _states(sessions, message_id) == {message_id: DeliveryState("pending", 2)}
    assert await _fail(sessions, message_id, max_attempts=3) == OutboxStatus.FAILED
    assert await _states(sessions, message_id) == {message_id: DeliveryState("failed", 3, "sms:Timeout")}


async def test_a_permanent_refusal_is_failed_at_once(sessions: Sessions) -> None:
    """The dispatcher gives a permanent error one attempt (integrations/outbox_worker.py)."""
    message_id = await push_counsellor_words(sessions, await sms_conversation(sessions, ADDRESS), "我在。")
    assert await _fail(sessions, message_id, max_attempts=1, error="sms:OptedOut") == OutboxStatus.FAILED
    assert await _states(sessions, message_id) == {message_id: DeliveryState("failed", 1, "sms:OptedOut")}
    assert (await _states(sessions, message_id))[message_id].as_json() == {
        "state": "failed",
        "attempts": 1,
        "error": "sms:OptedOut",
    }


async def test_one_query_reads_a_whole_history_and_leaves_out_what_was_never_pushed(
    sessions: Sessions,
) -> None:
    conversation = await sms_conversation(sessions, ADDRESS)
    pushed = [await push_counsellor_words(sessions, conversation, f"第{n}句") for n in range(5)]
    async with sessions() as session:
        child = Message(
            conversation_id=conversation,
            direction=Direction.INBOUND,
            author=Author.USER,
            text="嗯",
            channel="sms",
        )
        session.add(child)
        await session.commit()
        statements: list[str] = []

        def count(*args: object) -> None:
            statements.append(str(args[2]))

        engine = session.bind.sync_engine  # type: ignore[union-attr]
        event.listen(engine, "before_cursor_execute", count)
        try:
            states = await deliveries.delivery_states(session, [*pushed, child.id])
        finally:
            event.remove(engine, "before_cursor_execute", count)
    assert sorted(states) == pushed and {s.state for s in states.values()} == {"pending"}
    assert len(statements) == 1
    async with sessions() as session:
        assert await deliveries.delivery_states(session, []) == {}


async def test_a_message_once_recorded_as_sent_through_an_unconfigured_channel_is_failed(
    sessions: Sessions,
) -> None:
    """What the dispatcher recorded before such a message counted as a failure: it never went out."""
    message_id = await push_counsellor_words(sessions, await sms_conversation(sessions, ADDRESS), "我在。")
    async with sessions() as session:
        await outbox.mark_sent(session, {(await _item(sessions, message_id)).id: ["sms:unconfigured"]})
    assert await _states(sessions, message_id) == {message_id: DeliveryState("failed", 1, "sms:unconfigured")}


async def test_a_failure_is_told_to_the_holder_the_writer_and_the_cases_staff(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    conversation = await sms_conversation(sessions, ADDRESS)
    opened = await escalate(sessions, conversation, "red", now=now)
    assert opened.case_id is not None
    on_case = set((await assignments(sessions, opened.case_id)).values())
    holder = next(v for v in staff.volunteers if v not in on_case)  # holds it without being on its staff
    async with sessions() as session:
        await handoff.take_over(session, opened.case_id, holder)
    async with sessions() as session:
        written = await handoff.counsellor_says(session, conversation, holder, "我在，你先把药放远一点")
    earlier_writer = staff.supervisor  # wrote before the conversation changed hands
    other = await push_counsellor_words(sessions, conversation, "你还好吗？", counsellor_id=earlier_writer)
    items = [await _item(sessions, written.id), await _item(sessions, other)]
    async with sessions() as session:
        told = await deliveries.failed_deliveries(session, items)
    assert told == [
        FailedDelivery(conversation, written.id, opened.case_id, frozenset(on_case | {holder})),
        FailedDelivery(conversation, other, opened.case_id, frozenset(on_case | {holder, earlier_writer})),
    ]
    async with sessions() as session:
        assert await deliveries.failed_deliveries(session, []) == []
