"""Console sign-in: the login, logout and me routes, the sign-in rate limit and throttle, and
`require_counsellor`, which every other /console/api handler wears.

The throttle follows OWASP's "Slow Down Online Guessing Attacks with Device Cookies". A successful
sign-in gives the browser a signed device cookie (integrations/console/sessions.py). Failures from a
browser that holds one for the account named count against that device alone; failures from any other
client count against the account's untrusted clients together, and against the client's address. Five
failures within 15 minutes lock that device, or the account's untrusted clients, out for 15 minutes;
twenty from one address lock that address's untrusted clients out. So the right password from a known
device gets in even while someone elsewhere keeps guessing, and an unknown handle is counted, locked,
answered and checked exactly as a known one is: the answers never tell whether a handle exists. On top,
more than ten attempts a minute from one address are refused (429) before anything is checked.

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

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, JSONResponse, json

from integrations.console.sessions import (
    COOKIE,
    COOKIE_PATH,
    DEVICE_COOKIE,
    DEVICE_COOKIE_PATH,
    ConsoleSession,
    ConsoleSessions,
    Device,
    DeviceCookies,
)
from integrations.inbound import storable
from integrations.limits import AttemptLimiter, FailureLockout
from integrations.request_body import client_address
from records import accounts, audit
from records.models import Counsellor, CounsellorRole, utcnow

SIGN_IN_LIMIT = 10
SIGN_IN_WINDOW_SECONDS = 60.0
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_HANDLE_LENGTH = 64
# The throttle: failures within the window from one known device, or from the untrusted clients of one
# account, past which that source is locked out; more from one address, which many people may share.
ACCOUNT_FAILURE_LIMIT = 5
ADDRESS_FAILURE_LIMIT = 20
FAILURE_WINDOW_SECONDS = 15 * 60.0
LOCKOUT_SECONDS = 15 * 60.0
_HANDLE_LABEL = b"xinqiao.console.sign-in-handle:"
# What a handle that cannot be stored is checked as: encodable, and no counsellor's (handles are ASCII).
NO_SUCH_HANDLE = "\ufffd"

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


class SignInLockouts:
    """The throttle's three lockouts, in the gateway's memory like the rate limit (several gateways count
    each their own): by known device, by account for untrusted clients, by address for untrusted clients.
    `clock` is for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        def lockout(limit: int) -> FailureLockout:
            return FailureLockout(limit, FAILURE_WINDOW_SECONDS, LOCKOUT_SECONDS, clock=clock)

        self.devices = lockout(ACCOUNT_FAILURE_LIMIT)
        self.accounts = lockout(ACCOUNT_FAILURE_LIMIT)
        self.addresses = lockout(ADDRESS_FAILURE_LIMIT)


@dataclass(frozen=True)
class Lock:
    """A lock one failure caused: which kind of source, after how many failures."""

    scope: str  # "device", "untrusted" (the account's untrusted clients) or "address"
    failures: int


@dataclass(frozen=True)
class SignInSource:
    """Where one sign-in comes from, as the throttle sees it (records.accounts.SignInGate): the devices
    the browser's cookie marks, the client's address, and a keyed digest of the handle typed, never the
    handle itself (people type passwords into the handle field). The account's untrusted clients are
    counted by that digest, so a handle nobody has is counted exactly like a real one."""

    lockouts: SignInLockouts
    devices: tuple[Device, ...]
    address: str
    handle_key: str

    def device(self, counsellor_id: int | None) -> Device | None:
        """This browser's device for the account, if it has signed in to it here before."""
        return next((d for d in self.devices if d.counsellor_id == counsellor_id), None)

    def source(self, counsellor_id: int | None) -> str:
        return "untrusted" if self.device(counsellor_id) is None else "device"

    def locked_out(self, counsellor_id: int | None) -> bool:
        device = self.device(counsellor_id)
        if device is not None:
            return self.lockouts.devices.locked(device.key)
        return self.lockouts.accounts.locked(self.handle_key) or self.lockouts.addresses.locked(self.address)

    def failed(self, counsellor_id: int | None) -> list[Lock]:
        """Counts a failure against this source; the locks it caused."""
        device = self.device(counsellor_id)
        if device is not None:
            return [Lock("device", ACCOUNT_FAILURE_LIMIT)] if self.lockouts.devices.fail(device.key) else []
        locks = []
        # both count, whatever the other says
        if self.lockouts.accounts.fail(self.handle_key):
            locks.append(Lock("untrusted", ACCOUNT_FAILURE_LIMIT))
        if self.lockouts.addresses.fail(self.address):
            locks.append(Lock("address", ADDRESS_FAILURE_LIMIT))
        return locks

    def succeeded(self, counsellor_id: int) -> None:
        """A known device that signs in has its own typos forgiven. Untrusted clients' failures stand:
        the next guesser must not start afresh because the counsellor signed in somewhere new."""
        device = self.device(counsellor_id)
        if device is not None:
            self.lockouts.devices.forget(device.key)


def _lockouts(request: Request) -> SignInLockouts:
    """Made on first use, as the rate limit is; a test sets its own, on its own clock."""
    lockouts = getattr(request.app.ctx, "console_sign_in_lockouts", None)
    if lockouts is None:
        lockouts = request.app.ctx.console_sign_in_lockouts = SignInLockouts()
    return lockouts


def _secret(request: Request) -> str:
    return request.app.ctx.settings.session_secret.get_secret_value()


def _devices(request: Request) -> DeviceCookies:
    return DeviceCookies(_secret(request))


def _sign_in_source(request: Request, handle: str, address: str) -> SignInSource:
    handle_key = hmac.new(
        _secret(request).encode("utf-8"), _HANDLE_LABEL + handle.encode("utf-8"), hashlib.sha256
    ).hexdigest()
    devices = _devices(request).read(request.cookies.get(DEVICE_COOKIE))
    return SignInSource(_lockouts(request), devices, address, handle_key)


def _sessions(request: Request) -> ConsoleSessions:
    return ConsoleSessions(_secret(request), int(request.app.ctx.settings.console_session_hours * 3600))


def _error(code: str, status: int) -> JSONResponse:
    return json({"error": code}, status=status)


def _set_cookie(
    request: Request,
    response: HTTPResponse,
    value: str,
    max_age: int,
    *,
    name: str = COOKIE,
    path: str = COOKIE_PATH,
) -> None:
    response.add_cookie(
        name,
        value,
        path=path,
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


def claimed_session(request: Request) -> ConsoleSession | None:
    """The session the request's cookie claims, checked for its signature and age only, not against the
    store: for the live feed, which must know whose sessions to watch before it asks the store."""
    return _sessions(request).read(request.cookies.get(COOKIE))


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
    """The typed handle and password, or None for a body that is not one. Credentials are never
    cleaned into something else: a handle or password holding what cannot be encoded or stored (a lone
    surrogate, a NUL) is a wrong one, checked with the same work as any other attempt (a handle no
    counsellor has, a password no hash matches)."""
    try:
        body = request.json
    except Exception:  # noqa: BLE001 - Sanic raises its own error type for malformed JSON
        return None
    if not isinstance(body, dict):
        return None
    handle, password = body.get("handle"), body.get("password")
    if not isinstance(handle, str) or not isinstance(password, str):
        return None
    if storable(handle) != handle:
        handle = NO_SUCH_HANDLE
    if storable(password) != password:
        password = secrets.token_hex(16)
    return handle, password


@console_auth.post("/console/api/login")
async def login(request: Request) -> JSONResponse:
    """Signs in. Wrong credentials and an unknown handle answer 401 bad_credentials alike; a locked-out
    source answers 423 locked, for an unknown handle as for a known one (see the module's docstring)."""
    address = client_address(request)
    if not _limiter(request).allow(address):
        log.warning("console sign-in rate limit reached for a client")
        return _error("rate_limited", 429)
    credentials = _credentials(request)
    if credentials is None:
        return _error("bad_request", 400)
    handle, password = credentials
    if not handle or len(handle) > MAX_HANDLE_LENGTH or len(password) > accounts.MAX_PASSWORD_LENGTH:
        return _error("bad_credentials", 401)
    source = _sign_in_source(request, handle, address)
    async with request.app.ctx.sessions() as session:
        result = await accounts.attempt_sign_in(session, handle, password, utcnow(), gate=source)
    if result.outcome == accounts.SignInOutcome.SIGNED_IN and result.counsellor is not None:
        source.succeeded(result.counsellor.id)
        return _signed_in(request, source, result.counsellor)
    locked = result.outcome == accounts.SignInOutcome.LOCKED
    if not locked:
        await _audit_locks(request, result.counsellor_id, source.failed(result.counsellor_id))
        locked = source.locked_out(result.counsellor_id)  # by this failure, or a concurrent one
    return _error("locked", 423) if locked else _error("bad_credentials", 401)


def _signed_in(request: Request, source: SignInSource, counsellor: Counsellor) -> JSONResponse:
    """The answer to a sign-in: the session's cookie and CSRF token, and the browser marked (again) as a
    device this counsellor signs in on."""
    tokens = _sessions(request)
    value, console_session = tokens.issue(counsellor.id, counsellor.password_hash)
    response = json({"counsellor": _counsellor_json(counsellor), "csrf": tokens.csrf_token(console_session)})
    _set_cookie(request, response, value, tokens.max_age_seconds)
    devices = _devices(request)
    _set_cookie(
        request,
        response,
        devices.issue(source.devices, counsellor.id),
        devices.max_age_seconds,
        name=DEVICE_COOKIE,
        path=DEVICE_COOKIE_PATH,
    )
    return response


async def _audit_locks(request: Request, counsellor_id: int | None, locks: list[Lock]) -> None:
    """A lock of a device or of an account's untrusted clients names the account by id ("unknown" for a
    handle nobody has); a lock of an address names none, nor the address."""
    if not locks:
        return
    until = (utcnow() + timedelta(seconds=LOCKOUT_SECONDS)).isoformat()
    async with request.app.ctx.sessions() as session:
        for lock in locks:
            if lock.scope == "address":
                action, subject = "sign_in_source_locked", "console:sign_in"
            else:
                action = "account_locked"
                subject = f"counsellor:{'unknown' if counsellor_id is None else counsellor_id}"
            audit.append(
                session,
                actor="console",
                action=action,
                subject=subject,
                scope=lock.scope,
                failures=lock.failures,
                until=until,
            )
        await session.commit()


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
