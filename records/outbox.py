"""The store's side of sending: lease pending items, record deliveries and failures.

An item is leased (status `sending`, `lease_until`) in a short transaction before it is sent, so two
dispatchers never send it at the same time; a dispatcher that dies mid-send loses its lease and the item
is taken again after `lease_until`. Failures back off exponentially up to a limit, then the item is
marked failed and the failure is audited for a supervisor.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from records import audit
from records.models import Case, OutboxItem, OutboxStatus, utcnow


async def add_once(session: AsyncSession, **values: Any) -> bool:
    """Writes an item in the caller's transaction unless one with its dedupe key exists; True when new.

    An INSERT … ON CONFLICT DO NOTHING, so a duplicate neither fails the transaction nor waits on it.
    """
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(OutboxItem)
        .values(status=OutboxStatus.PENDING, attempts=0, delivered_via=[], **values)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
    )
    return bool((await session.execute(statement)).rowcount)


async def lease(
    session: AsyncSession,
    *,
    kind: str = "page",
    now: datetime | None = None,
    limit: int = 20,
    lease_seconds: float = 30.0,
) -> list[OutboxItem]:
    """Takes up to `limit` items of one kind that are due, oldest first, and commits the lease. Each kind
    has its own dispatcher (pages to staff, messages to users), so one never waits behind the other. Of a
    topic only the first unsent item is due: a user's second message waits until the first is sent (or
    has failed for good), however its retries go."""
    now = now or utcnow()
    earlier = aliased(OutboxItem)
    waiting_behind = (
        select(earlier.id)
        .where(
            earlier.topic == OutboxItem.topic,
            earlier.id < OutboxItem.id,
            earlier.status.in_((OutboxStatus.PENDING, OutboxStatus.SENDING)),
        )
        .exists()
    )
    due = and_(
        OutboxItem.kind == kind,
        or_(
            and_(OutboxItem.status == OutboxStatus.PENDING, OutboxItem.available_at <= now),
            and_(OutboxItem.status == OutboxStatus.SENDING, OutboxItem.lease_until < now),
        ),
        or_(OutboxItem.topic.is_(None), ~waiting_behind),
    )
    candidates: Sequence[OutboxItem] = (
        await session.scalars(
            select(OutboxItem)
            .where(due)
            .order_by(OutboxItem.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not candidates:
        await session.commit()
        return []
    # One UPDATE … RETURNING for the batch: the `due` condition again, so an item another dispatcher
    # took between the read and the write (SQLite reads take no row locks) is not returned twice.
    taken = set(
        await session.scalars(
            update(OutboxItem)
            .where(OutboxItem.id.in_([item.id for item in candidates]), due)
            .values(status=OutboxStatus.SENDING, lease_until=now + timedelta(seconds=lease_seconds))
            .returning(OutboxItem.id)
            .execution_options(synchronize_session=False)
        )
    )
    leased = [item for item in candidates if item.id in taken]
    await session.commit()
    return leased


async def mark_sent(
    session: AsyncSession, deliveries: dict[int, list[str]], *, now: datetime | None = None
) -> None:
    """Records a round's deliveries (item id → the channels it went through) in one transaction."""
    sent_at = now or utcnow()
    for item_id, via in deliveries.items():
        await session.execute(
            update(OutboxItem)
            .where(OutboxItem.id == item_id)
            .values(
                status=OutboxStatus.SENT,
                delivered_via=via,
                sent_at=sent_at,
                lease_until=None,
                attempts=OutboxItem.attempts + 1,
            )
        )
    await session.commit()


async def mark_failed_attempt(
    session: AsyncSession,
    item: OutboxItem,
    *,
    delivered_via: list[str],
    error: str,
    max_attempts: int,
    failure_action: str = "page_failed",
    base_delay_seconds: float = 2.0,
    now: datetime | None = None,
) -> str:
    """Counts a failed attempt: retried after 2, 4, 8 … seconds, failed for good at `max_attempts`, which
    is audited as `failure_action`. `error` is a code (an exception's class name), never a payload or an
    address."""
    now = now or utcnow()
    attempts = item.attempts + 1
    status = OutboxStatus.FAILED if attempts >= max_attempts else OutboxStatus.PENDING
    await session.execute(
        update(OutboxItem)
        .where(OutboxItem.id == item.id)
        .values(
            status=status,
            attempts=attempts,
            delivered_via=delivered_via,
            last_error=error[:200],
            lease_until=None,
            available_at=now + timedelta(seconds=base_delay_seconds * 2 ** (attempts - 1)),
        )
    )
    if status == OutboxStatus.FAILED:
        case = await session.get(Case, item.case_id) if item.case_id is not None else None
        audit.append(
            session,
            actor="dispatcher",
            action=failure_action,
            subject=case.conversation_id if case is not None else (item.topic or ""),
            case_id=item.case_id,
            outbox_id=item.id,
            counsellor_id=item.counsellor_id,
            attempts=attempts,
            error=error[:200],
        )
    await session.commit()
    return status
