"""Sends users the messages no webhook is waiting for (records/deliveries.py): a counsellor's words, the
hand-back, an answer from a retry. Leases `deliver` items from the outbox, sends each on the user's
channel, records it, retries failures with back-off; a final failure is audited for a supervisor and, when
the gateway gives an `on_failed` callback (the console's live feed), told at once to the counsellors who
must reach the child another way. A channel with no sender configured is such a final failure: a message
nobody can send is never recorded as sent.

A user's messages go out in the order they were written: the outbox hands out only the first unsent item
of each conversation (its topic), so a message that fails holds the later ones back until it is sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from integrations.channels.base import ChannelSender, PermanentDeliveryError
from integrations.outbox_worker import PERMANENT, OutboxWorker, Result
from records import deliveries, outbox
from records.deliveries import Delivery, FailedDelivery
from records.models import OutboxItem

log = logging.getLogger(__name__)

UNCONFIGURED = "unconfigured"  # the error code's second part when no sender serves the user's channel


class DeliveryDispatcher(OutboxWorker[ChannelSender]):
    """`on_failed` is called once for each message that fails for good, after the failure is recorded
    (the gateway passes the console's alerts hub); it must not block."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        senders: Mapping[str, ChannelSender],
        *,
        max_attempts: int = 8,
        interval_seconds: float = 1.0,
        on_failed: Callable[[FailedDelivery], None] | None = None,
    ) -> None:
        super().__init__(sessions, senders, max_attempts=max_attempts, interval_seconds=interval_seconds)
        self._on_failed = on_failed

    async def run_once(self) -> int:
        async with self._sessions() as session:
            items = await outbox.lease(session, kind=deliveries.DELIVER)
            if not items:
                return 0
            ready = await deliveries.deliveries_for(session, items)
        # No session is held while sending: a slow channel must not hold up the store.
        results = await asyncio.gather(*(self._send(item, ready.get(item.id)) for item in items))
        failed = await self.record(items, results, failure_action="delivery_failed")
        if failed:
            await self._tell(failed)
        return len(items)

    async def _tell(self, failed: list[OutboxItem]) -> None:
        """Tells of final failures. They are recorded already: a fault here loses only the live event,
        and the console still shows the failure on its next read of the case."""
        for item in failed:
            log.error("delivery %s failed for good", item.id)
        if self._on_failed is None:
            return
        try:
            async with self._sessions() as session:
                found = await deliveries.failed_deliveries(session, failed)
            for failure in found:
                self._on_failed(failure)
        except Exception:
            log.exception("could not tell the console of %s failed deliveries", len(failed))

    async def _send(self, item: OutboxItem, delivery: Delivery | None) -> Result:
        """Sends one message; returns the channels it went through and an error code (None: sent)."""
        if delivery is None:  # the message or its contact was purged: nothing left to send
            return ["gone"], None
        sender = self._senders.get(delivery.channel)
        if sender is None:  # configuration, not a transient fault: it fails at once, never counted as sent
            log.error("no channel sender %r configured (outbox %s)", delivery.channel, item.id)
            return [], f"{PERMANENT}{delivery.channel}:{UNCONFIGURED}"
        try:
            await sender.send_text(delivery.address, delivery.text)
        except PermanentDeliveryError as refusal:
            log.warning("delivery %s via %s refused (%s)", item.id, delivery.channel, type(refusal).__name__)
            return [], f"{PERMANENT}{delivery.channel}:{type(refusal).__name__}"
        except Exception as failure:  # noqa: BLE001 - any other channel fault is retried
            log.warning("delivery %s via %s failed (%s)", item.id, delivery.channel, type(failure).__name__)
            return [], f"{delivery.channel}:{type(failure).__name__}"
        return [delivery.channel], None
