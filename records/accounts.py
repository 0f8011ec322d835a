"""Console accounts: argon2id password hashes, the first admin, and signing in with a lockout after
repeated failures. The roster (records/roster.py) says who works when; this module says who may sign in."""

from __future__ import annotations

import asyncio
import enum
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from records import audit
from records.models import Counsellor, CounsellorRole

MIN_PASSWORD_LENGTH = 10
# Longer input is refused before hashing: nobody types it, and it would only cost the gateway time.
MAX_PASSWORD_LENGTH = 1024
MAX_FAILED_SIGN_INS = 5
LOCKOUT = timedelta(minutes=15)

# argon2id with argon2-cffi's defaults (RFC 9106's low-memory profile: 64 MiB, 3 passes). A hash takes
# that memory and tens of milliseconds of CPU, so hashing runs on two threads of its own: the event loop
# keeps serving messages, and a burst of sign-ins costs at most 128 MiB.
_hasher = PasswordHasher()
_hashing = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")


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


async def set_password(
    session: AsyncSession, handle: str, password: str, *, actor: str = "command_line"
) -> Counsellor:
    """Sets a counsellor's password and lifts any lockout. The hash changes, so every console session the
    counsellor had is signed out (integrations/console/sessions.py). Commits."""
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
    counsellor.locked_until = None
    audit.append(session, actor=actor, action="password_set", subject=f"counsellor:{counsellor.id}")
    await session.commit()
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
    outcome: SignInOutcome
    counsellor: Counsellor | None = None


async def authenticate(session: AsyncSession, handle: str, password: str, now: datetime) -> Counsellor | None:
    """The counsellor these credentials sign in, or None (wrong, unknown, inactive or locked)."""
    return (await attempt_sign_in(session, handle, password, now)).counsellor


async def attempt_sign_in(session: AsyncSession, handle: str, password: str, now: datetime) -> SignIn:
    """Checks a sign-in and records it; the console tells a locked account from wrong credentials.

    After MAX_FAILED_SIGN_INS failures in a row the account is locked for LOCKOUT and refuses even the
    right password; once the lock has passed the count starts again. An unknown handle is checked
    against a dummy hash, so it takes as long as a known one. The audit entries name the counsellor by
    id ("unknown" when none matched), never by the handle typed. Commits: use a fresh session.
    """
    counsellor = await session.scalar(select(Counsellor).where(Counsellor.handle == handle))
    if counsellor is None:
        await session.commit()
        await _off_loop(verify_password, None, password)
        _audit_failure(session, "unknown", "unknown_handle")
        await session.commit()
        return SignIn(SignInOutcome.BAD_CREDENTIALS)
    counsellor_id, checked_hash = counsellor.id, counsellor.password_hash
    if _locked(counsellor, now):
        _audit_failure(session, counsellor_id, "locked")
        await session.commit()
        return SignIn(SignInOutcome.LOCKED)
    await session.commit()  # frees the connection (SQLite has one per process) while the hash is checked
    matches = await _off_loop(verify_password, checked_hash, password)
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
        _audit_failure(session, "unknown", "unknown_handle")
        outcome = SignIn(SignInOutcome.BAD_CREDENTIALS)
    elif _locked(counsellor, now):  # locked by a concurrent attempt meanwhile
        _audit_failure(session, counsellor_id, "locked")
        outcome = SignIn(SignInOutcome.LOCKED)
    else:
        outcome = _record(session, counsellor, now, matches and counsellor.password_hash == checked_hash)
        if outcome.outcome == SignInOutcome.SIGNED_IN and new_hash is not None:
            counsellor.password_hash = new_hash
    await session.commit()
    return outcome


def _locked(counsellor: Counsellor, now: datetime) -> bool:
    return counsellor.locked_until is not None and counsellor.locked_until > now


def _record(session: AsyncSession, counsellor: Counsellor, now: datetime, matches: bool) -> SignIn:
    if counsellor.locked_until is not None:  # a lock that has passed: the count starts again
        counsellor.locked_until = None
        counsellor.failed_logins = 0
    if not counsellor.active:
        _audit_failure(session, counsellor.id, "inactive")
        return SignIn(SignInOutcome.BAD_CREDENTIALS)
    if matches:
        counsellor.failed_logins = 0
        counsellor.last_login_at = now
        subject = f"counsellor:{counsellor.id}"
        audit.append(session, actor=subject, action="sign_in", subject=subject)
        return SignIn(SignInOutcome.SIGNED_IN, counsellor)
    counsellor.failed_logins = (counsellor.failed_logins or 0) + 1
    _audit_failure(
        session, counsellor.id, "no_password" if counsellor.password_hash is None else "bad_password"
    )
    if counsellor.failed_logins < MAX_FAILED_SIGN_INS:
        return SignIn(SignInOutcome.BAD_CREDENTIALS)
    counsellor.locked_until = now + LOCKOUT
    audit.append(
        session,
        actor="console",
        action="account_locked",
        subject=f"counsellor:{counsellor.id}",
        failures=counsellor.failed_logins,
        until=counsellor.locked_until.isoformat(),
    )
    return SignIn(SignInOutcome.LOCKED)


def _audit_failure(session: AsyncSession, counsellor_id: int | str, reason: str) -> None:
    audit.append(
        session,
        actor="console",
        action="sign_in_failed",
        subject=f"counsellor:{counsellor_id}",
        reason=reason,
    )
