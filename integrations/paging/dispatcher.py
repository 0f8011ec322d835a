"""Drains the outbox: leases due pages, sends each through the console and the counsellor's own channel,
records the delivery, retries failures with back-off. Runs inside every gateway; leases keep two
gateways from sending the same page at once.

The switchboard wakes it right after it stores a case, so a red page goes out within milliseconds
instead of waiting for the next round.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import select

from integrations.outbox_worker import OutboxWorker, Result
from integrations.paging.senders import Page, PageSender
from records import outbox
from records.models import Counsellor, OutboxItem

log = logging.getLogger(__name__)

ALWAYS = "console"


class PageDispatcher(OutboxWorker[PageSender]):
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
        await self.record(items, results, failure_action="page_failed")
        return len(items)

    async def _deliver(self, item: OutboxItem, counsellor: Counsellor | None) -> Result:
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
