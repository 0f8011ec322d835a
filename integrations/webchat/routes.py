"""Web chat routes: the page at /, sessions, sending messages and fetching replies that came later.

`POST /api/messages` is also the endpoint for programmatic clients: ask for a session, then send.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, JSONResponse, file, json
from sqlalchemy.exc import SQLAlchemyError

from integrations.content import gateway_texts
from integrations.inbound import InboundMessage, InvalidMessage, clean_text
from integrations.switchboard import Outcome, Reply
from integrations.webchat.sessions import SessionTokens
from records import messages
from triage_protocols import directory

CHANNEL = "webchat"
PAGE = Path(__file__).with_name("static") / "index.html"
MAX_EXTERNAL_ID = 128

log = logging.getLogger(__name__)
webchat = Blueprint("webchat")


def _tokens(request: Request) -> SessionTokens:
    settings = request.app.ctx.settings
    return SessionTokens(settings.session_secret.get_secret_value(), settings.session_max_age_seconds)


def _error(code: str, status: int, **values: Any) -> JSONResponse:
    text = getattr(gateway_texts().errors, code)
    return json({"error": code, "message": text.format(**values)}, status=status)


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


@webchat.get("/")
async def page(_: Request) -> HTTPResponse:
    return await file(PAGE, mime_type="text/html; charset=utf-8")


@webchat.post("/api/sessions")
async def new_session(request: Request) -> JSONResponse:
    body = _body(request) or {}
    audience = body.get("audience") if body.get("audience") in ("student", "parent") else None
    async with request.app.ctx.sessions() as session:
        conversation = await messages.create_conversation(session, CHANNEL, audience)
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
    if not isinstance(external_id, str) or not 0 < len(external_id) <= MAX_EXTERNAL_ID:
        return _error("bad_request", 400)
    settings = request.app.ctx.settings
    try:
        text = clean_text(body.get("text"), settings.max_text_length)
    except InvalidMessage as invalid:
        return _error(invalid.code, 400, limit=settings.max_text_length)
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
        outcome = await request.app.ctx.switchboard.receive(inbound)
    except (SQLAlchemyError, OSError) as error:
        # Without the store the message cannot be kept, so it is not processed either; the writer is
        # asked to send it again and gets the numbers to call at once. No text of the message is logged.
        log.error("store of record unavailable, message refused (%s)", type(error).__name__)
        return _error("store_down", 503, hotline_list=directory.hotline_list())
    return json(_outcome_json(outcome))


@webchat.get("/api/messages")
async def later_replies(request: Request) -> JSONResponse:
    """Replies that arrived after the client's last one: retried answers now, counsellors later."""
    conversation_id = _tokens(request).conversation_of(request.args.get("session"))
    if conversation_id is None:
        return _error("bad_session", 401)
    try:
        after = int(request.args.get("after", "0"))
    except ValueError:
        return _error("bad_request", 400)
    async with request.app.ctx.sessions() as session:
        later = await messages.outbound_after(session, conversation_id, after)
    return json({"replies": [_reply_json(Reply.of(m)) for m in later]})


@webchat.get("/api/hotlines")
async def hotlines(_: Request) -> JSONResponse:
    """The directory, so the page's emergency banner shows the same numbers as every reply."""
    return json({"entries": [e.model_dump() for e in directory.entries()]})
