"""The action server's handle on the store of record, opened on first use, never at import time."""

from __future__ import annotations

import logging
import os
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from records import audit
from records.db import create_engine, session_factory
from records.settings import default_database_url

log = logging.getLogger(__name__)

_sessions: async_sessionmaker[AsyncSession] | None = None


def use_database(url: str) -> async_sessionmaker[AsyncSession]:
    """Points the actions at a database; tests call it with their own."""
    global _sessions
    _sessions = session_factory(create_engine(url))
    return _sessions


def sessions() -> async_sessionmaker[AsyncSession]:
    """The store of record, opened on first use from XINQIAO_DATABASE_URL (or the local default)."""
    return _sessions or use_database(os.environ.get("XINQIAO_DATABASE_URL") or default_database_url())


async def record(conversation_id: str, action: str, **detail: Any) -> bool:
    """Appends one entry (codes only, never a word of the chat) to the audit log. False when the store
    could not be reached: the user is answered all the same, and the failure is logged without
    personal data."""
    try:
        async with sessions()() as session:
            audit.append(session, actor="action_server", action=action, subject=conversation_id, **detail)
            await session.commit()
    except Exception:  # noqa: BLE001 - the reply to the user must not depend on the store
        log.exception("could not record %s", action)
        return False
    return True


async def record_handoff(conversation_id: str, reason: str, **detail: Any) -> bool:
    """A person asked for, or needs, a human."""
    return await record(conversation_id, "handoff_requested", reason=reason, **detail)


async def record_checkin(conversation_id: str, accepted: bool, **detail: Any) -> bool:
    """The answer to a check-in offer, so a counsellor can call back."""
    return await record(conversation_id, "checkin_accepted" if accepted else "checkin_declined", **detail)
