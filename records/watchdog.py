"""The SLA watchdog: a case nobody claimed by its deadline is paged again, a follow-up not done by its
date is shown to the case's staff. Run by the gateway every few seconds; any number of gateways may run it.

Each step is taken with a conditional UPDATE (`… WHERE escalation_stage = <the stage we read>`), so two
watchdogs reading the same case cannot both take its step; on PostgreSQL the rows are also read with
`FOR UPDATE SKIP LOCKED`, so a second watchdog skips what the first is working on instead of waiting.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from records import audit, paging, staffing
from records.escalation import staff_case
from records.models import (
    Assignment,
    Author,
    Case,
    CaseStatus,
    Conversation,
    FollowUp,
    InboundStatus,
    Message,
    OutboxItem,
    utcnow,
)
from triage_protocols import level_spec

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WatchdogRound:
    repaged_cases: int
    overdue_follow_ups: int
    unanswered_held: int = 0


async def run_once(session: AsyncSession, *, now: datetime | None = None, batch: int = 50) -> WatchdogRound:
    """One round: unclaimed cases first, then overdue follow-ups. Commits what it did."""
    now = now or utcnow()
    cases = await repage_unclaimed(session, now=now, batch=batch)
    follow_ups = await page_overdue_follow_ups(session, now=now, batch=batch)
    unanswered = await page_unanswered_held(session, now=now, batch=batch)
    await session.commit()
    return WatchdogRound(cases, follow_ups, unanswered)


async def repage_unclaimed(session: AsyncSession, *, now: datetime, batch: int = 50) -> int:
    due: Sequence[Case] = (
        await session.scalars(
            select(Case)
            .where(Case.status == CaseStatus.OPEN, Case.next_escalation_at <= now)
            .order_by(Case.level_rank.desc(), Case.next_escalation_at)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
    ).all()
    taken = 0
    for case in due:
        if await _take_step(session, case, now):
            taken += 1
    return taken


async def _take_step(session: AsyncSession, case: Case, now: datetime) -> bool:
    policy = level_spec(case.level).case
    stage = case.escalation_stage
    claimed = await session.execute(
        update(Case)
        .where(Case.id == case.id, Case.escalation_stage == stage, Case.status == CaseStatus.OPEN)
        .values(
            escalation_stage=stage + 1,
            next_escalation_at=now + timedelta(minutes=policy.claim_within_minutes or 5),
        )
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount == 0:  # another watchdog took this step, or the case was claimed meanwhile
        return False
    # A case opened while nobody was on shift has no staff yet: whoever is on shift now is assigned
    # (least loaded first) before the ladder's step, so the case has people, not only pages.
    await session.refresh(case, ["assignments"])
    added, _ = await staff_case(session, case, list(await staffing.on_call(session, now)), now)
    ladder = policy.if_unclaimed or ("supervisor",)
    step = ladder[min(stage, len(ladder) - 1)]
    recipients = await _next_on_call(session, case, now) if step == "next_on_call" else []
    if not recipients:  # no one left on call, or the ladder says supervisor
        step = "supervisor"
        recipients = [s.id for s in await staffing.supervisors(session, now)]
    paged = await paging.page_all(
        session,
        case,
        recipients,
        "unclaimed",
        stage + 1,
        now,
        step=step,
        waiting_since=case.opened_at.isoformat(),
    )
    audit.append(
        session,
        actor="watchdog",
        action="case_unclaimed",
        subject=case.conversation_id,
        case_id=case.id,
        level=case.level,
        stage=stage + 1,
        step=step,
        paged=paged,
        assigned=added,
    )
    if not paged:
        log.error("case %s unclaimed at stage %s and nobody left to page", case.id, stage + 1)
    return True


async def _next_on_call(session: AsyncSession, case: Case, now: datetime) -> list[int]:
    """The least-loaded on-call counsellor who has not yet been paged about this case."""
    already = set(
        await session.scalars(select(OutboxItem.counsellor_id).where(OutboxItem.case_id == case.id))
    )
    for counsellor in await staffing.on_call(session, now):
        if counsellor.id not in already:
            return [counsellor.id]
    return []


async def page_overdue_follow_ups(session: AsyncSession, *, now: datetime, batch: int = 50) -> int:
    overdue: Sequence[FollowUp] = (
        await session.scalars(
            select(FollowUp)
            .join(Case, Case.id == FollowUp.case_id)
            .where(
                FollowUp.done_at.is_(None),
                FollowUp.overdue_paged_at.is_(None),
                FollowUp.due_at <= now,
                Case.status != CaseStatus.CLOSED,
            )
            .order_by(FollowUp.due_at)
            .limit(batch)
            .with_for_update(skip_locked=True, of=FollowUp)
        )
    ).all()
    surfaced = 0
    for follow_up in overdue:
        marked = await session.execute(
            update(FollowUp)
            .where(FollowUp.id == follow_up.id, FollowUp.overdue_paged_at.is_(None))
            .values(overdue_paged_at=now)
            .execution_options(synchronize_session=False)
        )
        if marked.rowcount == 0:
            continue
        case = await session.get_one(Case, follow_up.case_id)
        staff = list(
            await session.scalars(select(Assignment.counsellor_id).where(Assignment.case_id == case.id))
        )
        if case.claimed_by is not None and case.claimed_by not in staff:
            staff.insert(0, case.claimed_by)
        if not staff:
            staff = [s.id for s in await staffing.supervisors(session, now)]
        await paging.page_all(
            session,
            case,
            staff,
            "follow_up_overdue",
            f"f{follow_up.id}",
            now,
            follow_up_id=follow_up.id,
            follow_up_kind=follow_up.kind,
            due_at=follow_up.due_at.isoformat(),
        )
        audit.append(
            session,
            actor="watchdog",
            action="follow_up_overdue",
            subject=case.conversation_id,
            case_id=case.id,
            follow_up_id=follow_up.id,
            kind=follow_up.kind,
            paged=staff,
        )
        surfaced += 1
    return surfaced


async def page_unanswered_held(session: AsyncSession, *, now: datetime, batch: int = 50) -> int:
    """A counsellor holds a conversation but has not answered the child within the case level's claim
    deadline (red 3 minutes): the bot is silent, so nobody is talking with the child. The holder and the
    supervisors are paged, once per unanswered message."""
    waiting = Message.__table__.alias("waiting")
    answered_later = (
        select(Message.id)
        .where(
            Message.conversation_id == waiting.c.conversation_id,
            Message.author == Author.COUNSELLOR,
            Message.id > waiting.c.id,
        )
        .exists()
    )
    rows = (
        await session.execute(
            select(waiting.c.id, waiting.c.created_at, Conversation.id, Conversation.held_by, Case)
            .join(Conversation, Conversation.id == waiting.c.conversation_id)
            .join(Case, (Case.conversation_id == Conversation.id) & (Case.status != CaseStatus.CLOSED))
            .where(
                waiting.c.status == InboundStatus.TO_COUNSELLOR,
                Conversation.held_by.is_not(None),
                ~answered_later,
            )
            .order_by(waiting.c.id)
            .limit(batch)
        )
    ).all()
    surfaced = 0
    for message_id, written_at, conversation_id, holder, case in rows:
        deadline = timedelta(minutes=level_spec(case.level).case.claim_within_minutes or 5)
        if written_at is None or now - written_at < deadline:
            continue
        recipients = [holder, *(s.id for s in await staffing.supervisors(session, now) if s.id != holder)]
        paged = await paging.page_all(
            session, case, recipients, "held_unanswered", f"m{message_id}", now, message_id=message_id
        )
        if paged:
            audit.append(
                session,
                actor="watchdog",
                action="held_unanswered",
                subject=conversation_id,
                case_id=case.id,
                message_id=message_id,
                holder=holder,
                paged=paged,
            )
            surfaced += 1
    return surfaced
