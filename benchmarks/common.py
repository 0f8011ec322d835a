"""What the benchmarks share: a stack of their own on free loopback ports, percentiles, and tables."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import yaml
from sqlalchemy.engine import make_url

from integrations.launcher import ROOT, Stack, StackConfig, running
from records.migrate import upgrade

HELD_OUT = ROOT / "benchmarks" / "data" / "nlu_heldout.yml"


POSTGRES = "postgresql+asyncpg://127.0.0.1:5432/test"


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """A new, empty PostgreSQL database on the local server, dropped afterwards."""
    name = f"xinqiao_bench_{uuid.uuid4().hex[:8]}"
    admin = make_url(POSTGRES).set(drivername="postgresql").render_as_string(hide_password=False)

    async def run(sql: str) -> None:
        connection = await asyncpg.connect(admin)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def benchmark_stack(
    extra_env: dict[str, str] | None = None, database_url: str | None = None
) -> Iterator[Stack]:
    """A fresh stack with its own databases in a temporary folder, so runs do not disturb `make run`.
    The store is SQLite there unless `database_url` names another (an empty PostgreSQL database);
    `extra_env` is added to the three processes' environment."""
    with tempfile.TemporaryDirectory(prefix="xinqiao-bench-") as work:
        config = StackConfig.isolated(
            Path(work), {"XINQIAO_RETRY_INTERVAL_SECONDS": "3600", **(extra_env or {})}
        )
        if database_url:
            config.database_url = database_url
        upgrade(config.database_url)
        with running(config, timeout=300) as stack:
            yield stack


def held_out() -> list[tuple[str, str]]:
    """(text, intent) pairs; retrieval intents keep their full name, e.g. faq/cost."""
    pairs = []
    for block in yaml.safe_load(HELD_OUT.read_text(encoding="utf-8"))["nlu"]:
        for line in block["examples"].splitlines():
            if line.strip().startswith("- "):
                pairs.append((line.strip()[2:].strip(), block["intent"]))
    return pairs


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table, so the output can go straight into the README."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    line = lambda row: "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
    return "\n".join(
        [line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells[1:])]
    )
