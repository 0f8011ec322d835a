"""Retention and handover: closed cases are purged after a set time; any case can be exported as JSON.

A purge deletes the case and everything hanging from it (assignments, notes, referrals, follow-ups, the
family contact, its pages), then the conversation's messages when the conversation has no other case.
The audit log keeps every entry about the case, codes only, and gains one `case_purged` entry, so what
happened stays provable after the personal data is gone.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from records import audit
from records.models import (
    Assignment,
    AuditEntry,
    Case,
    CaseStatus,
    FamilyContact,
    FollowUp,
    Message,
    Note,
    OutboxItem,
    Referral,
    utcnow,
)

EXPORT_FORMAT = "xinqiao.case/1"


async def purge_closed(
    session: AsyncSession, *, older_than: timedelta, actor: str = "retention", now: datetime | None = None
) -> list[int]:
    """Purges cases closed before `now - older_than`. Returns the purged case ids. Commits per case."""
    cutoff = (now or utcnow()) - older_than
    ids = list(
        await session.scalars(
            select(Case.id).where(Case.status == CaseStatus.CLOSED, Case.closed_at < cutoff).order_by(Case.id)
        )
    )
    for case_id in ids:
        case = await session.get_one(Case, case_id)
        counts = {}
        for model in (FollowUp, Referral, Note, Assignment, FamilyContact, OutboxItem):
            deleted = await session.execute(delete(model).where(model.case_id == case_id))
            counts[model.__tablename__] = deleted.rowcount
        others = await session.scalar(
            select(func.count(Case.id)).where(
                Case.conversation_id == case.conversation_id, Case.id != case_id
            )
        )
        if not others:
            # replies first: they point at the message they answer
            deleted = await session.execute(
                delete(Message).where(
                    Message.conversation_id == case.conversation_id, Message.reply_to_id.is_not(None)
                )
            )
            rest = await session.execute(
                delete(Message).where(Message.conversation_id == case.conversation_id)
            )
            counts["message"] = deleted.rowcount + rest.rowcount
        audit.append(
            session,
            actor=actor,
            action="case_purged",
            subject=case.conversation_id,
            case_id=case_id,
            level=case.level,
            closed_at=case.closed_at.isoformat() if case.closed_at else None,
            deleted=counts,
        )
        await session.delete(case)
        await session.commit()
    return ids


async def export_case(session: AsyncSession, case_id: int, *, actor: str) -> dict[str, Any]:
    """Everything about a case, decrypted, for a handover to another service. The export is audited;
    the file it goes into is the receiver's responsibility."""
    case = await session.get(Case, case_id)
    if case is None:
        raise LookupError(f"no case {case_id}")

    async def rows(model: Any) -> list[dict[str, Any]]:
        found = await session.scalars(select(model).where(model.case_id == case_id).order_by(model.id))
        return [_plain(row) for row in found]

    messages = await session.scalars(
        select(Message).where(Message.conversation_id == case.conversation_id).order_by(Message.id)
    )
    trail = await session.scalars(
        select(AuditEntry).where(AuditEntry.subject == case.conversation_id).order_by(AuditEntry.id)
    )
    document = {
        "format": EXPORT_FORMAT,
        "exported_at": utcnow().isoformat(),
        "case": _plain(case),
        "assignments": await rows(Assignment),
        "notes": await rows(Note),
        "referrals": await rows(Referral),
        "follow_ups": await rows(FollowUp),
        "family_contacts": await rows(FamilyContact),
        "messages": [_plain(m, skip=("assessment",)) for m in messages],
        "audit": [_plain(entry) for entry in trail],
    }
    audit.append(session, actor=actor, action="case_exported", subject=case.conversation_id, case_id=case_id)
    await session.commit()
    return document


def _plain(row: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """A row's columns as JSON-ready values (datetimes as ISO 8601)."""
    values = {}
    for column in row.__table__.columns:
        if column.key in skip:
            continue
        value = getattr(row, column.key)
        values[column.key] = value.isoformat() if isinstance(value, datetime) else value
    return values
