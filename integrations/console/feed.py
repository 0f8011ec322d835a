"""The console's live feed: a websocket that tells a signed-in counsellor, as it happens, about pages for
them (every page, for a supervisor or an admin), about messages in a conversation they hold, about a
message to a child that failed for good (to whoever holds the conversation, wrote the message or follows
the case, and to every supervisor and admin, as pages go), and about being taken off a case by a
reassignment (to the one who left).

Events carry ids and codes only; the page fetches the case to show words. The feed is a convenience over
the queue's polling, never the only way a counsellor hears of a case: pages also go through the outbox.

A feed lasts only as long as its counsellor's session. When this process ends their sessions (a new
password, set inactive: records.accounts) it is closed at once with 4401, before anything more is sent.
A change made elsewhere (another gateway, the command line, by hand) is found in the store: the feed
checks the session before each event it sends and every RECHECK_SECONDS while it is quiet.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from sanic import Blueprint, Request
from sanic.server.websockets.impl import WebsocketImplProtocol
from sqlalchemy import select

from integrations.console.auth import claimed_session, signed_in_counsellor
from integrations.paging.senders import Event, Page, ReassignedAway
from records import accounts
from records.deliveries import FailedDelivery
from records.models import Case, CaseStatus, Counsellor, CounsellorRole

log = logging.getLogger(__name__)

console_feed = Blueprint("console_feed")

SEES_EVERY_PAGE = frozenset({CounsellorRole.SUPERVISOR, CounsellorRole.ADMIN})
UNAUTHORISED = 4401  # a websocket close code in the range applications may use
# How often a quiet feed checks its session against the store (app.ctx.console_feed_recheck_seconds
# overrides it, for tests): the most a change made through another gateway stays unnoticed.
RECHECK_SECONDS = 30.0


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


class SessionEnd:
    """Whether a feed's session has ended, and a way to wake the feed when it does. Set by this process's
    own changes (records.accounts calls it with the counsellor's id, from whatever thread) and by the
    feed's periodic check of the store."""

    def __init__(self, counsellor_id: int) -> None:
        self._counsellor_id = counsellor_id
        self._loop = asyncio.get_running_loop()
        self._woken = asyncio.Event()
        self.ended = False

    def heard(self, counsellor_id: int) -> None:
        """records.accounts' listener: this counsellor's sessions ended."""
        if counsellor_id == self._counsellor_id:
            self.end()

    def end(self) -> None:
        self.ended = True  # at once: the feed looks at this before it sends anything
        try:
            self._loop.call_soon_threadsafe(self._woken.set)
        except RuntimeError:  # the feed's loop has closed: nobody is left to wake
            pass

    async def wait(self) -> None:
        await self._woken.wait()


@console_feed.websocket("/console/ws")
async def feed(request: Request, ws: WebsocketImplProtocol) -> None:
    """One signed-in counsellor's events, until their session ends; then, or without a session, the
    socket is closed with 4401 and the page signs itself out."""
    claim = claimed_session(request)
    if claim is None:
        await _sign_out(ws)
        return
    end = SessionEnd(claim.counsellor_id)
    # Listening before the store is asked: a change committed in between is heard, not missed.
    stop_hearing = accounts.on_sessions_ended(end.heard)
    try:
        signed_in = await signed_in_counsellor(request)
        if signed_in is None or end.ended:
            await _sign_out(ws)
            return
        checking = asyncio.create_task(_check_every(request, end, _recheck_seconds(request)))
        try:
            await _stream(request, ws, signed_in[0], end)
        finally:
            checking.cancel()
    finally:
        stop_hearing()
    await _sign_out(ws)


async def _stream(
    request: Request, ws: WebsocketImplProtocol, counsellor: Counsellor, end: SessionEnd
) -> None:
    """Sends the counsellor's events until their session ends, asking the store before each one it sends,
    so that nothing reaches a counsellor whose sessions another gateway has ended."""
    alerts = request.app.ctx.alerts
    queue = alerts.listen()
    try:
        while (event := await _next_event(queue, end)) is not None:
            told = event_for(counsellor, event)
            if told is None:
                continue
            if await signed_in_counsellor(request) is None:
                return
            if told["kind"] == "message":
                told["case_id"] = await _open_case_of(request, told.pop("conversation_id"))
            if end.ended:  # ended while the store was asked
                return
            await ws.send(json.dumps(told))
    finally:
        alerts.stop_listening(queue)


async def _next_event(queue: asyncio.Queue[Event], end: SessionEnd) -> Event | None:
    """The next event, or None once the session has ended (an event then waiting stays unsent)."""
    if end.ended:
        return None
    getting = asyncio.ensure_future(queue.get())
    ending = asyncio.ensure_future(end.wait())
    try:
        done, _ = await asyncio.wait({getting, ending}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ending.cancel()
        if not getting.done():
            getting.cancel()  # asyncio.Queue keeps an item a cancelled get() had not taken yet
    if end.ended or getting not in done:
        return None
    return getting.result()


async def _check_every(request: Request, end: SessionEnd, seconds: float) -> None:
    """Ends the feed once the store no longer signs its session in, even while nothing is sent. A store
    that cannot be asked ends nothing: the feed's next event is checked before it is sent all the same."""
    while not end.ended:
        await asyncio.sleep(seconds)
        try:
            signed_in = await signed_in_counsellor(request)
        except Exception as error:  # noqa: BLE001 - a store outage must not kill the round
            log.warning("live feed: its session could not be checked (%s)", type(error).__name__)
            continue
        if signed_in is None:
            end.end()


def _recheck_seconds(request: Request) -> float:
    return float(getattr(request.app.ctx, "console_feed_recheck_seconds", RECHECK_SECONDS))


async def _sign_out(ws: WebsocketImplProtocol) -> None:
    await ws.close(code=UNAUTHORISED, reason="signed_out")


async def _open_case_of(request: Request, conversation_id: str) -> int | None:
    async with request.app.ctx.sessions() as session:
        return await session.scalar(
            select(Case.id).where(Case.conversation_id == conversation_id, Case.status != CaseStatus.CLOSED)
        )
