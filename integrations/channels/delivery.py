"""Sends users the messages no webhook is waiting for (records/deliveries.py): a counsellor's words, the
hand-back, an answer from a retry. Leases `deliver` items from the outbox, sends each on the user's
channel, records it, retries failures with back-off; a final failure is audited for a supervisor.

A user's messages go out in the order they were written: the outbox hands out only the first unsent item
of each conversation (its topic), so a message that fails holds the later ones back until it is sent.
"""

from __future__ import annotations

import asyncio
import logging

from integrations.channels.base import ChannelSender, PermanentDeliveryError
from integrations.outbox_worker import PERMANENT, OutboxWorker, Result
from records import deliveries, outbox
from records.deliveries import Delivery
from records.models import OutboxItem

log = logging.getLogger(__name__)


class DeliveryDispatcher(OutboxWorker[ChannelSender]):
    async def run_once(self) -> int:
        async with self._sessions() as session:
            items = await outbox.lease(session, kind=deliveries.DELIVER)
            if not items:
                return 0
            ready = await deliveries.deliveries_for(session, items)
        # No session is held while sending: a slow channel must not hold up the store.
        results = await asyncio.gather(*(self._send(item, ready.get(item.id)) for item in items))
        await self.record(items, results, failure_action="delivery_failed")
        return len(items)

    async def _send(self, item: OutboxItem, delivery: Delivery | None) -> Result:
        """Sends one message; returns the channels it went through and an error code (None: sent)."""
        if delivery is None:  # the message or its contact was purged: nothing left to send
            return ["gone"], None
        sender = self._senders.get(delivery.channel)
        if sender is None:  # configuration, not a transient fault: recorded, not retried
            log.error("no channel sender %r configured (outbox %s)", delivery.channel, item.id)
            return [f"{delivery.channel}:unconfigured"], None
        try:
            await sender.send_text(delivery.address, delivery.text)
        except PermanentDeliveryError as refusal:
            log.warning("delivery %s via %s refused (%s)", item.id, delivery.channel, type(refusal).__name__)
            return [], f"{PERMANENT}{delivery.channel}:{type(refusal).__name__}"
        except Exception as failure:  # noqa: BLE001 - any other channel fault is retried
            log.warning("delivery %s via %s failed (%s)", item.id, delivery.channel, type(failure).__name__)
            return [], f"{delivery.channel}:{type(failure).__name__}"
        return [delivery.channel], None
