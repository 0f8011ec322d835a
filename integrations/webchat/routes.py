"""Web chat routes: the page at /, sessions, sending messages and fetching replies that came later.

`POST /api/messages` is also the endpoint for programmatic clients: ask for a session, then send. The
session token is sent in the body, or for `GET /api/messages` in the `X-Xinqiao-Session` header (the
`session` query parameter still works, but a query string ends up in proxies' access logs).

Whatever fails, the writer reads the numbers: a store that cannot start a session, a message refused by
the rate limit, a message that cannot be kept. Once a message is stored it is answered as stored.
"""

from __future__ import annotations

import html
import json as json_module
import logging
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, JSONResponse, json
from sanic.response import html as html_response
from sqlalchemy.exc import SQLAlchemyError

from integrations.content import gateway_texts
from integrations.inbound import InboundMessage, InvalidMessage, clean_text, storable
from integrations.request_body import client_address
from integrations.switchboard import Outcome, Reply
from integrations.triage_gate import ESCALATING
from integrations.webchat.limits import RETRY_AFTER_SECONDS, WebchatLimits
from integrations.webchat.sessions import SessionTokens
from records import messages
from triage_protocols import directory

CHANNEL = "webchat"
PAGE = Path(__file__).with_name("static") / "index.html"
MAX_EXTERNAL_ID = 128
MAX_REPLY_ID = 2**63 - 1  # the largest id a database column holds; a larger `after` is a bad request
SESSION_HEADER = "X-Xinqiao-Session"
STORE_FAULTS = (SQLAlchemyError, OSError)

log = logging.getLogger(__name__)
webchat = Blueprint("webchat")


def _tokens(request: Request) -> SessionTokens:
    settings = request.app.ctx.settings
    return SessionTokens(settings.session_secret.get_secret_value(), settings.session_max_age_seconds)


def _limits(request: Request) -> WebchatLimits:
    """The gateway's web chat limits, made on first use (Sanic's test client runs listeners per request)."""
    limits = getattr(request.app.ctx, "webchat_limits", None)
    if limits is None:
        limits = request.app.ctx.webchat_limits = WebchatLimits()
    return limits


def _error(code: str, status: int, **values: Any) -> JSONResponse:
    text = getattr(gateway_texts().errors, code)
    values.setdefault("hotline_list", directory.hotline_list())
    return json({"error": code, "message": text.format(**values)}, status=status)


def _too_fast(code: str) -> JSONResponse:
    response = _error(code, 429)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _reply_json(reply: Reply) -> dict[str, Any]:
    return {"id": reply.id, "text": reply.text, "author": reply.author, "buttons": reply.buttons}


def _outcome_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "message_id": outcome.message_id,
        "status": outcome.status,
        "duplicate": outcome.duplicate,
        "replies": [_reply_json(r) for r in outcome.replies],
    }


def _body(request: Request) -> dict[str, Any] | None:
    try:
        body = request.json
    except Exception:  # noqa: BLE001 - Sanic raises its own error type for malformed JSON
        return None
    return body if isinstance(body, dict) else None


@cache
def _page_html() -> str:
    """The page, with the numbers to call written into it: it shows them when it cannot start a chat or
    reach the gateway at all, without asking the gateway for anything."""
    texts = gateway_texts()
    offline = texts.errors.session_down.format(hotline_list=directory.hotline_list())
    who = json_module.dumps(texts.who_is_writing.model_dump(), ensure_ascii=False)
    return (
        PAGE.read_text(encoding="utf-8")
        .replace("{{offline_notice}}", html.escape(offline))
        .replace("{{who_is_writing}}", html.escape(who))
    )


@webchat.get("/")
async def page(_: Request) -> HTTPResponse:
    return html_response(_page_html())


@webchat.post("/api/sessions")
async def new_session(request: Request) -> JSONResponse:
    body = _body(request) or {}
    audience = body.get("audience") if body.get("audience") in ("student", "parent") else None
    if not _limits(request).new_session(client_address(request)):
        return _too_fast("session_down")
    try:
        async with request.app.ctx.sessions() as session:
            conversation = await messages.create_conversation(session, CHANNEL, audience)
    except STORE_FAULTS as error:
        log.error("store of record unavailable, no session started (%s)", type(error).__name__)
        return _error("session_down", 503)
    return json({"session": _tokens(request).issue(conversation.id)}, status=201)


@webchat.post("/api/messages")
async def send_message(request: Request) -> JSONResponse:
    body = _body(request)
    if body is None:
        return _error("bad_request", 400)
    conversation_id = _tokens(request).conversation_of(body.get("session"))
    if conversation_id is None:
        return _error("bad_session", 401)
    external_id = body.get("message_id")
    if (
        not isinstance(external_id, str)
        or not 0 < len(external_id := storable(external_id)) <= MAX_EXTERNAL_ID
    ):
        return _error("bad_request", 400)
    settings = request.app.ctx.settings
    try:
        text = clean_text(body.get("text"), settings.max_text_length)
    except InvalidMessage as invalid:
        return _error(invalid.code, 400, limit=settings.max_text_length)
    switchboard = request.app.ctx.switchboard
    try:
        async with request.app.ctx.sessions() as session:
            conversation = await messages.get_conversation(session, conversation_id)
        if conversation is None:
            return _error("bad_session", 401)
        inbound = InboundMessage(
            channel=CHANNEL,
            external_id=f"{conversation_id}:{external_id}",
            conversation_id=conversation_id,
            text=text,
            audience=conversation.audience,  # type: ignore[arg-type]
        )
        assessment = switchboard.assess(inbound)
        verdict = _limits(request).message(
            conversation_id, client_address(request), escalating=assessment.get("level") in ESCALATING
        )
        if verdict.refused:
            return _too_fast("rate_limited")
        if verdict.flood_key is not None:
            inbound = replace(inbound, flood_key=verdict.flood_key)
        outcome = await switchboard.receive(inbound, assessment=assessment)
    except STORE_FAULTS as error:
        # Without the store the message cannot be kept, so it is not processed either; the writer is
        # asked to send it again and gets the numbers to call at once. No text of the message is logged.
        log.error("store of record unavailable, message refused (%s)", type(error).__name__)
        return _error("store_down", 503)
    if outcome.duplicate and not outcome.replies:
        # The same message is still being answered: say that it arrived, never nothing.
        notice = gateway_texts().already_received.format(hotline_list=directory.hotline_list())
        outcome = replace(outcome, replies=[Reply(-outcome.message_id * 100, notice, "system")])
    return json(_outcome_json(outcome))


@webchat.get("/api/messages")
async def later_replies(request: Request) -> JSONResponse:
    """Replies that arrived after the client's last one: retried answers now, counsellors later."""
    token = request.headers.get(SESSION_HEADER) or request.args.get("session")
    conversation_id = _tokens(request).conversation_of(token)
    if conversation_id is None:
        return _error("bad_session", 401)
    try:
        after = int(request.args.get("after", "0"))
    except ValueError:
        return _error("bad_request", 400)
    if not -MAX_REPLY_ID <= after <= MAX_REPLY_ID:  # a database integer cannot hold it
        return _error("bad_request", 400)
    try:
        async with request.app.ctx.sessions() as session:
            later = await messages.outbound_after(session, conversation_id, max(after, 0))
    except STORE_FAULTS as error:
        log.error("store of record unavailable, replies not read (%s)", type(error).__name__)
        return _error("store_down", 503)
    return json({"replies": [_reply_json(Reply.of(m)) for m in later]})


@webchat.get("/api/hotlines")
async def hotlines(_: Request) -> JSONResponse:
    """The directory, so the page's emergency banner shows the same numbers as every reply."""
    return json({"entries": [e.model_dump() for e in directory.entries()]})
