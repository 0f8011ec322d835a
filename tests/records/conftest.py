"""Shared helpers of the case-store tests: staff on shift, conversations, escalations, and what they left.

Every test here takes `sessions` (tests/conftest.py), so it runs on SQLite and on PostgreSQL, each built
by the migrations. Time is controlled by passing `now=` wherever a function takes it; shifts are laid
around the test's `now` so that every moment a test looks at (up to two days ahead) is covered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from records import escalation, messages
from records.escalation import Escalation, EscalationResult
from records.models import (
    Assignment,
    AuditEntry,
    Case,
    Counsellor,
    CounsellorRole,
    FamilyContact,
    FollowUp,
    OutboxItem,
    Shift,
    utcnow,
)

Sessions = async_sessionmaker[AsyncSession]

SHIFT_BEFORE = timedelta(hours=1)
SHIFT_AFTER = timedelta(days=2)


@dataclass(frozen=True)
class Staff:
    volunteers: list[int]  # active, on shift around `now`, in id order
    supervisor: int  # active, with no shift at all


@pytest.fixture
def now() -> datetime:
    """The test's reference time: the real time (functions without `now=` use the clock), to the second."""
    return utcnow().replace(microsecond=0)


async def add_counsellor(
    sessions: Sessions,
    handle: str,
    *,
    role: str = CounsellorRole.VOLUNTEER,
    active: bool = True,
    shift: tuple[datetime, datetime] | None = None,
    page_address: str | None = None,
) -> int:
    """A counsellor with at most one shift; returns the id. Handles and names are made up."""
    async with sessions() as session:
        counsellor = Counsellor(
            handle=handle,
            display_name=f"测试{handle}",
            role=role,
            active=active,
            page_address=page_address,
        )
        session.add(counsellor)
        await session.flush()
        if shift is not None:
            session.add(Shift(counsellor_id=counsellor.id, starts_at=shift[0], ends_at=shift[1]))
        await session.commit()
        return counsellor.id


def around(now: datetime) -> tuple[datetime, datetime]:
    """A shift covering `now` and the next two days."""
    return now - SHIFT_BEFORE, now + SHIFT_AFTER


async def seed_staff(sessions: Sessions, now: datetime, *, volunteers: int = 5) -> Staff:
    ids = [await add_counsellor(sessions, f"vol{i}", shift=around(now)) for i in range(1, volunteers + 1)]
    supervisor = await add_counsellor(sessions, "sup1", role=CounsellorRole.SUPERVISOR)
    return Staff(ids, supervisor)


@pytest.fixture
async def staff(sessions: Sessions, now: datetime) -> Staff:
    """Five volunteers on shift and one supervisor who has no shift (paged whenever a supervisor is)."""
    return await seed_staff(sessions, now)


async def new_conversation(sessions: Sessions, channel: str = "webchat", audience: str = "student") -> str:
    async with sessions() as session:
        return (await messages.create_conversation(session, channel, audience)).id


async def escalate(
    sessions: Sessions,
    conversation_id: str,
    level: str,
    *,
    now: datetime,
    origin: str = "screen",
    reason: str = "test:reason",
    signals: Sequence[str] = (),
    rule: str | None = None,
    protocol_version: str | None = None,
    **extra: str,
) -> EscalationResult:
    """One escalation in its own session, committed, as the gateway and the action server do it."""
    request = Escalation(
        conversation_id=conversation_id,
        level=level,
        origin=origin,  # type: ignore[arg-type]
        reason=reason,
        signals=tuple(signals),
        rule=rule,
        protocol_version=protocol_version,
        **extra,  # type: ignore[arg-type]
    )
    async with sessions() as session:
        result = await escalation.escalate(session, request, now=now)
        await session.commit()
        return result


async def open_case(
    sessions: Sessions, level: str, *, now: datetime, origin: str = "screen", **kwargs: object
) -> tuple[str, int]:
    """A new conversation escalated to `level`; returns (conversation id, case id)."""
    conversation_id = await new_conversation(sessions)
    result = await escalate(sessions, conversation_id, level, now=now, origin=origin, **kwargs)  # type: ignore[arg-type]
    assert result.opened and result.case_id is not None
    return conversation_id, result.case_id


async def get_case(sessions: Sessions, case_id: int) -> Case:
    async with sessions() as session:
        return await session.get_one(Case, case_id)


async def cases_of(sessions: Sessions, conversation_id: str | None = None) -> list[Case]:
    async with sessions() as session:
        query = select(Case).order_by(Case.id)
        if conversation_id is not None:
            query = query.where(Case.conversation_id == conversation_id)
        return list(await session.scalars(query))


async def assignments(sessions: Sessions, case_id: int) -> dict[str, int]:
    """role → counsellor id."""
    async with sessions() as session:
        rows = await session.scalars(select(Assignment).where(Assignment.case_id == case_id))
        return {row.role: row.counsellor_id for row in rows}


async def pages(sessions: Sessions, case_id: int | None = None, **where: object) -> list[OutboxItem]:
    async with sessions() as session:
        query = select(OutboxItem).order_by(OutboxItem.id)
        if case_id is not None:
            query = query.where(OutboxItem.case_id == case_id)
        items = list(await session.scalars(query))
    return [i for i in items if all(i.payload.get(k) == v for k, v in where.items())]


async def audit_entries(
    sessions: Sessions, action: str | None = None, subject: str | None = None
) -> list[AuditEntry]:
    async with sessions() as session:
        query = select(AuditEntry).order_by(AuditEntry.id)
        if action is not None:
            query = query.where(AuditEntry.action == action)
        if subject is not None:
            query = query.where(AuditEntry.subject == subject)
        return list(await session.scalars(query))


async def follow_ups(sessions: Sessions, case_id: int, kind: str | None = None) -> list[FollowUp]:
    async with sessions() as session:
        query = select(FollowUp).where(FollowUp.case_id == case_id).order_by(FollowUp.id)
        if kind is not None:
            query = query.where(FollowUp.kind == kind)
        return list(await session.scalars(query))


async def family_tasks(sessions: Sessions, case_id: int) -> list[FamilyContact]:
    async with sessions() as session:
        query = select(FamilyContact).where(FamilyContact.case_id == case_id).order_by(FamilyContact.id)
        return list(await session.scalars(query))


async def count(sessions: Sessions, model: type, *conditions: object) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*conditions)) or 0)
