"""The console's care-plan API through the real app (sanic-testing's ASGI client) and the real store, on
SQLite and PostgreSQL: level changes (a raise pages as the protocol says, lowering red needs a
supervisor, the reason is an encrypted note, the audit log holds codes only), referrals from the
directory, the family contact, follow-ups, the return-to-school plan, and who may do any of it."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from records.cases import CHINA_TIME
from records.models import AuditEntry, Case, FollowUp, Note, OutboxItem, Referral
from tests.records.support import HOTLINE_ONLY, SCHOOL_ROOM, looks_encrypted, no_words
from tests.unit.console_client import Console, Sessions, console_for
from triage_protocols import load_protocol

ORANGE = "我有时候会想，要是我消失了就好了"
REASON = "测试原因：学生说刀片还在抽屉里，今晚一个人在家。"
SUMMARY = "测试摘要：妈妈接了电话，答应今晚陪着孩子。"
WHAT = "测试回访：周五问问睡眠情况"


def _day(days_from_today: int) -> str:
    return (datetime.now(CHINA_TIME).date() + timedelta(days=days_from_today)).isoformat()


@pytest.fixture
def console(database_url: str, sessions: Sessions, monkeypatch: pytest.MonkeyPatch) -> Console:
    # the shipped regional file has no place that takes referrals: made-up ones stand in
    monkeypatch.setattr("records.cases.entries", lambda: (HOTLINE_ONLY, SCHOOL_ROOM))
    return console_for(database_url, sessions, "care")


# ---------------------------------------------------------------- the risk level


async def test_raising_a_case_to_red_pages_as_the_protocol_says_and_audits_codes_only(
    console: Console,
) -> None:
    conversation, case_id, lead, _ = await console.start(ORANGE)
    who = await console.sign_in(lead)
    assert (await console.read(case_id, who))["case"]["level"] == "orange"
    supervisor_id, lead_id = console.ids["s1"], console.ids[lead]

    raised = await console.post(
        f"/console/api/cases/{case_id}/level", who, {"level": "red", "reason": REASON}
    )
    assert raised.status == 200, raised.json
    assert (raised.json["before"], raised.json["level"]) == ("orange", "red")
    # red pages the supervisor at once (and the lead), through the outbox like any red raise
    assert {supervisor_id, lead_id} <= set(raised.json["paged"])
    async with console.sessions() as session:
        outbox = list(await session.scalars(select(OutboxItem).where(OutboxItem.case_id == case_id)))
    raise_pages = {i.counsellor_id for i in outbox if i.payload.get("reason") == "case_raised"}
    assert raise_pages == set(raised.json["paged"])
    assert all(i.payload.get("level") == "red" for i in outbox if i.payload.get("reason") == "case_raised")

    [escalated] = await console.audit("case_raised")
    assert escalated.detail["origin"] == "counsellor"
    assert escalated.detail["reason"] == "counsellor:level_change"
    [entry] = await console.audit("level_raised")
    assert entry.actor == f"counsellor:{lead_id}" and entry.subject == conversation
    assert entry.detail == {
        "case_id": case_id,
        "before": "orange",
        "after": "red",
        "note_id": raised.json["note_id"],
    }
    async with console.sessions() as session:
        everything = list(await session.scalars(select(AuditEntry)))
    no_words(everything, REASON, "测试原因")

    [stored] = await console.raw("SELECT body FROM note")
    looks_encrypted(stored, REASON)
    read = await console.read(case_id, who)
    assert read["case"]["level"] == "red"
    [note] = read["notes"]
    assert note["body"] == REASON and note["id"] == raised.json["note_id"]
    assert note["level_change"] == {"before": "orange", "after": "red"}


async def test_a_volunteer_cannot_lower_a_red_case_and_a_supervisor_can(console: Console) -> None:
    _, case_id, lead, _ = await console.start()
    volunteer = await console.sign_in(lead)
    refused = await console.post(
        f"/console/api/cases/{case_id}/level", volunteer, {"level": "orange", "reason": REASON}
    )
    assert (refused.status, refused.json) == (403, {"error": "needs_supervisor"})
    assert (await console.read(case_id, volunteer))["case"]["level"] == "red"
    assert await console.count(Note) == 0 and await console.audit("level_lowered") == []

    supervisor = await console.sign_in("s1")
    lowered = await console.post(
        f"/console/api/cases/{case_id}/level", supervisor, {"level": "orange", "reason": REASON}
    )
    assert lowered.status == 200, lowered.json
    assert (lowered.json["before"], lowered.json["level"], lowered.json["paged"]) == ("red", "orange", [])
    read = await console.read(case_id, volunteer)
    assert read["case"]["level"] == "orange"
    assert [n["level_change"] for n in read["notes"]] == [{"before": "red", "after": "orange"}]
    [entry] = await console.audit("level_lowered")
    assert entry.actor == f"counsellor:{console.ids['s1']}"
    assert entry.detail == {
        "case_id": case_id,
        "before": "red",
        "after": "orange",
        "note_id": lowered.json["note_id"],
    }

    # below red, the volunteer may lower it further
    again = await console.post(
        f"/console/api/cases/{case_id}/level", volunteer, {"level": "yellow", "reason": REASON}
    )
    assert again.status == 200 and again.json["level"] == "yellow"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"level": "red"}, 400, "empty"),
        ({"level": "yellow", "reason": "   "}, 400, "empty"),
        ({"level": "yellow", "reason": 42}, 400, "bad_request"),
        ({"level": "yellow", "reason": "字" * 4001}, 400, "too_long"),
        ({"level": "purple", "reason": REASON}, 400, "bad_level"),
        ({"reason": REASON}, 400, "bad_level"),
        ({"level": "orange", "reason": REASON}, 409, "same_level"),
    ],
)
async def test_a_level_change_needs_a_real_level_and_a_reason(
    console: Console, body: dict[str, Any], status: int, code: str
) -> None:
    _, case_id, _, _ = await console.start(ORANGE)
    response = await console.post(f"/console/api/cases/{case_id}/level", await console.sign_in("s1"), body)
    assert (response.status, response.json) == (status, {"error": code})
    assert await console.count(Note) == 0
    async with console.sessions() as session:
        assert (await session.get_one(Case, case_id)).level == "orange"


async def test_a_closed_case_refuses_a_level_change_and_new_plans(console: Console) -> None:
    _, case_id, lead, _ = await console.start()
    who = await console.sign_in(lead)
    assert (
        await console.post(f"/console/api/cases/{case_id}/close", who, {"outcome": "resolved"})
    ).status == 200
    for path, body in [
        ("level", {"level": "orange", "reason": REASON}),
        ("follow-ups", {"due_on": _day(2), "what": WHAT}),
        ("referrals", {"entry_id": SCHOOL_ROOM.id, "follow_up_on": _day(7)}),
        ("return-to-school", {"first_day": _day(3)}),
    ]:
        response = await console.post(f"/console/api/cases/{case_id}/{path}", who, body)
        assert (response.status, response.json) == (409, {"error": "closed"}), path
    assert await console.count(Note) == 0 and await console.count(Referral) == 0


# ---------------------------------------------------------------- referrals


async def test_the_directory_lists_only_places_that_take_referrals(console: Console) -> None:
    await console.start()
    response = await console.get("/console/api/directory", await console.sign_in("v1"))
    assert response.status == 200
    assert response.json["entries"] == [
        {
            "id": SCHOOL_ROOM.id,
            "name": SCHOOL_ROOM.name,
            "kind": "school_counselling_room",
            "region": "regional",
            "number": SCHOOL_ROOM.number,
            "hours": SCHOOL_ROOM.hours,
        }
    ]
    signed_out = await console.get("/console/api/directory", {})
    assert signed_out.status == 401


async def test_a_referral_goes_to_a_place_that_takes_referrals_and_only_moves_forward(
    console: Console,
) -> None:
    conversation, case_id, lead, _ = await console.start()
    who = await console.sign_in(lead)
    path = f"/console/api/cases/{case_id}/referrals"
    for body, code in [
        ({"entry_id": HOTLINE_ONLY.id, "follow_up_on": _day(7)}, "not_for_referral"),
        ({"entry_id": "no_such_place", "follow_up_on": _day(7)}, "not_for_referral"),
        ({"follow_up_on": _day(7)}, "bad_request"),
        ({"entry_id": SCHOOL_ROOM.id, "follow_up_on": "9 March"}, "bad_date"),
        ({"entry_id": SCHOOL_ROOM.id, "follow_up_on": "2026-02-30"}, "bad_date"),
        ({"entry_id": SCHOOL_ROOM.id, "follow_up_on": _day(-1)}, "date_out_of_range"),
        ({"entry_id": SCHOOL_ROOM.id, "follow_up_on": _day(400)}, "date_out_of_range"),
    ]:
        refused = await console.post(path, who, body)
        assert (refused.status, refused.json) == (400, {"error": code}), body
    assert await console.count(Referral) == 0

    made = await console.post(path, who, {"entry_id": SCHOOL_ROOM.id, "follow_up_on": _day(7)})
    assert made.status == 201, made.json
    referral_id = made.json["id"]
    read = await console.read(case_id, who)
    [referral] = read["referrals"]
    assert (referral["id"], referral["entry_id"], referral["entry_name"]) == (
        referral_id,
        SCHOOL_ROOM.id,
        SCHOOL_ROOM.name,
    )
    assert (referral["status"], referral["next"]) == ("proposed", ["accepted", "closed"])
    [check] = [f for f in read["follow_ups"] if f["kind"] == "referral"]
    assert check["referral_id"] == referral_id and check["done_at"] is None
    [entry] = await console.audit("referral_proposed")
    assert entry.subject == conversation and entry.detail["entry_id"] == SCHOOL_ROOM.id

    status = f"/console/api/referrals/{referral_id}/status"
    skipped = await console.post(status, who, {"status": "attended"})
    assert (skipped.status, skipped.json) == (409, {"error": "referral_order"})
    bogus = await console.post(status, who, {"status": "declined"})
    assert (bogus.status, bogus.json) == (400, {"error": "bad_status"})
    accepted = await console.post(status, who, {"status": "accepted"})
    assert accepted.status == 200 and accepted.json["next"] == ["attended", "closed"]
    back = await console.post(status, who, {"status": "proposed"})
    assert (back.status, back.json) == (409, {"error": "referral_order"})
    missing = await console.post("/console/api/referrals/99999/status", who, {"status": "accepted"})
    assert (missing.status, missing.json) == (404, {"error": "no_referral"})

    [referral] = (await console.read(case_id, who))["referrals"]
    assert (referral["status"], referral["next"]) == ("accepted", ["attended", "closed"])
    assert [(e.detail["before"], e.detail["after"]) for e in await console.audit("referral_status")] == [
        ("proposed", "accepted")
    ]


# ---------------------------------------------------------------- the family, follow-ups, school


async def test_the_family_contact_is_recorded_and_its_summary_encrypted(console: Console) -> None:
    _, case_id, lead, _ = await console.start()
    who = await console.sign_in(lead)
    [task] = (await console.read(case_id, who))["family_contacts"]
    assert task["status"] == "due" and task["due_by"] is not None
    assert (task["relation"], task["summary"], task["contacted_at"]) == (None, None, None)

    path = f"/console/api/cases/{case_id}/family-contact"
    for body, code in [
        ({"status": "due"}, "bad_status"),
        ({}, "bad_status"),
        ({"status": "done", "relation": "母" * 33}, "too_long"),
        ({"status": "done", "summary": ["a list"]}, "bad_request"),
    ]:
        refused = await console.post(path, who, body)
        assert (refused.status, refused.json) == (400, {"error": code}), body

    done = await console.post(path, who, {"status": "done", "relation": " 母亲 ", "summary": SUMMARY})
    assert done.status == 201, done.json
    [contact] = (await console.read(case_id, who))["family_contacts"]
    assert (contact["id"], contact["status"], contact["relation"], contact["summary"]) == (
        task["id"],
        "done",
        "母亲",
        SUMMARY,
    )
    assert contact["contacted_at"] is not None and contact["due_by"] == task["due_by"]
    [stored] = await console.raw("SELECT summary FROM family_contact")
    looks_encrypted(stored, SUMMARY)
    [entry] = await console.audit("family_contact")
    assert entry.detail == {"case_id": case_id, "family_contact_id": task["id"], "status": "done"}
    no_words([entry], SUMMARY, "母亲")


async def test_a_follow_up_is_added_and_marked_done_once(console: Console) -> None:
    _, case_id, lead, _ = await console.start()
    who = await console.sign_in(lead)
    path = f"/console/api/cases/{case_id}/follow-ups"
    for body, code in [
        ({"due_on": _day(3)}, "empty"),
        ({"due_on": _day(3), "what": "字" * 201}, "too_long"),
        ({"due_on": "2026/03/09", "what": WHAT}, "bad_date"),
        ({"due_on": _day(-2), "what": WHAT}, "date_out_of_range"),
    ]:
        refused = await console.post(path, who, body)
        assert (refused.status, refused.json) == (400, {"error": code}), body
    before = await console.count(FollowUp, FollowUp.case_id == case_id)
    assert before == 1  # the protocol's first check-in

    added = await console.post(path, who, {"due_on": _day(3), "what": WHAT})
    assert added.status == 201, added.json
    follow_up_id = added.json["id"]
    mine = next(f for f in (await console.read(case_id, who))["follow_ups"] if f["id"] == follow_up_id)
    assert (mine["kind"], mine["what"], mine["done"], mine["done_at"]) == ("check_in", WHAT, False, None)
    due = datetime.fromisoformat(mine["due_at"]).astimezone(CHINA_TIME)
    assert (due.date(), due.hour, due.minute) == (date.fromisoformat(_day(3)), 0, 0)
    [entry] = await console.audit("follow_up_added")
    assert entry.detail["follow_up_id"] == follow_up_id and entry.detail["due_on"] == _day(3)
    no_words([entry], WHAT)

    done = await console.post(f"/console/api/follow-ups/{follow_up_id}/done", who)
    assert done.status == 200 and done.json["done_at"] is not None
    mine = next(f for f in (await console.read(case_id, who))["follow_ups"] if f["id"] == follow_up_id)
    assert mine["done"] is True and mine["done_at"] == done.json["done_at"]
    twice = await console.post(f"/console/api/follow-ups/{follow_up_id}/done", who)
    assert (twice.status, twice.json) == (409, {"error": "already_done"})
    missing = await console.post("/console/api/follow-ups/99999/done", who)
    assert (missing.status, missing.json) == (404, {"error": "no_follow_up"})


async def test_the_return_to_school_plan_creates_the_protocols_steps(console: Console) -> None:
    conversation, case_id, lead, _ = await console.start()
    who = await console.sign_in(lead)
    path = f"/console/api/cases/{case_id}/return-to-school"
    for body, code in [({}, "bad_date"), ({"first_day": _day(-45)}, "date_out_of_range")]:
        refused = await console.post(path, who, body)
        assert (refused.status, refused.json) == (400, {"error": code}), body

    planned = await console.post(path, who, {"first_day": _day(5)})
    assert planned.status == 201, planned.json
    plan = load_protocol().follow_up_plans["return_to_school"]
    steps = [f for f in (await console.read(case_id, who))["follow_ups"] if f["kind"] == "return_to_school"]
    assert [f["what"] for f in steps] == [step.what for step in plan]
    assert [f["id"] for f in steps] == planned.json["follow_up_ids"]
    first_day = date.fromisoformat(_day(5))
    assert [datetime.fromisoformat(f["due_at"]).astimezone(CHINA_TIME).date() for f in steps] == [
        first_day + timedelta(days=step.after_days) for step in plan
    ]
    [entry] = await console.audit("return_to_school_planned")
    assert entry.subject == conversation and entry.detail["steps"] == len(plan)


# ---------------------------------------------------------------- who may


async def _something_of_each(console: Console, case_id: int, lead: str) -> tuple[int, int]:
    """A referral and a follow-up on the case, made by its lead: (referral id, follow-up id)."""
    who = await console.sign_in(lead)
    referral = await console.post(
        f"/console/api/cases/{case_id}/referrals", who, {"entry_id": SCHOOL_ROOM.id, "follow_up_on": _day(7)}
    )
    follow_up = await console.post(
        f"/console/api/cases/{case_id}/follow-ups", who, {"due_on": _day(2), "what": WHAT}
    )
    assert referral.status == follow_up.status == 201
    return referral.json["id"], follow_up.json["id"]


def _every_post(case_id: int, referral_id: int, follow_up_id: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"/console/api/cases/{case_id}/level", {"level": "yellow", "reason": REASON}),
        (f"/console/api/cases/{case_id}/level", {"level": "red", "reason": REASON}),
        (f"/console/api/cases/{case_id}/referrals", {"entry_id": SCHOOL_ROOM.id, "follow_up_on": _day(7)}),
        (f"/console/api/referrals/{referral_id}/status", {"status": "accepted"}),
        (f"/console/api/cases/{case_id}/family-contact", {"status": "done", "summary": SUMMARY}),
        (f"/console/api/cases/{case_id}/follow-ups", {"due_on": _day(2), "what": WHAT}),
        (f"/console/api/follow-ups/{follow_up_id}/done", {}),
        (f"/console/api/cases/{case_id}/return-to-school", {"first_day": _day(3)}),
    ]


async def _nothing_changed(console: Console, case_id: int, level: str) -> None:
    async with console.sessions() as session:
        case = await session.get_one(Case, case_id)
        referral = await session.scalar(select(Referral).where(Referral.case_id == case_id))
        done = await session.scalar(select(func.count()).where(FollowUp.done_at.is_not(None)))
    assert case.level == level
    assert referral is not None and referral.status == "proposed"
    assert done == 0
    assert await console.count(Note) == 0 and await console.count(Referral) == 1
    assert await console.count(FollowUp, FollowUp.kind == "return_to_school") == 0
    for action in ("level_raised", "level_lowered", "family_contact", "follow_up_done", "referral_status"):
        assert await console.audit(action) == [], action


async def test_a_volunteer_not_assigned_is_refused_every_care_route(console: Console) -> None:
    _, case_id, lead, outsider = await console.start(ORANGE)
    referral_id, follow_up_id = await _something_of_each(console, case_id, lead)
    follow_ups_before = await console.count(FollowUp)
    who = await console.sign_in(outsider)
    for path, body in _every_post(case_id, referral_id, follow_up_id):
        response = await console.post(path, who, body)
        assert (response.status, response.json) == (403, {"error": "forbidden"}), path
    await _nothing_changed(console, case_id, "orange")
    assert await console.count(FollowUp) == follow_ups_before


@pytest.mark.parametrize("token", ["forged", None])
async def test_every_care_post_needs_the_csrf_token(console: Console, token: str | None) -> None:
    _, case_id, lead, _ = await console.start(ORANGE)
    referral_id, follow_up_id = await _something_of_each(console, case_id, lead)
    follow_ups_before = await console.count(FollowUp)
    who = await console.sign_in(lead)
    if token is None:
        del who["X-CSRF-Token"]
    else:
        who["X-CSRF-Token"] = token
    for path, body in _every_post(case_id, referral_id, follow_up_id):
        response = await console.post(path, who, body)
        assert (response.status, response.json) == (403, {"error": "csrf"}), path
    await _nothing_changed(console, case_id, "orange")
    assert await console.count(FollowUp) == follow_ups_before
