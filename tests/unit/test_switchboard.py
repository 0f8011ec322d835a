"""The switchboard's promises: stored first, answered once, never silent."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from integrations.content import failsafe_text
from integrations.engine_client import BotReply
from integrations.inbound import InboundMessage
from integrations.switchboard import Switchboard
from records import messages
from records.models import InboundStatus, Message
from tests.unit.fakes import FakeEngine

Sessions = async_sessionmaker[AsyncSession]


async def _conversation(sessions: Sessions) -> str:
    async with sessions() as session:
        return (await messages.create_conversation(session, "webchat")).id


def _inbound(conversation_id: str, external_id: str = "m1", text: str = "最近考试压力好大") -> InboundMessage:
    return InboundMessage("webchat", external_id, conversation_id, text)


async def _count(sessions: Sessions, *conditions) -> int:  # type: ignore[no-untyped-def]
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(Message).where(*conditions)) or 0


async def test_message_is_stored_before_the_engine_sees_it(sessions: Sessions) -> None:
    conversation = await _conversation(sessions)
    seen_in_store: list[int] = []

    async def look(_sender: str, _text: str) -> None:
        seen_in_store.append(await _count(sessions, Message.external_id == "m1"))

    engine = FakeEngine(on_call=look)
    outcome = await Switchboard(sessions, engine).receive(_inbound(conversation))
    assert seen_in_store == [1]
    assert outcome.status == InboundStatus.ANSWERED
    assert [r.text for r in outcome.replies] == ["你好，我在。"]
    [(sender, text, metadata)] = engine.calls
    assert (sender, text, metadata["channel"]) == (conversation, "最近考试压力好大", "webchat")
    assert metadata["risk"]["level"] == "yellow"  # screened before the engine saw it


async def test_replies_are_stored_with_their_inbound_message(sessions: Sessions) -> None:
    conversation = await _conversation(sessions)
    engine = FakeEngine(replies=[BotReply("一"), BotReply("二", [{"title": "好的", "payload": "好的"}])])
    outcome = await Switchboard(sessions, engine).receive(_inbound(conversation))
    async with sessions() as session:
        stored = await messages.replies_to(session, outcome.message_id)
    assert [(m.text, m.author, m.payload) for m in stored] == [
        ("一", "bot", None),
        ("二", "bot", {"buttons": [{"title": "好的", "payload": "好的"}]}),
    ]


async def test_redelivery_is_answered_from_the_store_not_processed_again(sessions: Sessions) -> None:
    conversation = await _conversation(sessions)
    engine = FakeEngine()
    switchboard = Switchboard(sessions, engine)
    first = await switchboard.receive(_inbound(conversation))
    second = await switchboard.receive(_inbound(conversation))
    assert len(engine.calls) == 1
    assert second.duplicate and not first.duplicate
    assert second.message_id == first.message_id
    assert [r.id for r in second.replies] == [r.id for r in first.replies]


async def test_concurrent_redeliveries_are_processed_once(sessions: Sessions) -> None:
    conversation = await _conversation(sessions)
    engine = FakeEngine(delay=0.05)
    switchboard = Switchboard(sessions, engine)
    outcomes = await asyncio.gather(*(switchboard.receive(_inbound(conversation)) for _ in range(8)))
    assert len(engine.calls) == 1
    assert sum(not o.duplicate for o in outcomes) == 1
    assert await _count(sessions, Message.direction == "in") == 1


async def test_engine_down_gives_the_failsafe_script_and_keeps_the_message(sessions: Sessions) -> None:
    conversation = await _conversation(sessions)
    outcome = await Switchboard(sessions, FakeEngine(down=True)).receive(_inbound(conversation))
    assert outcome.status == InboundStatus.RETRY_PENDING
    assert [(r.text, r.author) for r in outcome.replies] == [(failsafe_text(), "system")]
    for number in ("110", "120", "12356"):
        assert number in outcome.replies[0].text
    async with sessions() as session:
        waiting = await messages.pending_retries(session)
    assert [m.id for m in waiting] == [outcome.message_id]


async def test_retry_answers_the_kept_message_when_the_engine_is_back(sessions: Sessions) -> None:
    conversation = await _conversation(sessions)
    engine = FakeEngine(down=True)
    switchboard = Switchboard(sessions, engine)
    failed = await switchboard.receive(_inbound(conversation))
    engine.down = False
    assert await switchboard.retry_pending() == 1
    async with sessions() as session:
        later = await messages.outbound_after(session, conversation, failed.replies[-1].id)
        assert await messages.pending_retries(session) == []
    assert [m.text for m in later] == ["你好，我在。"]
    assert engine.calls[-1][2]["retry"] is True
    assert engine.calls[-1][2]["risk"] == engine.calls[0][2]["risk"]  # the stored assessment, not a new one


async def test_a_message_a_dead_gateway_stored_but_never_answered_is_answered_by_the_retry_worker(
    sessions: Sessions,
) -> None:
    """Stored, then the process died before the engine answered: the message stays `received`. Once it
    is older than anything still in flight, the retry worker answers it; a fresh one is left alone."""
    conversation = await _conversation(sessions)
    async with sessions() as session:
        stored = await messages.record_inbound(
            session, conversation_id=conversation, channel="webchat", external_id="orphan", text="还在吗"
        )
    engine = FakeEngine()
    switchboard = Switchboard(sessions, engine, stale_after_seconds=60)
    assert await switchboard.retry_pending() == 0  # it may still be in flight
    assert engine.calls == []
    async with sessions() as session:
        orphan = await session.get_one(Message, stored.message.id)
        orphan.created_at = orphan.created_at - timedelta(minutes=5)
        await session.commit()
    assert await switchboard.retry_pending() == 1
    async with sessions() as session:
        answered = await session.get_one(Message, stored.message.id)
        replies = await messages.replies_to(session, answered.id)
    assert answered.status == InboundStatus.ANSWERED and [r.text for r in replies] == ["你好，我在。"]


async def test_at_the_limit_the_message_is_given_up_and_still_retried(sessions: Sessions) -> None:
    """Given up means a person has it (tests/unit/test_nothing_lost.py), not that it is forgotten."""
    conversation = await _conversation(sessions)
    engine = FakeEngine(down=True)
    switchboard = Switchboard(sessions, engine, retry_limit=3)
    outcome = await switchboard.receive(_inbound(conversation))
    for _ in range(5):
        await switchboard.retry_pending()
    async with sessions() as session:
        message = await session.get(Message, outcome.message_id)
    assert message is not None
    assert (message.status, message.attempts) == (InboundStatus.GAVE_UP, 6)
    assert len(engine.calls) == 6


async def test_action_server_down_adds_the_failsafe_script_to_the_engine_reply(sessions: Sessions) -> None:
    conversation = await _conversation(sessions)
    switchboard = Switchboard(sessions, FakeEngine(), actions_up=lambda: False)
    outcome = await switchboard.receive(_inbound(conversation))
    assert [r.text for r in outcome.replies] == ["你好，我在。", failsafe_text()]
    assert outcome.status == InboundStatus.ANSWERED


async def test_same_external_id_on_another_channel_is_another_message(sessions: Sessions) -> None:
    conversation = await _conversation(sessions)
    engine = FakeEngine()
    switchboard = Switchboard(sessions, engine)
    await switchboard.receive(_inbound(conversation))
    other = await switchboard.receive(InboundMessage("sms", "m1", conversation, "你好"))
    assert not other.duplicate
    assert len(engine.calls) == 2


async def test_the_engine_learns_who_writes_before_the_first_message_and_only_then(sessions: Sessions) -> None:
    async with sessions() as session:
        conversation = (await messages.create_conversation(session, "webchat", "parent")).id
    told: list[tuple[str, str]] = []

    class Listening(FakeEngine):
        async def set_audience(self, sender_id: str, audience: str) -> None:
            told.append((sender_id, audience))
            assert self.calls == []  # before the engine hears the words

    engine = Listening()
    switchboard = Switchboard(sessions, engine)
    await switchboard.receive(InboundMessage("webchat", "m1", conversation, "孩子最近不想上学"))
    # a person who says who they are later is never overruled by what the session was opened as
    await switchboard.receive(InboundMessage("webchat", "m2", conversation, "我其实是学生"))
    assert told == [(conversation, "parent")]


async def test_a_conversation_of_unknown_audience_tells_the_engine_nothing(sessions: Sessions) -> None:
    engine = FakeEngine()
    await Switchboard(sessions, engine).receive(_inbound(await _conversation(sessions)))
    assert engine.audiences == {}
