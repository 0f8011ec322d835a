"""The console's care-plan routes: risk level changes with a reason, referrals from the directory, the
family contact (三包一) and dated follow-ups, the return-to-school plan. JSON only; the page holds the words.

    GET  /console/api/directory                       places that take referrals: id, name, kind, region
    POST /console/api/cases/{id}/level                {level, reason}
    POST /console/api/cases/{id}/referrals            {entry_id, follow_up_on: "YYYY-MM-DD"}
    POST /console/api/referrals/{id}/status           {status}
    POST /console/api/cases/{id}/family-contact       {status, relation?, summary?}
    POST /console/api/cases/{id}/follow-ups           {due_on: "YYYY-MM-DD", what}
    POST /console/api/follow-ups/{id}/done
    POST /console/api/cases/{id}/return-to-school     {first_day: "YYYY-MM-DD"}

Who may: as for the case routes (`integrations/console/cases.py`): a volunteer on cases assigned to them or
held by them, supervisors and admins on every case; lowering a red case needs a supervisor or an admin.
Every POST carries the CSRF token (`require_counsellor`). Answers: 400 and a code for bad input, 403 for
a case that is not theirs, 404 for what does not exist, 409 and a code when the case's state refuses.
The store does the work and the auditing (`records/cases.py`); nothing here logs a word of a reason,
a summary or a follow-up.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sqlalchemy.ext.asyncio import AsyncSession

from integrations.console.auth import require_counsellor
from integrations.console.cases import body_of, case_for, error
from records import cases
from records.cases import CHINA_TIME, MAX_FOLLOW_UP_WHAT, SEES_EVERY_CASE, CaseError
from records.models import FamilyContactStatus, FollowUp, Referral, ReferralStatus
from triage_protocols import Level
from triage_protocols.directory import load_directory

console_care = Blueprint("console_care", url_prefix="/console/api")

MAX_TEXT_LENGTH = 4000  # a reason or a summary: the note box's length
MAX_RELATION_LENGTH = 32  # the column's length
PLAN_AHEAD = timedelta(days=366)  # no date further ahead than this: most likely a typing slip
BACK_AT_SCHOOL_SINCE = timedelta(days=30)  # a return to school may be written down up to a month late
FAMILY_OUTCOMES = frozenset(
    {FamilyContactStatus.DONE, FamilyContactStatus.NOT_SAFE, FamilyContactStatus.UNREACHABLE}
)
ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# The store's refusals (CaseError codes) that are not a 409 conflict with the case's state.
REFUSED_STATUS = {
    "no_case": 404,
    "no_referral": 404,
    "no_follow_up": 404,
    "needs_supervisor": 403,
    "not_for_referral": 400,
}


def _refused(refusal: CaseError) -> HTTPResponse:
    code = str(refusal)
    return error(code, REFUSED_STATUS.get(code, 409))


async def _on_case[T](
    request: Request,
    case: int | tuple[type[Referral | FollowUp], int],
    work: Callable[[AsyncSession], Awaitable[T]],
) -> T | HTTPResponse:
    """Runs `work` (a store call) in a session of its own once the counsellor may open the case: its
    result, or the answer to give instead (the case refused, or the store's refusal). `case` is the
    case's id, or (model, id) of a referral or a follow-up of it."""
    async with request.app.ctx.sessions() as session:
        if isinstance(case, tuple):
            model, row_id = case
            row = await session.get(model, row_id)
            if row is None:
                return error("no_referral" if model is Referral else "no_follow_up", 404)
            case = row.case_id
        found = await case_for(request, session, case)
        if isinstance(found, HTTPResponse):
            return found
        try:
            return await work(session)
        except CaseError as refused:
            return _refused(refused)


def _today() -> date:
    """Today where the line works (follow-ups are due at the start of a day in China time)."""
    return datetime.now(CHINA_TIME).date()


def _day(value: Any, *, earliest: date, latest: date) -> date | HTTPResponse:
    if not isinstance(value, str) or not ISO_DAY.match(value):
        return error("bad_date", 400)
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return error("bad_date", 400)
    if not earliest <= day <= latest:
        return error("date_out_of_range", 400)
    return day


def _ahead(value: Any) -> date | HTTPResponse:
    """A date to do something on: from today to a year ahead."""
    today = _today()
    return _day(value, earliest=today, latest=today + PLAN_AHEAD)


def _text(value: Any, limit: int, *, required: bool) -> str | None | HTTPResponse:
    """Stripped text within `limit`; None for an optional field left empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return error("empty", 400) if required else None
    if not isinstance(value, str):
        return error("bad_request", 400)
    if len(value.strip()) > limit:
        return error("too_long", 400)
    return value.strip()


@console_care.get("/directory")
@require_counsellor()
async def directory(_: Request) -> HTTPResponse:
    """The places a case may be referred to. `region`: national, or this deployment's regional file."""
    national = {entry.id for entry in load_directory()[0].entries}
    return json(
        {
            "entries": [
                {
                    "id": entry.id,
                    "name": entry.name,
                    "kind": entry.kind,
                    "region": "national" if entry.id in national else "regional",
                    "number": entry.number,
                    "hours": entry.hours,
                }
                for entry in cases.referral_places()
            ]
        }
    )


@console_care.post("/cases/<case_id:int>/level")
@require_counsellor()
async def change_level(request: Request, case_id: int) -> HTTPResponse:
    """Raises (through the protocol's escalation: staff, pages) or lowers the level, with a reason that
    is kept as an encrypted note. Lowering a red case needs a supervisor or an admin."""
    me = request.ctx.counsellor
    body = body_of(request)
    level = body.get("level")
    if not isinstance(level, str) or level not in {lv.value for lv in Level}:
        return error("bad_level", 400)
    reason = _text(body.get("reason"), MAX_TEXT_LENGTH, required=True)
    if isinstance(reason, HTTPResponse):
        return reason
    change = await _on_case(
        request,
        case_id,
        lambda session: cases.change_level(
            session, case_id, me.id, level, str(reason), may_lower_red=me.role in SEES_EVERY_CASE
        ),
    )
    if isinstance(change, HTTPResponse):
        return change
    paged: list[int] = []
    if change.escalation is not None and change.escalation.paged:
        paged = change.escalation.paged
        # as the switchboard does for a message: consoles hear at once, the outbox sends it durably
        request.app.ctx.alerts.announce(change.escalation)
        request.app.ctx.dispatcher.wake()
    return json(
        {
            "case_id": case_id,
            "before": change.before,
            "level": change.after,
            "note_id": change.note_id,
            "paged": paged,
        }
    )


@console_care.post("/cases/<case_id:int>/referrals")
@require_counsellor()
async def refer(request: Request, case_id: int) -> HTTPResponse:
    body = body_of(request)
    entry_id = body.get("entry_id")
    if not isinstance(entry_id, str) or not entry_id:
        return error("bad_request", 400)
    if entry_id not in {entry.id for entry in cases.referral_places()}:
        return error("not_for_referral", 400)
    follow_up_on = _ahead(body.get("follow_up_on"))
    if isinstance(follow_up_on, HTTPResponse):
        return follow_up_on
    referral = await _on_case(
        request,
        case_id,
        lambda session: cases.refer(
            session, case_id, request.ctx.counsellor.id, entry_id, follow_up_on=follow_up_on
        ),
    )
    if isinstance(referral, HTTPResponse):
        return referral
    return json({"id": referral.id, "status": referral.status}, status=201)


@console_care.post("/referrals/<referral_id:int>/status")
@require_counsellor()
async def referral_status(request: Request, referral_id: int) -> HTTPResponse:
    """Moves a referral forward: proposed → accepted → attended → closed (closed from any of them)."""
    status = body_of(request).get("status")
    if not isinstance(status, str) or status not in {s.value for s in ReferralStatus}:
        return error("bad_status", 400)
    moved = await _on_case(
        request,
        (Referral, referral_id),
        lambda session: cases.set_referral_status(session, referral_id, request.ctx.counsellor.id, status),
    )
    if isinstance(moved, HTTPResponse):
        return moved
    return json({"id": moved.id, "status": moved.status, "next": cases.next_statuses(moved.status)})


@console_care.post("/cases/<case_id:int>/family-contact")
@require_counsellor()
async def family_contact(request: Request, case_id: int) -> HTTPResponse:
    """Records the family contact (三包一): done, not safe to contact (abuse at home), or unreachable."""
    body = body_of(request)
    status = body.get("status")
    if not isinstance(status, str) or status not in FAMILY_OUTCOMES:
        return error("bad_status", 400)
    relation = _text(body.get("relation"), MAX_RELATION_LENGTH, required=False)
    if isinstance(relation, HTTPResponse):
        return relation
    summary = _text(body.get("summary"), MAX_TEXT_LENGTH, required=False)
    if isinstance(summary, HTTPResponse):
        return summary
    contact = await _on_case(
        request,
        case_id,
        lambda session: cases.record_family_contact(
            session,
            case_id,
            request.ctx.counsellor.id,
            status=FamilyContactStatus(status),
            relation=relation,
            summary=summary,
        ),
    )
    if isinstance(contact, HTTPResponse):
        return contact
    return json({"id": contact.id, "status": contact.status}, status=201)


@console_care.post("/cases/<case_id:int>/follow-ups")
@require_counsellor()
async def add_follow_up(request: Request, case_id: int) -> HTTPResponse:
    body = body_of(request)
    due_on = _ahead(body.get("due_on"))
    if isinstance(due_on, HTTPResponse):
        return due_on
    what = _text(body.get("what"), MAX_FOLLOW_UP_WHAT, required=True)
    if isinstance(what, HTTPResponse):
        return what
    follow_up = await _on_case(
        request,
        case_id,
        lambda session: cases.add_follow_up(session, case_id, request.ctx.counsellor.id, due_on, str(what)),
    )
    if isinstance(follow_up, HTTPResponse):
        return follow_up
    return json({"id": follow_up.id, "due_at": follow_up.due_at.isoformat()}, status=201)


@console_care.post("/follow-ups/<follow_up_id:int>/done")
@require_counsellor()
async def follow_up_done(request: Request, follow_up_id: int) -> HTTPResponse:
    done = await _on_case(
        request,
        (FollowUp, follow_up_id),
        lambda session: cases.complete_follow_up(session, follow_up_id, request.ctx.counsellor.id),
    )
    if isinstance(done, HTTPResponse):
        return done
    return json({"id": done.id, "done_at": done.done_at.isoformat() if done.done_at else None})


@console_care.post("/cases/<case_id:int>/return-to-school")
@require_counsellor()
async def return_to_school(request: Request, case_id: int) -> HTTPResponse:
    """The protocol's return-to-school plan, as dated follow-ups counted from the first day back."""
    today = _today()
    first_day = _day(
        body_of(request).get("first_day"), earliest=today - BACK_AT_SCHOOL_SINCE, latest=today + PLAN_AHEAD
    )
    if isinstance(first_day, HTTPResponse):
        return first_day
    steps = await _on_case(
        request,
        case_id,
        lambda session: cases.plan_return_to_school(session, case_id, request.ctx.counsellor.id, first_day),
    )
    if isinstance(steps, HTTPResponse):
        return steps
    return json({"case_id": case_id, "follow_up_ids": [f.id for f in steps]}, status=201)
