"""Opening and raising cases as levels.yml says: who is staffed, who is paged, what is recorded."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import datetime, timedelta

import pytest

from records import cases, escalation, watchdog
from records.db import create_engine, session_factory
from records.escalation import Escalation, EscalationResult
from records.models import AssignmentRole, CaseStatus, Conversation, CounsellorRole, OutboxItem
from tests.records.conftest import (
    Sessions,
    Staff,
    add_counsellor,
    around,
    assignments,
    audit_entries,
    cases_of,
    count,
    escalate,
    family_tasks,
    follow_ups,
    get_case,
    new_conversation,
    open_case,
    pages,
)
from triage_protocols import protocol_version

ALL_ORIGINS = ("screen", "intent", "instrument", "handoff", "checkin", "counsellor")
REQUESTED_ORIGINS = ("checkin", "handoff", "instrument", "counsellor")
ABUSE = "abuse_physical.adult_hits"
IDEATION = "ideation.want_to_die"


async def _run_watchdog(sessions: Sessions, at: datetime) -> watchdog.WatchdogRound:
    async with sessions() as session:
        return await watchdog.run_once(session, now=at)


# ---------------------------------------------------------------- which levels open a case


@pytest.mark.parametrize("origin", ALL_ORIGINS)
async def test_green_never_opens_a_case(sessions: Sessions, staff: Staff, now: datetime, origin: str) -> None:
    conversation_id = await new_conversation(sessions)
    result = await escalate(sessions, conversation_id, "green", now=now, origin=origin)
    assert result.case_id is None and result.level is None
    assert not result.opened and not result.paged
    assert await cases_of(sessions) == []
    assert await count(sessions, OutboxItem) == 0
    assert await audit_entries(sessions, "case_opened") == []
    async with sessions() as session:
        assert (await session.get_one(Conversation, conversation_id)).escalated_at is None


@pytest.mark.parametrize("origin", ["screen", "intent"])
async def test_yellow_opens_no_case_unless_the_person_asked(
    sessions: Sessions, staff: Staff, now: datetime, origin: str
) -> None:
    conversation_id = await new_conversation(sessions)
    result = await escalate(sessions, conversation_id, "yellow", now=now, origin=origin)
    assert result.case_id is None
    assert await cases_of(sessions) == []
    assert await count(sessions, OutboxItem) == 0


@pytest.mark.parametrize("origin", REQUESTED_ORIGINS)
async def test_yellow_opens_a_two_staff_case_for_a_requested_origin(
    sessions: Sessions, staff: Staff, now: datetime, origin: str
) -> None:
    conversation_id = await new_conversation(sessions)
    result = await escalate(sessions, conversation_id, "yellow", now=now, origin=origin)
    assert result.opened and result.level == "yellow" and result.case_id is not None

    case = await get_case(sessions, result.case_id)
    assert (case.conversation_id, case.level, case.level_rank, case.status) == (
        conversation_id,
        "yellow",
        1,
        CaseStatus.OPEN,
    )
    assert case.claim_by == now + timedelta(minutes=1440)
    assert case.respond_by == now + timedelta(minutes=1440)
    assert case.next_escalation_at == case.claim_by and case.escalation_stage == 0

    staffed = await assignments(sessions, case.id)
    assert set(staffed) == {AssignmentRole.LEAD, AssignmentRole.SECOND}  # 二包一
    assert len(set(staffed.values())) == 2
    # yellow pages only the lead; the supervisor is not paged for a fully staffed yellow case
    assert [(p.counsellor_id, p.payload["reason"]) for p in await pages(sessions, case.id)] == [
        (staffed[AssignmentRole.LEAD], "case_opened")
    ]
    assert result.paged == [staffed[AssignmentRole.LEAD]]
    assert await family_tasks(sessions, case.id) == []  # no family for 二包一
    assert [f.due_at for f in await follow_ups(sessions, case.id, "check_in")] == [now + timedelta(days=7)]


@pytest.mark.parametrize("origin", ALL_ORIGINS)
@pytest.mark.parametrize("level", ["orange", "red"])
async def test_orange_and_red_open_a_case_for_any_origin(
    sessions: Sessions, staff: Staff, now: datetime, level: str, origin: str
) -> None:
    conversation_id = await new_conversation(sessions)
    result = await escalate(sessions, conversation_id, level, now=now, origin=origin)
    assert result.opened and result.level == level
    [case] = await cases_of(sessions, conversation_id)
    assert case.id == result.case_id and case.level == level


async def test_an_orange_case_is_three_staff_and_the_family_and_pages_its_lead(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    _, case_id = await open_case(sessions, "orange", now=now)
    case = await get_case(sessions, case_id)
    assert case.claim_by == now + timedelta(minutes=20)
    assert case.respond_by == now + timedelta(minutes=60)

    staffed = await assignments(sessions, case_id)
    assert set(staffed) == {AssignmentRole.LEAD, AssignmentRole.SECOND, AssignmentRole.THIRD}  # 三包一
    assert len(set(staffed.values())) == 3
    assert staff.supervisor not in staffed.values()  # the supervisor has no shift
    assert [p.counsellor_id for p in await pages(sessions, case_id)] == [staffed[AssignmentRole.LEAD]]

    [task] = await family_tasks(sessions, case_id)
    assert task.status == "due" and task.due_by == now + timedelta(days=1)
    assert task.detail["check_safety_first"] is False
    assert [f.due_at for f in await follow_ups(sessions, case_id, "check_in")] == [now + timedelta(days=1)]


async def test_a_red_case_pages_its_lead_and_the_supervisor_at_once(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    _, case_id = await open_case(sessions, "red", now=now)
    case = await get_case(sessions, case_id)
    assert case.claim_by == now + timedelta(minutes=3)
    assert case.respond_by == now

    lead = (await assignments(sessions, case_id))[AssignmentRole.LEAD]
    paged = await pages(sessions, case_id)
    assert sorted((p.counsellor_id, p.payload["as_role"]) for p in paged) == sorted(
        [(lead, "lead"), (staff.supervisor, "supervisor")]
    )
    assert {p.payload["reason"] for p in paged} == {"case_opened"}
    assert {p.payload["level"] for p in paged} == {"red"}
    assert all(p.payload["claim_by"] == case.claim_by.isoformat() for p in paged)


async def test_a_supervisor_on_shift_is_paged_instead_of_the_ones_off_shift(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    on_shift = await add_counsellor(sessions, "sup2", role=CounsellorRole.SUPERVISOR, shift=around(now))
    _, case_id = await open_case(sessions, "red", now=now)
    supervisors = {p.counsellor_id for p in await pages(sessions, case_id, as_role="supervisor")}
    assert supervisors == {on_shift}


# ---------------------------------------------------------------- red reaches two different people at once


async def _supervisor_leads(
    sessions: Sessions, now: datetime, *, volunteers: int = 0
) -> tuple[int, list[int]]:
    """A supervisor on shift made first, so that with no load they lead; then volunteers on shift."""
    supervisor = await add_counsellor(sessions, "sup_on", role=CounsellorRole.SUPERVISOR, shift=around(now))
    others = [await add_counsellor(sessions, f"vol{i}", shift=around(now)) for i in range(volunteers)]
    return supervisor, others


async def test_a_red_case_led_by_the_only_supervisor_on_shift_also_pages_the_next_on_call(
    sessions: Sessions, now: datetime
) -> None:
    supervisor, (v1, v2, _) = await _supervisor_leads(sessions, now, volunteers=3)
    conversation_id, case_id = await open_case(sessions, "red", now=now)
    staffed = await assignments(sessions, case_id)
    assert staffed == {"lead": supervisor, "second": v1, "third": v2}

    paged = await pages(sessions, case_id)
    assert [(p.counsellor_id, p.payload["as_role"]) for p in paged] == [
        (supervisor, "lead"),
        (v1, "next_on_call"),
    ]
    assert {p.payload["reason"] for p in paged} == {"case_opened"}
    [entry] = await audit_entries(sessions, "case_opened", conversation_id)
    assert entry.detail["paged"] == [supervisor, v1]
    assert await audit_entries(sessions, "too_few_to_page") == []


async def test_a_red_case_led_by_the_only_supervisor_on_shift_pages_a_supervisor_off_shift_next(
    sessions: Sessions, now: datetime
) -> None:
    supervisor, _ = await _supervisor_leads(sessions, now)
    off_shift = await add_counsellor(sessions, "sup_off", role=CounsellorRole.SUPERVISOR)
    await add_counsellor(sessions, "vol_off")  # after the supervisors in the protocol's order
    _, case_id = await open_case(sessions, "red", now=now)
    assert [(p.counsellor_id, p.payload["as_role"]) for p in await pages(sessions, case_id)] == [
        (supervisor, "lead"),
        (off_shift, "supervisor"),
    ]


async def test_a_red_case_pages_someone_off_shift_rather_than_one_person(
    sessions: Sessions, now: datetime
) -> None:
    supervisor, _ = await _supervisor_leads(sessions, now)
    off_shift = await add_counsellor(sessions, "vol_off")
    await add_counsellor(sessions, "gone", active=False, shift=around(now))
    result = await escalate(sessions, await new_conversation(sessions), "red", now=now)
    assert result.paged == [supervisor, off_shift]
    assert await audit_entries(sessions, "too_few_to_page") == []


@pytest.mark.parametrize("role", [CounsellorRole.SUPERVISOR, CounsellorRole.VOLUNTEER])
async def test_a_line_of_one_active_person_pages_one_and_says_so(
    sessions: Sessions, now: datetime, role: str
) -> None:
    only = await add_counsellor(sessions, "only", role=role, shift=around(now))
    await add_counsellor(sessions, "gone", role=CounsellorRole.SUPERVISOR, active=False)
    conversation_id, case_id = await open_case(sessions, "red", now=now)
    assert [p.counsellor_id for p in await pages(sessions, case_id)] == [only]
    [entry] = await audit_entries(sessions, "too_few_to_page", conversation_id)
    assert entry.actor == "gateway"
    assert entry.detail == {"case_id": case_id, "level": "red", "needed": 2, "paged": [only]}


async def test_raising_to_red_a_case_led_by_the_only_supervisor_pages_two_people(
    sessions: Sessions, now: datetime
) -> None:
    supervisor, (v1, _) = await _supervisor_leads(sessions, now, volunteers=2)
    conversation_id, case_id = await open_case(sessions, "yellow", now=now, origin="handoff")
    assert [p.counsellor_id for p in await pages(sessions, case_id)] == [supervisor]

    result = await escalate(sessions, conversation_id, "red", now=now + timedelta(minutes=1))
    assert result.raised and result.paged == [supervisor, v1]
    raised = await pages(sessions, case_id, reason="case_raised")
    assert [(p.counsellor_id, p.payload["as_role"]) for p in raised] == [
        (supervisor, "lead"),
        (v1, "next_on_call"),
    ]


async def test_a_claimed_case_raised_to_red_by_its_holder_supervisor_pages_a_second_person(
    sessions: Sessions, now: datetime
) -> None:
    supervisor, (v1, _) = await _supervisor_leads(sessions, now, volunteers=2)
    conversation_id, case_id = await open_case(sessions, "orange", now=now)
    async with sessions() as session:
        assert await cases.claim(session, case_id, supervisor, now=now + timedelta(minutes=1))

    result = await escalate(sessions, conversation_id, "red", now=now + timedelta(minutes=2))
    assert result.paged == [supervisor, v1]


async def test_an_orange_case_led_by_a_supervisor_still_pages_only_its_lead(
    sessions: Sessions, now: datetime
) -> None:
    supervisor, _ = await _supervisor_leads(sessions, now, volunteers=2)
    result = await escalate(sessions, await new_conversation(sessions), "orange", now=now)
    assert result.paged == [supervisor]  # the protocol pages one person at orange
    assert await audit_entries(sessions, "too_few_to_page") == []


# ---------------------------------------------------------------- one open case, raised, never lowered


async def test_a_second_escalation_at_the_same_level_returns_the_same_case_and_pages_no_one(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    conversation_id, case_id = await open_case(sessions, "orange", now=now)
    before = await pages(sessions)

    again = await escalate(
        sessions, conversation_id, "orange", now=now + timedelta(minutes=1), origin="intent"
    )
    assert again.case_id == case_id
    assert not again.opened and not again.raised and again.paged == []
    assert [p.id for p in await pages(sessions)] == [p.id for p in before]
    assert len(await cases_of(sessions, conversation_id)) == 1
    assert len(await audit_entries(sessions, "case_opened")) == 1
    assert await audit_entries(sessions, "case_raised") == []


async def test_raising_yellow_to_red_takes_the_red_deadlines_staff_family_and_pages(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    conversation_id, case_id = await open_case(sessions, "yellow", now=now, origin="checkin")
    yellow_staff = await assignments(sessions, case_id)
    lead = yellow_staff[AssignmentRole.LEAD]
    assert await family_tasks(sessions, case_id) == []

    raised_at = now + timedelta(minutes=10)
    result = await escalate(sessions, conversation_id, "red", now=raised_at, reason="crisis:plan")
    assert result.case_id == case_id and result.raised and not result.opened and result.level == "red"

    case = await get_case(sessions, case_id)
    assert (case.level, case.level_rank, case.raised_at) == ("red", 3, raised_at)
    assert case.claim_by == raised_at + timedelta(minutes=3)  # tighter than yellow's 24 hours
    assert case.next_escalation_at == case.claim_by and case.escalation_stage == 0
    assert case.respond_by == raised_at

    red_staff = await assignments(sessions, case_id)  # 二包一 → 三包一: the two stay, a third joins
    assert {r: red_staff[r] for r in yellow_staff} == yellow_staff
    assert set(red_staff) == {AssignmentRole.LEAD, AssignmentRole.SECOND, AssignmentRole.THIRD}
    assert len(set(red_staff.values())) == 3

    [task] = await family_tasks(sessions, case_id)
    assert task.status == "due" and task.due_by == raised_at + timedelta(days=1)
    # still one open check-in, brought forward to red's next day
    assert [f.due_at for f in await follow_ups(sessions, case_id, "check_in")] == [
        raised_at + timedelta(days=1)
    ]

    raised_pages = await pages(sessions, case_id, reason="case_raised")
    assert sorted(p.counsellor_id for p in raised_pages) == sorted([lead, staff.supervisor])
    assert {p.payload["level"] for p in raised_pages} == {"red"}
    assert sorted(result.paged) == sorted([lead, staff.supervisor])

    # the same red level again: no second page to either of them
    again = await escalate(sessions, conversation_id, "red", now=raised_at + timedelta(minutes=1))
    assert not again.raised and again.paged == []
    assert len(await pages(sessions, case_id, reason="case_raised")) == 2

    [entry] = await audit_entries(sessions, "case_raised", conversation_id)
    assert entry.detail["case_id"] == case_id and entry.detail["level"] == "red"
    assert entry.detail["reason"] == "crisis:plan"


async def test_a_raise_starts_the_watchdog_ladder_again(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    conversation_id, case_id = await open_case(sessions, "yellow", now=now, origin="handoff")
    overdue = now + timedelta(minutes=1441)
    assert (await _run_watchdog(sessions, overdue)).repaged_cases == 1
    assert (await get_case(sessions, case_id)).escalation_stage == 1

    raised_at = overdue + timedelta(minutes=1)
    await escalate(sessions, conversation_id, "red", now=raised_at)
    case = await get_case(sessions, case_id)
    assert case.escalation_stage == 0 and case.next_escalation_at is not None
    assert case.next_escalation_at <= raised_at + timedelta(minutes=3)

    await _run_watchdog(sessions, raised_at + timedelta(minutes=4))
    [step] = await pages(sessions, case_id, reason="unclaimed", level="red")
    assert step.payload["stage"] == 1 and step.payload["step"] == "next_on_call"


async def test_a_claimed_case_raised_pages_the_counsellor_who_holds_it(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    conversation_id, case_id = await open_case(sessions, "orange", now=now)
    holder = (await assignments(sessions, case_id))[AssignmentRole.THIRD]
    async with sessions() as session:
        assert await cases.claim(session, case_id, holder, now=now + timedelta(minutes=1))

    await escalate(sessions, conversation_id, "red", now=now + timedelta(minutes=2))
    case = await get_case(sessions, case_id)
    assert case.status == CaseStatus.CLAIMED and case.level == "red"
    assert case.next_escalation_at is None  # claimed: the watchdog's clock stays stopped
    raised = await pages(sessions, case_id, reason="case_raised")
    assert sorted(p.counsellor_id for p in raised) == sorted([holder, staff.supervisor])


@pytest.mark.parametrize(
    ("lower", "origin"), [("orange", "screen"), ("yellow", "checkin"), ("green", "checkin")]
)
async def test_a_lower_level_never_lowers_a_case(
    sessions: Sessions, staff: Staff, now: datetime, lower: str, origin: str
) -> None:
    conversation_id, case_id = await open_case(sessions, "red", now=now)
    before = await get_case(sessions, case_id)
    page_count = len(await pages(sessions))

    result = await escalate(sessions, conversation_id, lower, now=now + timedelta(minutes=1), origin=origin)
    assert not result.raised and not result.opened
    after = await get_case(sessions, case_id)
    assert (after.level, after.level_rank, after.claim_by, after.respond_by) == (
        "red",
        3,
        before.claim_by,
        before.respond_by,
    )
    assert len(await pages(sessions)) == page_count
    assert await audit_entries(sessions, "case_raised") == []


# ---------------------------------------------------------------- staffing from the on-call pool


async def test_staffing_picks_the_least_loaded_on_call_counsellors(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    v1, v2, v3, v4, v5 = staff.volunteers
    _, first = await open_case(sessions, "orange", now=now)
    assert await assignments(sessions, first) == {"lead": v1, "second": v2, "third": v3}

    # v1, v2 and v3 now carry an open case each; v4 and v5 carry none, so they lead and second
    _, second = await open_case(sessions, "orange", now=now + timedelta(minutes=1))
    staffed = await assignments(sessions, second)
    assert staffed == {"lead": v4, "second": v5, "third": v1}
    assert staffed["lead"] not in {v1, v2, v3}
    assert [p.counsellor_id for p in await pages(sessions, second)] == [v4]


async def test_closed_cases_do_not_count_as_load(sessions: Sessions, staff: Staff, now: datetime) -> None:
    v1, v2, v3, v4, v5 = staff.volunteers
    _, first = await open_case(sessions, "orange", now=now)
    _, second = await open_case(sessions, "orange", now=now)
    assert await assignments(sessions, second) == {"lead": v4, "second": v5, "third": v1}
    async with sessions() as session:
        await cases.close(session, first, v1, "resolved")

    # open load now: v1 1, v4 1, v5 1, v2 0, v3 0
    _, third = await open_case(sessions, "orange", now=now + timedelta(minutes=1))
    assert await assignments(sessions, third) == {"lead": v2, "second": v3, "third": v1}


async def test_counsellors_off_shift_or_inactive_are_never_assigned(
    sessions: Sessions, now: datetime
) -> None:
    # Made first, so that they have the lowest ids and would be picked first if the filter failed.
    ended = await add_counsellor(sessions, "ended", shift=(now - timedelta(hours=8), now))
    later = await add_counsellor(
        sessions, "later", shift=(now + timedelta(minutes=5), now + timedelta(hours=8))
    )
    inactive = await add_counsellor(sessions, "inactive", active=False, shift=around(now))
    await add_counsellor(sessions, "no_shift")
    on_shift = [await add_counsellor(sessions, f"on{i}", shift=around(now)) for i in range(3)]
    supervisor = await add_counsellor(sessions, "sup", role=CounsellorRole.SUPERVISOR)

    _, case_id = await open_case(sessions, "red", now=now)
    staffed = await assignments(sessions, case_id)
    assert sorted(staffed.values()) == sorted(on_shift)
    assert staffed["lead"] == on_shift[0]
    assert {p.counsellor_id for p in await pages(sessions, case_id)} == {on_shift[0], supervisor}

    # the same filter is about time: once the later shift starts, its counsellor (least loaded) leads
    _, next_case = await open_case(sessions, "orange", now=now + timedelta(minutes=6))
    assert (await assignments(sessions, next_case))["lead"] == later
    everyone = [a for c in await cases_of(sessions) for a in (await assignments(sessions, c.id)).values()]
    assert ended not in everyone and inactive not in everyone


async def test_nobody_on_shift_says_so_and_still_pages_the_supervisor(
    sessions: Sessions, now: datetime
) -> None:
    off = await add_counsellor(sessions, "off", shift=(now + timedelta(hours=1), now + timedelta(hours=9)))
    supervisor = await add_counsellor(sessions, "sup", role=CounsellorRole.SUPERVISOR)

    conversation_id = await new_conversation(sessions)
    result = await escalate(sessions, conversation_id, "red", now=now)
    assert result.opened and not result.on_call_available and result.understaffed
    # the supervisor first; red needs a second person, and the only other one is off shift
    assert result.paged == [supervisor, off]
    assert await assignments(sessions, result.case_id) == {}  # type: ignore[arg-type]
    paged = await pages(sessions, result.case_id)
    assert [(p.counsellor_id, p.payload["as_role"]) for p in paged] == [
        (supervisor, "supervisor"),
        (off, "off_shift"),
    ]
    for page in paged:
        assert page.payload["understaffed"] is True and page.payload["on_call_available"] is False
    [entry] = await audit_entries(sessions, "case_opened")
    assert entry.detail["on_call_available"] is False and entry.detail["understaffed"] is True


async def test_an_orange_case_with_nobody_on_shift_pages_the_supervisor(
    sessions: Sessions, now: datetime
) -> None:
    supervisor = await add_counsellor(sessions, "sup", role=CounsellorRole.SUPERVISOR)
    conversation_id = await new_conversation(sessions)
    result = await escalate(sessions, conversation_id, "orange", now=now)  # orange pages only a lead
    assert not result.on_call_available and result.paged == [supervisor]


async def test_a_repeated_red_escalation_with_nobody_on_shift_still_reports_nobody_on_call(
    sessions: Sessions, now: datetime
) -> None:
    """The gateway shows the numbers to call now only when `on_call_available` is False
    (integrations/switchboard.py notices_for); a second red message at night must get them too."""
    await add_counsellor(sessions, "sup", role=CounsellorRole.SUPERVISOR)
    conversation_id = await new_conversation(sessions)
    first = await escalate(sessions, conversation_id, "red", now=now)
    assert not first.on_call_available

    second = await escalate(sessions, conversation_id, "red", now=now + timedelta(minutes=1))
    assert second.case_id == first.case_id
    assert second.on_call_available is False


async def test_an_understaffed_yellow_case_also_pages_the_supervisor(
    sessions: Sessions, now: datetime
) -> None:
    only = await add_counsellor(sessions, "only", shift=around(now))
    supervisor = await add_counsellor(sessions, "sup", role=CounsellorRole.SUPERVISOR)
    conversation_id = await new_conversation(sessions)
    result = await escalate(sessions, conversation_id, "yellow", now=now, origin="checkin")
    assert result.on_call_available and result.understaffed
    assert await assignments(sessions, result.case_id) == {"lead": only}  # type: ignore[arg-type]
    assert sorted(result.paged) == sorted([only, supervisor])


# ---------------------------------------------------------------- the family task, and what is recorded


@pytest.mark.parametrize("signal", [ABUSE, "domestic_violence.witness", "abuse_sexual.touching"])
async def test_abuse_signals_mark_the_family_task_check_safety_first(
    sessions: Sessions, staff: Staff, now: datetime, signal: str
) -> None:
    _, case_id = await open_case(sessions, "orange", now=now, signals=[IDEATION, signal])
    [task] = await family_tasks(sessions, case_id)
    assert task.detail["check_safety_first"] is True
    assert task.detail["because"] == [signal.split(".")[0]]


async def test_a_raise_with_an_abuse_signal_marks_the_existing_family_task(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    conversation_id, case_id = await open_case(sessions, "orange", now=now, signals=[IDEATION])
    [task] = await family_tasks(sessions, case_id)
    assert task.detail["check_safety_first"] is False

    await escalate(sessions, conversation_id, "red", now=now + timedelta(minutes=1), signals=[ABUSE])
    [task] = await family_tasks(sessions, case_id)  # still one task
    assert task.detail["check_safety_first"] is True and task.detail["because"] == ["abuse_physical"]


async def test_the_case_records_protocol_version_rule_and_signals(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    conversation_id, case_id = await open_case(
        sessions, "orange", now=now, rule="ideation_alone", signals=[IDEATION, "ideation.disappear", IDEATION]
    )
    case = await get_case(sessions, case_id)
    assert case.protocol_version == protocol_version()
    assert case.rule == "ideation_alone"
    assert case.signals == ["ideation.disappear", IDEATION]

    await escalate(
        sessions,
        conversation_id,
        "red",
        now=now + timedelta(minutes=1),
        signals=["plan.concrete"],
        protocol_version="test-2099.1",
    )
    case = await get_case(sessions, case_id)
    assert case.protocol_version == "test-2099.1"
    assert case.rule == "ideation_alone"  # a raise without a rule keeps the rule it had
    assert case.signals == ["ideation.disappear", IDEATION, "plan.concrete"]


@pytest.mark.parametrize(
    ("origin", "actor"), [("screen", "gateway"), ("intent", "action_server"), ("counsellor", "counsellor")]
)
async def test_opening_a_case_is_audited_with_codes_only(
    sessions: Sessions, staff: Staff, now: datetime, origin: str, actor: str
) -> None:
    conversation_id, case_id = await open_case(
        sessions, "red", now=now, origin=origin, reason="screen:plan_with_time", rule="r1", signals=[IDEATION]
    )
    [entry] = await audit_entries(sessions, "case_opened", conversation_id)
    assert entry.actor == actor
    assert entry.detail["case_id"] == case_id
    assert entry.detail["level"] == "red" and entry.detail["origin"] == origin
    assert entry.detail["reason"] == "screen:plan_with_time" and entry.detail["rule"] == "r1"
    assert entry.detail["signals"] == [IDEATION]
    assert entry.detail["protocol_version"] == protocol_version()
    assert sorted(entry.detail["paged"]) == sorted(p.counsellor_id for p in await pages(sessions, case_id))


async def test_a_closed_case_lets_a_new_case_open_for_the_conversation(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    conversation_id, first = await open_case(sessions, "orange", now=now)
    async with sessions() as session:
        await cases.close(session, first, staff.volunteers[0], "resolved")

    result = await escalate(sessions, conversation_id, "orange", now=now + timedelta(hours=1))
    assert result.opened and result.case_id != first
    statuses = {c.id: c.status for c in await cases_of(sessions, conversation_id)}
    assert statuses == {first: CaseStatus.CLOSED, result.case_id: CaseStatus.OPEN}
    assert len(await pages(sessions, result.case_id, reason="case_opened")) == 1


async def test_escalating_a_conversation_the_store_never_saw_creates_it(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    conversation_id = "rasashell0123456789abcdef"
    result = await escalate(sessions, conversation_id, "red", now=now, channel="rasa", audience="parent")
    assert result.opened
    async with sessions() as session:
        conversation = await session.get_one(Conversation, conversation_id)
    assert (conversation.channel, conversation.audience, conversation.escalated_at) == ("rasa", "parent", now)
    [case] = await cases_of(sessions, conversation_id)
    assert case.id == result.case_id and case.audience == "parent"


# ---------------------------------------------------------------- a flood from one source: one page for its cases

# What the gateway names a source over its rate limit by: a keyed digest, never the address.
FLOOD = hashlib.sha256(b"test:one-source").hexdigest()
OTHER_FLOOD = hashlib.sha256(b"test:another-source").hexdigest()


async def _flood(
    sessions: Sessions, level: str, at: datetime, *, key: str = FLOOD, conversation_id: str | None = None
) -> EscalationResult:
    """An escalation the gateway marked as part of a flood (a new conversation unless one is given)."""
    conversation_id = conversation_id or await new_conversation(sessions)
    return await escalate(sessions, conversation_id, level, now=at, flood_key=key)


async def test_a_flood_opens_and_staffs_every_case_but_pages_only_for_the_first(
    sessions: Sessions, staff: Staff, now: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="records.escalation")
    first = await _flood(sessions, "orange", now)
    later = [await _flood(sessions, "orange", now + timedelta(minutes=m)) for m in (1, 2, 9)]
    assert first.opened and first.paged and first.flood_grouped_with is None

    for result in later:
        assert result.opened and result.paged == [] and result.flood_grouped_with == first.case_id
        assert result.on_call_available and not result.understaffed
        assert len(await assignments(sessions, result.case_id)) == 3  # type: ignore[arg-type]  # 三包一
        assert len(await family_tasks(sessions, result.case_id)) == 1  # type: ignore[arg-type]
    assert [p.case_id for p in await pages(sessions)] == [first.case_id]

    grouped = await audit_entries(sessions, "flood_grouped")
    assert [(e.detail["case_id"], e.detail["first_case_id"]) for e in grouped] == [
        (r.case_id, first.case_id) for r in later
    ]
    assert {e.detail["flood_key"] for e in grouped} == {FLOOD}
    assert {e.detail["level"] for e in grouped} == {"orange"}
    assert len(await audit_entries(sessions, "case_opened")) == 4  # every case is on record
    async with sessions() as session:
        queued = {c.id for c in await cases.open_queue(session)}
    assert queued == {first.case_id, *(r.case_id for r in later)}
    assert "nobody to page" not in caplog.text  # grouped is not the same as unreachable


async def test_a_flood_pages_again_once_its_window_has_passed(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    window = escalation.FLOOD_WINDOW
    first = await _flood(sessions, "orange", now)
    inside = await _flood(sessions, "orange", now + window - timedelta(seconds=1))
    after = await _flood(sessions, "orange", now + window + timedelta(seconds=1))
    again = await _flood(sessions, "orange", now + window + timedelta(minutes=1))
    assert inside.flood_grouped_with == first.case_id and inside.paged == []
    assert after.flood_grouped_with is None and after.paged
    assert again.flood_grouped_with == after.case_id and again.paged == []


async def test_other_sources_and_cases_without_a_flood_key_page_as_usual(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    first = await _flood(sessions, "orange", now)
    other = await _flood(sessions, "orange", now, key=OTHER_FLOOD)
    plain = [await escalate(sessions, await new_conversation(sessions), "orange", now=now) for _ in range(2)]
    for result in (first, other, *plain):
        assert result.paged and result.flood_grouped_with is None
    assert await audit_entries(sessions, "flood_grouped") == []


async def test_a_flood_that_starts_red_pages_two_people_and_groups_what_follows(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    first = await _flood(sessions, "red", now)
    lead = (await assignments(sessions, first.case_id))[AssignmentRole.LEAD]  # type: ignore[arg-type]
    assert sorted(first.paged) == sorted([lead, staff.supervisor])

    red = await _flood(sessions, "red", now + timedelta(minutes=1))
    orange = await _flood(sessions, "orange", now + timedelta(minutes=2))
    assert red.paged == [] and red.flood_grouped_with == first.case_id
    assert orange.paged == [] and orange.flood_grouped_with == first.case_id


async def test_the_first_red_page_of_a_flood_reaches_two_people_when_a_supervisor_leads(
    sessions: Sessions, now: datetime
) -> None:
    supervisor, (v1, _, _) = await _supervisor_leads(sessions, now, volunteers=3)
    first = await _flood(sessions, "red", now)
    assert first.paged == [supervisor, v1]


async def test_red_in_a_flood_is_never_hidden_behind_an_orange_page(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    first = await _flood(sessions, "orange", now)
    red = await _flood(sessions, "red", now + timedelta(minutes=1))
    lead = (await assignments(sessions, red.case_id))[AssignmentRole.LEAD]  # type: ignore[arg-type]
    assert red.flood_grouped_with is None
    assert sorted(red.paged) == sorted([lead, staff.supervisor])

    second_red = await _flood(sessions, "red", now + timedelta(minutes=2))
    orange = await _flood(sessions, "orange", now + timedelta(minutes=3))
    assert second_red.paged == [] and second_red.flood_grouped_with == red.case_id
    assert orange.paged == [] and orange.flood_grouped_with == first.case_id


async def test_a_grouped_case_raised_to_red_pages_unless_the_flood_has_paged_red(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    first_conversation = await new_conversation(sessions)
    first = await _flood(sessions, "orange", now, conversation_id=first_conversation)
    conversation_id = await new_conversation(sessions)
    grouped = await _flood(sessions, "orange", now + timedelta(minutes=1), conversation_id=conversation_id)
    assert grouped.flood_grouped_with == first.case_id

    raised = await _flood(sessions, "red", now + timedelta(minutes=2), conversation_id=conversation_id)
    lead = (await assignments(sessions, raised.case_id))[AssignmentRole.LEAD]  # type: ignore[arg-type]
    assert raised.raised and raised.flood_grouped_with is None
    assert sorted(raised.paged) == sorted([lead, staff.supervisor])
    assert {p.payload["reason"] for p in await pages(sessions, grouped.case_id)} == {"case_raised"}

    # the flood's red page now covers the first case's raise to red
    again = await _flood(sessions, "red", now + timedelta(minutes=3), conversation_id=first_conversation)
    assert again.raised and again.paged == [] and again.flood_grouped_with == grouped.case_id
    [entry] = await audit_entries(sessions, "flood_grouped", first_conversation)
    assert entry.detail == {
        "case_id": first.case_id,
        "first_case_id": grouped.case_id,
        "level": "red",
        "flood_key": FLOOD,
    }


async def test_the_watchdog_still_pages_a_grouped_case_nobody_claimed(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    await _flood(sessions, "orange", now)
    grouped = await _flood(sessions, "orange", now + timedelta(minutes=1))
    assert grouped.paged == []
    assert (await _run_watchdog(sessions, now + timedelta(minutes=22))).repaged_cases == 2
    [step] = await pages(sessions, grouped.case_id, reason="unclaimed")
    assert step.payload["step"] == "next_on_call"


async def _escalate_in(sessions: Sessions, request: Escalation, at: datetime) -> EscalationResult:
    async with sessions() as session:
        result = await escalation.escalate(session, request, now=at)
        await session.commit()
        return result


async def test_a_flood_racing_through_two_gateways_pages_once(
    sessions: Sessions, database_url: str, staff: Staff, now: datetime
) -> None:
    """Each gateway has its own engine on the same store; the flood's state is in the store, not in
    either process."""
    conversations = [await new_conversation(sessions) for _ in range(12)]
    other_engine = create_engine(database_url)
    gateways = (sessions, session_factory(other_engine))
    try:
        results = await asyncio.gather(
            *(
                _escalate_in(
                    gateways[i % 2], Escalation(c, "orange", "screen", "screen:race", flood_key=FLOOD), now
                )
                for i, c in enumerate(conversations)
            ),
            return_exceptions=True,
        )
    finally:
        await other_engine.dispose()
    assert [r for r in results if isinstance(r, BaseException)] == []
    opened = [r for r in results if isinstance(r, EscalationResult)]
    assert all(r.opened for r in opened)
    [paging] = [r for r in opened if r.paged]
    assert {r.flood_grouped_with for r in opened if r is not paging} == {paging.case_id}
    assert len(await pages(sessions)) == 1
    assert len(await audit_entries(sessions, "flood_grouped")) == len(conversations) - 1
