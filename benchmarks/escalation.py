"""From an inbound red message to the page leaving the dispatcher, on SQLite and on PostgreSQL.

    .venv/bin/python benchmarks/escalation.py [--messages 200] [--concurrency 1 20]

Goal: p99 under 500 ms on both databases. Each message is a red message in a conversation of its own,
so each opens a case (三包一 from ten counsellors on shift, a family task, a check-in date) and pages the
lead and the supervisor. The clock starts before the switchboard stores the message and stops when the
lead's page reaches the sender. The switchboard and the page dispatcher run in this process as they run
in the gateway; the engine is an instant stand-in, because the page does not wait for Rasa (the
dispatcher is woken before the engine is called) and Rasa's own time is measured in latency.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import fresh_postgres, percentile, table
from integrations.engine_client import BotReply
from integrations.inbound import InboundMessage
from integrations.paging.dispatcher import PageDispatcher
from integrations.paging.senders import Page
from integrations.switchboard import Switchboard
from records import crypto, messages
from records.db import create_engine, session_factory
from records.migrate import upgrade
from records.roster import put_on_call
from triage_protocols import load_protocol

RED = "药我已经准备好了，今晚就全吃下去"


class InstantEngine:
    async def send(self, sender_id: str, text: str, metadata: dict[str, Any]) -> list[BotReply]:
        return [BotReply(text="在的")]

    async def trigger(self, sender_id: str, intent: str, entities: dict[str, Any]) -> list[BotReply]:
        return [BotReply(text="在的")]

    async def active_loop(self, sender_id: str) -> str | None:
        return None


class StopWatch:
    """The page sender: notes when the lead's page for each case arrives."""

    name = "console"

    def __init__(self) -> None:
        self.arrived: dict[int, float] = {}
        self.waiting: dict[int, asyncio.Event] = {}

    async def send(self, page: Page) -> None:
        if page.payload.get("as_role") == "lead" and page.case_id is not None:
            self.arrived.setdefault(page.case_id, time.perf_counter())
            self.waiting.setdefault(page.case_id, asyncio.Event()).set()

    async def wait(self, case_id: int) -> float:
        await asyncio.wait_for(self.waiting.setdefault(case_id, asyncio.Event()).wait(), timeout=30)
        return self.arrived[case_id]


async def _run(url: str, total: int, concurrency: int) -> dict[str, float]:
    db = create_engine(url)
    sessions = session_factory(db)
    async with sessions() as session:
        await put_on_call(session, volunteers=[f"v{i}" for i in range(10)], supervisors=["s0", "s1"])
    watch = StopWatch()
    # The dispatcher has a connection of its own, as in the gateway, so pages do not queue behind messages.
    paging_db = create_engine(url)
    dispatcher = PageDispatcher(
        session_factory(paging_db), {"console": watch, "log": watch}, interval_seconds=1.0
    )
    switchboard = Switchboard(sessions, InstantEngine(), on_escalated=dispatcher.wake)
    worker = asyncio.create_task(dispatcher.run_forever())
    async with sessions() as session:
        conversations = [(await messages.create_conversation(session, "bench")).id for _ in range(total)]
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(conversation_id: str) -> None:
        async with gate:
            started = time.perf_counter()
            outcome = await switchboard.receive(
                InboundMessage("bench", uuid.uuid4().hex, conversation_id, RED)
            )
            assert outcome.case_id is not None, "a red message must open a case"
            latencies.append((await watch.wait(outcome.case_id)) - started)

    began = time.perf_counter()
    await asyncio.gather(*(one(c) for c in conversations))
    wall = time.perf_counter() - began
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await worker  # let it close its session before the engine goes
    await paging_db.dispose()
    await db.dispose()
    return {
        "p50": percentile(latencies, 50) * 1000,
        "p99": percentile(latencies, 99) * 1000,
        "max": max(latencies) * 1000,
        "rate": total / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 20])
    args = parser.parse_args()
    for name in (crypto.KEYS_VARIABLE, crypto.LOOKUP_VARIABLE):
        os.environ.setdefault(name, crypto.new_key())
    load_protocol()  # compiled once, as the gateway does at start, so the first message is not timed on it
    rows = []
    for concurrency in args.concurrency:
        with tempfile.TemporaryDirectory(prefix="xinqiao-escalation-") as work:
            url = f"sqlite+aiosqlite:///{work}/bench.db"
            upgrade(url)
            figures = asyncio.run(_run(url, args.messages, concurrency))
        rows.append(("SQLite", concurrency, figures))
        with fresh_postgres() as url:
            upgrade(url)
            figures = asyncio.run(_run(url, args.messages, concurrency))
        rows.append(("PostgreSQL", concurrency, figures))
    print(f"\ninbound red message → lead's page sent ({args.messages} messages, each a new case)\n")
    print(
        table(
            ["database", "concurrency", "p50 ms", "p99 ms", "max ms", "escalations/s"],
            [
                (db, c, f"{f['p50']:.1f}", f"{f['p99']:.1f}", f"{f['max']:.1f}", f"{f['rate']:.1f}")
                for db, c, f in rows
            ],
        )
    )


if __name__ == "__main__":
    main()
