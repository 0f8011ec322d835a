"""Background work inside the gateway: probing the action server, retrying unanswered messages, and the
SLA watchdog (records/watchdog.py) that re-pages unclaimed cases and surfaces overdue follow-ups."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from integrations.engine_client import probe
from integrations.paging.dispatcher import PageDispatcher
from records import watchdog

log = logging.getLogger(__name__)


class DependencyMonitor:
    """Remembers whether the action server answered its last probe.

    Rasa swallows an action server failure and answers with whatever it had said before the custom
    action, so the switchboard asks this monitor instead of trusting a short reply. Unknown counts as up
    until the first probe, so a slow start does not flood users with the fail-safe script.
    """

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self._http = http
        self._url = url
        self._up = True

    def is_up(self) -> bool:
        return self._up

    async def check(self) -> bool:
        up = await probe(self._http, self._url)
        if up != self._up:
            log.warning("action server is %s", "up" if up else "DOWN")
        self._up = up
        return up


async def run_every(seconds: float, job: Callable[[], Awaitable[Any]]) -> None:
    """Runs a job forever at an interval; a failing round is logged and the next one still runs."""
    while True:
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background job %s failed", getattr(job, "__qualname__", job))
        await asyncio.sleep(seconds)


def watchdog_round(
    sessions: async_sessionmaker[AsyncSession], dispatcher: PageDispatcher
) -> Callable[[], Awaitable[watchdog.WatchdogRound]]:
    """One watchdog round; wakes the dispatcher when it wrote pages, so they go out at once."""

    async def round_() -> watchdog.WatchdogRound:
        async with sessions() as session:
            done = await watchdog.run_once(session)
        if done.repaged_cases or done.overdue_follow_ups or done.unanswered_held:
            dispatcher.wake()
        return done

    return round_
