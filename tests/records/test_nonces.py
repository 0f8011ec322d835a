"""The store of WeChat's once-only nonces, on SQLite and PostgreSQL built by the migrations: a nonce is
bound to its first message, the same message again is a retry, gateways racing on one nonce are decided
by the unique digest, nothing is kept in clear, and nonces past the window are forgotten."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import select

from records import nonces
from records.db import create_engine, session_factory
from records.models import WeChatNonce
from records.nonces import Seen
from tests.records.conftest import Sessions, count

WINDOW = timedelta(seconds=300)
STAMP = "1796400000"
NONCE = "a1b2c3d4e5"
MESSAGE = '{"Content": "最近考试压力好大", "FromUserName": "oXQ1n5test0penidABCDEFGHIJK", "MsgId": "42"}'
OTHER = '{"Content": "药已经准备好了", "FromUserName": "oXQ1n5someone0elseZYXWVUTSRQ", "MsgId": "43"}'
GATEWAYS = 8


async def seen(
    sessions: Sessions, message: str = MESSAGE, *, stamp: str = STAMP, expires_at: datetime
) -> Seen:
    async with sessions() as session:
        return await nonces.seen(
            session, timestamp=stamp, nonce=NONCE, message=message, expires_at=expires_at
        )


async def test_a_nonce_is_bound_to_its_first_message(sessions: Sessions, now: datetime) -> None:
    until = now + WINDOW
    assert await seen(sessions, expires_at=until) is Seen.FIRST
    assert await seen(sessions, expires_at=until) is Seen.AGAIN  # WeChat's retry
    assert await seen(sessions, OTHER, expires_at=until) is Seen.REPLAYED
    assert await seen(sessions, MESSAGE, expires_at=until) is Seen.AGAIN  # a replay changed nothing
    # The signature covers the timestamp too: the same nonce under another timestamp is another request.
    assert await seen(sessions, OTHER, stamp="1796400001", expires_at=until) is Seen.FIRST
    assert await count(sessions, WeChatNonce) == 2


async def test_only_keyed_digests_are_kept(sessions: Sessions, now: datetime) -> None:
    await seen(sessions, expires_at=now + WINDOW)
    async with sessions() as session:
        [row] = list(await session.scalars(select(WeChatNonce)))
    kept = f"{row.nonce_digest} {row.body_digest}"
    for clear in (NONCE, STAMP, "oXQ1n5test0penidABCDEFGHIJK", "考试"):
        assert clear not in kept
    # Keyed: not the plain SHA-256 of what was seen, which anyone could compute from a guess.
    assert row.body_digest != hashlib.sha256(MESSAGE.encode()).hexdigest()
    assert row.nonce_digest != hashlib.sha256(f"{STAMP}\x00{NONCE}".encode()).hexdigest()
    assert len(row.nonce_digest) == len(row.body_digest) == 64


async def _gateways_at_once(database_url: str, messages: list[str], until: datetime) -> list[Seen]:
    """Each racer is a gateway of its own: its own engine and connection to the one store."""
    engines = [create_engine(database_url) for _ in messages]
    try:
        return await asyncio.gather(
            *(seen(session_factory(e), m, expires_at=until) for e, m in zip(engines, messages, strict=True))
        )
    finally:
        for engine in engines:
            await engine.dispose()


async def test_gateways_racing_on_one_nonce_with_one_message_see_it_once(
    database_url: str, sessions: Sessions, now: datetime
) -> None:
    results = await _gateways_at_once(database_url, [MESSAGE] * GATEWAYS, now + WINDOW)
    assert Counter(results) == {Seen.FIRST: 1, Seen.AGAIN: GATEWAYS - 1}
    assert await count(sessions, WeChatNonce) == 1


async def test_gateways_racing_on_one_nonce_with_other_messages_take_only_one(
    database_url: str, sessions: Sessions, now: datetime
) -> None:
    messages = [f'{{"Content": "第{i}条", "MsgId": "{i}"}}' for i in range(GATEWAYS)]
    results = await _gateways_at_once(database_url, messages, now + WINDOW)
    assert Counter(results) == {Seen.FIRST: 1, Seen.REPLAYED: GATEWAYS - 1}
    first = messages[results.index(Seen.FIRST)]
    assert await seen(sessions, first, expires_at=now + WINDOW) is Seen.AGAIN


async def test_a_nonce_recorded_between_the_look_and_the_insert_is_decided_by_the_unique_digest(
    sessions: Sessions, now: datetime
) -> None:
    """Another gateway writes the row after this one looked and found nothing: the insert fails on the
    unique digest, and the row that won is what this request is compared with."""
    until = now + WINDOW
    for message, expected in ((MESSAGE, Seen.AGAIN), (OTHER, Seen.REPLAYED)):
        async with sessions() as session:
            look = session.scalar
            looked = False

            async def misses_once(query):  # type: ignore[no-untyped-def]
                nonlocal looked
                if not looked:
                    looked = True
                    await seen(sessions, expires_at=until)  # the other gateway, first
                    return None
                return await look(query)

            session.scalar = misses_once  # type: ignore[method-assign]
            result = await nonces.seen(
                session, timestamp=STAMP, nonce=NONCE, message=message, expires_at=until
            )
        assert result is expected
    assert await count(sessions, WeChatNonce) == 1


async def test_nonces_past_the_window_are_forgotten(sessions: Sessions, now: datetime) -> None:
    await seen(sessions, expires_at=now + WINDOW)
    await seen(sessions, stamp="1796399000", expires_at=now - timedelta(seconds=1))
    async with sessions() as session:
        assert await nonces.purge(session, now=now) == 1
    assert await count(sessions, WeChatNonce) == 1
    async with sessions() as session:
        assert await nonces.purge(session, now=now + WINDOW + timedelta(seconds=1)) == 1
    assert await count(sessions, WeChatNonce) == 0
    # Forgotten: such a request is refused as stale before this is asked, but the store holds nothing.
    assert await seen(sessions, OTHER, expires_at=now + WINDOW) is Seen.FIRST
