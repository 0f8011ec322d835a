"""What a supervisor does to a case's staff: move one role (lead, second, third) to another counsellor.

    result = await supervision.reassign(session, case_id, supervisor_id, "lead", to_counsellor_id)

The claim and the live conversation go with the role: when the counsellor who leaves the case had
claimed it or holds its conversation, the new one has claimed it and holds it, in the same transaction.
The conversation is never given back to the bot on the way (the bot stays paused in the engine), so the
child is not left with a machine while the people change. The new counsellor is paged through the
outbox; the audit log gets ids and codes only. One unit of work that commits, like records/cases.py.

Concurrency: the first statement touches the conversation's row, as `records.escalation.escalate` does,
so a reassignment and an escalation of the same conversation take turns (the SQLite write lock, the
PostgreSQL row lock) instead of racing for the case's roles. The unique constraints on (case, role) and
(case, counsellor) are the backstops: a race that still reaches them is a CaseError("conflict").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from records import audit, paging
from records.cases import CaseError
from records.models import (
    Assignment,
    AssignmentRole,
    Case,
    CaseStatus,
    Conversation,
    Counsellor,
    CounsellorRole,
    utcnow,
)

REASON = "case_reassigned"
MAY_REASSIGN = frozenset({CounsellorRole.SUPERVISOR, CounsellorRole.ADMIN})


@dataclass(frozen=True, slots=True)
class Reassignment:
    case_id: int
    level: str
    role: str
    from_counsellor_id: int | None  # None: the role was empty and is now filled
    to_counsellor_id: int
    moved_claim: bool
    moved_hold: bool
    paged: bool


async def reassign(
    session: AsyncSession,
    case_id: int,
    supervisor_id: int,
    role: AssignmentRole | str,
    to_counsellor_id: int,
    *,
    now: datetime | None = None,
) -> Reassignment:
    """Gives `role` on an open case to `to_counsellor_id`, with the claim and the hold of whoever had it.

    CaseError (nothing changes) with one of these codes: bad_role; no_case; closed; forbidden (the actor
    is not an active supervisor or admin); no_counsellor (unknown or inactive); already_in_role;
    already_on_case (the counsellor has another role on this case); conflict (a concurrent change)."""
    now = now or utcnow()
    try:
        role = AssignmentRole(role)
    except ValueError:
        raise CaseError("bad_role") from None
    try:
        return await _reassign(session, case_id, supervisor_id, role, to_counsellor_id, now)
    except CaseError:
        await session.rollback()
        raise
    except IntegrityError:
        await session.rollback()
        raise CaseError("conflict") from None
    except DBAPIError as error:  # a PostgreSQL deadlock with a concurrent take-over: one side gives way
        await session.rollback()
        if "deadlock" not in str(error.orig).lower():
            raise
        raise CaseError("conflict") from None


async def _reassign(
    session: AsyncSession,
    case_id: int,
    supervisor_id: int,
    role: AssignmentRole,
    to_counsellor_id: int,
    now: datetime,
) -> Reassignment:
    # The first statement: the conversation's row lock (see the module's docstring).
    await session.execute(
        update(Conversation)
        .where(Conversation.id == select(Case.conversation_id).where(Case.id == case_id).scalar_subquery())
        .values(held_by=Conversation.held_by)
        .execution_options(synchronize_session=False)
    )
    case = await session.get(Case, case_id, populate_existing=True)
    if case is None:
        raise CaseError("no_case")
    if case.status == CaseStatus.CLOSED:
        raise CaseError("closed")
    supervisor = await session.get(Counsellor, supervisor_id)
    if supervisor is None or not supervisor.active or supervisor.role not in MAY_REASSIGN:
        raise CaseError("forbidden")
    newcomer = await session.get(Counsellor, to_counsellor_id)
    if newcomer is None or not newcomer.active:
        raise CaseError("no_counsellor")
    staff = list(
        await session.scalars(
            select(Assignment).where(Assignment.case_id == case_id).execution_options(populate_existing=True)
        )
    )
    current = next((a for a in staff if a.role == role), None)
    if current is not None and current.counsellor_id == to_counsellor_id:
        raise CaseError("already_in_role")
    if any(a.counsellor_id == to_counsellor_id for a in staff):
        raise CaseError("already_on_case")

    leaving = current.counsellor_id if current is not None else None
    if current is None:
        session.add(Assignment(case_id=case_id, counsellor_id=to_counsellor_id, role=role, assigned_at=now))
    else:
        current.counsellor_id, current.assigned_at = to_counsellor_id, now

    moved_claim = leaving is not None and case.claimed_by == leaving
    if moved_claim:  # claimed_at stays: the case was claimed then, and time-to-claim keeps its meaning
        case.claimed_by = to_counsellor_id
    moved_hold = False
    if leaving is not None:
        held = await session.execute(
            update(Conversation)
            .where(Conversation.id == case.conversation_id, Conversation.held_by == leaving)
            .values(held_by=to_counsellor_id, held_since=now)
            .execution_options(synchronize_session=False)
        )
        moved_hold = bool(held.rowcount)
    await session.flush()

    paged = await paging.page(
        session,
        case_id=case_id,
        counsellor_id=to_counsellor_id,
        reason=REASON,
        level=case.level,
        at=now,
        # a counsellor may be given a case, lose it and be given it again: each time is a new page
        stage=f"{role.value}@{now.strftime('%Y%m%dT%H%M%S%f')}",
        as_role=role.value,
        holds_conversation=moved_hold,
        claim_by=case.claim_by.isoformat() if case.claim_by and case.status == CaseStatus.OPEN else None,
    )
    audit.append(
        session,
        actor=f"counsellor:{supervisor_id}",
        action=REASON,
        subject=case.conversation_id,
        case_id=case_id,
        role=role.value,
        from_counsellor=leaving,
        to_counsellor=to_counsellor_id,
        moved_claim=moved_claim,
        moved_hold=moved_hold,
        paged=[to_counsellor_id] if paged else [],
    )
    await session.commit()
    return Reassignment(
        case_id=case_id,
        level=case.level,
        role=role.value,
        from_counsellor_id=leaving,
        to_counsellor_id=to_counsellor_id,
        moved_claim=moved_claim,
        moved_hold=moved_hold,
        paged=paged,
    )
