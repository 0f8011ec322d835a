"""Demo staff for `make run` on one machine: a supervisor and two volunteers on shift, so one person can
play the child in the web chat and the counsellor in the console. Never for a deployment: a line with
real counsellors has them added with `python -m records create-admin`, `add-counsellor`, `add-shift`.

Made only when the store has no counsellor at all; their passwords are random, written to
var/demo-accounts.txt (mode 0600) and printed by the launcher. Each run puts them on shift again.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from records import accounts, roster
from records.models import Counsellor, Shift, utcnow

VOLUNTEERS = ("demo-volunteer-1", "demo-volunteer-2")
SUPERVISOR = "demo-supervisor"
SHIFT = timedelta(hours=12)


async def demo_staff(session: AsyncSession, accounts_file: Path) -> dict[str, str]:
    """Handle → password of the demo accounts, made on an empty roster; {} when real staff exist."""
    handles = (*VOLUNTEERS, SUPERVISOR)
    known = set(await session.scalars(select(Counsellor.handle)))
    if known and not known <= set(handles):
        return {}
    if not known:
        await roster.put_on_call(
            session, volunteers=VOLUNTEERS, supervisors=[SUPERVISOR], hours=SHIFT.seconds / 3600
        )
        passwords = {handle: secrets.token_urlsafe(9) for handle in handles}
        for handle, password in passwords.items():
            await accounts.set_password(session, handle, password, actor="demo")
        accounts_file.parent.mkdir(parents=True, exist_ok=True)
        accounts_file.touch(mode=0o600)
        accounts_file.chmod(0o600)
        accounts_file.write_text("".join(f"{h} {p}\n" for h, p in passwords.items()))
        return passwords
    await _back_on_shift(session)
    lines = accounts_file.read_text().split("\n") if accounts_file.exists() else []
    return dict(line.split(" ", 1) for line in lines if " " in line)


async def _back_on_shift(session: AsyncSession) -> None:
    now = utcnow()
    for counsellor in await session.scalars(select(Counsellor).where(Counsellor.handle.in_(VOLUNTEERS))):
        covered = await session.scalar(
            select(func.count(Shift.id)).where(
                Shift.counsellor_id == counsellor.id, Shift.starts_at <= now, Shift.ends_at > now + SHIFT / 2
            )
        )
        if not covered:
            session.add(Shift(counsellor_id=counsellor.id, starts_at=now, ends_at=now + SHIFT))
    await session.commit()
