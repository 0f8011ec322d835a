"""`make run`'s demo staff: made once on an empty roster, able to sign in, on shift, never beside real staff."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from records import accounts, roster, staffing
from records.demo import SUPERVISOR, VOLUNTEERS, demo_staff
from records.models import Counsellor, utcnow

Sessions = async_sessionmaker[AsyncSession]


async def test_an_empty_roster_gets_demo_staff_who_can_sign_in(sessions: Sessions, tmp_path: Path) -> None:
    file = tmp_path / "var" / "demo-accounts.txt"
    async with sessions() as session:
        made = await demo_staff(session, file)
    assert set(made) == {*VOLUNTEERS, SUPERVISOR}
    assert file.stat().st_mode & 0o777 == 0o600
    async with sessions() as session:
        for handle, password in made.items():
            assert await accounts.authenticate(session, handle, password, utcnow()) is not None
    async with sessions() as session:
        on_call = {c.handle for c in await staffing.on_call(session, utcnow())}
    assert set(VOLUNTEERS) <= on_call
    async with sessions() as session:  # the next run: the same accounts, no new ones
        assert await demo_staff(session, file) == made
        assert await session.scalar(select(func.count(Counsellor.id))) == 3


async def test_no_demo_staff_beside_real_staff(sessions: Sessions, tmp_path: Path) -> None:
    async with sessions() as session:
        await roster.add_counsellor(session, "wang", "王老师")
        assert await demo_staff(session, tmp_path / "demo.txt") == {}
        assert await session.scalar(select(func.count(Counsellor.id))) == 1
    assert not (tmp_path / "demo.txt").exists()
