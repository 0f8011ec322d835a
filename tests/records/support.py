"""What the case-store and console tests share besides fixtures: made-up directory places (the shipped
regional file has none that takes referrals), checks that a value is stored encrypted and that audit
entries hold no words, and cases written as they stand, with their own times."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from records import contacts, crypto, deliveries
from records.models import AuditEntry, Author, Case, CaseStatus, Conversation, Direction, Message, new_id
from triage_protocols.directory import Entry

SCHOOL_ROOM = Entry(
    id="test_school_room",
    name="测试中学心理辅导室",
    number="000-0000-0001",
    hours="上学日",
    when="测试",
    kind="school_counselling_room",
    takes_referrals=True,
)
HOTLINE_ONLY = Entry(id="test_hotline", name="测试热线", number="000-0000-0002", hours="24小时", when="测试")

RANK = {"green": 0, "yellow": 1, "orange": 2, "red": 3}
CLAIM_MINUTES = {"red": 3, "orange": 20, "yellow": 1440, "green": 1440}  # as in levels.yml


def looks_encrypted(stored: str, plain: str) -> None:
    assert plain not in stored and stored != plain
    assert stored.startswith("gAAAAA")  # a Fernet token, version byte 0x80
    assert crypto.decrypt(stored) == plain


def no_words(entries: list[AuditEntry], *words: str) -> None:
    dumped = json.dumps([e.detail for e in entries], ensure_ascii=False)
    for word in words:
        assert word not in dumped


async def write_case(
    session: AsyncSession,
    level: str,
    opened_at: datetime,
    *,
    claimed_after: float | None = None,
    status: str | None = None,
    claimed_by: int | None = None,
    held_by: int | None = None,
    closed_after: timedelta = timedelta(hours=1),
) -> Case:
    """A case on a conversation of its own, opened (and perhaps claimed, perhaps closed `closed_after` it
    opened) when the test says; flushed, not committed."""
    claimed_at = None if claimed_after is None else opened_at + timedelta(seconds=claimed_after)
    if status is None:
        status = CaseStatus.OPEN if claimed_at is None else CaseStatus.CLAIMED
    conversation = Conversation(id=new_id(), channel="webchat", audience="student", held_by=held_by)
    session.add(conversation)
    await session.flush()
    case = Case(
        conversation_id=conversation.id,
        level=level,
        level_rank=RANK[level],
        status=status,
        opened_reason="test:reason",
        protocol_version="test",
        signals=[],
        opened_at=opened_at,
        claim_by=opened_at + timedelta(minutes=CLAIM_MINUTES[level]),
        claimed_at=claimed_at,
        claimed_by=claimed_by,
        closed_at=opened_at + closed_after if status == CaseStatus.CLOSED else None,
    )
    session.add(case)
    await session.flush()
    return case


async def sms_conversation(sessions: async_sessionmaker[AsyncSession], address: str) -> str:
    """The conversation of one SMS sender (made on first use), as a channel finds it."""
    async with sessions() as session:
        return (await contacts.conversation_for(session, "sms", address)).id


async def push_counsellor_words(
    sessions: async_sessionmaker[AsyncSession],
    conversation_id: str,
    text: str,
    counsellor_id: int | None = None,
) -> int:
    """A counsellor's message to an SMS user, queued for the delivery dispatcher (once); its id."""
    async with sessions() as session:
        message = Message(
            conversation_id=conversation_id,
            direction=Direction.OUTBOUND,
            author=Author.COUNSELLOR,
            channel="sms",
            text=text,
            payload={"counsellor_id": counsellor_id},
        )
        session.add(message)
        await session.flush()
        assert await deliveries.push(session, message)
        assert not await deliveries.push(session, message)  # once per message
        await session.commit()
        return message.id
