"""Figures for supervisors: cases a day by level, time to claim, follow-ups due, each counsellor's load.

Counts, groupings and filters are done in SQL on both databases; the only dialect-specific piece is the
China-time day of a timestamp (`_china_day`). Percentiles are taken in Python over the claim times the
query returns, because SQLite has no percentile function and one formula for both is easier to trust.

Everything here is a number, a level, a follow-up kind or a counsellor's display name: no word of any
conversation, no conversation or contact id, not even a case id.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Date, DateTime, Interval, case, cast, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from records.cases import CHINA_TIME
from records.models import (
    Assignment,
    Case,
    CaseStatus,
    Conversation,
    Counsellor,
    FollowUp,
    Shift,
    utcnow,
)
from triage_protocols import Level

# The most serious first: the order of every per-level list and of the chart's legend.
LEVELS: tuple[str, ...] = tuple(level.value for level in sorted(Level, key=lambda lv: -lv.rank))
FOLLOW_UP_KINDS: tuple[str, ...] = ("check_in", "referral", "return_to_school")
DEFAULT_DAYS = 14
MAX_DAYS = 90
CLAIM_WINDOW_DAYS = 30


def china_today(now: datetime) -> date:
    return now.astimezone(CHINA_TIME).date()


def start_of_china_day(day: date) -> datetime:
    """00:00 of `day` in China time (UTC+8), as an aware datetime; the store compares it in UTC."""
    return datetime.combine(day, time(0, 0), tzinfo=CHINA_TIME)


def _china_day(session: AsyncSession, column: Any) -> ColumnElement[Any]:
    """The China-time calendar day of a UTC timestamp column, in SQL.

    SQLite keeps naive UTC text, "YYYY-MM-DD HH:MM:SS.ffffff" (records/models/base.py), which its date()
    shifts by a modifier; the text is cut to the second first, because SQLite rounds fractions to the
    millisecond, and 23:59:59.9996 would round into the next day. PostgreSQL keeps timestamptz: read it as UTC wall time, add eight hours, take the date; this never
    depends on the connection's TimeZone setting, and a fixed offset matches CHINA_TIME exactly."""
    if session.bind.dialect.name == "sqlite":
        return func.date(func.substr(column, 1, 19), "+8 hours")
    utc_wall_time = func.timezone("UTC", column, type_=DateTime())
    return cast(utc_wall_time + literal(timedelta(hours=8), Interval()), Date)


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """The `fraction` quantile of sorted values, interpolating between the two nearest ranks (what
    PostgreSQL's percentile_cont and numpy's default give): the median of [60, 120] is 90."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * fraction
    below, above = math.floor(position), math.ceil(position)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


async def cases_per_day(
    session: AsyncSession, *, days: int = DEFAULT_DAYS, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Cases opened each China-time day of the last `days` days (today included, oldest first), by the
    case's level now (a raised case counts at its raised level, on the day it was opened). Every day and
    every level is present, with 0 where nothing was opened."""
    now = now or utcnow()
    today = china_today(now)
    first = today - timedelta(days=days - 1)
    day = _china_day(session, Case.opened_at).label("day")
    rows = await session.execute(
        select(day, Case.level, func.count(Case.id))
        .where(
            Case.opened_at >= start_of_china_day(first),
            Case.opened_at < start_of_china_day(today + timedelta(days=1)),
        )
        .group_by(day, Case.level)
    )
    counts: dict[tuple[date, str], int] = {(_as_date(d), level): int(n) for d, level, n in rows}
    result = []
    for offset in range(days):
        current = first + timedelta(days=offset)
        by_level = {level: counts.get((current, level), 0) for level in LEVELS}
        result.append({"day": current.isoformat(), "levels": by_level, "total": sum(by_level.values())})
    return result


async def time_to_claim(
    session: AsyncSession, *, days: int = CLAIM_WINDOW_DAYS, now: datetime | None = None
) -> list[dict[str, Any]]:
    """For cases opened in the last `days` days, by level: how many were opened and claimed, the median
    and 90th percentile of the seconds from opening to the claim, how many were claimed after their claim
    deadline (late), how many are still waiting for a claim, and how many of those are past it already.
    A case closed without a claim counts as opened only."""
    now = now or utcnow()
    since = now - timedelta(days=days)
    in_window = Case.opened_at >= since
    waiting = (Case.status == CaseStatus.OPEN) & Case.claimed_at.is_(None)

    def how_many(condition: ColumnElement[bool]) -> ColumnElement[int]:
        return func.sum(case((condition, 1), else_=0))

    totals = await session.execute(
        select(
            Case.level,
            func.count(Case.id),
            func.count(Case.claimed_at),
            how_many(Case.claimed_at > Case.claim_by),
            how_many(waiting),
            how_many(waiting & (Case.claim_by < now)),
        )
        .where(in_window)
        .group_by(Case.level)
    )
    counted = {row[0]: [int(n or 0) for n in row[1:]] for row in totals}
    claimed = await session.execute(
        select(Case.level, Case.opened_at, Case.claimed_at).where(in_window, Case.claimed_at.is_not(None))
    )
    seconds: dict[str, list[float]] = {level: [] for level in LEVELS}
    for level, opened_at, claimed_at in claimed:
        seconds.setdefault(level, []).append(max(0.0, (claimed_at - opened_at).total_seconds()))
    result = []
    for level in LEVELS:
        opened, claimed_count, late, unclaimed, unclaimed_overdue = counted.get(level, [0, 0, 0, 0, 0])
        ordered = sorted(seconds[level])
        median, p90 = percentile(ordered, 0.5), percentile(ordered, 0.9)
        result.append(
            {
                "level": level,
                "opened": opened,
                "claimed": claimed_count,
                "median_seconds": None if median is None else round(median, 1),
                "p90_seconds": None if p90 is None else round(p90, 1),
                "late": late,
                "unclaimed": unclaimed,
                "unclaimed_overdue": unclaimed_overdue,
            }
        )
    return result


async def follow_ups(session: AsyncSession, *, now: datetime | None = None) -> dict[str, Any]:
    """Follow-ups not done, and of those the ones past their due time, by kind. Only cases that are not
    closed count, as for the watchdog that pages overdue ones (records/watchdog.py)."""
    now = now or utcnow()
    rows = await session.execute(
        select(FollowUp.kind, func.count(FollowUp.id), func.sum(case((FollowUp.due_at < now, 1), else_=0)))
        .join(Case, Case.id == FollowUp.case_id)
        .where(FollowUp.done_at.is_(None), Case.status != CaseStatus.CLOSED)
        .group_by(FollowUp.kind)
    )
    found = {kind: (int(n), int(late or 0)) for kind, n, late in rows}
    kinds = [*FOLLOW_UP_KINDS, *sorted(k for k in found if k not in FOLLOW_UP_KINDS)]
    by_kind = [
        {"kind": kind, "open": found.get(kind, (0, 0))[0], "overdue": found.get(kind, (0, 0))[1]}
        for kind in kinds
    ]
    return {
        "open": sum(k["open"] for k in by_kind),
        "overdue": sum(k["overdue"] for k in by_kind),
        "by_kind": by_kind,
    }


def _on_shift(at: datetime) -> ColumnElement[bool]:
    return (
        select(Shift.id)
        .where(Shift.counsellor_id == Counsellor.id, Shift.starts_at <= at, Shift.ends_at > at)
        .exists()
    )


async def active_counsellors(session: AsyncSession, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every active counsellor: id, display name, role, and whether a shift covers `now`; those on shift
    first, then by id."""
    now = now or utcnow()
    on_shift = _on_shift(now).label("on_shift")
    rows = await session.execute(
        select(Counsellor.id, Counsellor.display_name, Counsellor.role, on_shift)
        .where(Counsellor.active.is_(True))
        .order_by(on_shift.desc(), Counsellor.id)
    )
    return [
        {"id": id_, "display_name": name, "role": str(role), "on_shift": bool(shift)}
        for id_, name, role, shift in rows
    ]


async def counsellor_load(session: AsyncSession, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Per active counsellor (as `active_counsellors`): the cases not closed they are assigned to, by
    level, and the conversations they hold now."""
    now = now or utcnow()
    people = await active_counsellors(session, now=now)
    assigned = await session.execute(
        select(Assignment.counsellor_id, Case.level, func.count(Assignment.id))
        .join(Case, Case.id == Assignment.case_id)
        .where(Case.status != CaseStatus.CLOSED)
        .group_by(Assignment.counsellor_id, Case.level)
    )
    by_person: dict[int, dict[str, int]] = {}
    for counsellor_id, level, n in assigned:
        by_person.setdefault(counsellor_id, {})[level] = int(n)
    held = dict(
        (
            await session.execute(
                select(Conversation.held_by, func.count(Conversation.id))
                .where(Conversation.held_by.is_not(None))
                .group_by(Conversation.held_by)
            )
        ).all()
    )
    result = []
    for person in people:
        levels = {level: by_person.get(person["id"], {}).get(level, 0) for level in LEVELS}
        result.append(
            {
                **person,
                "open_cases": levels,
                "open_total": sum(levels.values()),
                "holding": int(held.get(person["id"], 0)),
            }
        )
    return result


async def figures(
    session: AsyncSession, *, days: int = DEFAULT_DAYS, now: datetime | None = None
) -> dict[str, Any]:
    """Everything the supervisor view shows, at one moment, ready for JSON."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}")
    now = now or utcnow()
    return {
        "generated_at": now.isoformat(),
        "levels": list(LEVELS),
        "days": days,
        "cases_per_day": await cases_per_day(session, days=days, now=now),
        "claim_window_days": CLAIM_WINDOW_DAYS,
        "time_to_claim": await time_to_claim(session, now=now),
        "follow_ups": await follow_ups(session, now=now),
        "load": await counsellor_load(session, now=now),
    }
