"""Console accounts: argon2id password hashes, the first admin, signing in, and ending a counsellor's
sessions (a new password, or set inactive). The roster (records/roster.py) says who works when; this
module says who may sign in.

Who is locked out after repeated failures is the gateway's sign-in throttle's to say (by device, by
account for untrusted clients, by address: integrations/console/auth.py); a sign-in asks it through a
`SignInGate`, so a locked attempt is answered, checked and audited like any other."""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from records import audit
from records.models import Counsellor, CounsellorRole

MIN_PASSWORD_LENGTH = 10
# Longer input is refused before hashing: nobody types it, and it would only cost the gateway time.
MAX_PASSWORD_LENGTH = 1024

# argon2id with argon2-cffi's defaults (RFC 9106's low-memory profile: 64 MiB, 3 passes). A hash takes
# that memory and tens of milliseconds of CPU, so hashing runs on two threads of its own: the event loop
# keeps serving messages, and a burst of sign-ins costs at most 128 MiB.
_hasher = PasswordHasher()
_hashing = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")

log = logging.getLogger(__name__)

type SessionsEnded = Callable[[int], None]
_sessions_ended: list[SessionsEnded] = []


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when the password matches. Without a hash the password is checked against a dummy hash, so a
    handle with no password (or none at all) costs the same time as a real one and reveals nothing."""
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with older parameters; sign-in then stores a new one."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


@cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


async def _off_loop[T](work: Callable[..., T], *args: object) -> T:
    return await asyncio.get_running_loop().run_in_executor(_hashing, work, *args)


def _check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"a password has at most {MAX_PASSWORD_LENGTH} characters")


def on_sessions_ended(listener: SessionsEnded) -> Callable[[], None]:
    """Calls `listener` with a counsellor's id once a change in this process has ended their console
    sessions (a new password, set inactive), right after the commit: the live feeds on this gateway then
    close at once instead of streaming on until they next look at the store. Returns what stops it."""
    _sessions_ended.append(listener)

    def stop() -> None:
        if listener in _sessions_ended:
            _sessions_ended.remove(listener)

    return stop


def _end_sessions(counsellor_id: int) -> None:
    for listener in tuple(_sessions_ended):
        try:
            listener(counsellor_id)
        except Exception:  # one broken listener must not keep the others from hearing
            log.exception("a listener for ended sessions failed (counsellor %s)", counsellor_id)


async def set_password(
    session: AsyncSession, handle: str, password: str, *, actor: str = "command_line"
) -> Counsellor:
    """Sets a counsellor's password and clears their count of failures. The hash changes, so every console
    session the counsellor had is signed out (integrations/console/sessions.py), and this process's live
    feeds are told at once (`on_sessions_ended`). Commits."""
    _check_new_password(password)
    counsellor = await session.scalar(select(Counsellor).where(Counsellor.handle == handle))
    if counsellor is None:
        raise LookupError(f"no counsellor {handle!r}")
    counsellor_id = counsellor.id
    await session.commit()  # frees the connection (SQLite has one per process) while the hash is made
    password_hash = await _off_loop(hash_password, password)
    counsellor = await session.get(Counsellor, counsellor_id, populate_existing=True)
    if counsellor is None:
        raise LookupError(f"no counsellor {handle!r}")
    counsellor.password_hash = password_hash
    counsellor.failed_logins = 0
    counsellor.locked_until = None  # only older versions set it: the gateway's throttle locks out now
    audit.append(session, actor=actor, action="password_set", subject=f"counsellor:{counsellor.id}")
    await session.commit()
    _end_sessions(counsellor_id)
    return counsellor


async def deactivate(session: AsyncSession, handle: str, *, actor: str = "command_line") -> Counsellor:
    """Sets a counsellor inactive: they can no longer sign in, every console session they had is signed
    out (the console refuses an inactive counsellor's cookie), and this process's live feeds are told at
    once (`on_sessions_ended`). Commits."""
    counsellor = await session.scalar(select(Counsellor).where(Counsellor.handle == handle))
    if counsellor is None:
        raise LookupError(f"no counsellor {handle!r}")
    counsellor.active = False
    audit.append(session, actor=actor, action="counsellor_deactivated", subject=f"counsellor:{counsellor.id}")
    await session.commit()
    _end_sessions(counsellor.id)
    return counsellor


async def create_admin(
    session: AsyncSession, handle: str, display_name: str, password: str, *, actor: str = "command_line"
) -> tuple[Counsellor, bool]:
    """An administrator with this password, and whether it was created: an existing admin only gets the
    new password. An existing counsellor of another role is refused rather than promoted, so a typo in
    the handle cannot make a volunteer an administrator."""
    _check_new_password(password)
    existing = await session.scalar(select(Counsellor).where(Counsellor.handle == handle))
    if existing is not None:
        if existing.role != CounsellorRole.ADMIN:
            raise ValueError(f"counsellor {existing.id} is a {existing.role}, not an admin; nothing changed")
        return await set_password(session, handle, password, actor=actor), False
    await session.commit()
    counsellor = Counsellor(
        handle=handle,
        display_name=display_name,
        role=CounsellorRole.ADMIN,
        password_hash=await _off_loop(hash_password, password),
    )
    session.add(counsellor)
    await session.flush()
    subject = f"counsellor:{counsellor.id}"
    audit.append(session, actor=actor, action="counsellor_added", subject=subject, role=CounsellorRole.ADMIN)
    audit.append(session, actor=actor, action="password_set", subject=subject)
    await session.commit()
    return counsellor, True


class SignInOutcome(enum.StrEnum):
    SIGNED_IN = "signed_in"
    BAD_CREDENTIALS = "bad_credentials"
    LOCKED = "locked"


@dataclass(frozen=True)
class SignIn:
    """The outcome, the counsellor signed in, and the id of the account the handle named (on a failure
    too, for the throttle; None for an unknown handle)."""

    outcome: SignInOutcome
    counsellor: Counsellor | None = None
    counsellor_id: int | None = None


class SignInGate(Protocol):
    """What the gateway's throttle says of where a sign-in comes from, once the handle has named an
    account (None: no such account). The same questions are asked for an unknown handle as for a known
    one, so the answers cannot tell them apart."""

    def source(self, counsellor_id: int | None) -> str:
        """The source's kind for the audit: "device" (a browser this counsellor signed in on) or
        "untrusted"."""
        ...

    def locked_out(self, counsellor_id: int | None) -> bool:
        """True when this source may not try this account now."""
        ...


class _Open:
    """No throttle: the command line and tests that check credentials alone."""

    def source(self, counsellor_id: int | None) -> str:
        return "untrusted"

    def locked_out(self, counsellor_id: int | None) -> bool:
        return False


OPEN = _Open()


async def authenticate(session: AsyncSession, handle: str, password: str, now: datetime) -> Counsellor | None:
    """The counsellor these credentials sign in, or None (wrong, unknown or inactive)."""
    return (await attempt_sign_in(session, handle, password, now)).counsellor


async def attempt_sign_in(
    session: AsyncSession, handle: str, password: str, now: datetime, *, gate: SignInGate = OPEN
) -> SignIn:
    """Checks a sign-in and records it.

    Every attempt costs one argon2 check, whatever it is: an unknown handle, a counsellor without a
    password and a source the gate has locked out are checked against a dummy hash (a locked source's
    password is never tried), so neither the answer nor its time tells a known handle from an unknown
    one. The audit entries name the counsellor by id ("unknown" when none matched), never by the handle
    typed, with a reason code and the source's kind. A failure on a known account adds to its count of
    failures since the last success, for the record; locking out is the gate's. Commits: use a fresh
    session.
    """
    counsellor = await session.scalar(select(Counsellor).where(Counsellor.handle == handle))
    counsellor_id = None if counsellor is None else counsellor.id
    checked_hash = None if counsellor is None else counsellor.password_hash
    source = gate.source(counsellor_id)
    await session.commit()  # frees the connection (SQLite has one per process) while the hash is checked
    if gate.locked_out(counsellor_id):
        await _off_loop(verify_password, None, password)  # the work of any other attempt, nothing tried
        _audit_failure(session, counsellor_id, "locked", source)
        await session.commit()
        return SignIn(SignInOutcome.LOCKED, counsellor_id=counsellor_id)
    matches = await _off_loop(verify_password, checked_hash, password)
    if counsellor_id is None:
        _audit_failure(session, None, "unknown_handle", source)
        await session.commit()
        return SignIn(SignInOutcome.BAD_CREDENTIALS)
    new_hash = None
    if matches and checked_hash is not None and needs_rehash(checked_hash):
        new_hash = await _off_loop(hash_password, password)

    # The row again, locked on PostgreSQL, so concurrent failures each count.
    counsellor = await session.scalar(
        select(Counsellor)
        .where(Counsellor.id == counsellor_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if counsellor is None:
        _audit_failure(session, None, "unknown_handle", source)
        outcome = SignIn(SignInOutcome.BAD_CREDENTIALS)
    else:
        outcome = _record(
            session, counsellor, now, matches and counsellor.password_hash == checked_hash, source
        )
        if outcome.outcome == SignInOutcome.SIGNED_IN and new_hash is not None:
            counsellor.password_hash = new_hash
    await session.commit()
    return outcome


def _record(
    session: AsyncSession, counsellor: Counsellor, now: datetime, matches: bool, source: str
) -> SignIn:
    if not counsellor.active:
        _audit_failure(session, counsellor.id, "inactive", source)
        return SignIn(SignInOutcome.BAD_CREDENTIALS, counsellor_id=counsellor.id)
    if matches:
        counsellor.failed_logins = 0
        counsellor.last_login_at = now
        subject = f"counsellor:{counsellor.id}"
        audit.append(session, actor=subject, action="sign_in", subject=subject, source=source)
        return SignIn(SignInOutcome.SIGNED_IN, counsellor, counsellor.id)
    counsellor.failed_logins = (counsellor.failed_logins or 0) + 1
    reason = "no_password" if counsellor.password_hash is None else "bad_password"
    _audit_failure(session, counsellor.id, reason, source)
    return SignIn(SignInOutcome.BAD_CREDENTIALS, counsellor_id=counsellor.id)


def _audit_failure(session: AsyncSession, counsellor_id: int | None, reason: str, source: str) -> None:
    audit.append(
        session,
        actor="console",
        action="sign_in_failed",
        subject=f"counsellor:{'unknown' if counsellor_id is None else counsellor_id}",
        reason=reason,
        source=source,
    )
