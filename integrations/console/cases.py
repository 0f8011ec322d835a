"""The console's case API: the queue, reading a case (audited), taking a conversation over, writing to
the child, handing back, notes, closing. JSON only; the page that uses it comes with the console UI.

A case's history gives, for each message pushed to the child's own channel, whether it reached the channel
(`delivery`: pending with the attempts so far, sent, or failed with an error code; None for a message
never pushed), so a counsellor knows at once when the child did not get their words.

Who may do what: every signed-in counsellor sees the queue (levels, waiting times, ids; no words); a
volunteer opens, takes over and writes notes only on cases they are assigned to or hold; supervisors
and admins on every case. Every read of a case is written to the audit log.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from integrations.console.auth import require_counsellor
from integrations.console.content import console_texts
from integrations.engine_client import EngineUnavailable
from integrations.inbound import InvalidMessage, clean_text
from integrations.request_body import MAX_ID, json_object
from records import audit, cases, deliveries, handoff, unanswered
from records.cases import SEES_EVERY_CASE, CaseError
from records.models import (
    Assignment,
    AuditEntry,
    Case,
    Conversation,
    Counsellor,
    Direction,
    FamilyContact,
    FollowUp,
    Message,
    Note,
    Referral,
    utcnow,
)

log = logging.getLogger(__name__)

console_cases = Blueprint("console_cases", url_prefix="/console/api")

MAX_OUTCOME_LENGTH = 64
LEVEL_CHANGES = ("level_raised", "level_lowered")  # audit actions whose note_id names a reason's note


def error(code: str, status: int) -> HTTPResponse:
    """An error answer: a code only; the page holds the words."""
    return json({"error": code}, status=status)


async def case_for(request: Request, session: AsyncSession, case_id: int) -> Case | HTTPResponse:
    """The case, when the signed-in counsellor may open it; else the answer to send (404 or 403)."""
    case = await session.get(Case, case_id) if 0 < case_id <= MAX_ID else None
    if case is None:
        return error("no_case", 404)
    if not await cases.may_open(session, request.ctx.counsellor, case):
        return error("forbidden", 403)
    return case


def body_of(request: Request) -> dict[str, Any]:
    """The request's JSON object, its strings storable, or an empty one for anything else (malformed
    JSON included): each route then refuses what is missing with its own error code."""
    return json_object(request) or {}


@console_cases.get("/queue")
@require_counsellor()
async def queue(request: Request) -> HTTPResponse:
    """Open cases, the most serious first, then the longest waiting."""
    me = request.ctx.counsellor
    now = utcnow()
    async with request.app.ctx.sessions() as session:
        waiting = await cases.open_queue(session)
        mine = set(await session.scalars(select(Assignment.case_id).where(Assignment.counsellor_id == me.id)))
        held = dict(
            (
                await session.execute(
                    select(Conversation.id, Conversation.held_by).where(
                        Conversation.id.in_([c.conversation_id for c in waiting])
                    )
                )
            ).all()
        )
        names = await _names(session, [c.claimed_by for c in waiting] + list(held.values()))
        unanswered_by_assistant = await unanswered.assistant_failed(session, [c.id for c in waiting])
    return json(
        {
            "names": names,
            "cases": [
                {
                    "id": case.id,
                    "level": case.level,
                    "status": case.status,
                    "waiting_seconds": round((now - case.opened_at).total_seconds()),
                    "claim_by": case.claim_by.isoformat() if case.claim_by else None,
                    "claimed_by": case.claimed_by,
                    "held_by": held.get(case.conversation_id),
                    "assigned_to_me": case.id in mine,
                    "subject": case.subject,
                    "assistant_failed": case.id in unanswered_by_assistant,
                }
                for case in waiting
            ],
        }
    )


@console_cases.get("/cases/<case_id:int>")
@require_counsellor()
async def read_case(request: Request, case_id: int) -> HTTPResponse:
    """The whole case with the conversation's history (child, bot, counsellors). The read is audited."""
    me = request.ctx.counsellor
    async with request.app.ctx.sessions() as session:
        found = await case_for(request, session, case_id)
        if isinstance(found, HTTPResponse):
            return found
        case = found

        async def rows(model: Any, *where: Any) -> list[Any]:
            return list(await session.scalars(select(model).where(*where).order_by(model.id)))

        history = await rows(Message, Message.conversation_id == case.conversation_id)
        delivered = await deliveries.delivery_states(
            session, [m.id for m in history if m.direction == Direction.OUTBOUND]
        )
        notes = await rows(Note, Note.case_id == case.id)
        staff = await rows(Assignment, Assignment.case_id == case.id)
        family = await rows(FamilyContact, FamilyContact.case_id == case.id)
        follow_ups = await rows(FollowUp, FollowUp.case_id == case.id)
        referrals = await rows(Referral, Referral.case_id == case.id)
        level_changes = {
            entry.detail.get("note_id"): {
                "before": entry.detail.get("before"),
                "after": entry.detail.get("after"),
            }
            for entry in await rows(
                AuditEntry,
                AuditEntry.subject == case.conversation_id,
                AuditEntry.action.in_(LEVEL_CHANGES),
            )
            if entry.detail.get("case_id") == case.id
        }
        holder = await handoff.holder_of(session, case.conversation_id)
        names = await _names(
            session,
            [a.counsellor_id for a in staff]
            + [n.author_id for n in notes]
            + [(m.payload or {}).get("counsellor_id") for m in history]
            + [case.claimed_by, holder],
        )
        audit.append(
            session,
            actor=f"counsellor:{me.id}",
            action="case_read",
            subject=case.conversation_id,
            case_id=case.id,
        )
        await session.commit()
    return json(
        {
            "names": names,
            "case": {
                "id": case.id,
                "level": case.level,
                "status": case.status,
                "subject": case.subject,
                "signals": case.signals,
                "rule": case.rule,
                "protocol_version": case.protocol_version,
                "opened_at": case.opened_at.isoformat(),
                "claimed_by": case.claimed_by,
                "held_by": holder,
                "outcome": case.outcome,
            },
            "messages": [
                {
                    "id": m.id,
                    "direction": m.direction,
                    "author": m.author,
                    "text": m.text,
                    "level": m.risk_level,
                    "at": m.created_at.isoformat() if m.created_at else None,
                    "delivery": delivered[m.id].as_json() if m.id in delivered else None,
                }
                for m in history
            ],
            "notes": [
                {
                    "id": n.id,
                    "author_id": n.author_id,
                    "body": n.body,
                    "at": _iso(n.created_at),
                    "level_change": level_changes.get(n.id),  # the reason for a level change, or None
                }
                for n in notes
            ],
            "assignments": [{"counsellor_id": a.counsellor_id, "role": a.role} for a in staff],
            "family_contacts": [
                {
                    "id": f.id,
                    "status": f.status,
                    "detail": f.detail,
                    "relation": f.relation,
                    "summary": f.summary,
                    "contacted_at": _iso(f.contacted_at),
                    "due_by": _iso(f.due_by),
                }
                for f in family
            ],
            "follow_ups": [
                {
                    "id": f.id,
                    "kind": f.kind,
                    "due_at": f.due_at.isoformat(),
                    "done": f.done_at is not None,
                    "done_at": _iso(f.done_at),
                    "what": f.what,
                    "referral_id": f.referral_id,
                }
                for f in follow_ups
            ],
            "referrals": [_referral_json(r) for r in referrals],
        }
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _referral_json(referral: Referral) -> dict[str, Any]:
    entry = cases.directory_entry(referral.entry_id)
    return {
        "id": referral.id,
        "entry_id": referral.entry_id,
        "entry_name": entry.name if entry else None,
        "entry_kind": referral.entry_kind,
        "status": referral.status,
        "next": cases.next_statuses(referral.status),
        "proposed_by": referral.proposed_by,
        "proposed_at": _iso(referral.proposed_at),
        "status_changed_at": _iso(referral.status_changed_at),
    }


@console_cases.post("/cases/<case_id:int>/claim")
@require_counsellor()
async def claim(request: Request, case_id: int) -> HTTPResponse:
    """Takes the conversation over: one counsellor holds it, the bot is paused in the engine."""
    me = request.ctx.counsellor
    async with request.app.ctx.sessions() as session:
        found = await case_for(request, session, case_id)
        if isinstance(found, HTTPResponse):
            return found
        try:
            conversation = await handoff.take_over(session, case_id, me.id)
        except CaseError as refused:
            return error(str(refused), 409)
    await _engine_call(request, "pause", conversation.id)
    return json({"case_id": case_id, "held_by": me.id})


@console_cases.post("/cases/<case_id:int>/messages")
@require_counsellor()
async def write_to_child(request: Request, case_id: int) -> HTTPResponse:
    me = request.ctx.counsellor
    try:
        text = clean_text(body_of(request).get("text"), request.app.ctx.settings.max_text_length)
    except InvalidMessage as invalid:
        return error(invalid.code, 400)
    async with request.app.ctx.sessions() as session:
        found = await case_for(request, session, case_id)
        if isinstance(found, HTTPResponse):
            return found
        try:
            message = await handoff.counsellor_says(session, found.conversation_id, me.id, text)
        except CaseError as refused:
            return error(str(refused), 409)
    _wake_deliveries(request)  # a Telegram, SMS or WeChat user gets it now, not at the next round
    return json({"id": message.id}, status=201)


@console_cases.post("/cases/<case_id:int>/release")
@require_counsellor()
async def release(request: Request, case_id: int) -> HTTPResponse:
    """Hands the conversation back to the bot; the child reads the closing message first."""
    async with request.app.ctx.sessions() as session:
        found = await case_for(request, session, case_id)
        if isinstance(found, HTTPResponse):
            return found
        conversation_id = found.conversation_id
        try:
            await handoff.hand_back(
                session, conversation_id, request.ctx.counsellor.id, console_texts().hand_back
            )
        except CaseError as refused:
            return error(str(refused), 409)
    _wake_deliveries(request)
    await _engine_call(request, "resume", conversation_id)
    return json({"case_id": case_id, "held_by": None})


@console_cases.post("/cases/<case_id:int>/notes")
@require_counsellor()
async def add_note(request: Request, case_id: int) -> HTTPResponse:
    body = body_of(request).get("body")
    if not isinstance(body, str) or not body.strip():
        return error("empty", 400)
    async with request.app.ctx.sessions() as session:
        found = await case_for(request, session, case_id)
        if isinstance(found, HTTPResponse):
            return found
        note = await cases.add_note(session, case_id, request.ctx.counsellor.id, body.strip())
    return json({"id": note.id}, status=201)


@console_cases.post("/cases/<case_id:int>/close")
@require_counsellor()
async def close_case(request: Request, case_id: int) -> HTTPResponse:
    """Closes with an outcome code; a conversation still held is handed back to the bot first, so no
    child is left talking to a closed case. Only its holder, or a supervisor or an admin, may close a
    case while someone holds the conversation (409 `held_by_another` for anyone else)."""
    me = request.ctx.counsellor
    outcome = body_of(request).get("outcome")
    if not isinstance(outcome, str) or not outcome.strip() or len(outcome) > MAX_OUTCOME_LENGTH:
        return error("bad_request", 400)
    async with request.app.ctx.sessions() as session:
        found = await case_for(request, session, case_id)
        if isinstance(found, HTTPResponse):
            return found
        conversation_id = found.conversation_id
        holder = await handoff.holder_of(session, conversation_id)
        if holder not in (None, me.id) and me.role not in SEES_EVERY_CASE:
            return error("held_by_another", 409)
        held = holder is not None
        if held:
            await handoff.hand_back(session, conversation_id, me.id, console_texts().hand_back, holder=holder)
        try:
            await cases.close(session, case_id, me.id, outcome.strip())
        except CaseError as refused:
            return error(str(refused), 409)
    if held:
        _wake_deliveries(request)
        await _engine_call(request, "resume", conversation_id)
    return json({"case_id": case_id, "status": "closed"})


@console_cases.get("/quick-replies")
@require_counsellor()
async def quick_replies(_: Request) -> HTTPResponse:
    return json({"quick_replies": list(console_texts().quick_replies)})


@console_cases.get("/texts")
@require_counsellor()
async def page_texts(_: Request) -> HTTPResponse:
    """The words the page shows of delivery states and reassignments (data/content/console.yml)."""
    return json(console_texts().for_page())


async def _engine_call(request: Request, what: str, conversation_id: str) -> None:
    """Pauses or resumes the bot in the engine. Best effort: the switchboard already routes a held
    conversation to its counsellor, so an engine that is down changes nothing the child sees."""
    engine = request.app.ctx.switchboard.engine
    try:
        await (engine.pause if what == "pause" else engine.resume)(conversation_id)
    except EngineUnavailable as failure:
        log.warning("could not %s conversation in the engine (%s)", what, type(failure).__name__)


def _wake_deliveries(request: Request) -> None:
    deliveries = getattr(request.app.ctx, "deliveries", None)
    if deliveries is not None:
        deliveries.wake()


async def _names(session: AsyncSession, ids: list[Any]) -> dict[str, str]:
    """Staff display names by id, for the console to show people rather than numbers (staff only)."""
    wanted = {i for i in ids if isinstance(i, int)}
    if not wanted:
        return {}
    rows = await session.execute(
        select(Counsellor.id, Counsellor.display_name).where(Counsellor.id.in_(wanted))
    )
    return {str(counsellor_id): name for counsellor_id, name in rows}
