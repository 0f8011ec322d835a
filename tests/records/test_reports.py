"""The supervisor's figures on a hand-built store, on SQLite and PostgreSQL: cases a day by level (China-time
days, zero-filled), time to claim (median, 90th percentile, late, still waiting), follow-ups open and
overdue, and each counsellor's load. Every row is written with its own times, against a fixed `NOW`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from records import reports
from records.models import Assignment, Case, CaseStatus, Counsellor, CounsellorRole, FollowUp, Shift
from tests.records.conftest import Sessions
from tests.records.support import write_case

# 12:00 on 10 March 2026 in China (UTC+8): "today" for every test here.
NOW = datetime(2026, 3, 10, 4, 0, tzinfo=UTC)


async def add_case(sessions: Sessions, level: str, opened_at: datetime, **given: Any) -> int:
    """A case on a conversation of its own, opened (and perhaps claimed) when the test says; committed."""
    async with sessions() as session:
        case = await write_case(session, level, opened_at, **given)
        await session.commit()
        return case.id


async def add_person(
    sessions: Sessions,
    name: str,
    role: str = CounsellorRole.VOLUNTEER,
    *,
    on_shift: bool = True,
    active: bool = True,
) -> int:
    async with sessions() as session:
        person = Counsellor(handle=name, display_name=f"测试{name}", role=role, active=active)
        session.add(person)
        await session.flush()
        if on_shift:  # a shift that starts this very moment counts
            session.add(Shift(counsellor_id=person.id, starts_at=NOW, ends_at=NOW + timedelta(hours=8)))
        # neither a shift that ended this very moment nor one that starts later counts
        session.add(Shift(counsellor_id=person.id, starts_at=NOW - timedelta(hours=8), ends_at=NOW))
        session.add(
            Shift(
                counsellor_id=person.id, starts_at=NOW + timedelta(hours=9), ends_at=NOW + timedelta(hours=12)
            )
        )
        await session.commit()
        return person.id


async def assign(sessions: Sessions, case_id: int, counsellor_id: int, role: str) -> None:
    async with sessions() as session:
        session.add(Assignment(case_id=case_id, counsellor_id=counsellor_id, role=role, assigned_at=NOW))
        await session.commit()


async def add_follow_up(
    sessions: Sessions, case_id: int, kind: str, due_at: datetime, *, done: bool = False
) -> None:
    async with sessions() as session:
        session.add(FollowUp(case_id=case_id, kind=kind, due_at=due_at, done_at=NOW if done else None))
        await session.commit()


def utc(day: int, hour: int, minute: int = 0, second: int = 0, microsecond: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, second, microsecond, tzinfo=UTC)


# ---- cases a day -------------------------------------------------------------------------------------


async def test_cases_are_counted_on_their_china_time_day_by_level(sessions: Sessions) -> None:
    await add_case(sessions, "red", utc(9, 15, 59, 59, 999_999))  # 23:59:59.999999 on 9 March in China
    await add_case(sessions, "red", utc(9, 16))  # 00:00 on 10 March in China
    await add_case(sessions, "orange", utc(10, 3, 59))  # 11:59 on 10 March in China
    await add_case(sessions, "yellow", utc(9, 0), status=CaseStatus.CLOSED)  # closed cases count too
    await add_case(sessions, "green", utc(8, 15, 0))  # 23:00 on 8 March in China
    async with sessions() as session:
        days = await reports.cases_per_day(session, days=3, now=NOW)
    assert days == [
        {"day": "2026-03-08", "levels": {"red": 0, "orange": 0, "yellow": 0, "green": 1}, "total": 1},
        {"day": "2026-03-09", "levels": {"red": 1, "orange": 0, "yellow": 1, "green": 0}, "total": 2},
        {"day": "2026-03-10", "levels": {"red": 1, "orange": 1, "yellow": 0, "green": 0}, "total": 2},
    ]


async def test_every_day_of_the_window_is_there_with_zeros_and_nothing_from_before_it(
    sessions: Sessions,
) -> None:
    first_day_starts = datetime(2026, 2, 24, 16, 0, tzinfo=UTC)  # 00:00 on 25 February in China
    await add_case(sessions, "red", first_day_starts - timedelta(microseconds=1))  # the day before
    await add_case(sessions, "orange", first_day_starts)
    await add_case(sessions, "red", utc(3, 12))  # 20:00 on 3 March in China
    async with sessions() as session:
        days = await reports.cases_per_day(session, now=NOW)  # 14 days by default
    assert [d["day"] for d in days] == [
        *(f"2026-02-{n}" for n in range(25, 29)),
        *(f"2026-03-{n:02d}" for n in range(1, 11)),
    ]
    totals = {d["day"]: d["total"] for d in days}
    assert totals == {**{d: 0 for d in totals}, "2026-02-25": 1, "2026-03-03": 1}
    assert days[0]["levels"] == {"red": 0, "orange": 1, "yellow": 0, "green": 0}
    assert all(list(d["levels"]) == ["red", "orange", "yellow", "green"] for d in days)


async def test_just_before_midnight_in_china_is_still_the_same_day(sessions: Sessions) -> None:
    late = datetime(2026, 3, 10, 15, 59, 59, tzinfo=UTC)  # 23:59:59 on 10 March in China
    await add_case(sessions, "red", utc(10, 0))
    async with sessions() as session:
        days = await reports.cases_per_day(session, days=1, now=late)
        tomorrow = await reports.cases_per_day(session, days=1, now=late + timedelta(seconds=1))
    assert days == [
        {"day": "2026-03-10", "levels": {"red": 1, "orange": 0, "yellow": 0, "green": 0}, "total": 1}
    ]
    assert tomorrow[0]["day"] == "2026-03-11" and tomorrow[0]["total"] == 0


# ---- time to claim -----------------------------------------------------------------------------------


async def test_time_to_claim_median_p90_late_and_waiting_by_level(sessions: Sessions) -> None:
    day_ago = NOW - timedelta(days=1)
    for seconds in (600, 60, 300, 120):  # red's deadline is 180 s: 300 and 600 are late
        await add_case(sessions, "red", day_ago, claimed_after=seconds)
    await add_case(sessions, "red", NOW - timedelta(minutes=10))  # waiting, past its 3 minutes
    await add_case(sessions, "red", NOW - timedelta(minutes=1))  # waiting, within them
    await add_case(sessions, "red", NOW - timedelta(days=31), claimed_after=5000)  # outside the 30 days
    await add_case(sessions, "orange", day_ago, claimed_after=100)
    await add_case(sessions, "orange", day_ago, claimed_after=30, status=CaseStatus.CLOSED)
    await add_case(sessions, "yellow", day_ago, status=CaseStatus.CLOSED)  # closed, never claimed
    async with sessions() as session:
        rows = await reports.time_to_claim(session, now=NOW)
    assert rows == [
        {
            "level": "red",
            "opened": 6,
            "claimed": 4,
            "median_seconds": 210.0,  # between 120 and 300
            "p90_seconds": 510.0,  # 300 + 0.7 × (600 − 300)
            "late": 2,
            "unclaimed": 2,
            "unclaimed_overdue": 1,
        },
        {
            "level": "orange",
            "opened": 2,
            "claimed": 2,
            "median_seconds": 65.0,
            "p90_seconds": 93.0,
            "late": 0,
            "unclaimed": 0,
            "unclaimed_overdue": 0,
        },
        {
            "level": "yellow",
            "opened": 1,
            "claimed": 0,
            "median_seconds": None,
            "p90_seconds": None,
            "late": 0,
            "unclaimed": 0,
            "unclaimed_overdue": 0,
        },
        {
            "level": "green",
            "opened": 0,
            "claimed": 0,
            "median_seconds": None,
            "p90_seconds": None,
            "late": 0,
            "unclaimed": 0,
            "unclaimed_overdue": 0,
        },
    ]


@pytest.mark.parametrize(
    ("values", "median", "p90"),
    [
        ([], None, None),
        ([42.0], 42.0, 42.0),
        ([10.0, 20.0], 15.0, 19.0),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 5.5, 9.1),
    ],
)
def test_percentiles_interpolate_between_ranks(
    values: list[float], median: float | None, p90: float | None
) -> None:
    assert reports.percentile(values, 0.5) == median
    p = reports.percentile(values, 0.9)
    assert p == p90 if p90 is None else p == pytest.approx(p90)


# ---- follow-ups --------------------------------------------------------------------------------------


async def test_follow_ups_open_and_overdue_by_kind(sessions: Sessions) -> None:
    case_id = await add_case(sessions, "orange", NOW - timedelta(days=3), claimed_after=60)
    closed = await add_case(sessions, "red", NOW - timedelta(days=3), status=CaseStatus.CLOSED)
    await add_follow_up(sessions, case_id, "check_in", NOW - timedelta(hours=1))  # overdue
    await add_follow_up(sessions, case_id, "check_in", NOW + timedelta(days=1))  # open, not due
    await add_follow_up(sessions, case_id, "check_in", NOW)  # due this very moment: not overdue yet
    await add_follow_up(sessions, case_id, "referral", NOW - timedelta(days=1), done=True)  # done
    await add_follow_up(sessions, case_id, "return_to_school", NOW - timedelta(days=2))  # overdue
    await add_follow_up(sessions, closed, "check_in", NOW - timedelta(days=2))  # on a closed case
    async with sessions() as session:
        found = await reports.follow_ups(session, now=NOW)
    assert found == {
        "open": 4,
        "overdue": 2,
        "by_kind": [
            {"kind": "check_in", "open": 3, "overdue": 1},
            {"kind": "referral", "open": 0, "overdue": 0},
            {"kind": "return_to_school", "open": 1, "overdue": 1},
        ],
    }


# ---- counsellor load ---------------------------------------------------------------------------------


async def test_each_active_counsellors_load_shift_and_held_conversations(sessions: Sessions) -> None:
    ann = await add_person(sessions, "ann")
    bob = await add_person(sessions, "bob", on_shift=False)
    sue = await add_person(sessions, "sue", CounsellorRole.SUPERVISOR)
    gone = await add_person(sessions, "gone", active=False)
    red = await add_case(
        sessions, "red", NOW - timedelta(hours=1), claimed_after=60, claimed_by=ann, held_by=ann
    )
    orange = await add_case(sessions, "orange", NOW - timedelta(hours=2))
    red_two = await add_case(sessions, "red", NOW - timedelta(hours=3))
    closed = await add_case(sessions, "red", NOW - timedelta(days=2), status=CaseStatus.CLOSED)
    for case_id, person, role in [
        (red, ann, "lead"),
        (red, bob, "second"),
        (orange, ann, "second"),
        (red_two, bob, "lead"),
        (closed, ann, "lead"),  # closed: not load
        (orange, gone, "lead"),  # inactive: not listed
    ]:
        await assign(sessions, case_id, person, role)
    async with sessions() as session:
        load = await reports.counsellor_load(session, now=NOW)
        staff = await reports.active_counsellors(session, now=NOW)
    assert load == [
        {
            "id": ann,
            "display_name": "测试ann",
            "role": "volunteer",
            "on_shift": True,
            "open_cases": {"red": 1, "orange": 1, "yellow": 0, "green": 0},
            "open_total": 2,
            "holding": 1,
        },
        {
            "id": sue,
            "display_name": "测试sue",
            "role": "supervisor",
            "on_shift": True,
            "open_cases": {"red": 0, "orange": 0, "yellow": 0, "green": 0},
            "open_total": 0,
            "holding": 0,
        },
        {
            "id": bob,
            "display_name": "测试bob",
            "role": "volunteer",
            "on_shift": False,
            "open_cases": {"red": 2, "orange": 0, "yellow": 0, "green": 0},
            "open_total": 2,
            "holding": 0,
        },
    ]
    assert staff == [{k: row[k] for k in ("id", "display_name", "role", "on_shift")} for row in load]


# ---- all of it ---------------------------------------------------------------------------------------


async def test_the_figures_hold_numbers_levels_kinds_and_names_only(sessions: Sessions) -> None:
    ann = await add_person(sessions, "ann")
    case_id = await add_case(sessions, "red", NOW - timedelta(hours=1), claimed_after=90, claimed_by=ann)
    await assign(sessions, case_id, ann, "lead")
    await add_follow_up(sessions, case_id, "check_in", NOW - timedelta(minutes=1))
    async with sessions() as session:
        conversation_id = (await session.get_one(Case, case_id)).conversation_id
        found = await reports.figures(session, days=7, now=NOW)
    assert found["days"] == 7 and len(found["cases_per_day"]) == 7
    assert found["cases_per_day"][-1]["levels"]["red"] == 1
    assert found["time_to_claim"][0] == {
        "level": "red",
        "opened": 1,
        "claimed": 1,
        "median_seconds": 90.0,
        "p90_seconds": 90.0,
        "late": 0,
        "unclaimed": 0,
        "unclaimed_overdue": 0,
    }
    assert found["follow_ups"]["overdue"] == 1
    assert found["load"][0]["open_total"] == 1
    text = json.dumps(found, ensure_ascii=False)
    assert conversation_id not in text and '"ann"' not in text  # no conversation id, no sign-in handle


@pytest.mark.parametrize("days", [0, -1, 91])
async def test_the_window_is_one_to_ninety_days(sessions: Sessions, days: int) -> None:
    async with sessions() as session:
        with pytest.raises(ValueError):
            await reports.figures(session, days=days, now=NOW)
