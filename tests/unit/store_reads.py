"""Reading back what the actions wrote to the store of record."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from records.db import with_session
from records.models import AuditEntry, Case

# What escalation adds to the audit log beside the entry an action writes itself.
CASE_ACTIONS = ("case_opened", "case_raised", "too_few_to_page", "flood_paged", "flood_grouped")


async def _all(url: str, query: Any) -> Sequence[Any]:
    async def rows(session: Any) -> Sequence[Any]:
        return (await session.scalars(query)).all()

    return await with_session(url, rows)


async def audit_log(url: str, *, with_cases: bool = False) -> Sequence[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.id)
    if not with_cases:
        query = query.where(AuditEntry.action.not_in(CASE_ACTIONS))
    return await _all(url, query)


async def cases(url: str) -> Sequence[Case]:
    return await _all(url, select(Case).order_by(Case.id))
