"""What the fault suite's property tests share: one event loop per test (hypothesis runs its examples
synchronously, so each example runs its requests on the test's loop, and the app is built once per test),
input strategies (any code point including lone surrogates, control characters, huge and empty
strings, wrong types, missing and extra fields), the red texts of issue 11, the store read back, and
the checks every answer must pass."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import uuid
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

import pytest
from argon2 import PasswordHasher
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from integrations.inbound import InvalidMessage, clean_text
from records import accounts
from records.db import create_engine, session_factory
from records.models import Case, Message
from triage_protocols import screen
from triage_protocols.directory import hotline_list

T = TypeVar("T")

# The red texts of the brief; the first is issue 11's defect 3.
RED_TEXTS = ("药我已经准备好了，今晚就全吃下去", "我现在就在楼顶，准备跳下去了")
MAX_TEXT = 2000
# What a red answer must carry: the directory's whole list, or at least the national hotline and 110.
RED_NUMBERS = ("12356", "110")

# Distinctive values for the gateway's own secrets, so the log scan and the body checks can find them.
RASA_TOKEN = "rasa-token-" + uuid.uuid4().hex
SESSION_SECRET = "session-secret-" + uuid.uuid4().hex


# XINQIAO_FAULT_EXAMPLES_SCALE=5 runs five times as many examples (a longer hunt than CI's).
SCALE = float(os.environ.get("XINQIAO_FAULT_EXAMPLES_SCALE", "1"))


def examples(count: int) -> settings:
    """Bounded: the whole suite runs in about three minutes on two cores."""
    return settings(
        max_examples=max(1, round(count * SCALE)),
        deadline=None,
        database=None,  # no example database in the tree (other engineers share it)
        # no shrinking: every request builds the app's clients anew (about 0.2 s), and shrinking a
        # failure takes minutes; the failing example is printed as generated
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


class Runner:
    """The test's own event loop: hypothesis calls a synchronous function per example, which runs the
    example's requests here, so the app, its store and the stand-ins live across examples."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, work: Awaitable[T]) -> T:
        return self.loop.run_until_complete(work)

    def close(self) -> None:
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


# --- strategies -----------------------------------------------------------------------------------------

SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
CONTROLS = st.sampled_from([chr(c) for c in (*range(32), 127, *range(0x80, 0xA0))])
INVISIBLE = st.sampled_from(["\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u2060", "\ufeff", "\u00ad"])
SLASHES = st.sampled_from(["/", "／", "⁄", "∕", "/start", "/restart", "/myid", "/help"])
ANY_CHAR = st.one_of(st.characters(), SURROGATES, CONTROLS, INVISIBLE)
GARBAGE = st.text(ANY_CHAR, max_size=40)
GARBAGE_NO_SURROGATE = st.text(
    st.one_of(st.characters(exclude_categories=["Cs"]), CONTROLS, INVISIBLE), max_size=40
)
HUGE = st.sampled_from([2001, 2500, 5000]).flatmap(
    lambda n: st.sampled_from(["啊" * n, "a" * n, "\ud83d" * n])
)


def red_mixed() -> st.SearchStrategy[str]:
    """A red text inside random garbage, or followed by a lone surrogate, or after a command's slash."""
    red = st.sampled_from(RED_TEXTS)
    return st.one_of(
        st.tuples(GARBAGE, red, GARBAGE).map("".join),
        st.tuples(red, SURROGATES).map("".join),
        st.tuples(SLASHES, st.sampled_from(["", " ", "\u200b"]), red).map("".join),
        st.tuples(red, CONTROLS, red).map("".join),
    )


def texts() -> st.SearchStrategy[str]:
    """Any text a client may send: garbage, empty and blank, huge, red in garbage."""
    return st.one_of(
        GARBAGE,
        red_mixed(),
        red_mixed(),
        st.sampled_from(["", " ", "\n\t", "/", "\u200b", "\ud83d", "\x00"]),
        HUGE,
        st.tuples(st.sampled_from(RED_TEXTS), st.just("啊" * 1990)).map("".join),  # over the limit
    )


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    GARBAGE,
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(GARBAGE, inner, max_size=3)),
    max_leaves=6,
)
WRONG_TYPES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.lists(JSON_SCALARS, max_size=3),
    st.dictionaries(GARBAGE, JSON_SCALARS, max_size=2),
)


def field(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field's value: usually of the right kind, sometimes of another type, sometimes missing."""
    return st.one_of(value, value, value, WRONG_TYPES, st.just(MISSING))


MISSING: Any = object()


def without_missing(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not MISSING}


MALFORMED_BODIES = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [
            b"",
            b"{",
            b"not json",
            b"[1, 2]",
            b"null",
            b"\xed\xa0\xbd",  # a surrogate written as UTF-8: no valid UTF-8 holds it
            b'{"text": "\xff\xfe"}',
            b'{"a": ' * 200 + b"1" + b"}" * 200,
            b'{"session": "' + b"x" * 70000 + b'"}',
        ]
    ),
)


def json_bytes(value: Any) -> bytes:
    """JSON with every non-ASCII code point escaped: a lone surrogate goes out as "\\ud83d", as a broken
    client writes it (it has no UTF-8 form)."""
    return json.dumps(value, ensure_ascii=True, default=str).encode()


# --- what a message should come to --------------------------------------------------------------------


def cleaned(raw: Any) -> str | None:
    """The text as the product keeps it, or None when the product must refuse it."""
    try:
        return clean_text(raw, MAX_TEXT)
    except InvalidMessage:
        return None


def level_of(text: str, audience: str | None) -> str:
    return str(screen(text, audience=audience or "student").level)


def escalating(text: str | None, audience: str | None) -> str | None:
    """ "red" or "orange" when the cleaned text screens so, else None."""
    if text is None:
        return None
    level = level_of(text, audience)
    return level if level in ("red", "orange") else None


def has_numbers(answer: str) -> bool:
    return hotline_list() in answer or all(number in answer for number in RED_NUMBERS)


# --- the store, read back -------------------------------------------------------------------------------


class Store:
    """A reader of the test's database, on an engine of its own (on the test's loop)."""

    def __init__(self, url: str) -> None:
        self.engine: AsyncEngine = create_engine(url)
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(self.engine)

    async def inbound(self, channel: str, external_id: str) -> list[Message]:
        async with self.sessions() as session:
            found = await session.scalars(
                select(Message).where(
                    Message.channel == channel, Message.external_id == external_id, Message.direction == "in"
                )
            )
            return list(found)

    async def inbound_like(self, channel: str, prefix: str) -> list[Message]:
        async with self.sessions() as session:
            found = await session.scalars(
                select(Message).where(
                    Message.channel == channel,
                    Message.direction == "in",
                    Message.external_id.startswith(prefix, autoescape=True),
                )
            )
            return list(found)

    async def message(self, message_id: int) -> Message | None:
        async with self.sessions() as session:
            return await session.get(Message, message_id)

    async def count_inbound(self) -> int:
        async with self.sessions() as session:
            query = select(func.count()).select_from(Message).where(Message.direction == "in")
            return int(await session.scalar(query) or 0)

    async def cases_of(self, conversation_id: str) -> list[Case]:
        async with self.sessions() as session:
            return list(await session.scalars(select(Case).where(Case.conversation_id == conversation_id)))

    async def close(self) -> None:
        await self.engine.dispose()


# --- the checks every answer must pass ------------------------------------------------------------------


def body_text(response: Any) -> str:
    body = response.body
    return body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else str(body)


def assert_no_secret(response: Any, secrets: Iterable[str]) -> None:
    """The answer's body and headers name no secret (a token, a session, a signature)."""
    text = body_text(response) + "\n" + "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    for secret in secrets:
        if secret and len(secret) >= 6:
            assert secret not in text, f"the answer ({response.status}) names a secret: {text[:300]!r}"


def assert_no_bare_5xx(response: Any) -> None:
    """Never a 5xx, but a 503 that gives the numbers to call; never Sanic's English error page."""
    text = body_text(response)
    assert "Internal Server Error" not in text and "Traceback" not in text, text[:500]
    if response.status >= 500:
        assert response.status == 503 and has_numbers(text), (
            f"{response.status} without the numbers: {text[:500]!r}"
        )


def light_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id at its lightest for a test's own staff: the same code path, a fraction of the time. The
    dummy hash is cached, so the test gets a cache of its own: a later test must not find a light one."""
    monkeypatch.setattr(accounts, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    monkeypatch.setattr(accounts, "_dummy_hash", functools.cache(accounts._dummy_hash.__wrapped__))
