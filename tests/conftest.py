"""Shared fixtures. A database test runs on SQLite and on PostgreSQL, each built by the migrations.

PostgreSQL is the server on 127.0.0.1:5432 (or XINQIAO_TEST_POSTGRES_URL). Without it the PostgreSQL
half is skipped on a developer's machine and fails when CI is set, so CI never passes by skipping.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from records import crypto
from records.db import create_engine, session_factory
from records.migrate import upgrade

# Encryption keys for the whole run, made up here: the store refuses to write a note without them, as a
# deployment would. Stacks started by the tests inherit them through the environment.
os.environ.setdefault(crypto.KEYS_VARIABLE, crypto.new_key())
os.environ.setdefault(crypto.LOOKUP_VARIABLE, crypto.new_key())

POSTGRES_URL = os.environ.get("XINQIAO_TEST_POSTGRES_URL", "postgresql+asyncpg://127.0.0.1:5432/test")


def require_service(name: str, error: BaseException) -> None:
    """Skip on a developer's machine; fail under CI, where every service must be there."""
    message = f"{name} is not reachable ({type(error).__name__}: {error})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI is set, so this fails instead of skipping", pytrace=False)
    pytest.skip(message)


def _asyncpg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL), timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"xinqiao_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        require_service("PostgreSQL", error)
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return f"sqlite+aiosqlite:///{tmp_path / 'xinqiao.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database of each kind, brought to the newest schema by `alembic upgrade head`."""
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    upgrade(url)
    return url


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()
