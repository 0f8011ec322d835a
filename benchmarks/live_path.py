"""The whole live path on labelled messages: what the writer reads and which case opens.

    .venv/bin/python benchmarks/live_path.py [file.tsv ...]

Each labelled message (the format of ../shared/eval/risk_dev.tsv: level, audience, text) goes in a web
chat session of its own, opened with its audience, through the real gateway, engine and action server
(the launcher `make run` uses), with counsellors on shift. Then it reads from the store which case the
conversation has, and from the answer whether the numbers were shown at once. Goals (issue 12): every red
message opens a red case and shows the numbers; no more than 1 calm message in 50 opens a case.

A screen figure (benchmarks/triage_eval.py) says what the protocol decides; this one says what the
writer gets, with Rasa's crisis intents, the actions and the gateway all taking part. By default the
development set and every fresh batch kept in tests/triage/data/blind_*.tsv.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import benchmark_stack, table
from benchmarks.triage_eval import DEFAULT, Labelled, percent, read
from integrations.launcher import Stack
from records.db import with_session
from records.models import Case, Message
from records.roster import put_on_call
from triage_protocols.directory import entries
from triage_protocols.results import Level

ROOT = Path(__file__).resolve().parent.parent
BATCHES = sorted((ROOT / "tests" / "triage" / "data").glob("blind_*.tsv"))


def urgent_numbers() -> list[str]:
    return [entry.number for entry in entries() if entry.urgent]


def shows_numbers(texts: list[str]) -> bool:
    """The writer read a number to call now (110, 120 or the hotline) in the answer itself."""
    return any(number in text for text in texts for number in urgent_numbers())


def case_level(stack: Stack, conversation: str) -> str | None:
    async def level(session: Any) -> str | None:
        return await session.scalar(select(Case.level).where(Case.conversation_id == conversation))

    return asyncio.run(with_session(stack.config.database_url, level))


def conversation_of(stack: Stack, message_id: int) -> str:
    async def owner(session: Any) -> str:
        return (await session.get(Message, message_id)).conversation_id

    return asyncio.run(with_session(stack.config.database_url, owner))


def run(stack: Stack, rows: list[Labelled]) -> list[tuple[Labelled, str | None, bool]]:
    """(row, the level of the case it opened or None, whether the answer showed the numbers)."""
    results = []
    with httpx.Client(base_url=stack.config.gateway_url, timeout=60) as http:
        for row in rows:
            audience = row.audience if row.audience in ("student", "parent") else "student"
            session = http.post("/api/sessions", json={"audience": audience}).json()["session"]
            answer = http.post(
                "/api/messages", json={"session": session, "message_id": uuid.uuid4().hex, "text": row.text}
            ).json()
            texts = [reply["text"] for reply in answer.get("replies", [])]
            level = case_level(stack, conversation_of(stack, answer["message_id"]))
            results.append((row, level, shows_numbers(texts)))
    return results


def report(name: str, results: list[tuple[Labelled, str | None, bool]]) -> str:
    red = [(level, shown) for row, level, shown in results if row.level == Level.RED]
    at_risk = [level for row, level, _ in results if row.level in (Level.ORANGE, Level.RED)]
    calm = [level for row, level, _ in results if row.level == Level.GREEN]
    red_case_and_numbers = sum(1 for level, shown in red if level == "red" and shown)
    rows = [
        ("red: a red case and the numbers at once", percent(red_case_and_numbers, len(red)), "100 %"),
        ("red: the numbers at once", percent(sum(1 for _, shown in red if shown), len(red)), "100 %"),
        (
            "orange and red: a case at orange or red",
            percent(sum(1 for level in at_risk if level in ("orange", "red")), len(at_risk)),
            ">= 95 %",
        ),
        ("calm: a case opened", percent(sum(1 for level in calm if level), len(calm)), "<= 2 %"),
    ]
    opened = Counter((row.level.value, level or "none") for row, level, _ in results)
    levels = [level.value for level in Level]
    confusion = [
        (f"label {label}", *(opened[(label, case)] for case in ["none", *levels[1:]])) for label in levels
    ]
    return "\n\n".join(
        [
            f"Live path on {name} ({len(results)} messages)",
            table(["figure", "value", "goal"], rows),
            "Cases opened (rows: label, columns: the case's level)",
            table(["", "no case", *levels[1:]], confusion),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "files", nargs="*", type=Path, help="labelled TSV files (default: dev set and batches)"
    )
    args = parser.parse_args(argv)
    files = args.files or [path for path in [DEFAULT, *BATCHES] if path.exists()]
    with benchmark_stack() as stack:
        asyncio.run(
            with_session(
                stack.config.database_url,
                lambda s: put_on_call(s, volunteers=["v1", "v2", "v3"], supervisors=["s1"]),
            )
        )
        for path in files:
            print(report(path.name, run(stack, read(path))), end="\n\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
