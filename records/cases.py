"""What staff do to a case: claim it, write notes, change its level, refer, plan follow-ups, record the
family contact, close.

Each function is one audited unit of work in the caller's session and commits it, so the console and the
command line call the same code. Notes and family-contact summaries are encrypted at rest by their column
type; the audit log gets ids and codes only. A request that does not fit the case's state raises
CaseError, whose message is a code (`closed`, `no_case`, `needs_supervisor` …) the console shows words for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from records import audit, escalation
from records.escalation import Escalation, EscalationResult
from records.models import (
    Assignment,
    Case,
    CaseStatus,
    Counsellor,
    CounsellorRole,
    FamilyContact,
    FamilyContactStatus,
    FollowUp,
    Note,
    Referral,
    ReferralStatus,
    utcnow,
)
from triage_protocols import Level, load_protocol
from triage_protocols.directory import Entry, entries

# A referral moves forward only: proposed → accepted → attended → closed (or closed at any point, when
# the family declines or the place cannot take the child).
_NEXT: dict[str, set[str]] = {
    ReferralStatus.PROPOSED: {ReferralStatus.ACCEPTED, ReferralStatus.CLOSED},
    ReferralStatus.ACCEPTED: {ReferralStatus.ATTENDED, ReferralStatus.CLOSED},
    ReferralStatus.ATTENDED: {ReferralStatus.CLOSED},
    ReferralStatus.CLOSED: set(),
}


MAX_FOLLOW_UP_WHAT = 200  # what the console takes
LEVEL_CHANGE_REASON = "counsellor:level_change"
# Who may open (and claim) any case; a volunteer, only the cases they are on or hold.
SEES_EVERY_CASE = frozenset({CounsellorRole.SUPERVISOR, CounsellorRole.ADMIN})


async def may_open(session: AsyncSession, counsellor: Counsellor, case: Case) -> bool:
    """The one rule for who may read and act on a case, wherever they come from (the console, a claim
    button in the counsellors' group): a supervisor or an admin, the one who claimed it, or its staff."""
    if counsellor.role in SEES_EVERY_CASE or case.claimed_by == counsellor.id:
        return True
    assigned = await session.scalar(
        select(Assignment.id).where(Assignment.case_id == case.id, Assignment.counsellor_id == counsellor.id)
    )
    return assigned is not None


class CaseError(ValueError):
    """A request that does not fit the case's state (claimed by someone else, closed, unknown entry). The
    message is a code, never words: `no_case`, `closed`, `needs_supervisor`, `same_level`, `level_moved`,
    `not_for_referral`, `no_referral`, `referral_order`, `no_follow_up`, `already_done` (and handoff's)."""


@dataclass(frozen=True, slots=True)
class LevelChange:
    """What `change_level` did: the level before and after, the note holding the reason, and for a raise
    the escalation's result (who was paged), which the caller announces once the change is committed."""

    case_id: int
    before: str
    after: str
    note_id: int
    escalation: EscalationResult | None = None


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
    session: AsyncSession,
    case_id: int,
    counsellor_id: int,
    *,
    now: datetime | None = None,
    origin: str | None = None,
) -> bool:
    """One counsellor holds the case; True for the one whose claim won. Stops the watchdog's clock.
    `origin` (e.g. "telegram" for the counsellors' group) goes into the audit entry."""
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
            **({"origin": origin} if origin else {}),
        )
    await session.commit()
    return bool(won.rowcount)


async def close(session: AsyncSession, case_id: int, counsellor_id: int, outcome: str) -> Case:
    case = await _case(session, case_id)
    if case.status == CaseStatus.CLOSED:
        raise CaseError("closed")
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


async def change_level(
    session: AsyncSession,
    case_id: int,
    counsellor_id: int,
    level: Level | str,
    reason: str,
    *,
    may_lower_red: bool,
) -> LevelChange:
    """A counsellor's judgement of the case's risk level, with the reason, which is stored as an encrypted
    note; the audit log gets the levels and the note's id, never the reason's words.

    A raise goes through `records.escalation.escalate` like any other, so staffing, pages, the family task
    and the first check-in follow the protocol exactly. A lower level is set here and audited as its own
    action; deadlines already running are kept (a lower level never loosens a clock) and nobody is taken
    off the case. Lowering from red needs `may_lower_red` (a supervisor or an admin: a second pair of eyes).
    """
    target = Level(level)  # ValueError for a level that does not exist: the caller checks its input
    reason = reason.strip()
    if not reason:
        raise ValueError("a level change needs a reason")
    case = await _open_case(session, case_id)
    before = Level(case.level)
    if target == before:
        raise CaseError("same_level")
    if before == Level.RED and not may_lower_red:
        raise CaseError("needs_supervisor")
    note = Note(case_id=case_id, author_id=counsellor_id, body=reason)
    session.add(note)
    await session.flush()
    result: EscalationResult | None = None
    if target.rank > before.rank:
        result = await escalation.escalate(
            session,
            Escalation(
                conversation_id=case.conversation_id,
                level=target,
                origin="counsellor",
                reason=LEVEL_CHANGE_REASON,
                subject="self" if case.subject == "self" else "other",
                audience=case.audience,
            ),
        )
        if not result.raised:  # an escalation got there first, under the conversation's lock
            await session.rollback()
            raise CaseError("level_moved")
        action = "level_raised"
    else:
        lowered = await session.execute(
            update(Case)
            .where(Case.id == case_id, Case.level_rank == before.rank, Case.status != CaseStatus.CLOSED)
            .values(level=target.value, level_rank=target.rank)
            .execution_options(synchronize_session=False)
        )
        if not lowered.rowcount:  # raised or closed since it was read
            await session.rollback()
            raise CaseError("level_moved")
        await session.refresh(case)
        action = "level_lowered"
    _audit(
        session,
        case,
        counsellor_id,
        action,
        before=before.value,
        after=target.value,
        note_id=note.id,
    )
    await session.commit()
    return LevelChange(case_id, before.value, target.value, note.id, result)


async def refer(
    session: AsyncSession, case_id: int, counsellor_id: int, entry_id: str, *, follow_up_on: date
) -> Referral:
    """Refers to a place in the directory that takes referrals, with the date to check it happened."""
    entry = next((e for e in referral_places() if e.id == entry_id), None)
    if entry is None:
        raise CaseError("not_for_referral")
    case = await _open_case(session, case_id)
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
        raise CaseError("no_referral")
    if status not in _NEXT[referral.status]:
        raise CaseError("referral_order")
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
    case = await _open_case(session, case_id)
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


async def add_follow_up(
    session: AsyncSession, case_id: int, counsellor_id: int, due_on: date, what: str
) -> FollowUp:
    """A check-in a counsellor plans, due at the start of `due_on` (China time); paged once if not done.
    `what` is for staff and encrypted at rest like a note; the console still asks for what to do, not
    for names."""
    what = what.strip()
    if not what or len(what) > MAX_FOLLOW_UP_WHAT:
        raise ValueError(f"what must be 1 to {MAX_FOLLOW_UP_WHAT} characters")
    case = await _open_case(session, case_id)
    follow_up = FollowUp(case_id=case_id, kind="check_in", what=what, due_at=_start_of(due_on))
    session.add(follow_up)
    await session.flush()
    _audit(
        session,
        case,
        counsellor_id,
        "follow_up_added",
        follow_up_id=follow_up.id,
        kind=follow_up.kind,
        due_on=due_on.isoformat(),
    )
    await session.commit()
    return follow_up


async def complete_follow_up(session: AsyncSession, follow_up_id: int, counsellor_id: int) -> FollowUp:
    follow_up = await session.get(FollowUp, follow_up_id)
    if follow_up is None:
        raise CaseError("no_follow_up")
    if follow_up.done_at is not None:
        raise CaseError("already_done")
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


def referral_places() -> tuple[Entry, ...]:
    """The directory's entries that take referrals (orange and red cases), in the directory's order."""
    return tuple(e for e in entries() if e.takes_referrals)


def directory_entry(entry_id: str) -> Entry | None:
    return next((e for e in entries() if e.id == entry_id), None)


def next_statuses(status: str) -> list[str]:
    """Where a referral may go from `status`, in the order it usually goes."""
    allowed = _NEXT.get(status, set())
    return [s.value for s in ReferralStatus if s in allowed]


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
        raise CaseError("no_case")
    return case


async def _open_case(session: AsyncSession, case_id: int) -> Case:
    """The case, for something that plans ahead (a level, a referral, a follow-up): never a closed one,
    whose follow-ups the watchdog no longer pages."""
    case = await _case(session, case_id)
    if case.status == CaseStatus.CLOSED:
        raise CaseError("closed")
    return case


CHINA_TIME = timezone(timedelta(hours=8))


def _start_of(day: date) -> datetime:
    """Follow-ups are due at the start of their day in China time (UTC+8); the store keeps UTC."""
    return datetime.combine(day, time(0, 0), tzinfo=CHINA_TIME)
