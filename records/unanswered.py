"""A message the assistant could not answer is handed to a person, in the transaction that gives it up.

The engine was retried until the limit and never answered. The writer already has the fail-safe script
(the numbers), but nobody has read their words: a crisis that only the NLU would have caught, or a plain
"转人工", would otherwise wait in silence until the engine came back. So giving up opens the
conversation's case (at least yellow, or the message's own orange or red), or raises it, pages the
people who follow it, and writes `assistant_gave_up` to the audit log; the console's queue marks the case
"the assistant could not answer" (`assistant_failed`). The message stays in the retry
worker's list: when the engine answers again, the writer still gets its answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from records import audit, paging, staffing
from records.escalation import Escalation, EscalationResult, escalate
from records.models import Assignment, AssignmentRole, Case, InboundStatus, Message, utcnow
from triage_protocols import Level

REASON = "engine_gave_up"
FLOOR = Level("yellow")  # a person must read it, whatever it screened


def _level_of(message: Message) -> Level:
    screened = Level(message.risk_level) if message.risk_level in {level.value for level in Level} else FLOOR
    return screened if screened.rank > FLOOR.rank else FLOOR


async def hand_to_person(
    session: AsyncSession, message: Message, *, now: datetime | None = None
) -> EscalationResult:
    """Opens or raises the case and pages for a message given up; works in the caller's transaction."""
    now = now or utcnow()
    assessment = message.assessment or {}
    result = await escalate(
        session,
        Escalation(
            conversation_id=message.conversation_id,
            level=_level_of(message),
            origin="handoff",
            reason=REASON,
            rule=assessment.get("rule"),
            protocol_version=assessment.get("protocol_version"),
            channel=message.channel,
            actor="gateway",
        ),
        now=now,
    )
    case = await session.get(Case, result.case_id) if result.case_id is not None else None
    if case is not None and not result.paged:
        # The case was already open at this level, so escalating paged nobody: the people who follow it
        # must still hear that a message of the child's went unanswered.
        result.paged = await _page_followers(session, case, message, now)
    audit.append(
        session,
        actor="gateway",
        action="assistant_gave_up",
        subject=message.conversation_id,
        message_id=message.id,
        case_id=result.case_id,
        level=result.level,
        attempts=message.attempts,
        paged=result.paged,
    )
    return result


async def _page_followers(session: AsyncSession, case: Case, message: Message, now: datetime) -> list[int]:
    """Whoever claimed the case, else its lead, else the supervisors: once for this message."""
    lead = await session.scalar(
        select(Assignment.counsellor_id).where(
            Assignment.case_id == case.id, Assignment.role == AssignmentRole.LEAD
        )
    )
    first = case.claimed_by or lead
    recipients = [first] if first is not None else [s.id for s in await staffing.supervisors(session, now)]
    return await paging.page_all(
        session, case, recipients, REASON, f"m{message.id}", now, message_id=message.id
    )


async def assistant_failed(session: AsyncSession, case_ids: Sequence[int]) -> set[int]:
    """Which of these cases hold a message of the child's that the assistant gave up on and that is
    still unanswered: the console's queue marks them "the assistant could not answer"."""
    if not case_ids:
        return set()
    rows = await session.scalars(
        select(Case.id)
        .join(Message, Message.conversation_id == Case.conversation_id)
        .where(Case.id.in_(case_ids), Message.status == InboundStatus.GAVE_UP)
        .distinct()
    )
    return set(rows)
