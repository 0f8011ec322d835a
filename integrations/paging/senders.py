"""Ways a page reaches a counsellor. Each sender has one job and a name; a counsellor's `page_channel`
picks one besides the console, which every page goes to.

`log` writes one line with ids and codes (the default until SMS and Telegram senders are configured).
`console` keeps the newest pages in memory and wakes whoever listens (the console's live queue).
SMS and Telegram senders are added by the channel work; an unknown channel is recorded, not retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Page:
    outbox_id: int
    counsellor_id: int | None
    case_id: int | None
    level: str
    reason: str
    payload: dict[str, Any] = field(default_factory=dict)
    address: str | None = field(default=None, repr=False)  # decrypted page address: never logged


class PageSender(Protocol):
    name: str

    async def send(self, page: Page) -> None:
        """Delivers the page or raises; a raise is retried by the dispatcher."""


class LogSender:
    name = "log"

    async def send(self, page: Page) -> None:
        log.warning(
            "PAGE case=%s level=%s reason=%s counsellor=%s outbox=%s",
            page.case_id,
            page.level,
            page.reason,
            page.counsellor_id,
            page.outbox_id,
        )


class ConsoleAlerts:
    """The console's side of pages: the newest ones, and a queue per listener (a websocket, a test)."""

    name = "console"

    def __init__(self, keep: int = 500) -> None:
        self.recent: deque[Page] = deque(maxlen=keep)
        self._listeners: set[asyncio.Queue[Page]] = set()

    async def send(self, page: Page) -> None:
        self.recent.append(page)
        for queue in list(self._listeners):
            queue.put_nowait(page)

    def listen(self) -> asyncio.Queue[Page]:
        queue: asyncio.Queue[Page] = asyncio.Queue()
        self._listeners.add(queue)
        return queue

    def stop_listening(self, queue: asyncio.Queue[Page]) -> None:
        self._listeners.discard(queue)
