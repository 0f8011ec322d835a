"""The roster: counsellors and their on-call shifts, as the command line and (later) the console add them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from records import audit
from records.models import Counsellor, CounsellorRole, Shift


async def add_counsellor(
    session: AsyncSession,
    handle: str,
    display_name: str,
    role: CounsellorRole = CounsellorRole.VOLUNTEER,
    *,
    page_channel: str = "log",
    page_address: str | None = None,
    actor: str = "command_line",
) -> Counsellor:
    counsellor = Counsellor(
        handle=handle,
        display_name=display_name,
        role=role,
        page_channel=page_channel,
        page_address=page_address,
    )
    session.add(counsellor)
    await session.flush()
    audit.append(
        session, actor=actor, action="counsellor_added", subject=f"counsellor:{counsellor.id}", role=role
    )
    await session.commit()
    return counsellor


async def add_shift(
    session: AsyncSession, handle: str, starts_at: datetime, ends_at: datetime, *, actor: str = "command_line"
) -> Shift:
    if ends_at <= starts_at:
        raise ValueError("a shift must end after it starts")
    counsellor = await session.scalar(select(Counsellor).where(Counsellor.handle == handle))
    if counsellor is None:
        raise LookupError(f"no counsellor {handle!r}")
    shift = Shift(counsellor_id=counsellor.id, starts_at=starts_at, ends_at=ends_at)
    session.add(shift)
    await session.flush()
    audit.append(
        session,
        actor=actor,
        action="shift_added",
        subject=f"counsellor:{counsellor.id}",
        shift_id=shift.id,
        starts_at=starts_at.isoformat(),
        ends_at=ends_at.isoformat(),
    )
    await session.commit()
    return shift
