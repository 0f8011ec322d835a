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
