"""What staff do to a case: claim it, write notes, refer, plan follow-ups, record the family contact, close.

Each function is one audited unit of work in the caller's session and commits it, so the console (next
issue) and the command line call the same code. Notes and family-contact summaries are encrypted at rest
by their column type; the audit log gets ids and codes only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from records import audit
from records.models import (
    Case,
    CaseStatus,
    FamilyContact,
    FamilyContactStatus,
    FollowUp,
    Note,
    Referral,
    ReferralStatus,
    utcnow,
)
from triage_protocols import load_protocol
from triage_protocols.directory import entries

# A referral moves forward only: proposed → accepted → attended → closed (or closed at any point, when
# the family declines or the place cannot take the child).
_NEXT: dict[str, set[str]] = {
    ReferralStatus.PROPOSED: {ReferralStatus.ACCEPTED, ReferralStatus.CLOSED},
    ReferralStatus.ACCEPTED: {ReferralStatus.ATTENDED, ReferralStatus.CLOSED},
    ReferralStatus.ATTENDED: {ReferralStatus.CLOSED},
    ReferralStatus.CLOSED: set(),
}


class CaseError(ValueError):
    """A request that does not fit the case's state (claimed by someone else, closed, unknown entry)."""


async def open_queue(session: AsyncSession) -> Sequence[Case]:
    """Open and claimed cases, the most serious first, then the longest waiting."""
    return (
        await session.scalars(
            select(Case)
            .where(Case.status != CaseStatus.CLOSED)
            .order_by(Case.level_rank.desc(), Case.opened_at)
        )
    ).all()


async def claim(
    session: AsyncSession, case_id: int, counsellor_id: int, *, now: datetime | None = None
) -> bool:
    """One counsellor holds the case; True for the one whose claim won. Stops the watchdog's clock."""
    now = now or utcnow()
    won = await session.execute(
        update(Case)
        .where(Case.id == case_id, Case.status == CaseStatus.OPEN)
        .values(status=CaseStatus.CLAIMED, claimed_by=counsellor_id, claimed_at=now, next_escalation_at=None)
        .execution_options(synchronize_session=False)
    )
    if won.rowcount:
        case = await session.get_one(Case, case_id, populate_existing=True)
        _audit(
            session,
            case,
            counsellor_id,
            "case_claimed",
            waited_seconds=round((now - case.opened_at).total_seconds()),
        )
    await session.commit()
    return bool(won.rowcount)


async def close(session: AsyncSession, case_id: int, counsellor_id: int, outcome: str) -> Case:
    case = await _case(session, case_id)
    if case.status == CaseStatus.CLOSED:
        raise CaseError(f"case {case_id} is already closed")
    case.status, case.closed_at, case.outcome, case.next_escalation_at = (
        CaseStatus.CLOSED,
        utcnow(),
        outcome,
        None,
    )
    _audit(
        session,
        case,
        counsellor_id,
        "case_closed",
        outcome=outcome,
    )
    await session.commit()
    return case


async def add_note(session: AsyncSession, case_id: int, counsellor_id: int, body: str) -> Note:
    case = await _case(session, case_id)
    note = Note(case_id=case_id, author_id=counsellor_id, body=body)
    session.add(note)
    await session.flush()
    _audit(
        session,
        case,
        counsellor_id,
        "note_added",
        note_id=note.id,
    )
    await session.commit()
    return note


async def refer(
    session: AsyncSession, case_id: int, counsellor_id: int, entry_id: str, *, follow_up_on: date
) -> Referral:
    """Refers to a place in the directory that takes referrals, with the date to check it happened."""
    entry = next((e for e in entries() if e.id == entry_id), None)
    if entry is None or not entry.takes_referrals:
        raise CaseError(f"{entry_id!r} is not a directory entry that takes referrals")
    case = await _case(session, case_id)
    now = utcnow()
    referral = Referral(
        case_id=case_id,
        entry_id=entry_id,
        entry_kind=entry.kind,
        status=ReferralStatus.PROPOSED,
        proposed_by=counsellor_id,
        proposed_at=now,
        status_changed_at=now,
    )
    session.add(referral)
    await session.flush()
    session.add(
        FollowUp(case_id=case_id, referral_id=referral.id, kind="referral", due_at=_start_of(follow_up_on))
    )
    _audit(
        session,
        case,
        counsellor_id,
        "referral_proposed",
        referral_id=referral.id,
        entry_id=entry_id,
    )
    await session.commit()
    return referral


async def set_referral_status(
    session: AsyncSession, referral_id: int, counsellor_id: int, status: str
) -> Referral:
    referral = await session.get(Referral, referral_id)
    if referral is None:
        raise CaseError(f"no referral {referral_id}")
    if status not in _NEXT[referral.status]:
        raise CaseError(f"a referral cannot go from {referral.status} to {status}")
    case = await _case(session, referral.case_id)
    previous, referral.status, referral.status_changed_at = referral.status, status, utcnow()
    _audit(
        session,
        case,
        counsellor_id,
        "referral_status",
        referral_id=referral_id,
        before=previous,
        after=status,
    )
    await session.commit()
    return referral


async def plan_return_to_school(
    session: AsyncSession, case_id: int, counsellor_id: int, first_day: date
) -> list[FollowUp]:
    """The protocol's return-to-school plan as dated follow-ups, counted from the first day back."""
    case = await _case(session, case_id)
    plan = load_protocol().follow_up_plans["return_to_school"]
    follow_ups = [
        FollowUp(
            case_id=case_id,
            kind="return_to_school",
            plan_step=index,
            what=step.what[:200],
            due_at=_start_of(first_day + timedelta(days=step.after_days)),
        )
        for index, step in enumerate(plan)
    ]
    session.add_all(follow_ups)
    _audit(
        session,
        case,
        counsellor_id,
        "return_to_school_planned",
        first_day=first_day.isoformat(),
        steps=len(plan),
    )
    await session.commit()
    return follow_ups


async def complete_follow_up(session: AsyncSession, follow_up_id: int, counsellor_id: int) -> FollowUp:
    follow_up = await session.get(FollowUp, follow_up_id)
    if follow_up is None:
        raise CaseError(f"no follow-up {follow_up_id}")
    case = await _case(session, follow_up.case_id)
    follow_up.done_at, follow_up.done_by = utcnow(), counsellor_id
    _audit(
        session,
        case,
        counsellor_id,
        "follow_up_done",
        follow_up_id=follow_up_id,
        kind=follow_up.kind,
    )
    await session.commit()
    return follow_up


async def record_family_contact(
    session: AsyncSession,
    case_id: int,
    counsellor_id: int,
    *,
    status: FamilyContactStatus,
    relation: str | None = None,
    summary: str | None = None,
) -> FamilyContact:
    """Completes the case's family-contact task (三包一), or records why the family was not contacted."""
    case = await _case(session, case_id)
    contact = await session.scalar(
        select(FamilyContact).where(
            FamilyContact.case_id == case_id, FamilyContact.status == FamilyContactStatus.DUE
        )
    )
    if contact is None:
        contact = FamilyContact(case_id=case_id, detail={})
        session.add(contact)
    contact.status, contact.relation, contact.summary = status, relation, summary
    contact.counsellor_id, contact.contacted_at = counsellor_id, utcnow()
    await session.flush()
    _audit(
        session,
        case,
        counsellor_id,
        "family_contact",
        family_contact_id=contact.id,
        status=status,
    )
    await session.commit()
    return contact


def _audit(session: AsyncSession, case: Case, counsellor_id: int, action: str, **detail: object) -> None:
    """One entry per staff action, in the action's transaction: who, what, on which case; codes only."""
    audit.append(
        session,
        actor=f"counsellor:{counsellor_id}",
        action=action,
        subject=case.conversation_id,
        case_id=case.id,
        **detail,
    )


async def _case(session: AsyncSession, case_id: int) -> Case:
    case = await session.get(Case, case_id)
    if case is None:
        raise CaseError(f"no case {case_id}")
    return case


CHINA_TIME = timezone(timedelta(hours=8))


def _start_of(day: date) -> datetime:
    """Follow-ups are due at the start of their day in China time (UTC+8); the store keeps UTC."""
    return datetime.combine(day, time(0, 0), tzinfo=CHINA_TIME)
