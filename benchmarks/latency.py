"""Message latency and throughput through the gateway and, in the same run, straight to Rasa's REST
channel, at concurrency 1 and 20; then the memory of each process. Goal: the gateway adds under 15 %
at p50.

    .venv/bin/python benchmarks/latency.py [--messages 120] [--users 20]

Every virtual user is its own conversation and sends the held-out messages in turn, so the mix is what
students and parents write. Messages the triage protocol escalates are left out of the comparison: the
gateway sends them down the crisis path (more replies, a form, custom actions) while Rasa alone would
answer whatever its NLU guessed, so they would compare two different conversations.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import benchmark_stack, held_out, percentile, table
from integrations.launcher import Stack
from triage_protocols import screen


class Path_:
    """One way in: the gateway's web chat API, or Rasa's REST channel directly."""

    def __init__(self, name: str, stack: Stack, http: httpx.AsyncClient) -> None:
        self.name = name
        self.stack = stack
        self.http = http

    async def user(self) -> str:
        if self.name == "gateway":
            response = await self.http.post(f"{self.stack.config.gateway_url}/api/sessions", json={})
            return response.json()["session"]
        return uuid.uuid4().hex

    async def send(self, user: str, text: str) -> None:
        if self.name == "gateway":
            response = await self.http.post(
                f"{self.stack.config.gateway_url}/api/messages",
                json={"session": user, "message_id": uuid.uuid4().hex, "text": text},
            )
            assert response.json()["status"] == "answered", response.text
        else:
            response = await self.http.post(
                f"{self.stack.config.engine_url}/webhooks/rest/webhook",
                json={"sender": user, "message": text},
            )
            assert response.json(), response.text
        response.raise_for_status()


async def run(path: Path_, texts: list[str], users: int, per_user: int) -> tuple[list[float], float]:
    latencies: list[float] = []

    async def one_user(offset: int) -> None:
        user = await path.user()
        for i in range(per_user):
            started = time.perf_counter()
            await path.send(user, texts[(offset * per_user + i) % len(texts)])
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(one_user(u) for u in range(users)))
    return latencies, time.perf_counter() - started


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (Sanic and Rasa may fork workers)."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1024


async def measure(stack: Stack, messages: int, users: int) -> list[list[object]]:
    texts = [text for text, _ in held_out() if screen(text).level not in ("orange", "red")]
    rows: list[list[object]] = []
    limits = httpx.Limits(max_connections=users * 2, max_keepalive_connections=users * 2)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        paths = {name: Path_(name, stack, http) for name in ("rasa", "gateway")}
        for path in paths.values():  # warm up both, so neither pays for the first model call
            await run(path, texts, 2, 10)
        for concurrency in (1, users):
            per_user = max(1, messages // concurrency) if concurrency > 1 else messages
            p50s = {}
            for name in ("rasa", "gateway"):
                latencies, seconds = await run(paths[name], texts, concurrency, per_user)
                p50s[name] = percentile(latencies, 50)
                rows.append(
                    [
                        name,
                        concurrency,
                        len(latencies),
                        f"{p50s[name]:.0f}",
                        f"{percentile(latencies, 95):.0f}",
                        f"{percentile(latencies, 99):.0f}",
                        f"{len(latencies) / seconds:.1f}",
                        "",
                    ]
                )
            rows[-1][-1] = f"{(p50s['gateway'] / p50s['rasa'] - 1) * 100:+.0f} %"
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=120, help="messages per path and concurrency")
    parser.add_argument("--users", type=int, default=20, help="the higher concurrency")
    args = parser.parse_args()
    with benchmark_stack() as stack:
        rows = asyncio.run(measure(stack, args.messages, args.users))
        memory = [[name, f"{rss_mb(p.pid):.0f}"] for name, p in stack.processes.items()]
    print("latency in ms; throughput in messages/s; 'gateway adds' compares p50 with Rasa alone\n")
    print(table(["path", "concurrency", "messages", "p50", "p95", "p99", "msg/s", "gateway adds"], rows))
    print("\nresident memory after the run (MB)\n")
    print(table(["process", "RSS MB"], memory))
    return 0


if __name__ == "__main__":
    sys.exit(main())
