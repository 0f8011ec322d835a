"""The loop shared by the gateway's outbox dispatchers (pages to staff, messages to users): a round now
when woken, else every interval; a failed round is logged and the next one tries again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from records import outbox
from records.models import OutboxItem, OutboxStatus

log = logging.getLogger(__name__)

# What a send gives back: the channels the item went through, and an error code (None: sent).
Result = tuple[list[str], str | None]
PERMANENT = "permanent:"  # starts an error code no retry can change: the item fails at once


class OutboxWorker[Sender]:
    """`senders` by name: the channels an item may go through (a page sender, a channel sender)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        senders: Mapping[str, Sender],
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
        """Ask for a round now (called right after something was written to the outbox)."""
        self._wake.set()

    async def run_once(self) -> int:
        """One round; returns how many items were leased (0: nothing was waiting)."""
        raise NotImplementedError

    async def record(
        self, items: Sequence[OutboxItem], results: Sequence[Result], *, failure_action: str
    ) -> list[OutboxItem]:
        """Records a round in one session: the items sent, and a failed attempt for each of the others
        (retried with back-off; an error marked PERMANENT fails at once), audited as `failure_action`.
        Returns the items that have now failed for good (their last attempt, or a permanent error)."""
        failed: list[OutboxItem] = []
        async with self._sessions() as session:
            sent = {item.id: via for item, (via, error) in zip(items, results, strict=True) if error is None}
            if sent:
                await outbox.mark_sent(session, sent)
            for item, (via, error) in zip(items, results, strict=True):
                if error is not None:
                    final = error.startswith(PERMANENT)
                    status = await outbox.mark_failed_attempt(
                        session,
                        item,
                        delivered_via=via,
                        error=error.removeprefix(PERMANENT),
                        max_attempts=item.attempts + 1 if final else self._max_attempts,
                        failure_action=failure_action,
                    )
                    if status == OutboxStatus.FAILED:
                        failed.append(item)
        return failed

    async def run_forever(self) -> None:
        while True:
            try:
                while await self.run_once():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s round failed", type(self).__name__)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            except TimeoutError:
                pass
            self._wake.clear()
