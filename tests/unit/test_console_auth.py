"""Console sign-in as a counsellor's browser and the command line meet it: passwords, the throttle (by
device, by account for untrusted clients, by address) and the rate limit, handles that cannot be told
apart, the session cookie, CSRF and roles, on both databases."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Iterator
from http.cookies import SimpleCookie
from typing import Any

import itsdangerous.timed
import pytest
from argon2 import PasswordHasher
from sanic import Request, Sanic
from sanic.response import json as json_response
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import records.__main__ as records_cli
from integrations import limits
from integrations.console import auth as console_auth
from integrations.console.auth import require_counsellor
from integrations.console.sessions import COOKIE, ConsoleSessions
from integrations.gateway.app import create_app
from integrations.limits import AttemptLimiter
from integrations.settings import GatewaySettings
from records import accounts, roster
from records.db import with_session
from records.models import AuditEntry, Counsellor, CounsellorRole, utcnow
from tests.unit.apps import gateway_settings
from tests.unit.fakes import FakeEngine

Sanic.test_mode = True

SECRET = "test-secret"
PASSWORD = "correct horse battery"
WRONG = "wrong-password-9d1e"
HANDLE = "mei-handle-7f3a"  # distinctive, so a leak into a log or the audit is found
GHOST = "ghost-handle-91c2"
DEVICE = "xq_device"  # the device cookie: a browser that has signed in before
HOME, STRANGER = "198.51.100.7", "203.0.113.66"  # client addresses, as a trusted proxy reports them
FIFTEEN_MINUTES = 15 * 60

Sessions = async_sessionmaker[AsyncSession]


def _settings(database_url: str, **extra: Any) -> GatewaySettings:
    return gateway_settings(database_url, session_secret=SECRET, **extra)


def _with_test_routes(app: Sanic) -> Sanic:
    """Two routes that exist only here: one for supervisors, one PUT for any counsellor."""

    @app.get("/console/api/test/supervisors")
    @require_counsellor("supervisor")
    async def supervisors_only(request: Request):  # type: ignore[no-untyped-def]
        return json_response({"id": request.ctx.counsellor.id, "role": request.ctx.counsellor.role})

    @app.put("/console/api/test/change")
    @require_counsellor()
    async def change(request: Request):  # type: ignore[no-untyped-def]
        return json_response({"changed_by": request.ctx.counsellor.id})

    return app


@pytest.fixture
def app(database_url: str) -> Iterator[Sanic]:
    name = f"console_test_{uuid.uuid4().hex[:8]}"
    app = create_app(_settings(database_url), engine=FakeEngine(), actions_up=lambda: True, name=name)
    app.config.REAL_IP_HEADER = "x-real-ip"  # as behind a proxy: the address is the one it reports
    yield _with_test_routes(app)


async def _counsellor(
    sessions: Sessions,
    handle: str = HANDLE,
    role: CounsellorRole = CounsellorRole.VOLUNTEER,
    password: str | None = PASSWORD,
) -> int:
    async with sessions() as session:
        counsellor = await roster.add_counsellor(session, handle, "梅老师", role)
        if password is not None:
            await accounts.set_password(session, handle, password)
        return counsellor.id


async def _get(sessions: Sessions, counsellor_id: int) -> Counsellor:
    async with sessions() as session:
        counsellor = await session.get(Counsellor, counsellor_id)
        assert counsellor is not None
        return counsellor


async def _audit(sessions: Sessions) -> list[AuditEntry]:
    async with sessions() as session:
        return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def _cookie(response: Any, name: str = COOKIE) -> tuple[str, str]:
    """The value of the cookie called `name` (the session's by default) and its Set-Cookie header."""
    for header in response.headers.get_list("set-cookie"):
        jar = SimpleCookie()
        jar.load(header)
        if name in jar:
            return jar[name].value, header
    raise AssertionError(f"no {name} cookie set")


def _device(response: Any) -> str:
    """The device cookie a successful sign-in gave the browser."""
    assert response.status == 200, response.json
    return _cookie(response, DEVICE)[0]


async def _login(
    app: Sanic,
    handle: str = HANDLE,
    password: str = PASSWORD,
    *,
    device: str | None = None,
    address: str | None = None,
) -> Any:
    """A sign-in from a browser holding `device` (none: an untrusted client), from `address`."""
    headers = {"cookie": f"{DEVICE}={device}"} if device is not None else {}
    if address is not None:
        headers["x-real-ip"] = address
    _, response = await app.asgi_client.post(
        "/console/api/login", json={"handle": handle, "password": password}, headers=headers
    )
    app.asgi_client.cookies.clear()  # every test sends the cookie itself, explicitly
    return response


def _clock(app: Sanic) -> list[float]:
    """The sign-in throttle on a clock the test moves: `now[0] += seconds`."""
    now = [0.0]
    app.ctx.console_sign_in_lockouts = console_auth.SignInLockouts(clock=lambda: now[0])
    return now


async def _signed_in(app: Sanic, handle: str = HANDLE, password: str = PASSWORD) -> tuple[str, str]:
    """A signed-in cookie and its CSRF token."""
    response = await _login(app, handle, password)
    assert response.status == 200, response.json
    return _cookie(response)[0], response.json["csrf"]


def _as(cookie: str, csrf: str | None = None) -> dict[str, str]:
    headers = {"cookie": f"{COOKIE}={cookie}"}
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    return headers


# --- passwords ---------------------------------------------------------------------------------------


def test_passwords_are_argon2id_and_only_the_right_one_verifies() -> None:
    hashed = accounts.hash_password(PASSWORD)
    assert hashed.startswith("$argon2id$")
    assert PASSWORD not in hashed
    assert accounts.hash_password(PASSWORD) != hashed  # salted
    assert accounts.verify_password(hashed, PASSWORD)
    assert not accounts.verify_password(hashed, WRONG)
    assert not accounts.verify_password(None, PASSWORD)
    assert not accounts.verify_password("not a hash", PASSWORD)
    assert not accounts.needs_rehash(hashed)
    assert accounts.needs_rehash(PasswordHasher(time_cost=1, memory_cost=8192).hash(PASSWORD))


async def test_set_password_refuses_short_passwords_and_keeps_none(sessions: Sessions) -> None:
    counsellor_id = await _counsellor(sessions, password=None)
    async with sessions() as session:
        with pytest.raises(ValueError, match="10"):
            await accounts.set_password(session, HANDLE, "123456789")
    assert (await _get(sessions, counsellor_id)).password_hash is None
    async with sessions() as session:
        await accounts.set_password(session, HANDLE, "1234567890")
    assert accounts.verify_password((await _get(sessions, counsellor_id)).password_hash, "1234567890")
    async with sessions() as session:
        with pytest.raises(LookupError):
            await accounts.set_password(session, GHOST, PASSWORD)


async def test_sign_in_rehashes_a_hash_made_with_old_parameters(sessions: Sessions) -> None:
    counsellor_id = await _counsellor(sessions, password=None)
    old = PasswordHasher(time_cost=1, memory_cost=8192).hash(PASSWORD)
    async with sessions() as session:
        await session.execute(
            update(Counsellor).where(Counsellor.id == counsellor_id).values(password_hash=old)
        )
        await session.commit()
    async with sessions() as session:
        assert await accounts.authenticate(session, HANDLE, PASSWORD, utcnow()) is not None
    new = (await _get(sessions, counsellor_id)).password_hash
    assert new != old
    assert new is not None and not accounts.needs_rehash(new) and accounts.verify_password(new, PASSWORD)


# --- the command line ----------------------------------------------------------------------------------


def test_create_admin_reads_the_password_from_the_environment_and_never_prints_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XINQIAO_DATABASE_URL", database_url)
    monkeypatch.setenv("XINQIAO_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.setattr(records_cli.getpass, "getpass", _no_prompt)
    assert records_cli.main(["create-admin", "root-admin", "--name", "管理员"]) == 0

    async def admin(session: AsyncSession) -> Counsellor | None:
        return await session.scalar(select(Counsellor).where(Counsellor.handle == "root-admin"))

    created = asyncio.run(with_session(database_url, admin))
    assert created is not None and created.role == CounsellorRole.ADMIN
    assert accounts.verify_password(created.password_hash, PASSWORD)

    # again: the existing admin gets the new password, and no second admin is made
    monkeypatch.setenv("XINQIAO_ADMIN_PASSWORD", "another password 2")
    assert records_cli.main(["create-admin", "root-admin", "--name", "管理员"]) == 0
    again = asyncio.run(with_session(database_url, admin))
    assert again is not None and again.id == created.id
    assert accounts.verify_password(again.password_hash, "another password 2")
    assert not accounts.verify_password(again.password_hash, PASSWORD)

    printed = capsys.readouterr()
    assert PASSWORD not in printed.out + printed.err
    assert "another password 2" not in printed.out + printed.err

    async def entries(session: AsyncSession) -> list[AuditEntry]:
        return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))

    audit = asyncio.run(with_session(database_url, entries))
    assert [e.action for e in audit] == ["counsellor_added", "password_set", "password_set"]
    assert {e.subject for e in audit} == {f"counsellor:{created.id}"}
    assert PASSWORD not in json.dumps([[e.actor, e.subject, e.detail] for e in audit], ensure_ascii=False)


def _no_prompt(prompt: str = "") -> str:
    raise AssertionError("asked for a password although XINQIAO_ADMIN_PASSWORD is set")


def test_create_admin_asks_twice_and_refuses_a_mismatch_or_a_short_password(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XINQIAO_DATABASE_URL", database_url)
    monkeypatch.delenv("XINQIAO_ADMIN_PASSWORD", raising=False)
    typed = iter([PASSWORD, PASSWORD + "x", "short", "short"])
    monkeypatch.setattr(records_cli.getpass, "getpass", lambda prompt="": next(typed))
    assert records_cli.run(["create-admin", "root-admin", "--name", "管理员"]) == 2  # differ
    assert records_cli.run(["create-admin", "root-admin", "--name", "管理员"]) == 2  # too short

    async def count(session: AsyncSession) -> int:
        return len(list(await session.scalars(select(Counsellor))))

    assert asyncio.run(with_session(database_url, count)) == 0


def test_create_admin_does_not_promote_a_volunteer(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XINQIAO_DATABASE_URL", database_url)
    monkeypatch.setenv("XINQIAO_ADMIN_PASSWORD", PASSWORD)
    assert records_cli.main(["add-counsellor", HANDLE, "--name", "梅老师"]) == 0
    with pytest.raises(ValueError, match="not an admin"):
        records_cli.main(["create-admin", HANDLE, "--name", "梅老师"])

    async def volunteer(session: AsyncSession) -> Counsellor | None:
        return await session.scalar(select(Counsellor).where(Counsellor.handle == HANDLE))

    kept = asyncio.run(with_session(database_url, volunteer))
    assert kept is not None and kept.role == CounsellorRole.VOLUNTEER and kept.password_hash is None


# --- signing in ----------------------------------------------------------------------------------------


async def test_sign_in_sets_a_strict_http_only_cookie_and_returns_the_csrf_token(
    app: Sanic, sessions: Sessions
) -> None:
    counsellor_id = await _counsellor(sessions)
    response = await _login(app)
    assert response.status == 200
    assert response.json["counsellor"] == {
        "id": counsellor_id,
        "handle": HANDLE,
        "display_name": "梅老师",
        "role": "volunteer",
    }
    value, header = _cookie(response)
    attributes = [part.strip().lower() for part in header.split(";")]
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
    assert "path=/console" in attributes
    assert "max-age=43200" in attributes  # 12 hours
    assert "secure" not in attributes  # XINQIAO_CONSOLE_SECURE_COOKIES is off by default
    csrf = response.json["csrf"]
    assert csrf and csrf not in value

    _, me = await app.asgi_client.get("/console/api/me", headers=_as(value))
    assert me.status == 200
    assert me.json == {"counsellor": response.json["counsellor"], "csrf": csrf}

    counsellor = await _get(sessions, counsellor_id)
    assert counsellor.last_login_at is not None and counsellor.failed_logins == 0
    assert (await _audit(sessions))[-1].action == "sign_in"


async def test_secure_cookies_when_configured(database_url: str, sessions: Sessions) -> None:
    settings = _settings(database_url, console_secure_cookies=True, console_session_hours=1)
    app = create_app(settings, engine=FakeEngine(), actions_up=lambda: True, name="console_secure")
    await _counsellor(sessions)
    _, header = _cookie(await _login(app))
    attributes = [part.strip().lower() for part in header.split(";")]
    assert "secure" in attributes and "max-age=3600" in attributes


async def test_wrong_password_and_unknown_handle_are_refused_alike(app: Sanic, sessions: Sessions) -> None:
    counsellor_id = await _counsellor(sessions)
    for handle, password in ((HANDLE, WRONG), (GHOST, PASSWORD), (HANDLE, ""), (HANDLE.upper(), PASSWORD)):
        response = await _login(app, handle, password)
        assert response.status == 401
        assert response.json == {"error": "bad_credentials"}
        assert not response.headers.get_list("set-cookie")
    failed = [e for e in await _audit(sessions) if e.action == "sign_in_failed"]
    assert [e.subject for e in failed] == [
        f"counsellor:{counsellor_id}",
        "counsellor:unknown",
        f"counsellor:{counsellor_id}",
        "counsellor:unknown",
    ]
    assert (await _get(sessions, counsellor_id)).failed_logins == 2


async def test_an_unknown_handle_is_checked_against_a_dummy_hash(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """So that it takes as long as a known handle: the timing reveals nothing."""
    checked: list[str | None] = []
    real = accounts.verify_password

    def spy(password_hash: str | None, password: str) -> bool:
        checked.append(password_hash)
        return real(password_hash, password)

    await _counsellor(sessions)
    monkeypatch.setattr(accounts, "verify_password", spy)
    async with sessions() as session:
        assert await accounts.authenticate(session, GHOST, PASSWORD, utcnow()) is None
    assert checked == [None]

    verified: list[str] = []

    class RecordingHasher(PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> bool:
            verified.append(str(hash))
            return super().verify(hash, password)

    monkeypatch.setattr(accounts, "_hasher", RecordingHasher())
    assert not real(None, PASSWORD)
    # a real argon2 check at the cost of a stored hash, not a shortcut
    assert len(verified) == 1 and verified[0].startswith("$argon2")
    assert not accounts.needs_rehash(verified[0])


async def test_malformed_login_bodies_are_refused(app: Sanic) -> None:
    for body in ('{"handle": 1, "password": "x"}', "[]", "not json", '{"handle": "a"}'):
        _, response = await app.asgi_client.post(
            "/console/api/login", content=body, headers={"content-type": "application/json"}
        )
        assert response.status == 400
        assert response.json == {"error": "bad_request"}


async def test_five_failures_from_untrusted_clients_lock_out_only_untrusted_clients(
    app: Sanic, sessions: Sessions
) -> None:
    counsellor_id = await _counsellor(sessions)
    now = _clock(app)
    device = _device(await _login(app, address=HOME))  # the counsellor's own browser, known from before
    statuses = [(await _login(app, HANDLE, WRONG, address=STRANGER)).status for _ in range(5)]
    assert statuses == [401, 401, 401, 401, 423]
    locked = await _login(app, address=STRANGER)  # even the right password
    assert locked.status == 423
    assert locked.json == {"error": "locked"}
    assert not locked.headers.get_list("set-cookie")
    assert (await _login(app, address=HOME)).status == 423  # any browser the account has not seen
    # the known device gets in all the same: nobody can lock a counsellor out from outside
    assert (await _login(app, device=device, address=HOME)).status == 200

    entries = [e for e in await _audit(sessions) if e.action == "account_locked"]
    assert [(e.subject, e.detail["scope"], e.detail["failures"]) for e in entries] == [
        (f"counsellor:{counsellor_id}", "untrusted", 5)
    ]
    refused = [e for e in await _audit(sessions) if e.detail.get("reason") == "locked"]
    assert [e.detail["source"] for e in refused] == ["untrusted", "untrusted"]

    # fifteen minutes on the lock has passed, and the count starts again
    now[0] += FIFTEEN_MINUTES
    assert (await _login(app, HANDLE, WRONG, address=STRANGER)).status == 401
    assert (await _login(app, address=STRANGER)).status == 200


async def test_failures_from_a_known_device_count_against_that_device_only(
    app: Sanic, sessions: Sessions
) -> None:
    await _counsellor(sessions)
    _clock(app)
    app.ctx.console_sign_in_limiter = AttemptLimiter(1000, 60)  # past the per-minute limit, for the test
    device = _device(await _login(app, address=HOME))
    for _ in range(2):  # a counsellor's own typos: each success on the device forgives them
        for _ in range(4):
            assert (await _login(app, HANDLE, WRONG, device=device, address=HOME)).status == 401
        assert (await _login(app, device=device, address=HOME)).status == 200
    statuses = [(await _login(app, HANDLE, WRONG, device=device, address=HOME)).status for _ in range(5)]
    assert statuses == [401, 401, 401, 401, 423]
    assert (await _login(app, device=device, address=HOME)).status == 423  # that device is locked out
    # ... and nothing else is: a browser the account has not seen still gets in, and becomes known
    other_device = _device(await _login(app, address=HOME))
    assert (await _login(app, device=other_device, address=STRANGER)).status == 200
    scopes = [e.detail["scope"] for e in await _audit(sessions) if e.action == "account_locked"]
    assert scopes == ["device"]


async def test_the_device_cookie_is_signed_strict_and_sent_only_to_sign_in(
    app: Sanic, sessions: Sessions
) -> None:
    await _counsellor(sessions)
    await _counsellor(sessions, "colleague-handle")
    _clock(app)
    app.ctx.console_sign_in_limiter = AttemptLimiter(1000, 60)  # past the per-minute limit, for the test
    response = await _login(app, address=HOME)
    device, header = _cookie(response, DEVICE)
    attributes = [part.strip().lower() for part in header.split(";")]
    assert "httponly" in attributes and "samesite=strict" in attributes
    assert "path=/console/api/login" in attributes
    assert f"max-age={180 * 24 * 3600}" in attributes
    assert "secure" not in attributes  # XINQIAO_CONSOLE_SECURE_COOKIES is off by default
    assert device != _cookie(response)[0]

    # a browser two counsellors share stays known to both
    shared = _device(await _login(app, "colleague-handle", device=device, address=HOME))
    colleagues_own = _device(await _login(app, "colleague-handle", address=HOME))
    for _ in range(5):
        await _login(app, HANDLE, WRONG, address=STRANGER)
    assert (await _login(app, address=STRANGER)).status == 423
    assert (await _login(app, device=shared, address=STRANGER)).status == 200
    # a forged or tampered device cookie, or one the browser got for someone else, is an untrusted client
    for value in (_flip(device, -5), colleagues_own, "forged", shared.split(".")[0]):
        assert (await _login(app, device=value, address=STRANGER)).status == 423, value


async def test_known_and_unknown_handles_answer_alike_even_when_locked(
    app: Sanic, sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Status, body, cookies and the argon2 work: nothing tells a counsellor's handle from a made-up one,
    before the lock, at the lock and after it, with a wrong password or the right one."""
    verified: list[str] = []

    class RecordingHasher(PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> bool:
            verified.append(str(hash))
            return super().verify(hash, password)

    counsellor_id = await _counsellor(sessions)
    _clock(app)
    monkeypatch.setattr(accounts, "_hasher", RecordingHasher())

    async def answers(handle: str, address: str) -> list[tuple[int, Any, bool, int]]:
        seen = []
        for password in [WRONG] * 6 + [PASSWORD]:
            before = len(verified)
            response = await _login(app, handle, password, address=address)
            seen.append(
                (
                    response.status,
                    response.json,
                    bool(response.headers.get_list("set-cookie")),
                    len(verified) - before,
                )
            )
        return seen

    known, unknown = await answers(HANDLE, HOME), await answers(GHOST, STRANGER)
    assert known == unknown
    assert [status for status, *_ in known] == [401, 401, 401, 401, 423, 423, 423]
    assert all(work == 1 for *_, work in known)  # one argon2 check each, locked or not

    locks = [e for e in await _audit(sessions) if e.action == "account_locked"]
    assert [e.subject for e in locks] == [f"counsellor:{counsellor_id}", "counsellor:unknown"]


async def test_an_address_with_many_failures_locks_out_only_its_untrusted_clients(
    app: Sanic, sessions: Sessions
) -> None:
    """Guessing one password across many handles (spraying) from one address: after 20 failures in 15
    minutes its untrusted clients are locked out, whatever handle they try."""
    await _counsellor(sessions)
    now = _clock(app)
    app.ctx.console_sign_in_limiter = AttemptLimiter(1000, 60)  # past the per-minute limit, for the test
    device = _device(await _login(app, address=STRANGER))
    statuses = [(await _login(app, f"guess-{n}", WRONG, address=STRANGER)).status for n in range(20)]
    assert statuses == [401] * 19 + [423]
    assert (await _login(app, address=STRANGER)).status == 423  # a real counsellor, the right password
    assert (await _login(app, device=device, address=STRANGER)).status == 200  # a known device
    assert (await _login(app, address=HOME)).status == 200  # another address
    locks = [e for e in await _audit(sessions) if e.action == "sign_in_source_locked"]
    assert [(e.subject, e.detail["scope"], e.detail["failures"]) for e in locks] == [
        ("console:sign_in", "address", 20)
    ]
    now[0] += FIFTEEN_MINUTES
    assert (await _login(app, address=STRANGER)).status == 200


def test_a_failure_lockout_counts_in_a_window_and_locks_for_a_while() -> None:
    now = [0.0]
    lockout = limits.FailureLockout(3, window_seconds=60, lockout_seconds=100, clock=lambda: now[0])
    assert not lockout.fail("a") and not lockout.fail("a")
    now[0] = 61.0  # the first two are out of the window
    assert not lockout.fail("a") and not lockout.fail("a") and not lockout.locked("a")
    assert lockout.fail("a")  # the third within a minute locks
    assert lockout.locked("a") and not lockout.locked("b")
    now[0] = 160.0
    assert lockout.locked("a")
    now[0] = 161.0
    assert not lockout.locked("a")
    assert not lockout.fail("a")  # the count starts again
    lockout.forget("a")
    assert not lockout.fail("a") and not lockout.fail("a") and lockout.fail("a")


def test_a_failure_lockout_keeps_its_locks_when_memory_is_full() -> None:
    """Bounded memory, but a flood of new keys (made-up handles) does not push a lock out."""
    now = [0.0]
    lockout = limits.FailureLockout(2, 60, 100, clock=lambda: now[0], max_keys=3)
    lockout.fail("locked")
    assert lockout.fail("locked")
    for key in ("a", "b", "c", "d", "e"):
        lockout.fail(key)
    assert lockout.locked("locked")
    assert len(lockout._keys) <= 3


async def test_an_inactive_counsellor_cannot_sign_in_and_is_signed_out(
    app: Sanic, sessions: Sessions
) -> None:
    counsellor_id = await _counsellor(sessions)
    cookie, _ = await _signed_in(app)
    async with sessions() as session:
        await session.execute(update(Counsellor).where(Counsellor.id == counsellor_id).values(active=False))
        await session.commit()
    response = await _login(app)
    assert response.status == 401 and response.json == {"error": "bad_credentials"}
    _, me = await app.asgi_client.get("/console/api/me", headers=_as(cookie))
    assert me.status == 401 and me.json == {"error": "signed_out"}
    assert "max-age=0" in _cookie(me)[1].lower()  # the browser forgets the dead cookie
    failed = [e for e in await _audit(sessions) if e.action == "sign_in_failed"]
    assert failed[-1].detail == {"reason": "inactive", "source": "untrusted"}


# --- the rate limit ------------------------------------------------------------------------------------


async def test_the_eleventh_attempt_in_a_minute_is_rate_limited(app: Sanic, sessions: Sessions) -> None:
    await _counsellor(sessions)
    for n in range(10):  # a handle each, so that no account's untrusted clients are locked out
        assert (await _login(app, f"{GHOST}-{n}", WRONG)).status == 401
    response = await _login(app)  # even the right password
    assert response.status == 429
    assert response.json == {"error": "rate_limited"}


def test_the_limiter_slides_and_keeps_addresses_apart() -> None:
    now = [0.0]
    limiter = AttemptLimiter(10, 60, clock=lambda: now[0], max_keys=3)
    assert all(limiter.allow("10.0.0.1") for _ in range(10))
    assert not limiter.allow("10.0.0.1")
    assert limiter.allow("10.0.0.2")
    now[0] = 59.0
    assert not limiter.allow("10.0.0.1")
    now[0] = 60.5
    assert limiter.allow("10.0.0.1")
    for address in ("a", "b", "c", "d"):  # more addresses than it keeps: memory stays bounded
        assert limiter.allow(address)
    assert len(limiter._attempts) <= 3


# --- sessions and CSRF ---------------------------------------------------------------------------------


async def test_me_without_a_cookie_is_signed_out(app: Sanic) -> None:
    _, response = await app.asgi_client.get("/console/api/me")
    assert response.status == 401
    assert response.json == {"error": "signed_out"}


async def test_a_forged_tampered_or_expired_cookie_is_signed_out(
    app: Sanic, sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    counsellor_id = await _counsellor(sessions)
    cookie, _ = await _signed_in(app)
    payload, rest = cookie.split(".", 1)
    other, _ = await _counsellor_cookie(sessions, counsellor_id, "another-secret")
    web_chat = itsdangerous.URLSafeTimedSerializer(SECRET, salt="xinqiao.webchat.session").dumps(
        {"c": counsellor_id}
    )
    tampered = [
        _flip(payload, -5) + "." + rest,
        # not the last character: base64's last one carries padding bits, and a change there may decode
        # to the same signature (a flaky test once, when the cookie happened to end in "A")
        _flip(cookie, -5),
        other,  # signed with another secret
        web_chat,  # a web chat session is no console session
        "",
    ]
    for value in tampered:
        _, response = await app.asgi_client.get("/console/api/me", headers=_as(value))
        assert response.status == 401, value
        assert response.json == {"error": "signed_out"}

    thirteen_hours_ago = int(time.time()) - 13 * 3600
    monkeypatch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp", lambda self: thirteen_hours_ago)
    expired, _ = await _counsellor_cookie(sessions, counsellor_id, SECRET)
    monkeypatch.undo()
    _, response = await app.asgi_client.get("/console/api/me", headers=_as(expired))
    assert response.status == 401


def _flip(text: str, index: int) -> str:
    """`text` with the character at a negative `index` (not -1) changed: a whole base64 character of
    data, so the bytes it decodes to change."""
    changed = "A" if text[index] != "A" else "B"
    return text[:index] + changed + text[index + 1 :]


async def _counsellor_cookie(sessions: Sessions, counsellor_id: int, secret: str) -> tuple[str, str]:
    counsellor = await _get(sessions, counsellor_id)
    tokens = ConsoleSessions(secret, 12 * 3600)
    value, session = tokens.issue(counsellor.id, counsellor.password_hash)
    return value, tokens.csrf_token(session)


async def test_state_changing_requests_need_the_sessions_csrf_token(app: Sanic, sessions: Sessions) -> None:
    await _counsellor(sessions)
    cookie, csrf = await _signed_in(app)
    second_cookie, second_csrf = await _signed_in(app)
    assert second_csrf != csrf  # bound to the session, not to the counsellor
    for path, method in (("/console/api/test/change", "put"), ("/console/api/logout", "post")):
        for token in (None, "", "0" * len(csrf), second_csrf, csrf.upper(), csrf + " "):
            _, response = await getattr(app.asgi_client, method)(path, headers=_as(cookie, token))
            assert response.status == 403, (path, token)
            assert response.json == {"error": "csrf"}
    _, changed = await app.asgi_client.put("/console/api/test/change", headers=_as(cookie, csrf))
    assert changed.status == 200
    _, logged_out = await app.asgi_client.post("/console/api/logout", headers=_as(second_cookie, second_csrf))
    assert logged_out.status == 200
    value, header = _cookie(logged_out)
    assert value == "" and "max-age=0" in header.lower() and "path=/console" in header.lower()
    assert (await _audit(sessions))[-1].action == "sign_out"


async def test_a_supervisor_route_refuses_a_volunteer(app: Sanic, sessions: Sessions) -> None:
    await _counsellor(sessions, HANDLE, CounsellorRole.VOLUNTEER)
    supervisor_id = await _counsellor(sessions, "lead-supervisor", CounsellorRole.SUPERVISOR)
    volunteer, _ = await _signed_in(app)
    _, refused = await app.asgi_client.get("/console/api/test/supervisors", headers=_as(volunteer))
    assert refused.status == 403
    assert refused.json == {"error": "forbidden"}
    supervisor, _ = await _signed_in(app, "lead-supervisor")
    _, allowed = await app.asgi_client.get("/console/api/test/supervisors", headers=_as(supervisor))
    assert allowed.status == 200
    assert allowed.json == {"id": supervisor_id, "role": "supervisor"}
    _, anonymous = await app.asgi_client.get("/console/api/test/supervisors")
    assert anonymous.status == 401


def test_a_misspelt_role_fails_when_the_route_is_declared() -> None:
    with pytest.raises(ValueError):
        require_counsellor("supervisors")


async def test_a_password_change_signs_old_sessions_out(app: Sanic, sessions: Sessions) -> None:
    await _counsellor(sessions)
    old_cookie, old_csrf = await _signed_in(app)
    async with sessions() as session:
        await accounts.set_password(session, HANDLE, "a brand new password")
    _, me = await app.asgi_client.get("/console/api/me", headers=_as(old_cookie))
    assert me.status == 401 and me.json == {"error": "signed_out"}
    _, put = await app.asgi_client.put("/console/api/test/change", headers=_as(old_cookie, old_csrf))
    assert put.status == 401
    assert (await _login(app)).status == 401  # the old password no longer works
    new_cookie, _ = await _signed_in(app, HANDLE, "a brand new password")
    _, me = await app.asgi_client.get("/console/api/me", headers=_as(new_cookie))
    assert me.status == 200


async def test_no_password_or_typed_handle_reaches_a_log_or_the_audit(
    app: Sanic, sessions: Sessions, caplog: pytest.LogCaptureFixture
) -> None:
    # Everything at INFO, and our own modules and Sanic's at DEBUG. (aiosqlite's DEBUG logger echoes every
    # SQL parameter, the handle included: a deployment must never run it at DEBUG.)
    caplog.set_level(logging.INFO)
    for name in ("integrations", "records", "sanic"):
        caplog.set_level(logging.DEBUG, logger=name)
    await _counsellor(sessions)
    app.ctx.console_sign_in_limiter = AttemptLimiter(100, 60)
    signed_in = await _login(app, address=STRANGER)
    cookie, csrf = _cookie(signed_in)[0], signed_in.json["csrf"]
    device = _device(signed_in)
    for _ in range(5):
        await _login(app, GHOST, PASSWORD, address=STRANGER)
    for _ in range(5):
        await _login(app, HANDLE, WRONG, address=STRANGER)
    await _login(app, address=STRANGER)  # locked
    for _ in range(5):
        await _login(app, HANDLE, WRONG, device=device, address=STRANGER)
    await _login(app, device=device, address=STRANGER)  # that device locked
    for n in range(10):
        await _login(app, f"{GHOST}-{n}", WRONG, address=STRANGER)  # and the address
    await app.asgi_client.post("/console/api/logout", headers=_as(cookie, csrf))
    app.ctx.console_sign_in_limiter = AttemptLimiter(0, 60)
    assert (await _login(app, address=STRANGER)).status == 429

    audit = await _audit(sessions)
    actions = {e.action for e in audit}
    assert {"sign_in", "sign_in_failed", "account_locked", "sign_in_source_locked", "sign_out"} <= actions
    recorded = json.dumps([[e.actor, e.subject, e.detail] for e in audit], ensure_ascii=False)
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert caplog.records  # the logs were captured, so their silence means something
    for secret in (PASSWORD, WRONG, HANDLE, GHOST, STRANGER, device, device.split(".")[0], cookie):
        assert secret not in recorded
        assert secret not in logged
