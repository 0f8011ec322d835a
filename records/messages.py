"""Reading and writing conversations and messages. Each function is one unit of work on a session."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from records import audit, deliveries
from records.escalation import Escalation, EscalationResult, escalate
from records.models import Author, Conversation, Direction, InboundStatus, Message

# A message with the same words in the same conversation, sent again within this window while the first
# is still unanswered, is the same message sent twice (a writer who saw no answer, a client that lost
# ours): it is answered as the first and the engine sees it once. An answered one is a new message, so a
# second "是" to the next question of a form is always heard.
RESEND_WINDOW = timedelta(minutes=2)
UNANSWERED = (InboundStatus.RECEIVED, InboundStatus.RETRY_PENDING)


def now() -> datetime:
    return datetime.now(UTC)


async def create_conversation(
    session: AsyncSession, channel: str, audience: str | None = None
) -> Conversation:
    conversation = Conversation(channel=channel, audience=audience)
    session.add(conversation)
    await session.commit()
    return conversation


async def get_conversation(session: AsyncSession, conversation_id: str) -> Conversation | None:
    return await session.get(Conversation, conversation_id)


@dataclass(frozen=True, slots=True)
class StoredInbound:
    message: Message
    duplicate: bool  # already stored: a redelivery, answered from the store
    case: EscalationResult | None = None
    held_by: int | None = None  # the counsellor who holds the conversation, if one does


async def record_inbound(
    session: AsyncSession,
    *,
    conversation_id: str,
    channel: str,
    external_id: str,
    text: str,
    assessment: dict[str, Any] | None = None,
    escalation: Escalation | None = None,
) -> StoredInbound:
    """Stores an inbound message, with its triage assessment, and commits.

    The unique (channel, external_id) constraint decides, so two deliveries racing each other still
    store one row. An orange or red assessment is written to the audit log in the same transaction, and
    `escalation` opens or raises the case with its assignments and pages in it too, so all of it is on
    record even if the engine never answers, and none of it without the message.

    A message id used again with other words is another message, never a redelivery: it is stored
    under the id and a digest of its words, so its words are screened and answered (and a redelivery of
    it is still recognised). The same words sent again under a new id while the first is unanswered are
    the first message (`RESEND_WINDOW`).
    """
    resent = await _unanswered_resend(session, conversation_id, text)
    if resent is not None:
        return StoredInbound(resent, duplicate=True)
    level = str((assessment or {}).get("level") or "") or None
    message = Message(
        conversation_id=conversation_id,
        direction=Direction.INBOUND,
        author=Author.USER,
        channel=channel,
        external_id=external_id,
        text=text,
        status=InboundStatus.RECEIVED,
        risk_level=level,
        assessment=assessment,
    )
    session.add(message)
    try:
        await session.flush()
        if level in ("orange", "red"):
            audit.append(
                session,
                actor="gateway",
                action="risk_screened",
                subject=conversation_id,
                message_id=message.id,
                level=level,
                rule=(assessment or {}).get("rule"),
                protocol_version=(assessment or {}).get("protocol_version"),
            )
        case = await escalate(session, escalation) if escalation is not None else None
        held_by = await session.scalar(select(Conversation.held_by).where(Conversation.id == conversation_id))
        await session.commit()
    except IntegrityError:
        await session.rollback()
        existing = await find_inbound(session, channel, external_id)
        if existing is None:  # the constraint fired for another reason; let the caller see it
            raise
        if existing.text != text:
            return await record_inbound(
                session,
                conversation_id=conversation_id,
                channel=channel,
                external_id=reused_id(external_id, text),
                text=text,
                assessment=assessment,
                escalation=escalation,
            )
        return StoredInbound(existing, duplicate=True)
    return StoredInbound(message, duplicate=False, case=case, held_by=held_by)


def reused_id(external_id: str, text: str) -> str:
    """The id a message is stored under when its own id was used before for other words."""
    return f"{external_id}~{hashlib.sha256(text.encode()).hexdigest()[:16]}"


async def _unanswered_resend(session: AsyncSession, conversation_id: str, text: str) -> Message | None:
    return await session.scalar(
        select(Message)
        .where(
            Message.conversation_id == conversation_id,
            Message.direction == Direction.INBOUND,
            Message.status.in_(UNANSWERED),
            Message.text == text,
            Message.created_at >= now() - RESEND_WINDOW,
        )
        .order_by(Message.id)
        .limit(1)
    )


async def find_inbound(session: AsyncSession, channel: str, external_id: str) -> Message | None:
    return await session.scalar(
        select(Message).where(Message.channel == channel, Message.external_id == external_id)
    )


async def replies_to(session: AsyncSession, inbound_id: int) -> Sequence[Message]:
    return (
        await session.scalars(select(Message).where(Message.reply_to_id == inbound_id).order_by(Message.id))
    ).all()


async def store_replies(
    session: AsyncSession,
    inbound: Message,
    replies: Sequence[tuple[str, dict[str, Any] | None]],
    *,
    author: Author,
    status: InboundStatus,
    push: bool = False,
) -> list[Message]:
    """Stores the replies to an inbound message and its new status in one transaction. `push` queues
    them for the user's channel too: the answer to a retried message has no webhook waiting for it."""
    stored = [
        Message(
            conversation_id=inbound.conversation_id,
            direction=Direction.OUTBOUND,
            author=author,
            channel=inbound.channel,
            text=text,
            payload=payload,
            reply_to_id=inbound.id,
        )
        for text, payload in replies
    ]
    session.add_all(stored)
    if push:
        await session.flush()
        for message in stored:
            await deliveries.push(session, message)
    inbound = await session.merge(inbound)
    inbound.status = status
    inbound.attempts += 1
    inbound.processed_at = now()
    await session.commit()
    return stored


async def mark_failed_attempt(
    session: AsyncSession, inbound: Message, *, retry_limit: int, commit: bool = True
) -> Message:
    """Counts a failed retry; at the limit the message is given up for a human to read (and still
    retried). `commit=False` leaves the transaction open, so the hand-over to a person commits with it."""
    inbound = await session.merge(inbound)
    inbound.attempts += 1
    if inbound.attempts >= retry_limit:
        inbound.status = InboundStatus.GAVE_UP
    if commit:
        await session.commit()
    return inbound


async def pending_retries(
    session: AsyncSession, limit: int = 50, *, stale_before: datetime | None = None
) -> Sequence[Message]:
    """Messages the engine has not answered, oldest first, so a conversation keeps its order: those
    waiting for a retry and those given up (a person has them; the writer still gets the answer when the
    engine is back). With `stale_before`, also messages still `received` from before it: a gateway that
    died between storing a message and answering it left them, and the person must still get an answer."""
    waiting = Message.status.in_((InboundStatus.RETRY_PENDING, InboundStatus.GAVE_UP))
    if stale_before is not None:
        waiting = or_(
            waiting,
            and_(
                Message.status == InboundStatus.RECEIVED,
                Message.direction == Direction.INBOUND,
                Message.created_at < stale_before,
            ),
        )
    return (
        await session.scalars(
            select(Message).where(waiting).order_by(Message.created_at, Message.id).limit(limit)
        )
    ).all()


async def outbound_after(session: AsyncSession, conversation_id: str, after_id: int) -> Sequence[Message]:
    return (
        await session.scalars(
            select(Message)
            .where(
                Message.conversation_id == conversation_id,
                Message.direction == Direction.OUTBOUND,
                Message.id > after_id,
            )
            .order_by(Message.id)
        )
    ).all()


async def audience_to_introduce(session: AsyncSession, inbound: Message) -> str | None:
    """The conversation's audience when this is its first message (or a retry of it), else None: the
    engine is told who writes once, before it answers anyone, and a person who later says who they are
    is never overruled by what the session was opened as."""
    earlier = (
        select(Message.id)
        .where(
            Message.conversation_id == inbound.conversation_id,
            Message.direction == Direction.INBOUND,
            Message.id < inbound.id,
        )
        .exists()
    )
    query = select(Conversation.audience).where(Conversation.id == inbound.conversation_id, ~earlier)
    return await session.scalar(query)
