"""Writing pages to the outbox, in the caller's transaction, at most once per recipient and reason.

The dedupe key names the case, why it is paged, at which level and ladder stage, and the recipient, so
escalations racing each other (or a retried action) write one row, and the dispatcher sends it once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from records.models import OutboxItem, OutboxStatus

PAGE = "page"


def page_key(case_id: int, reason: str, counsellor_id: int, *, level: str, stage: int | str = 0) -> str:
    return f"{PAGE}:{case_id}:{reason}:{level}:{stage}:{counsellor_id}"


async def page(
    session: AsyncSession,
    *,
    case_id: int,
    counsellor_id: int,
    reason: str,
    level: str,
    at: datetime,
    stage: int | str = 0,
    **detail: Any,
) -> bool:
    """Adds a page for one counsellor. True when it is new; False when that page was already written.

    An INSERT … ON CONFLICT DO NOTHING, so a duplicate neither fails the transaction nor waits on it.
    """
    values = {
        "kind": PAGE,
        "dedupe_key": page_key(case_id, reason, counsellor_id, level=level, stage=stage),
        "case_id": case_id,
        "counsellor_id": counsellor_id,
        "payload": {"case_id": case_id, "level": level, "reason": reason, "stage": stage, **detail},
        "status": OutboxStatus.PENDING,
        "attempts": 0,
        "available_at": at,
        "delivered_via": [],
        "created_at": at,
    }
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(OutboxItem).values(**values).on_conflict_do_nothing(index_elements=["dedupe_key"])
    )
    result = await session.execute(statement)
    return bool(result.rowcount)
