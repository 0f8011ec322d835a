"""Posts to the counsellors' group chat: one per case event, kept in the outbox like any page.

A case event is an open (unclaimed) case at a given level and ladder stage: opened or raised (stage 0),
or re-paged by the watchdog because nobody claimed it (stage 1, 2 …). The case row is the record of
every event, so the group's dispatcher writes the post for each case's current event itself
(`write_due`), with a dedupe key of case, level and stage: a restart, a Bot API outage or several
gateways never lose a post or write it twice, and nothing in the escalation or the watchdog knows the
group exists. The post is then leased and sent like a page (records/outbox.py). A post whose event is
over before it could be sent (the case was claimed, closed, raised or re-paged meanwhile) is not sent:
the group reads only what is true now.

The payload holds ids and codes only (case id, level, reason, stage, deadline); once sent, the chat's
and the message's ids, so the post can be edited when someone claims the case.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from records import outbox
from records.models import (
    Case,
    CaseStatus,
    Counsellor,
    OutboxItem,
    OutboxStatus,
    utcnow,
)

GROUP_PAGE = "group_page"


def group_key(case_id: int, level: str, stage: int) -> str:
    return f"{GROUP_PAGE}:{case_id}:{level}:{stage}"


def reason_of(case: Case) -> str:
    """The event as pages name it: opened, raised, or still unclaimed after its deadline."""
    if case.escalation_stage:
        return "unclaimed"
    return "case_raised" if case.raised_at is not None else "case_opened"


async def write_due(session: AsyncSession, levels: Iterable[str], *, now: datetime | None = None) -> int:
    """Writes the post for the current event of every open case at one of `levels`, unless it is written
    already, and commits. Returns how many were new."""
    now = now or utcnow()
    waiting: Sequence[Case] = (
        await session.scalars(
            select(Case)
            .where(Case.status == CaseStatus.OPEN, Case.level.in_(list(levels)))
            .order_by(Case.level_rank.desc(), Case.opened_at)
        )
    ).all()
    keys = {group_key(case.id, case.level, case.escalation_stage): case for case in waiting}
    if not keys:
        await session.commit()
        return 0
    known = set(await session.scalars(select(OutboxItem.dedupe_key).where(OutboxItem.dedupe_key.in_(keys))))
    written = 0
    for key, case in keys.items():
        if key in known:  # the usual round: nothing new, and no write (SQLite's one writer is spared)
            continue
        stage = case.escalation_stage
        written += await outbox.add_once(
            session,
            kind=GROUP_PAGE,
            dedupe_key=key,
            case_id=case.id,
            counsellor_id=None,
            payload={
                "case_id": case.id,
                "level": case.level,
                "reason": reason_of(case),
                "stage": stage,
                # the claim deadline while it is still ahead; a re-page is past it ("as soon as possible")
                "claim_by": case.claim_by.isoformat() if case.claim_by and not stage else None,
            },
            available_at=now,
            created_at=now,
        )
    await session.commit()
    return written


async def lease(session: AsyncSession, *, now: datetime | None = None) -> list[OutboxItem]:
    return await outbox.lease(session, kind=GROUP_PAGE, now=now)


async def current(session: AsyncSession, items: Sequence[OutboxItem]) -> set[int]:
    """The ids of the posts whose event is still the case's present: open, at that level and stage."""
    wanted = {item.case_id for item in items if item.case_id is not None}
    if not wanted:
        return set()
    found = await session.execute(
        select(Case.id, Case.level, Case.escalation_stage).where(
            Case.id.in_(wanted), Case.status == CaseStatus.OPEN
        )
    )
    now_is = {case_id: (level, stage) for case_id, level, stage in found}
    return {
        item.id
        for item in items
        if item.case_id in now_is
        and now_is[item.case_id] == (item.payload.get("level"), item.payload.get("stage"))
    }


async def posted(session: AsyncSession, item_id: int, chat_id: int, message_id: int) -> None:
    """Remembers where a post went, so a claim can edit it. Commits."""
    item = await session.get_one(OutboxItem, item_id)
    await session.execute(
        update(OutboxItem)
        .where(OutboxItem.id == item_id)
        .values(payload={**item.payload, "chat_id": chat_id, "message_id": message_id})
        .execution_options(synchronize_session=False)
    )
    await session.commit()


async def posts_of(session: AsyncSession, case_id: int) -> list[tuple[int, int]]:
    """(chat id, message id) of every post about the case that reached the group."""
    payloads: Sequence[dict[str, Any]] = (
        await session.scalars(
            select(OutboxItem.payload)
            .where(
                OutboxItem.case_id == case_id,
                OutboxItem.kind == GROUP_PAGE,
                OutboxItem.status == OutboxStatus.SENT,
            )
            .order_by(OutboxItem.id)
        )
    ).all()
    return [
        (int(p["chat_id"]), int(p["message_id"])) for p in payloads if "chat_id" in p and "message_id" in p
    ]


async def counsellor_paged_at(session: AsyncSession, channel: str, address: str) -> Counsellor | None:
    """The active counsellor whose pages go to `address` on `channel` (a Telegram user's id: their private
    chat with the bot has the same id). Page addresses are encrypted at rest, so each candidate's is
    decrypted and compared here, in constant time; the address is never logged or stored."""
    candidates = await session.scalars(
        select(Counsellor)
        .where(Counsellor.active.is_(True), Counsellor.page_channel == channel)
        .order_by(Counsellor.id)
    )
    wanted = address.strip().encode()
    for counsellor in candidates:
        if counsellor.page_address and hmac.compare_digest(counsellor.page_address.strip().encode(), wanted):
            return counsellor
    return None
