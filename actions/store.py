"""The action server's handle on the store of record, opened on first use, never at import time.

Every write here is best effort for the user's sake: if the store cannot be reached the user is answered
all the same and the failure is logged (without personal data). The gateway has already stored the
message and, at orange and red, opened the case, so the record does not depend on this process.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from records import audit, contacts
from records.db import create_engine, session_factory
from records.escalation import Escalation, Origin, escalate
from records.settings import default_database_url
from triage_protocols import Level
from triage_protocols.results import highest

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
    except Exception:  # the reply to the user must not depend on the store
        log.exception("could not record %s", action)
        return False
    return True


async def record_handoff(
    conversation_id: str,
    reason: str,
    *,
    origin: Origin = "handoff",
    level: str | None = None,
    signals: list[str] | None = None,
    protocol_version: str | None = None,
    audience: str | None = None,
    subject: str = "self",
    **detail: Any,
) -> bool:
    """A person asked for, or needs, a human: recorded, and the conversation's case opened or raised in
    the same transaction, so the right people are paged. Never below yellow (a person was asked for);
    below orange the request itself is what opens the case."""
    known = level if level in Level.__members__.values() else None
    case_level = highest([Level.YELLOW, *([Level(known)] if known else [])])
    request = Escalation(
        conversation_id=conversation_id,
        level=case_level,
        origin=origin if case_level.at_least(Level.ORANGE) else "handoff",
        reason=reason[:64],
        signals=tuple(signals or ()),
        rule=detail.get("screen_rule"),
        protocol_version=protocol_version,
        subject="other" if subject == "other" else "self",
        audience=audience,
    )
    given = {"level": level, "signals": signals, "protocol_version": protocol_version}
    return await _escalate(
        request,
        "handoff_requested",
        reason=reason,
        **{key: value for key, value in given.items() if value is not None},
        **detail,
    )


async def record_checkin(conversation_id: str, accepted: bool, **detail: Any) -> bool:
    """The answer to a check-in offer. A yes opens a yellow case (二包一), whose check-in date the staff
    see; a no is only recorded."""
    if not accepted:
        return await record(conversation_id, "checkin_declined", **detail)
    request = Escalation(
        conversation_id=conversation_id, level=Level.YELLOW, origin="checkin", reason="checkin"
    )
    return await _escalate(request, "checkin_accepted", **detail)


async def record_audience(conversation_id: str, audience: str) -> bool:
    """The person said who they are: the conversation's audience in the store of record, so the gateway
    screens their next messages for that reader (a parent's words are about their child)."""
    try:
        async with sessions()() as session:
            await contacts.set_audience(session, conversation_id, audience)
    except Exception:  # the reply to the user must not depend on the store
        log.exception("could not record the audience")
        return False
    return True


async def _escalate(request: Escalation, action: str, **detail: Any) -> bool:
    try:
        async with sessions()() as session:
            audit.append(
                session, actor="action_server", action=action, subject=request.conversation_id, **detail
            )
            result = await escalate(session, request)
            await session.commit()
    except Exception:  # the reply to the user must not depend on the store
        log.exception("could not record %s or escalate", action)
        return False
    if result.case_id is not None:
        log.info("case %s at %s after %s", result.case_id, result.level, action)
    return True
