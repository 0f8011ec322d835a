"""The console's supervisor routes: the figures of the supervisor view, the counsellors a case can go to,
and reassigning one role of a case. Supervisors and admins only (a volunteer gets 403 forbidden).

    GET  /console/api/supervision/figures?days=14      records.reports.figures (days 1..90)
    GET  /console/api/supervision/counsellors          active counsellors: id, name, role, on shift
    POST /console/api/supervision/cases/<id>/reassign  {role, counsellor_id}

Errors are JSON codes: 400 bad_request or bad_role, 404 no_case, 403 forbidden, 409 for a case or counsellor that does
not allow it (closed, no_counsellor, already_in_role, already_on_case, conflict). A reassignment pages
the new counsellor through the outbox; the dispatcher is woken so the page, and with it the consoles'
live feed, goes out at once. The counsellor who left the role hears of it on the live feed
(`case_reassigned_away`, ids only), so their open case view says the case is someone else's now. The bot
is never resumed here: a held conversation stays held.
"""

from __future__ import annotations

import logging

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from integrations.console.auth import require_counsellor
from integrations.paging.senders import ReassignedAway
from integrations.request_body import MAX_ID, json_object
from records import reports, supervision
from records.cases import CaseError
from records.models import AssignmentRole, CounsellorRole, utcnow

log = logging.getLogger(__name__)

console_supervision = Blueprint("console_supervision", url_prefix="/console/api/supervision")

SUPERVISORS = (CounsellorRole.SUPERVISOR, CounsellorRole.ADMIN)
STATUS_OF = {"no_case": 404, "bad_role": 400, "forbidden": 403}  # every other refusal is 409


def _error(code: str, status: int) -> HTTPResponse:
    return json({"error": code}, status=status)


def _days(request: Request) -> int | None:
    raw = request.args.get("days")
    if raw is None:
        return reports.DEFAULT_DAYS
    if not raw.isascii() or not raw.isdigit() or len(raw) > 3:
        return None
    days = int(raw)
    return days if 1 <= days <= reports.MAX_DAYS else None


@console_supervision.get("/figures")
@require_counsellor(*SUPERVISORS)
async def figures(request: Request) -> HTTPResponse:
    days = _days(request)
    if days is None:
        return _error("bad_request", 400)
    async with request.app.ctx.sessions() as session:
        found = await reports.figures(session, days=days, now=utcnow())
    return json(found)


@console_supervision.get("/counsellors")
@require_counsellor(*SUPERVISORS)
async def counsellors(request: Request) -> HTTPResponse:
    async with request.app.ctx.sessions() as session:
        found = await reports.active_counsellors(session, now=utcnow())
    return json({"counsellors": found})


def _reassign_body(request: Request) -> tuple[str, int] | None:
    body = json_object(request)
    if body is None:
        return None
    role, counsellor_id = body.get("role"), body.get("counsellor_id")
    if not isinstance(role, str) or role not in {r.value for r in AssignmentRole}:
        return None
    if (
        isinstance(counsellor_id, bool)
        or not isinstance(counsellor_id, int)
        or not 0 < counsellor_id <= MAX_ID
    ):
        return None
    return role, counsellor_id


@console_supervision.post("/cases/<case_id:int>/reassign")
@require_counsellor(*SUPERVISORS)
async def reassign(request: Request, case_id: int) -> HTTPResponse:
    wanted = _reassign_body(request)
    if wanted is None:
        return _error("bad_request", 400)
    if not 0 < case_id <= MAX_ID:
        return _error("no_case", 404)
    role, counsellor_id = wanted
    async with request.app.ctx.sessions() as session:
        try:
            done = await supervision.reassign(
                session, case_id, request.ctx.counsellor.id, role, counsellor_id
            )
        except CaseError as refused:
            code = str(refused)
            return _error(code, STATUS_OF.get(code, 409))
    if done.paged:
        request.app.ctx.dispatcher.wake()
    if done.from_counsellor_id is not None:
        request.app.ctx.alerts.reassigned_away(
            ReassignedAway(done.case_id, done.from_counsellor_id, done.to_counsellor_id)
        )
    log.info("case %s: %s reassigned to counsellor %s", done.case_id, done.role, done.to_counsellor_id)
    return json(
        {
            "case_id": done.case_id,
            "role": done.role,
            "from_counsellor_id": done.from_counsellor_id,
            "counsellor_id": done.to_counsellor_id,
            "moved_claim": done.moved_claim,
            "moved_hold": done.moved_hold,
        }
    )
