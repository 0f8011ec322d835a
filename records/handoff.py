"""Live handoff: a counsellor takes a conversation over from the bot, talks with the child, hands it back.

Taking over claims the case if nobody has (the same atomic claim as `records.cases.claim`) and marks the
conversation held by that counsellor, both in one transaction: from then on the switchboard gives the
child's messages to the counsellor and the bot stays silent. Only the holder may write to the child or
hand back. Every step is audited; what is said is stored as messages, never in the audit log.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from records import audit, deliveries
from records.cases import CaseError
from records.models import Author, Case, CaseStatus, Conversation, Direction, Message, utcnow


async def take_over(
    session: AsyncSession, case_id: int, counsellor_id: int, *, now: datetime | None = None
) -> Conversation:
    """Claims the case (unless this counsellor already holds it) and holds its conversation. CaseError
    when the case is closed or someone else holds it; nothing changes then."""
    now = now or utcnow()
    # The conversation's row first, as escalations and reassignments take it: one lock order everywhere,
    # so a take-over racing a reassignment waits for it instead of deadlocking on PostgreSQL.
    conversation_id = await session.scalar(select(Case.conversation_id).where(Case.id == case_id))
    if conversation_id is not None:
        await session.execute(
            select(Conversation.id).where(Conversation.id == conversation_id).with_for_update()
        )
    claimed = await session.execute(
        update(Case)
        .where(
            Case.id == case_id,
            or_(Case.status == CaseStatus.OPEN, Case.claimed_by == counsellor_id),
            Case.status != CaseStatus.CLOSED,
        )
        .values(status=CaseStatus.CLAIMED, claimed_by=counsellor_id, next_escalation_at=None)
        .execution_options(synchronize_session=False)
    )
    case = await session.get(Case, case_id, populate_existing=True)
    if case is None or claimed.rowcount == 0:
        why = (
            "no_case" if case is None else "closed" if case.status == CaseStatus.CLOSED else "held_by_another"
        )
        await session.rollback()
        raise CaseError(why)
    if case.claimed_at is None:
        case.claimed_at = now
    held = await session.execute(
        update(Conversation)
        .where(
            Conversation.id == case.conversation_id,
            or_(Conversation.held_by.is_(None), Conversation.held_by == counsellor_id),
        )
        .values(held_by=counsellor_id, held_since=now)
        .execution_options(synchronize_session=False)
    )
    if held.rowcount == 0:  # a supervisor reassigned the case while another counsellor still talks
        await session.rollback()
        raise CaseError("held_by_another")
    audit.append(
        session,
        actor=f"counsellor:{counsellor_id}",
        action="conversation_taken_over",
        subject=case.conversation_id,
        case_id=case_id,
        waited_seconds=round((now - case.opened_at).total_seconds()),
    )
    await session.commit()
    return await session.get_one(Conversation, case.conversation_id, populate_existing=True)


async def hand_back(
    session: AsyncSession,
    conversation_id: str,
    counsellor_id: int,
    closing: str,
    *,
    holder: int | None = None,
) -> Message:
    """Ends the live handoff: the bot answers again, and the child reads `closing` (from the content
    file) so the change is never silent. CaseError unless `holder` (by default this counsellor) holds the
    conversation; a supervisor closing a case ends another counsellor's hold this way."""
    released = await session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id, Conversation.held_by == (holder or counsellor_id))
        .values(held_by=None, held_since=None)
        .execution_options(synchronize_session=False)
    )
    if released.rowcount == 0:
        await session.rollback()
        raise CaseError("not_holding")
    message = await _outbound(session, conversation_id, closing, Author.SYSTEM, counsellor_id)
    audit.append(
        session,
        actor=f"counsellor:{counsellor_id}",
        action="conversation_handed_back",
        subject=conversation_id,
        holder=holder or counsellor_id,
    )
    await session.commit()
    return message


async def counsellor_says(
    session: AsyncSession, conversation_id: str, counsellor_id: int, text: str
) -> Message:
    """A counsellor's message to the child, stored for the child's channel to deliver. Only the holder."""
    holder = await session.scalar(select(Conversation.held_by).where(Conversation.id == conversation_id))
    if holder != counsellor_id:
        raise CaseError("not_holding")
    message = await _outbound(session, conversation_id, text, Author.COUNSELLOR, counsellor_id)
    await session.commit()
    return message


async def holder_of(session: AsyncSession, conversation_id: str) -> int | None:
    return await session.scalar(select(Conversation.held_by).where(Conversation.id == conversation_id))


async def _outbound(
    session: AsyncSession, conversation_id: str, text: str, author: Author, counsellor_id: int
) -> Message:
    conversation = await session.get_one(Conversation, conversation_id)
    message = Message(
        conversation_id=conversation_id,
        direction=Direction.OUTBOUND,
        author=author,
        channel=conversation.channel,
        text=text,
        payload={"counsellor_id": counsellor_id},
    )
    session.add(message)
    await session.flush()
    await deliveries.push(session, message)  # a Telegram, SMS or WeChat user gets it on their channel
    return message
