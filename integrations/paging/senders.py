"""Ways a page reaches a counsellor. Each sender has one job and a name; a counsellor's `page_channel`
picks one besides the console, which every page goes to.

`log` writes one line with ids and codes (the default until SMS and Telegram senders are configured).
`console` keeps the newest pages in memory and wakes whoever listens (the console's live queue); it also
carries the console's other live events: a child's message for the holder, a message to a child that
failed for good, a counsellor taken off a case.
SMS and Telegram senders are added by the channel work; an unknown channel is recorded, not retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from records.deliveries import FailedDelivery

if TYPE_CHECKING:
    from records.escalation import EscalationResult

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


@dataclass(frozen=True, slots=True)
class ChatEvent:
    """A child wrote in a conversation a counsellor holds: ids only, the console fetches the text."""

    conversation_id: str
    message_id: int
    counsellor_id: int
    level: str | None = None


@dataclass(frozen=True, slots=True)
class ReassignedAway:
    """A supervisor moved `counsellor_id`'s role on a case to `to_counsellor_id`: ids only."""

    case_id: int
    counsellor_id: int
    to_counsellor_id: int


# What the hub publishes to its listeners. A FailedDelivery (records/deliveries.py) is a message to a
# child that failed for good.
Event = Page | ChatEvent | FailedDelivery | ReassignedAway


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


def _key(page: Page) -> tuple[object, ...]:
    return (page.case_id, page.reason, page.level, page.counsellor_id)


class ConsoleAlerts:
    """The console's live feed: pages, messages for a counsellor who holds a conversation, messages to a
    child that failed for good, and counsellors taken off a case. Keeps the newest of each and a queue per
    listener (a websocket, a test)."""

    name = "console"

    def __init__(self, keep: int = 500) -> None:
        self.recent: deque[Page] = deque(maxlen=keep)
        self.chat: deque[ChatEvent] = deque(maxlen=keep)
        self.failed: deque[FailedDelivery] = deque(maxlen=keep)
        self.reassigned: deque[ReassignedAway] = deque(maxlen=keep)
        self._listeners: set[asyncio.Queue[Event]] = set()
        self._announced: deque[tuple[object, ...]] = deque(maxlen=keep)

    def announce(self, case: EscalationResult) -> None:
        """Tells the consoles on this gateway of a case the moment it is stored, before the dispatcher
        takes its pages from the outbox (on SQLite under load, the outbox's round can take a second).
        The dispatcher's delivery of the same pages is then recorded here but not published twice."""
        reason = "case_raised" if case.raised else "case_opened"
        for counsellor_id in case.paged:
            page = Page(0, counsellor_id, case.case_id, case.level or "", reason, {"announced": True})
            self._announced.append(_key(page))
            self.recent.append(page)
            self._publish(page)

    async def send(self, page: Page) -> None:
        self.recent.append(page)
        if _key(page) not in self._announced:
            self._publish(page)

    def message_for_counsellor(self, event: ChatEvent) -> None:
        self.chat.append(event)
        self._publish(event)

    def delivery_failed(self, failure: FailedDelivery) -> None:
        """The delivery dispatcher's `on_failed`: a message to a child failed for good."""
        self.failed.append(failure)
        self._publish(failure)

    def reassigned_away(self, change: ReassignedAway) -> None:
        self.reassigned.append(change)
        self._publish(change)

    def _publish(self, event: Event) -> None:
        for queue in list(self._listeners):
            queue.put_nowait(event)

    def listen(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._listeners.add(queue)
        return queue

    def stop_listening(self, queue: asyncio.Queue[Event]) -> None:
        self._listeners.discard(queue)
