"""Writing pages to the outbox, in the caller's transaction, at most once per recipient and reason.

The dedupe key names the case, why it is paged, at which level and ladder stage, and the recipient, so
escalations racing each other (or a retried action) write one row, and the dispatcher sends it once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from records import outbox
from records.models import Case

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
    """Adds a page for one counsellor. True when it is new; False when that page was already written."""
    return await outbox.add_once(
        session,
        kind=PAGE,
        dedupe_key=page_key(case_id, reason, counsellor_id, level=level, stage=stage),
        case_id=case_id,
        counsellor_id=counsellor_id,
        payload={"case_id": case_id, "level": level, "reason": reason, "stage": stage, **detail},
        available_at=at,
        created_at=at,
    )


async def page_all(
    session: AsyncSession,
    case: Case,
    recipients: list[int],
    reason: str,
    stage: int | str,
    now: datetime,
    **detail: Any,
) -> list[int]:
    """Pages each recipient about the case at its level; returns those paged now (a page already
    written for the same case, reason, level, stage and person is not written again)."""
    return [
        counsellor_id
        for counsellor_id in recipients
        if await page(
            session,
            case_id=case.id,
            counsellor_id=counsellor_id,
            reason=reason,
            level=case.level,
            stage=stage,
            at=now,
            **detail,
        )
    ]
