"""The care plan in the store: a counsellor's level change (a raise goes through the protocol's escalation,
a lowering is its own audited action, lowering red needs a supervisor, the reason is an encrypted note),
dated follow-ups a counsellor adds and completes, and what a closed case refuses."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text

from records import cases
from records.cases import CaseError
from records.models import AssignmentRole, Case, FollowUp, Note, Referral
from tests.records.conftest import (
    Sessions,
    Staff,
    assignments,
    audit_entries,
    count,
    escalate,
    family_tasks,
    follow_ups,
    get_case,
    open_case,
    pages,
)
from tests.records.support import HOTLINE_ONLY, SCHOOL_ROOM, looks_encrypted, no_words
from triage_protocols import level_spec

REASON = "测试原因：学生说已经把药交给妈妈，今晚有家人陪着。"
WHAT = "测试回访：周五放学后问问和同桌的关系"


async def _stored_notes(sessions: Sessions) -> list[str]:
    async with sessions() as session:
        return list((await session.execute(text("SELECT body FROM note ORDER BY id"))).scalars().all())


async def _change_level(
    sessions: Sessions,
    case_id: int,
    counsellor_id: int,
    level: str,
    reason: str = REASON,
    *,
    may_lower_red: bool = False,
) -> cases.LevelChange:
    """`cases.change_level` in a session of its own, as the console's route makes it."""
    async with sessions() as session:
        return await cases.change_level(
            session, case_id, counsellor_id, level, reason, may_lower_red=may_lower_red
        )


async def _unchanged(sessions: Sessions, case_id: int, level: str) -> None:
    """A refused level change left the case at `level`, wrote no note and lowered nothing."""
    assert (await get_case(sessions, case_id)).level == level
    assert await count(sessions, Note) == 0
    assert await audit_entries(sessions, "level_lowered") == []


# ---------------------------------------------------------------- raising


async def test_a_counsellor_raises_orange_to_red_through_the_protocols_escalation(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    conversation_id, case_id = await open_case(sessions, "orange", now=now)
    lead = (await assignments(sessions, case_id))[AssignmentRole.LEAD]
    change = await _change_level(sessions, case_id, lead, "red")

    assert (change.before, change.after) == ("orange", "red")
    raised = await get_case(sessions, case_id)
    assert (raised.level, raised.level_rank) == ("red", 3)
    # red's deadlines: the claim is due within red's minutes of the raise, not orange's
    assert raised.claim_by is not None
    assert raised.claim_by <= datetime.now(UTC) + timedelta(
        minutes=level_spec("red").case.claim_within_minutes
    )
    # red pages the supervisor at once, as for any red raise; the lead hears of it too
    assert change.escalation is not None and change.escalation.raised
    assert staff.supervisor in change.escalation.paged and lead in change.escalation.paged
    assert {p.counsellor_id for p in await pages(sessions, case_id, reason="case_raised")} == {
        lead,
        staff.supervisor,
    }
    # the escalation's own entry says where the raise came from, in codes
    [escalated] = await audit_entries(sessions, "case_raised", conversation_id)
    assert escalated.detail["origin"] == "counsellor"
    assert escalated.detail["reason"] == "counsellor:level_change"
    assert escalated.detail["level"] == "red"
    # and the counsellor's: who, before, after, which note holds the reason
    [entry] = await audit_entries(sessions, "level_raised", conversation_id)
    assert entry.actor == f"counsellor:{lead}"
    assert entry.detail == {"case_id": case_id, "before": "orange", "after": "red", "note_id": change.note_id}
    no_words(await audit_entries(sessions), REASON, "测试原因")

    [stored] = await _stored_notes(sessions)
    looks_encrypted(stored, REASON)
    async with sessions() as session:
        note = await session.get_one(Note, change.note_id)
    assert (note.case_id, note.author_id, note.body) == (case_id, lead, REASON)


async def test_raising_yellow_to_orange_staffs_the_case_three_and_opens_the_family_task(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    _, case_id = await open_case(sessions, "yellow", now=now, origin="checkin")
    assert len(await assignments(sessions, case_id)) == level_spec("yellow").staffing.staff == 2
    assert await family_tasks(sessions, case_id) == []

    await _change_level(sessions, case_id, staff.volunteers[0], "orange")

    staffed = await assignments(sessions, case_id)
    assert len(staffed) == level_spec("orange").staffing.staff == 3
    assert set(staffed) == {AssignmentRole.LEAD, AssignmentRole.SECOND, AssignmentRole.THIRD}
    [task] = await family_tasks(sessions, case_id)  # 三包一: the family is brought in
    assert task.status == "due"
    # orange's first check-in is due within a day, sooner than yellow's week
    [check_in] = [f for f in await follow_ups(sessions, case_id, "check_in") if f.done_at is None]
    assert check_in.due_at <= datetime.now(UTC) + timedelta(days=1, minutes=1)


# ---------------------------------------------------------------- lowering


async def test_lowering_is_its_own_audited_action_and_pages_nobody(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    conversation_id, case_id = await open_case(sessions, "orange", now=now)
    before = await get_case(sessions, case_id)
    pages_before = len(await pages(sessions, case_id))
    volunteer = staff.volunteers[1]
    change = await _change_level(sessions, case_id, volunteer, "yellow")

    lowered = await get_case(sessions, case_id)
    assert (lowered.level, lowered.level_rank) == ("yellow", 1)
    assert change.escalation is None
    # a lower level loosens no clock and takes nobody off the case
    assert (lowered.claim_by, lowered.respond_by) == (before.claim_by, before.respond_by)
    assert len(await assignments(sessions, case_id)) == 3
    assert len(await pages(sessions, case_id)) == pages_before
    assert await audit_entries(sessions, "case_raised") == []
    [entry] = await audit_entries(sessions, "level_lowered", conversation_id)
    assert entry.actor == f"counsellor:{volunteer}"
    assert entry.detail == {
        "case_id": case_id,
        "before": "orange",
        "after": "yellow",
        "note_id": change.note_id,
    }
    [stored] = await _stored_notes(sessions)
    looks_encrypted(stored, REASON)


async def test_only_a_supervisor_lowers_a_red_case(sessions: Sessions, staff: Staff, now: datetime) -> None:
    conversation_id, case_id = await open_case(sessions, "red", now=now)
    with pytest.raises(CaseError, match="^needs_supervisor$"):
        await _change_level(sessions, case_id, staff.volunteers[0], "orange")
    await _unchanged(sessions, case_id, "red")

    change = await _change_level(sessions, case_id, staff.supervisor, "orange", may_lower_red=True)
    assert (await get_case(sessions, case_id)).level == "orange"
    [entry] = await audit_entries(sessions, "level_lowered", conversation_id)
    assert entry.actor == f"counsellor:{staff.supervisor}"
    assert entry.detail["before"] == "red" and entry.detail["note_id"] == change.note_id


async def test_a_level_read_before_an_escalation_raised_it_lowers_nothing(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    """A volunteer's page showed orange; a red message raised the case meanwhile. Their lowering, made
    from what they read, must not pull a red case down without a supervisor."""
    conversation_id, case_id = await open_case(sessions, "orange", now=now)
    async with sessions() as stale:
        seen = await stale.get_one(Case, case_id)  # held: the session's identity map keeps it as read
        assert seen.level == "orange"
        await stale.commit()  # gives the connection back (SQLite has one a process); the object stays
        assert (await escalate(sessions, conversation_id, "red", now=now)).raised
        with pytest.raises(CaseError, match="^level_moved$"):
            await cases.change_level(
                stale, case_id, staff.volunteers[0], "yellow", REASON, may_lower_red=False
            )
    await _unchanged(sessions, case_id, "red")


# ---------------------------------------------------------------- what a level change refuses


@pytest.mark.parametrize("reason", ["", "   \n "])
async def test_a_level_change_needs_a_reason(
    sessions: Sessions, staff: Staff, now: datetime, reason: str
) -> None:
    _, case_id = await open_case(sessions, "orange", now=now)
    with pytest.raises(ValueError, match="reason"):
        await _change_level(sessions, case_id, staff.volunteers[0], "red", reason)
    await _unchanged(sessions, case_id, "orange")


async def test_a_level_that_does_not_exist_or_does_not_change_is_refused(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    _, case_id = await open_case(sessions, "orange", now=now)
    with pytest.raises(ValueError):
        await _change_level(sessions, case_id, staff.volunteers[0], "purple", may_lower_red=True)
    with pytest.raises(CaseError, match="^same_level$"):
        await _change_level(sessions, case_id, staff.volunteers[0], "orange", may_lower_red=True)
    with pytest.raises(CaseError, match="^no_case$"):
        await _change_level(sessions, case_id + 99, staff.volunteers[0], "red", may_lower_red=True)
    assert await count(sessions, Note) == 0
    assert await audit_entries(sessions, "level_raised") == []


async def test_a_closed_case_refuses_level_changes_and_new_plans(
    sessions: Sessions, staff: Staff, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("records.cases.entries", lambda: (SCHOOL_ROOM,))
    _, case_id = await open_case(sessions, "orange", now=now)
    worker = staff.volunteers[0]
    async with sessions() as session:
        await cases.close(session, case_id, worker, "resolved")
    plans = [
        lambda s: cases.change_level(s, case_id, worker, "red", REASON, may_lower_red=True),
        lambda s: cases.change_level(s, case_id, worker, "yellow", REASON, may_lower_red=True),
        lambda s: cases.add_follow_up(s, case_id, worker, date(2026, 3, 9), WHAT),
        lambda s: cases.refer(s, case_id, worker, SCHOOL_ROOM.id, follow_up_on=date(2026, 3, 9)),
        lambda s: cases.plan_return_to_school(s, case_id, worker, date(2026, 3, 2)),
    ]
    before = len(await follow_ups(sessions, case_id))
    for plan in plans:
        async with sessions() as session:
            with pytest.raises(CaseError, match="^closed$"):
                await plan(session)
    closed = await get_case(sessions, case_id)
    assert (closed.level, closed.status) == ("orange", "closed")
    assert len(await follow_ups(sessions, case_id)) == before
    assert await count(sessions, Note) == 0 and await count(sessions, Referral) == 0


# ---------------------------------------------------------------- follow-ups


async def test_a_counsellor_adds_a_dated_follow_up_and_marks_it_done_once(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    conversation_id, case_id = await open_case(sessions, "orange", now=now)
    worker = staff.volunteers[2]
    async with sessions() as session:
        added = await cases.add_follow_up(session, case_id, worker, date(2026, 3, 9), f"  {WHAT}  ")

    async with sessions() as session:
        stored = await session.get_one(FollowUp, added.id)
    assert (stored.case_id, stored.kind, stored.what, stored.done_at) == (case_id, "check_in", WHAT, None)
    assert stored.due_at == datetime(2026, 3, 8, 16, 0, tzinfo=UTC)  # 9 March, 00:00 in China
    [entry] = await audit_entries(sessions, "follow_up_added", conversation_id)
    assert entry.actor == f"counsellor:{worker}"
    assert entry.detail == {
        "case_id": case_id,
        "follow_up_id": added.id,
        "kind": "check_in",
        "due_on": "2026-03-09",
    }
    no_words(await audit_entries(sessions), WHAT, "测试回访")

    async with sessions() as session:
        done = await cases.complete_follow_up(session, added.id, worker)
    assert done.done_by == worker and done.done_at is not None
    async with sessions() as session:
        with pytest.raises(CaseError, match="^already_done$"):
            await cases.complete_follow_up(session, added.id, staff.volunteers[0])
    async with sessions() as session:
        again = await session.get_one(FollowUp, added.id)
    assert (again.done_by, again.done_at) == (worker, done.done_at)
    assert len(await audit_entries(sessions, "follow_up_done")) == 1
    async with sessions() as session:
        with pytest.raises(CaseError, match="^no_follow_up$"):
            await cases.complete_follow_up(session, added.id + 999, worker)


async def test_a_raise_books_the_protocols_check_in_and_leaves_a_counsellors_own_alone(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    conversation_id, case_id = await open_case(sessions, "orange", now=now)
    [protocol_check_in] = await follow_ups(sessions, case_id, "check_in")
    async with sessions() as session:
        await cases.complete_follow_up(session, protocol_check_in.id, staff.volunteers[0])
        mine = await cases.add_follow_up(
            session, case_id, staff.volunteers[0], (now + timedelta(days=20)).date(), WHAT
        )
    await escalate(sessions, conversation_id, "red", now=now + timedelta(minutes=1))
    after = {f.id: f for f in await follow_ups(sessions, case_id, "check_in")}
    assert after[mine.id].due_at == mine.due_at  # the counsellor's date stands
    [new_check_in] = [f for i, f in after.items() if i not in (mine.id, protocol_check_in.id)]
    assert new_check_in.what is None and new_check_in.done_at is None  # red books its own check-in


@pytest.mark.parametrize("what", ["", "   ", "字" * 201])
async def test_a_follow_up_says_what_to_do_in_at_most_200_characters(
    sessions: Sessions, staff: Staff, now: datetime, what: str
) -> None:
    _, case_id = await open_case(sessions, "orange", now=now)
    before = len(await follow_ups(sessions, case_id))
    async with sessions() as session:
        with pytest.raises(ValueError):
            await cases.add_follow_up(session, case_id, staff.volunteers[0], date(2026, 3, 9), what)
    assert len(await follow_ups(sessions, case_id)) == before


# ---------------------------------------------------------------- referrals, as the console lists them


def test_the_directory_offers_only_places_that_take_referrals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("records.cases.entries", lambda: (HOTLINE_ONLY, SCHOOL_ROOM))
    assert cases.referral_places() == (SCHOOL_ROOM,)
    assert cases.directory_entry(HOTLINE_ONLY.id) == HOTLINE_ONLY
    assert cases.directory_entry("nowhere") is None


@pytest.mark.parametrize(
    ("status", "allowed"),
    [
        ("proposed", ["accepted", "closed"]),
        ("accepted", ["attended", "closed"]),
        ("attended", ["closed"]),
        ("closed", []),
        ("unknown", []),
    ],
)
def test_a_referral_only_moves_forward(status: str, allowed: list[str]) -> None:
    assert cases.next_statuses(status) == allowed
