"""Builds the async engine and session factory from a URL. Nothing connects at import time."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


def _is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


# Loggers that write SQL parameters (message texts, addresses) at DEBUG. Held at WARNING whatever level a
# deployment sets for the rest, so no debugging session puts a child's words in a log file.
PARAMETER_LOGGERS = ("aiosqlite", "sqlalchemy.engine", "asyncpg")


def quiet_store_logs() -> None:
    for name in PARAMETER_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def create_engine(url: str) -> AsyncEngine:
    """An engine for the gateway or the action server.

    SQLite is set to WAL with a busy timeout, because two processes (gateway and action server) write
    to the same file; foreign keys are on because SQLite leaves them off. Each process keeps one SQLite
    connection: its sessions queue for it in order, instead of racing for the file's write lock in
    SQLite's busy loop, which sleeps and lets some writers wait seconds under load (escalation.py
    measured p99 2.3 s at 20 concurrent red messages with a pool, against the figure in the README
    without). A session must therefore never wait on another session of the same process.
    """
    quiet_store_logs()
    if _is_sqlite(url):
        engine = create_async_engine(url, connect_args={"timeout": 15}, pool_size=1, max_overflow=0)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=15000")
            cursor.close()

        return engine
    return create_async_engine(url, pool_pre_ping=True)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def with_session[T](url: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Runs one unit of work on a database named by URL, with an engine of its own that is disposed
    afterwards: for commands, tests and benchmarks that touch a store once, not for a running service."""
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            return await work(session)
    finally:
        await engine.dispose()
