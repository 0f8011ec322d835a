"""The console's live feed: a websocket that tells a signed-in counsellor, as it happens, about pages for
them (every page, for a supervisor or an admin), about messages in a conversation they hold, about a
message to a child that failed for good (to whoever holds the conversation, wrote the message or follows
the case, and to every supervisor and admin, as pages go), and about being taken off a case by a
reassignment (to the one who left).

Events carry ids and codes only; the page fetches the case to show words. The feed is a convenience over
the queue's polling, never the only way a counsellor hears of a case: pages also go through the outbox.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from sanic import Blueprint, Request
from sanic.server.websockets.impl import WebsocketImplProtocol
from sqlalchemy import select

from integrations.console.auth import signed_in_counsellor
from integrations.paging.senders import Event, Page, ReassignedAway
from records.deliveries import FailedDelivery
from records.models import Case, CaseStatus, Counsellor, CounsellorRole

log = logging.getLogger(__name__)

console_feed = Blueprint("console_feed")

SEES_EVERY_PAGE = frozenset({CounsellorRole.SUPERVISOR, CounsellorRole.ADMIN})
UNAUTHORISED = 4401  # a websocket close code in the range applications may use


def event_for(counsellor: Counsellor, event: Event) -> dict[str, Any] | None:
    """What this counsellor is told of an event, or None when it is not theirs."""
    if isinstance(event, Page):
        if event.counsellor_id != counsellor.id and counsellor.role not in SEES_EVERY_PAGE:
            return None
        return {"kind": "page", "case_id": event.case_id, "level": event.level, "reason": event.reason}
    if isinstance(event, FailedDelivery):
        if counsellor.id not in event.counsellor_ids and counsellor.role not in SEES_EVERY_PAGE:
            return None
        return {
            "kind": "delivery_failed",  # case and message ids: the console never sees conversation ids
            "message_id": event.message_id,
            "case_id": event.case_id,
        }
    if isinstance(event, ReassignedAway):
        if event.counsellor_id != counsellor.id:
            return None
        return {
            "kind": "case_reassigned_away",
            "case_id": event.case_id,
            "counsellor_id": event.to_counsellor_id,
        }
    if event.counsellor_id != counsellor.id:
        return None
    return {
        "kind": "message",
        "conversation_id": event.conversation_id,
        "message_id": event.message_id,
        "level": event.level,
    }


@console_feed.websocket("/console/ws")
async def feed(request: Request, ws: WebsocketImplProtocol) -> None:
    signed_in = await signed_in_counsellor(request)
    if signed_in is None:
        await ws.close(code=UNAUTHORISED, reason="signed_out")
        return
    counsellor, _ = signed_in
    alerts = request.app.ctx.alerts
    queue = alerts.listen()
    try:
        while True:
            event = await queue.get()
            told = event_for(counsellor, event)
            if told is None:
                continue
            if told["kind"] == "message":
                told["case_id"] = await _open_case_of(request, told.pop("conversation_id"))
            await ws.send(json.dumps(told))
    finally:
        alerts.stop_listening(queue)


async def _open_case_of(request: Request, conversation_id: str) -> int | None:
    async with request.app.ctx.sessions() as session:
        return await session.scalar(
            select(Case.id).where(Case.conversation_id == conversation_id, Case.status != CaseStatus.CLOSED)
        )
