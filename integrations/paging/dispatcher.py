"""Drains the outbox: leases due pages, sends each through the console and the counsellor's own channel,
records the delivery, retries failures with back-off. Runs inside every gateway; leases keep two
gateways from sending the same page at once.

The switchboard wakes it right after it stores a case, so a red page goes out within milliseconds
instead of waiting for the next round.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from integrations.paging.senders import Page, PageSender
from records import outbox
from records.models import Counsellor, OutboxItem

log = logging.getLogger(__name__)

ALWAYS = "console"


class PageDispatcher:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        senders: Mapping[str, PageSender],
        *,
        max_attempts: int = 8,
        interval_seconds: float = 1.0,
    ) -> None:
        self._sessions = sessions
        self._senders = dict(senders)
        self._max_attempts = max_attempts
        self._interval = interval_seconds
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Ask for a round now (called after a case is stored)."""
        self._wake.set()

    async def run_forever(self) -> None:
        while True:
            try:
                while await self.run_once():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("page dispatch round failed")
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            except TimeoutError:
                pass
            self._wake.clear()

    async def run_once(self) -> int:
        """Sends what is due; returns how many items were leased (0 means nothing was waiting)."""
        async with self._sessions() as session:
            items = await outbox.lease(session)
            if not items:
                return 0
            wanted = {item.counsellor_id for item in items if item.counsellor_id is not None}
            found = await session.scalars(select(Counsellor).where(Counsellor.id.in_(wanted)))
            counsellors = {c.id: c for c in found}
        # No session is held while sending: a slow SMS gateway must not hold up the store.
        results = await asyncio.gather(
            *(self._deliver(item, counsellors.get(item.counsellor_id or -1)) for item in items)
        )
        async with self._sessions() as session:
            sent = {item.id: via for item, (via, error) in zip(items, results, strict=True) if error is None}
            if sent:
                await outbox.mark_sent(session, sent)
            for item, (via, error) in zip(items, results, strict=True):
                if error is not None:
                    await outbox.mark_failed_attempt(
                        session, item, delivered_via=via, error=error, max_attempts=self._max_attempts
                    )
        return len(items)

    async def _deliver(self, item: OutboxItem, counsellor: Counsellor | None) -> tuple[list[str], str | None]:
        """Sends one page through the console and the counsellor's channel; returns the channels it went
        through and the first error (None when every channel took it)."""
        channels = [ALWAYS]
        if counsellor is not None and counsellor.page_channel not in channels:
            channels.append(counsellor.page_channel)
        page = Page(
            outbox_id=item.id,
            counsellor_id=item.counsellor_id,
            case_id=item.case_id,
            level=str(item.payload.get("level", "")),
            reason=str(item.payload.get("reason", "")),
            payload=dict(item.payload),
            address=counsellor.page_address if counsellor is not None else None,
        )
        delivered = list(item.delivered_via or [])
        error = None
        for channel in channels:
            if channel in delivered or f"{channel}:unconfigured" in delivered:
                continue
            sender = self._senders.get(channel)
            if sender is None:  # configuration, not a transient fault: recorded, not retried
                log.error("no page sender %r configured (outbox %s)", channel, item.id)
                delivered.append(f"{channel}:unconfigured")
                continue
            try:
                await sender.send(page)
                delivered.append(channel)
            except Exception as failure:  # noqa: BLE001 - any sender fault is retried
                error = error or f"{channel}:{type(failure).__name__}"
                log.warning("page %s via %s failed (%s)", item.id, channel, type(failure).__name__)
        return delivered, error
