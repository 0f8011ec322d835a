"""The append-only audit log. Entries hold ids and codes; message text never goes here."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from records.models import AuditEntry


def append(session: AsyncSession, *, actor: str, action: str, subject: str, **detail: Any) -> AuditEntry:
    """Adds an entry to the caller's transaction, so the entry commits with the change it describes."""
    entry = AuditEntry(actor=actor, action=action, subject=subject, detail=detail)
    session.add(entry)
    return entry
