"""The SLA watchdog: unclaimed cases climb the protocol's ladder one step per deadline, overdue follow-ups
are shown to the case's staff once, and any number of watchdogs take each step once."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from records import cases, watchdog
from records.models import AssignmentRole, CounsellorRole
from tests.records.conftest import (
    Sessions,
    Staff,
    add_counsellor,
    around,
    assignments,
    audit_entries,
    follow_ups,
    get_case,
    open_case,
    pages,
    seed_staff,
)

RED_CLAIM = timedelta(minutes=3)


async def _run(sessions: Sessions, at: datetime) -> watchdog.WatchdogRound:
    async with sessions() as session:
        return await watchdog.run_once(session, now=at)


async def _claim(sessions: Sessions, case_id: int, counsellor_id: int, at: datetime) -> None:
    async with sessions() as session:
        assert await cases.claim(session, case_id, counsellor_id, now=at)


# ---------------------------------------------------------------- unclaimed cases


async def test_an_unclaimed_red_case_climbs_the_ladder_and_its_last_step_repeats(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    v1, v2, v3, v4, _ = staff.volunteers
    conversation_id, case_id = await open_case(sessions, "red", now=now)
    assert await assignments(sessions, case_id) == {"lead": v1, "second": v2, "third": v3}

    assert (await _run(sessions, now + RED_CLAIM - timedelta(seconds=1))).repaged_cases == 0
    assert await pages(sessions, case_id, reason="unclaimed") == []

    # stage 1 at the claim deadline: the least-loaded on-call counsellor not paged yet (v4: no load)
    first = now + RED_CLAIM
    assert (await _run(sessions, first)).repaged_cases == 1
    [stage_1] = await pages(sessions, case_id, reason="unclaimed")
    assert (stage_1.counsellor_id, stage_1.payload["stage"], stage_1.payload["step"]) == (
        v4,
        1,
        "next_on_call",
    )
    case = await get_case(sessions, case_id)
    assert case.escalation_stage == 1 and case.next_escalation_at == first + RED_CLAIM

    # stage 2 one deadline later: the supervisor
    second = first + RED_CLAIM
    assert (await _run(sessions, second)).repaged_cases == 1
    [stage_2] = await pages(sessions, case_id, reason="unclaimed", stage=2)
    assert (stage_2.counsellor_id, stage_2.payload["step"]) == (staff.supervisor, "supervisor")

    # the last step repeats until someone claims
    third = second + RED_CLAIM
    assert (await _run(sessions, third)).repaged_cases == 1
    [stage_3] = await pages(sessions, case_id, reason="unclaimed", stage=3)
    assert (stage_3.counsellor_id, stage_3.payload["step"]) == (staff.supervisor, "supervisor")
    assert (await get_case(sessions, case_id)).escalation_stage == 3

    trail = await audit_entries(sessions, "case_unclaimed", conversation_id)
    assert [(e.actor, e.detail["stage"], e.detail["step"], e.detail["paged"]) for e in trail] == [
        ("watchdog", 1, "next_on_call", [v4]),
        ("watchdog", 2, "supervisor", [staff.supervisor]),
        ("watchdog", 3, "supervisor", [staff.supervisor]),
    ]
    assert all(e.detail["case_id"] == case_id for e in trail)


async def test_the_next_on_call_step_skips_whoever_was_already_paged(
    sessions: Sessions, now: datetime
) -> None:
    v1, v2, _ = (await seed_staff(sessions, now, volunteers=3)).volunteers
    _, case_id = await open_case(sessions, "orange", now=now)
    # all three carry this one case; v1, the lead, is first in the on-call order but was paged already
    assert (await assignments(sessions, case_id))[AssignmentRole.LEAD] == v1

    await _run(sessions, now + timedelta(minutes=20))
    [step] = await pages(sessions, case_id, reason="unclaimed")
    assert step.counsellor_id == v2 and step.payload["step"] == "next_on_call"


async def test_with_nobody_left_on_call_the_next_on_call_step_pages_the_supervisor(
    sessions: Sessions, now: datetime
) -> None:
    only = await add_counsellor(sessions, "only", shift=around(now))
    supervisor = await add_counsellor(sessions, "sup", role=CounsellorRole.SUPERVISOR)
    conversation_id, case_id = await open_case(sessions, "red", now=now)  # pages `only` and the supervisor

    await _run(sessions, now + RED_CLAIM)
    [step] = await pages(sessions, case_id, reason="unclaimed")
    assert step.counsellor_id == supervisor and step.payload["step"] == "supervisor"
    [entry] = await audit_entries(sessions, "case_unclaimed", conversation_id)
    assert entry.detail["step"] == "supervisor" and entry.detail["paged"] == [supervisor]
    assert only not in entry.detail["paged"]


async def test_a_claimed_case_is_never_paged_again(sessions: Sessions, staff: Staff, now: datetime) -> None:
    _, claimed_early = await open_case(sessions, "red", now=now)
    await _claim(sessions, claimed_early, staff.volunteers[0], now + timedelta(minutes=1))

    _, claimed_late = await open_case(sessions, "red", now=now)
    await _run(sessions, now + RED_CLAIM)  # one step for the unclaimed one
    assert len(await pages(sessions, claimed_late, reason="unclaimed")) == 1
    await _claim(sessions, claimed_late, staff.volunteers[1], now + RED_CLAIM + timedelta(seconds=30))

    for minutes in (6, 9, 30, 600):
        assert (await _run(sessions, now + timedelta(minutes=minutes))).repaged_cases == 0
    assert await pages(sessions, claimed_early, reason="unclaimed") == []
    assert len(await pages(sessions, claimed_late, reason="unclaimed")) == 1
    unclaimed = await audit_entries(sessions, "case_unclaimed")
    assert [e.detail["case_id"] for e in unclaimed] == [claimed_late]


async def test_running_twice_for_the_same_moment_takes_the_step_once(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    _, case_id = await open_case(sessions, "red", now=now)
    at = now + timedelta(minutes=4)
    assert (await _run(sessions, at)).repaged_cases == 1
    assert (await _run(sessions, at)).repaged_cases == 0
    assert len(await pages(sessions, case_id, reason="unclaimed")) == 1
    assert len(await audit_entries(sessions, "case_unclaimed")) == 1
    assert (await get_case(sessions, case_id)).escalation_stage == 1


async def test_two_watchdogs_at_once_take_each_step_once(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    case_ids = [(await open_case(sessions, "red", now=now))[1] for _ in range(5)]
    at = now + timedelta(minutes=4)

    rounds = await asyncio.gather(_run(sessions, at), _run(sessions, at), return_exceptions=True)
    assert [r for r in rounds if isinstance(r, BaseException)] == []
    assert sum(r.repaged_cases for r in rounds) == 5  # type: ignore[union-attr]
    for case_id in case_ids:
        assert (await get_case(sessions, case_id)).escalation_stage == 1
        assert len(await pages(sessions, case_id, reason="unclaimed")) == 1
    assert sorted(e.detail["case_id"] for e in await audit_entries(sessions, "case_unclaimed")) == case_ids


# ---------------------------------------------------------------- overdue follow-ups


async def test_an_overdue_follow_up_is_paged_once_to_the_assigned_staff(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    conversation_id, case_id = await open_case(sessions, "orange", now=now)
    staffed = await assignments(sessions, case_id)
    await _claim(sessions, case_id, staffed[AssignmentRole.LEAD], now + timedelta(minutes=1))
    [check_in] = await follow_ups(sessions, case_id, "check_in")
    assert check_in.due_at == now + timedelta(days=1)

    assert (await _run(sessions, check_in.due_at - timedelta(minutes=1))).overdue_follow_ups == 0
    assert (await _run(sessions, check_in.due_at)).overdue_follow_ups == 1
    overdue = await pages(sessions, case_id, reason="follow_up_overdue")
    assert sorted(p.counsellor_id for p in overdue) == sorted(staffed.values())
    assert {(p.payload["follow_up_id"], p.payload["follow_up_kind"]) for p in overdue} == {
        (check_in.id, "check_in")
    }
    [marked] = await follow_ups(sessions, case_id, "check_in")
    assert marked.overdue_paged_at == check_in.due_at

    assert (await _run(sessions, check_in.due_at + timedelta(hours=1))).overdue_follow_ups == 0
    assert len(await pages(sessions, case_id, reason="follow_up_overdue")) == 3
    [entry] = await audit_entries(sessions, "follow_up_overdue", conversation_id)
    assert entry.detail["follow_up_id"] == check_in.id
    assert sorted(entry.detail["paged"]) == sorted(staffed.values())


async def test_an_overdue_follow_up_also_reaches_a_holder_who_is_not_assigned(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    _, case_id = await open_case(sessions, "orange", now=now)
    outsider = staff.volunteers[4]
    assert outsider not in (await assignments(sessions, case_id)).values()
    await _claim(sessions, case_id, outsider, now + timedelta(minutes=1))

    await _run(sessions, now + timedelta(days=1))
    overdue = await pages(sessions, case_id, reason="follow_up_overdue")
    assert outsider in {p.counsellor_id for p in overdue} and len(overdue) == 4


async def test_a_follow_up_on_a_case_with_no_staff_goes_to_the_supervisor(
    sessions: Sessions, now: datetime
) -> None:
    supervisor = await add_counsellor(sessions, "sup", role=CounsellorRole.SUPERVISOR)
    _, case_id = await open_case(sessions, "orange", now=now)  # nobody on shift: no assignments
    await _claim(sessions, case_id, supervisor, now + timedelta(minutes=1))
    await _run(sessions, now + timedelta(days=1))
    assert [p.counsellor_id for p in await pages(sessions, case_id, reason="follow_up_overdue")] == [
        supervisor
    ]


async def test_no_follow_up_is_paged_on_a_closed_case(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    _, case_id = await open_case(sessions, "orange", now=now)
    async with sessions() as session:
        await cases.close(session, case_id, staff.volunteers[0], "resolved")

    assert (await _run(sessions, now + timedelta(days=1, minutes=1))).overdue_follow_ups == 0
    assert await pages(sessions, case_id, reason="follow_up_overdue") == []
    assert await audit_entries(sessions, "follow_up_overdue") == []


async def test_a_follow_up_done_in_time_is_not_paged(sessions: Sessions, staff: Staff, now: datetime) -> None:
    _, case_id = await open_case(sessions, "orange", now=now)
    lead = (await assignments(sessions, case_id))[AssignmentRole.LEAD]
    await _claim(sessions, case_id, lead, now + timedelta(minutes=1))
    [check_in] = await follow_ups(sessions, case_id, "check_in")
    async with sessions() as session:
        done = await cases.complete_follow_up(session, check_in.id, lead)
    assert done.done_by == lead and done.done_at is not None

    assert (await _run(sessions, now + timedelta(days=1, minutes=1))).overdue_follow_ups == 0
    assert await pages(sessions, case_id, reason="follow_up_overdue") == []


async def test_a_case_opened_with_nobody_on_shift_is_staffed_when_people_come_on_shift(
    sessions: Sessions, now: datetime
) -> None:
    supervisor = await add_counsellor(sessions, "sup_night", role=CounsellorRole.SUPERVISOR)
    _, case_id = await open_case(sessions, "red", now=now)
    assert await assignments(sessions, case_id) == {}
    morning = now + timedelta(minutes=10)
    arrived = [await add_counsellor(sessions, f"early{i}", shift=around(morning)) for i in range(3)]
    async with sessions() as session:
        await watchdog.run_once(session, now=morning)
    assert set((await assignments(sessions, case_id)).values()) == set(arrived)
    [step] = await audit_entries(sessions, action="case_unclaimed")
    assert (step.detail["assigned"], step.detail["step"]) == (3, "next_on_call")
    [paged] = step.detail["paged"]  # one of the people who arrived, not the supervisor
    assert paged in arrived and paged != supervisor
