"""Console sign-in: the login, logout and me routes, the sign-in rate limit, and `require_counsellor`,
which every other /console/api handler wears.

    from integrations.console.auth import require_counsellor

    @cases.post("/console/api/cases/<case_id:int>/claim")
    @require_counsellor()                        # any signed-in counsellor
    async def claim(request, case_id): counsellor = request.ctx.counsellor

    @require_counsellor("supervisor", "admin")   # only these roles; no hierarchy is implied

The route decorator goes outside, `require_counsellor` inside. A websocket handler, which cannot answer
401 after the handshake, asks `signed_in_counsellor(request)` and closes the socket on None.

Errors are JSON codes only ({"error": "signed_out"}); the console page holds the words.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, JSONResponse, json

from integrations.console.sessions import COOKIE, COOKIE_PATH, ConsoleSession, ConsoleSessions
from integrations.limits import AttemptLimiter
from records import accounts, audit
from records.models import Counsellor, CounsellorRole, utcnow

SIGN_IN_LIMIT = 10
SIGN_IN_WINDOW_SECONDS = 60.0
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_HANDLE_LENGTH = 64

log = logging.getLogger(__name__)
console_auth = Blueprint("console_auth")

type Handler = Callable[..., Awaitable[HTTPResponse]]


def _limiter(request: Request) -> AttemptLimiter:
    """Made on first use rather than in a server listener, which Sanic's test client runs per request."""
    limiter = getattr(request.app.ctx, "console_sign_in_limiter", None)
    if limiter is None:
        limiter = request.app.ctx.console_sign_in_limiter = AttemptLimiter(
            SIGN_IN_LIMIT, SIGN_IN_WINDOW_SECONDS
        )
    return limiter


def _client_address(request: Request) -> str:
    """The proxy-reported address when Sanic is configured to trust a proxy, else the peer's."""
    return request.remote_addr or request.ip or "unknown"


def _sessions(request: Request) -> ConsoleSessions:
    settings = request.app.ctx.settings
    return ConsoleSessions(
        settings.session_secret.get_secret_value(), int(settings.console_session_hours * 3600)
    )


def _error(code: str, status: int) -> JSONResponse:
    return json({"error": code}, status=status)


def _set_cookie(request: Request, response: HTTPResponse, value: str, max_age: int) -> None:
    response.add_cookie(
        COOKIE,
        value,
        path=COOKIE_PATH,
        secure=request.app.ctx.settings.console_secure_cookies,
        httponly=True,
        samesite="Strict",
        max_age=max_age,
    )


def _signed_out(request: Request) -> JSONResponse:
    response = _error("signed_out", 401)
    if COOKIE in request.cookies:
        _set_cookie(request, response, "", 0)
    return response


def _counsellor_json(counsellor: Counsellor) -> dict[str, Any]:
    return {
        "id": counsellor.id,
        "handle": counsellor.handle,
        "display_name": counsellor.display_name,
        "role": str(counsellor.role),
    }


async def signed_in_counsellor(request: Request) -> tuple[Counsellor, ConsoleSession] | None:
    """The counsellor the request's cookie signs in, and the session; None when the cookie is missing,
    forged or expired, the counsellor is gone or inactive, or their password changed since. No CSRF or
    role check: for a websocket handler, which cannot answer with a status once the handshake is done;
    HTTP handlers use `require_counsellor`."""
    tokens = _sessions(request)
    console_session = tokens.read(request.cookies.get(COOKIE))
    if console_session is None:
        return None
    async with request.app.ctx.sessions() as session:
        counsellor = await session.get(Counsellor, console_session.counsellor_id)
    if counsellor is None or not counsellor.active:
        return None
    if not tokens.still_valid(console_session, counsellor.password_hash):
        return None
    return counsellor, console_session


def require_counsellor(*roles: CounsellorRole | str) -> Callable[[Handler], Handler]:
    """Lets a handler run only for a signed-in, active counsellor whose session began after their last
    password change, and (when roles are given) whose role is one of them. The counsellor, as loaded for
    this request (detached from any database session), is `request.ctx.counsellor`; the session is
    `request.ctx.console_session`. POST, PUT, PATCH and DELETE must also carry the session's CSRF token in
    the X-CSRF-Token header. Answers 401 signed_out, 403 csrf or 403 forbidden otherwise."""
    allowed = frozenset(CounsellorRole(role) for role in roles)  # a misspelt role fails at import

    def decorate(handler: Handler) -> Handler:
        @wraps(handler)
        async def guarded(request: Request, *args: Any, **kwargs: Any) -> HTTPResponse:
            tokens = _sessions(request)
            claimed = tokens.read(request.cookies.get(COOKIE))
            if claimed is None:
                return _signed_out(request)
            # CSRF before the database: a forged cross-site request costs no query
            if request.method in UNSAFE_METHODS and not tokens.csrf_matches(
                claimed, request.headers.get(CSRF_HEADER)
            ):
                return _error("csrf", 403)
            signed_in = await signed_in_counsellor(request)
            if signed_in is None:
                return _signed_out(request)
            counsellor, console_session = signed_in
            if allowed and counsellor.role not in allowed:
                return _error("forbidden", 403)
            request.ctx.counsellor = counsellor
            request.ctx.console_session = console_session
            return await handler(request, *args, **kwargs)

        return guarded

    return decorate


def _credentials(request: Request) -> tuple[str, str] | None:
    try:
        body = request.json
    except Exception:  # noqa: BLE001 - Sanic raises its own error type for malformed JSON
        return None
    if not isinstance(body, dict):
        return None
    handle, password = body.get("handle"), body.get("password")
    if not isinstance(handle, str) or not isinstance(password, str):
        return None
    return handle, password


@console_auth.post("/console/api/login")
async def login(request: Request) -> JSONResponse:
    if not _limiter(request).allow(_client_address(request)):
        log.warning("console sign-in rate limit reached for a client")
        return _error("rate_limited", 429)
    credentials = _credentials(request)
    if credentials is None:
        return _error("bad_request", 400)
    handle, password = credentials
    if not handle or len(handle) > MAX_HANDLE_LENGTH or len(password) > accounts.MAX_PASSWORD_LENGTH:
        return _error("bad_credentials", 401)
    async with request.app.ctx.sessions() as session:
        result = await accounts.attempt_sign_in(session, handle, password, utcnow())
    if result.outcome == accounts.SignInOutcome.LOCKED:
        return _error("locked", 423)
    counsellor = result.counsellor
    if result.outcome != accounts.SignInOutcome.SIGNED_IN or counsellor is None:
        return _error("bad_credentials", 401)
    tokens = _sessions(request)
    value, console_session = tokens.issue(counsellor.id, counsellor.password_hash)
    response = json({"counsellor": _counsellor_json(counsellor), "csrf": tokens.csrf_token(console_session)})
    _set_cookie(request, response, value, tokens.max_age_seconds)
    return response


@console_auth.get("/console/api/me")
@require_counsellor()
async def me(request: Request) -> JSONResponse:
    session: ConsoleSession = request.ctx.console_session
    return json(
        {
            "counsellor": _counsellor_json(request.ctx.counsellor),
            "csrf": _sessions(request).csrf_token(session),
        }
    )


@console_auth.post("/console/api/logout")
@require_counsellor()
async def logout(request: Request) -> JSONResponse:
    """Clears the cookie. Sessions live only in the cookie, so a copy taken before stays valid until it
    expires; changing the password (or setting the counsellor inactive) ends every copy."""
    subject = f"counsellor:{request.ctx.counsellor.id}"
    async with request.app.ctx.sessions() as session:
        audit.append(session, actor=subject, action="sign_out", subject=subject)
        await session.commit()
    response = json({"signed_out": True})
    _set_cookie(request, response, "", 0)
    return response
