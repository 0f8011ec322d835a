"""Who is on call now, and who is least loaded: the pool that cases are staffed and paged from."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from records.models import Assignment, Case, CaseStatus, Counsellor, CounsellorRole, Shift


def _on_shift(at: datetime):  # type: ignore[no-untyped-def]
    return select(Shift.counsellor_id).where(Shift.starts_at <= at, Shift.ends_at > at).scalar_subquery()


def _open_load():  # type: ignore[no-untyped-def]
    """Open (not closed) cases each counsellor is assigned to: the load that staffing balances."""
    return (
        select(Assignment.counsellor_id, func.count(Assignment.id).label("load"))
        .join(Case, Case.id == Assignment.case_id)
        .where(Case.status != CaseStatus.CLOSED)
        .group_by(Assignment.counsellor_id)
        .subquery()
    )


async def on_call(session: AsyncSession, at: datetime) -> Sequence[Counsellor]:
    """Active counsellors with a shift covering `at`, least loaded first (then the longest-serving, so the
    order is stable). Supervisors on shift are counted too: on a thin night they take cases."""
    load = _open_load()
    return (
        await session.scalars(
            select(Counsellor)
            .outerjoin(load, load.c.counsellor_id == Counsellor.id)
            .where(Counsellor.active.is_(True), Counsellor.id.in_(_on_shift(at)))
            .order_by(func.coalesce(load.c.load, 0), Counsellor.id)
        )
    ).all()


async def supervisors(session: AsyncSession, at: datetime) -> Sequence[Counsellor]:
    """The supervisors on shift; when none is, every active supervisor, so that a page always has
    somewhere to go."""
    base = select(Counsellor).where(Counsellor.active.is_(True), Counsellor.role == CounsellorRole.SUPERVISOR)
    on_shift = (
        await session.scalars(base.where(Counsellor.id.in_(_on_shift(at))).order_by(Counsellor.id))
    ).all()
    if on_shift:
        return on_shift
    return (await session.scalars(base.order_by(Counsellor.id))).all()


async def backups(
    session: AsyncSession, at: datetime, *, following: Sequence[int] = ()
) -> list[tuple[Counsellor, str]]:
    """Everyone a page may fall back to when the people a level pages at once are fewer than it names
    (red: the lead and a supervisor, and the lead is the only supervisor on shift), each with the role
    they are paged as. First the protocol's own order (levels.yml `if_unclaimed`): the on-call
    counsellors, those `following` the case first (they are its staff already; the load that staffing
    balances now counts this case against them), then least loaded first; then every active supervisor;
    after them anyone else active, though off shift, because a child in danger must reach a second human
    while the line has one. The caller skips those it already pages."""
    active = select(Counsellor).where(Counsellor.active.is_(True)).order_by(Counsellor.id)
    supervisors = (await session.scalars(active.where(Counsellor.role == CounsellorRole.SUPERVISOR))).all()
    everyone = (await session.scalars(active)).all()
    rank = {counsellor_id: place for place, counsellor_id in enumerate(following)}
    on_call_now = sorted(await on_call(session, at), key=lambda c: rank.get(c.id, len(rank)))  # stable
    return [
        *((c, "next_on_call") for c in on_call_now),
        *((c, "supervisor") for c in supervisors),
        *((c, "off_shift") for c in everyone),
    ]


async def load_of(session: AsyncSession, counsellor_id: int) -> int:
    """How many open cases a counsellor is assigned to."""
    return int(
        await session.scalar(
            select(func.count(Assignment.id))
            .join(Case, Case.id == Assignment.case_id)
            .where(Assignment.counsellor_id == counsellor_id, Case.status != CaseStatus.CLOSED)
        )
        or 0
    )
