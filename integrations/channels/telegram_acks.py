"""When the Telegram webhook may say 200. Telegram forgets an update once it has our 200, so the webhook
answers only when the update is safe: its words are stored (the switchboard's `on_stored`), or its
handling ended with nothing to keep (a sticker, /start, a group). If the gateway died after a 200 given
at the queue, a child's message would be lost with nobody knowing; given after the store, the retry
worker answers it when the gateway is back.

Handling that failed before the words were kept, or that has not kept them within the deadline, gets
503: Telegram sends the update again later, and the store's unique key makes sure it is processed once.
"""

from __future__ import annotations

import asyncio
from typing import Literal

Outcome = Literal["kept", "handled", "failed"]


class Acknowledgements:
    """One gateway's updates waiting for their webhook answer, by the identity of the `Update` object
    that PTB hands from the webhook to the handler (two deliveries of one update are two objects)."""

    def __init__(self) -> None:
        self._waiting: dict[int, asyncio.Future[Outcome]] = {}

    def expect(self, update: object) -> asyncio.Future[Outcome]:
        """Called by the webhook before the update is queued."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting[id(update)] = future
        return future

    def forget(self, update: object) -> None:
        self._waiting.pop(id(update), None)

    def kept(self, update: object) -> None:
        """Its words are in the store."""
        self._settle(update, "kept")

    def failed(self, update: object) -> None:
        """Its handling raised; if its words were kept already, that stands."""
        self._settle(update, "failed")

    def handled(self, update: object) -> None:
        """Its handling ended (called last, for every update): whatever it had to keep, it kept."""
        self._settle(update, "handled")

    def _settle(self, update: object, outcome: Outcome) -> None:
        future = self._waiting.get(id(update))
        if future is not None and not future.done():
            future.set_result(outcome)

    async def answer(self, update: object, future: asyncio.Future[Outcome], timeout: float) -> int:
        """The webhook's status: 200 once the update is safe, 503 when Telegram must send it again."""
        try:
            outcome = await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return 503
        finally:
            self.forget(update)
        return 503 if outcome == "failed" else 200
