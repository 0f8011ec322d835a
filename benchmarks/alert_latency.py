"""From a red web-chat message to the console's websocket event, with the whole stack running.

    .venv/bin/python benchmarks/alert_latency.py [--conversations 50]

Goal: p99 under 1 s with 50 concurrent conversations. A supervisor is signed in to the console's live
feed (/console/ws); every conversation sends one red message at the same moment through the web chat
API. The clock starts when the message is sent and stops when the supervisor's feed tells of the first
page for that conversation's case. The real engine and action server run beside the gateway (the page
does not wait for them, but they share the two cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import benchmark_stack, fresh_postgres, percentile, table
from integrations.console.sessions import COOKIE
from integrations.launcher import Stack
from records import accounts, roster
from records.db import with_session
from records.models import Case, Message

RED = "药我已经准备好了，今晚就全吃下去"
PASSWORD = "benchmark password"


async def _staff(session: Any) -> None:
    await roster.put_on_call(session, volunteers=[f"v{i}" for i in range(6)], supervisors=["s1"])
    await accounts.set_password(session, "s1", PASSWORD)


async def _measure(stack: Stack, conversations: int) -> dict[str, float]:
    url = stack.config.database_url
    await with_session(url, _staff)
    base = stack.config.gateway_url
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        login = await http.post("/console/api/login", json={"handle": "s1", "password": PASSWORD})
        login.raise_for_status()
        cookie = f"{COOKIE}={login.cookies[COOKIE]}"
        sessions = [
            (await http.post("/api/sessions", json={})).json()["session"] for _ in range(conversations)
        ]
        heard: dict[int, float] = {}
        async with connect(
            f"{base.replace('http', 'ws', 1)}/console/ws", additional_headers={"Cookie": cookie}
        ) as ws:

            async def listen() -> None:
                while len(heard) < conversations:
                    event = json.loads(await ws.recv())
                    if event.get("kind") == "page" and event.get("level") == "red":
                        heard.setdefault(event["case_id"], time.perf_counter())

            listener = asyncio.create_task(listen())
            sent: dict[str, float] = {}

            async def send(token: str) -> None:
                message_id = uuid.uuid4().hex
                sent[message_id] = time.perf_counter()
                await http.post(
                    "/api/messages", json={"session": token, "message_id": message_id, "text": RED}
                )

            began = time.perf_counter()
            await asyncio.gather(*(send(token) for token in sessions))
            await asyncio.wait_for(listener, timeout=60)
            wall = time.perf_counter() - began

    async def case_of_message(session: Any) -> dict[str, int]:
        rows = await session.execute(
            select(Message.external_id, Case.id).join(Case, Case.conversation_id == Message.conversation_id)
        )
        return {external.split(":", 1)[1]: case_id for external, case_id in rows if external}

    cases = await with_session(url, case_of_message)
    latencies = [heard[cases[m]] - t for m, t in sent.items() if cases.get(m) in heard]
    assert len(latencies) == conversations, f"{len(latencies)} of {conversations} alerts heard"
    return {
        "p50": percentile(latencies, 50) * 1000,
        "p99": percentile(latencies, 99) * 1000,
        "max": max(latencies) * 1000,
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=50)
    args = parser.parse_args()
    rows = []
    with benchmark_stack() as stack:
        rows.append(("SQLite", asyncio.run(_measure(stack, args.conversations))))
    with fresh_postgres() as url, benchmark_stack(database_url=url) as stack:
        rows.append(("PostgreSQL", asyncio.run(_measure(stack, args.conversations))))
    print(f"\nred web-chat message → the supervisor's console feed ({args.conversations} at once)\n")
    print(
        table(
            ["store", "p50 ms", "p99 ms", "max ms", "all heard after s"],
            [
                (store, f"{f['p50']:.0f}", f"{f['p99']:.0f}", f"{f['max']:.0f}", f"{f['wall']:.1f}")
                for store, f in rows
            ],
        )
    )


if __name__ == "__main__":
    main()
