"""The roster: counsellors and their on-call shifts, as the command line and the console add them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from records import audit
from records.models import Counsellor, CounsellorRole, Shift, utcnow


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


async def set_paging(
    session: AsyncSession, handle: str, channel: str, address: str | None, *, actor: str = "command_line"
) -> Counsellor:
    """Where a counsellor's pages go besides the console (the address is encrypted by its column)."""
    counsellor = await session.scalar(select(Counsellor).where(Counsellor.handle == handle))
    if counsellor is None:
        raise LookupError(f"no counsellor {handle!r}")
    counsellor.page_channel, counsellor.page_address = channel, address
    audit.append(
        session, actor=actor, action="paging_changed", subject=f"counsellor:{counsellor.id}", channel=channel
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


async def put_on_call(
    session: AsyncSession,
    *,
    volunteers: Sequence[str],
    supervisors: Sequence[str] = (),
    supervisors_on_shift: bool = True,
    hours: float = 24,
) -> list[Counsellor]:
    """Adds counsellors on shift from an hour ago for `hours`: a demo line, a test's, a benchmark's.
    Supervisors without a shift are still reached (records/staffing.py)."""
    now = utcnow()
    people = [(handle, CounsellorRole.VOLUNTEER) for handle in volunteers]
    people += [(handle, CounsellorRole.SUPERVISOR) for handle in supervisors]
    added = []
    for handle, role in people:
        counsellor = Counsellor(handle=handle, display_name=handle, role=role)
        session.add(counsellor)
        await session.flush()
        if role == CounsellorRole.VOLUNTEER or supervisors_on_shift:
            session.add(
                Shift(
                    counsellor_id=counsellor.id,
                    starts_at=now - timedelta(hours=1),
                    ends_at=now + timedelta(hours=hours),
                )
            )
        added.append(counsellor)
    await session.commit()
    return added
