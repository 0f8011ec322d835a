"""What staff do to a case: claim, close, notes (encrypted at rest), referrals, follow-up plans, the family."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest
from sqlalchemy import text

from records import cases
from records.cases import CaseError
from records.models import (
    AssignmentRole,
    CaseStatus,
    FamilyContact,
    FamilyContactStatus,
    Note,
    Referral,
    ReferralStatus,
)
from tests.records.conftest import (
    Sessions,
    Staff,
    assignments,
    audit_entries,
    count,
    family_tasks,
    follow_ups,
    get_case,
    open_case,
)
from tests.records.support import HOTLINE_ONLY, SCHOOL_ROOM, looks_encrypted
from triage_protocols import load_protocol

CHINA = timezone(timedelta(hours=8))
NOTE = "测试记录：学生同意明天上午再聊一次，已给出12356。"
SUMMARY = "测试摘要：已与家长通话，家长同意陪同就诊。"


@pytest.fixture
async def case(sessions: Sessions, staff: Staff, now: datetime) -> tuple[str, int]:
    """An orange case: three staff, a family-contact task, a check-in tomorrow."""
    return await open_case(sessions, "orange", now=now)


@pytest.fixture
def directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped regional file has no entries that take referrals; these made-up ones stand in."""
    monkeypatch.setattr("records.cases.entries", lambda: (HOTLINE_ONLY, SCHOOL_ROOM))


# ---------------------------------------------------------------- claim and close


async def test_a_claim_holds_the_case_and_stops_the_clock(
    sessions: Sessions, staff: Staff, case: tuple[str, int], now: datetime
) -> None:
    conversation_id, case_id = case
    lead = (await assignments(sessions, case_id))[AssignmentRole.LEAD]
    async with sessions() as session:
        assert await cases.claim(session, case_id, lead, now=now + timedelta(seconds=90)) is True

    claimed = await get_case(sessions, case_id)
    assert claimed.status == CaseStatus.CLAIMED
    assert (claimed.claimed_by, claimed.claimed_at) == (lead, now + timedelta(seconds=90))
    assert claimed.next_escalation_at is None
    [entry] = await audit_entries(sessions, "case_claimed", conversation_id)
    assert entry.actor == f"counsellor:{lead}"
    assert entry.detail == {"case_id": case_id, "waited_seconds": 90}

    other = staff.volunteers[4]
    async with sessions() as session:
        assert await cases.claim(session, case_id, other, now=now + timedelta(minutes=5)) is False
    assert (await get_case(sessions, case_id)).claimed_by == lead
    assert len(await audit_entries(sessions, "case_claimed")) == 1


async def test_a_closed_case_cannot_be_claimed(
    sessions: Sessions, staff: Staff, case: tuple[str, int], now: datetime
) -> None:
    _, case_id = case
    async with sessions() as session:
        await cases.close(session, case_id, staff.volunteers[0], "resolved")
    async with sessions() as session:
        assert await cases.claim(session, case_id, staff.volunteers[1], now=now) is False
    closed = await get_case(sessions, case_id)
    assert closed.status == CaseStatus.CLOSED and closed.claimed_by is None


async def test_close_records_the_outcome_once(
    sessions: Sessions, staff: Staff, case: tuple[str, int], now: datetime
) -> None:
    conversation_id, case_id = case
    closer = staff.volunteers[0]
    before = datetime.now(UTC)
    async with sessions() as session:
        await cases.close(session, case_id, closer, "referred_and_attended")

    closed = await get_case(sessions, case_id)
    assert closed.status == CaseStatus.CLOSED and closed.outcome == "referred_and_attended"
    assert closed.closed_at is not None and before <= closed.closed_at <= datetime.now(UTC)
    assert closed.next_escalation_at is None
    [entry] = await audit_entries(sessions, "case_closed", conversation_id)
    assert entry.actor == f"counsellor:{closer}" and entry.detail["outcome"] == "referred_and_attended"

    async with sessions() as session:
        with pytest.raises(CaseError):
            await cases.close(session, case_id, closer, "again")
    assert (await get_case(sessions, case_id)).outcome == "referred_and_attended"
    async with sessions() as session:
        with pytest.raises(CaseError):
            await cases.close(session, case_id + 1000, closer, "no such case")


async def test_the_queue_shows_open_and_claimed_cases_most_serious_first(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    _, orange_old = await open_case(sessions, "orange", now=now - timedelta(minutes=30))
    _, orange_new = await open_case(sessions, "orange", now=now - timedelta(minutes=10))
    _, red = await open_case(sessions, "red", now=now)
    _, closed = await open_case(sessions, "red", now=now - timedelta(hours=1))
    async with sessions() as session:
        await cases.claim(session, orange_new, staff.volunteers[0], now=now)
        await cases.close(session, closed, staff.volunteers[0], "resolved")
    async with sessions() as session:
        assert [c.id for c in await cases.open_queue(session)] == [red, orange_old, orange_new]


# ---------------------------------------------------------------- notes


async def test_a_note_is_stored_encrypted_and_read_back_plain(
    sessions: Sessions, staff: Staff, case: tuple[str, int]
) -> None:
    conversation_id, case_id = case
    author = staff.volunteers[0]
    async with sessions() as session:
        note = await cases.add_note(session, case_id, author, NOTE)

    async with sessions() as session:
        [stored] = (await session.execute(text("SELECT body FROM note"))).scalars().all()
    looks_encrypted(stored, NOTE)

    async with sessions() as session:
        read = await session.get_one(Note, note.id)
    assert (read.body, read.case_id, read.author_id) == (NOTE, case_id, author)

    [entry] = await audit_entries(sessions, "note_added", conversation_id)
    assert entry.detail == {"case_id": case_id, "note_id": note.id}
    assert "测试记录" not in json.dumps(entry.detail, ensure_ascii=False)


async def test_a_note_on_a_case_that_does_not_exist_is_refused(sessions: Sessions, staff: Staff) -> None:
    async with sessions() as session:
        with pytest.raises(CaseError):
            await cases.add_note(session, 12345, staff.volunteers[0], NOTE)
    assert await count(sessions, Note) == 0


# ---------------------------------------------------------------- referrals


@pytest.mark.parametrize("entry_id", ["test_hotline", "no_such_place", "emergency_police"])
async def test_a_referral_only_goes_to_a_directory_entry_that_takes_referrals(
    sessions: Sessions, staff: Staff, case: tuple[str, int], directory: None, entry_id: str
) -> None:
    _, case_id = case
    async with sessions() as session:
        with pytest.raises(CaseError):
            await cases.refer(session, case_id, staff.volunteers[0], entry_id, follow_up_on=date(2026, 3, 9))
    assert await count(sessions, Referral) == 0
    assert await follow_ups(sessions, case_id, "referral") == []


async def test_a_referral_is_proposed_with_its_follow_up_date(
    sessions: Sessions, staff: Staff, case: tuple[str, int], directory: None
) -> None:
    conversation_id, case_id = case
    counsellor = staff.volunteers[1]
    async with sessions() as session:
        referral = await cases.refer(
            session, case_id, counsellor, SCHOOL_ROOM.id, follow_up_on=date(2026, 3, 9)
        )

    async with sessions() as session:
        stored = await session.get_one(Referral, referral.id)
    assert (stored.case_id, stored.entry_id, stored.entry_kind) == (
        case_id,
        SCHOOL_ROOM.id,
        "school_counselling_room",
    )
    assert stored.status == ReferralStatus.PROPOSED and stored.proposed_by == counsellor

    [follow_up] = await follow_ups(sessions, case_id, "referral")
    assert follow_up.referral_id == referral.id and follow_up.done_at is None
    # the start of 9 March in China time, which is 16:00 UTC on 8 March
    assert follow_up.due_at == datetime(2026, 3, 8, 16, 0, tzinfo=UTC)

    [entry] = await audit_entries(sessions, "referral_proposed", conversation_id)
    assert entry.detail == {"case_id": case_id, "referral_id": referral.id, "entry_id": SCHOOL_ROOM.id}


async def test_a_referral_moves_forward_through_its_statuses(
    sessions: Sessions, staff: Staff, case: tuple[str, int], directory: None
) -> None:
    _, case_id = case
    counsellor = staff.volunteers[0]
    async with sessions() as session:
        referral = await cases.refer(
            session, case_id, counsellor, SCHOOL_ROOM.id, follow_up_on=date(2026, 3, 9)
        )

    steps = [ReferralStatus.ACCEPTED, ReferralStatus.ATTENDED, ReferralStatus.CLOSED]
    for status in steps:
        async with sessions() as session:
            moved = await cases.set_referral_status(session, referral.id, counsellor, status)
        assert moved.status == status
    trail = await audit_entries(sessions, "referral_status")
    assert [(e.detail["before"], e.detail["after"]) for e in trail] == [
        ("proposed", "accepted"),
        ("accepted", "attended"),
        ("attended", "closed"),
    ]


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        (["accepted", "attended"], "proposed"),
        (["accepted", "attended"], "accepted"),
        ([], "attended"),
        (["closed"], "accepted"),
        (["accepted"], "accepted"),
        ([], "declined"),
    ],
)
async def test_a_referral_never_moves_backwards_or_skips(
    sessions: Sessions, staff: Staff, case: tuple[str, int], directory: None, path: list[str], refused: str
) -> None:
    _, case_id = case
    counsellor = staff.volunteers[0]
    async with sessions() as session:
        referral = await cases.refer(
            session, case_id, counsellor, SCHOOL_ROOM.id, follow_up_on=date(2026, 3, 9)
        )
    for status in path:
        async with sessions() as session:
            await cases.set_referral_status(session, referral.id, counsellor, status)

    async with sessions() as session:
        with pytest.raises(CaseError):
            await cases.set_referral_status(session, referral.id, counsellor, refused)
    async with sessions() as session:
        assert (await session.get_one(Referral, referral.id)).status == (path[-1] if path else "proposed")
    assert len(await audit_entries(sessions, "referral_status")) == len(path)


async def test_a_referral_can_be_closed_before_it_is_accepted(
    sessions: Sessions, staff: Staff, case: tuple[str, int], directory: None
) -> None:
    _, case_id = case
    async with sessions() as session:
        referral = await cases.refer(
            session, case_id, staff.volunteers[0], SCHOOL_ROOM.id, follow_up_on=date.today()
        )
    async with sessions() as session:
        closed = await cases.set_referral_status(session, referral.id, staff.volunteers[0], "closed")
    assert closed.status == ReferralStatus.CLOSED


# ---------------------------------------------------------------- follow-up plans and the family


async def test_the_return_to_school_plan_becomes_one_dated_follow_up_per_step(
    sessions: Sessions, staff: Staff, case: tuple[str, int]
) -> None:
    conversation_id, case_id = case
    plan = load_protocol().follow_up_plans["return_to_school"]
    assert len(plan) >= 2
    first_day = date(2026, 3, 2)
    async with sessions() as session:
        made = await cases.plan_return_to_school(session, case_id, staff.volunteers[0], first_day)
    assert len(made) == len(plan)

    stored = await follow_ups(sessions, case_id, "return_to_school")
    assert [(f.plan_step, f.what, f.due_at) for f in stored] == [
        (i, step.what, datetime.combine(first_day + timedelta(days=step.after_days), time(0), tzinfo=CHINA))
        for i, step in enumerate(plan)
    ]
    assert stored[0].due_at == datetime(2026, 3, 1, 16, 0, tzinfo=UTC)
    assert all(f.done_at is None for f in stored)
    [entry] = await audit_entries(sessions, "return_to_school_planned", conversation_id)
    assert entry.detail["steps"] == len(plan) and entry.detail["first_day"] == "2026-03-02"


async def test_recording_the_family_contact_completes_the_due_task_and_encrypts_the_summary(
    sessions: Sessions, staff: Staff, case: tuple[str, int]
) -> None:
    conversation_id, case_id = case
    [task] = await family_tasks(sessions, case_id)
    assert task.status == FamilyContactStatus.DUE
    counsellor = staff.volunteers[2]
    before = datetime.now(UTC)
    async with sessions() as session:
        contact = await cases.record_family_contact(
            session, case_id, counsellor, status=FamilyContactStatus.DONE, relation="母亲", summary=SUMMARY
        )
    assert contact.id == task.id

    [done] = await family_tasks(sessions, case_id)  # the task itself, not a second row
    assert (done.id, done.status, done.relation, done.counsellor_id, done.summary) == (
        task.id,
        FamilyContactStatus.DONE,
        "母亲",
        counsellor,
        SUMMARY,
    )
    assert done.contacted_at is not None and done.contacted_at >= before
    assert done.detail == task.detail  # the safety marking stays with the record

    async with sessions() as session:
        [stored] = (await session.execute(text("SELECT summary FROM family_contact"))).scalars().all()
    looks_encrypted(stored, SUMMARY)
    [entry] = await audit_entries(sessions, "family_contact", conversation_id)
    assert entry.detail == {"case_id": case_id, "family_contact_id": task.id, "status": "done"}


async def test_a_family_not_safe_to_contact_is_recorded_without_a_summary(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    _, case_id = await open_case(sessions, "red", now=now, signals=["abuse_physical.adult_hits"])
    async with sessions() as session:
        await cases.record_family_contact(
            session, case_id, staff.volunteers[0], status=FamilyContactStatus.NOT_SAFE
        )
    [task] = await family_tasks(sessions, case_id)
    assert task.status == FamilyContactStatus.NOT_SAFE and task.summary is None
    assert task.detail["check_safety_first"] is True
    assert await count(sessions, FamilyContact) == 1
