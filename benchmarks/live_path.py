"""The whole live path on labelled messages: what the writer reads and which case opens.

    .venv/bin/python benchmarks/live_path.py [file.tsv ...]

Each labelled message (the format of ../shared/eval/risk_dev.tsv: level, audience, text) goes in a web
chat session of its own, opened with its audience, from an address of its own (the gateway trusts one
proxy here and each message names its own client in `X-Forwarded-For`, as each child writes from their
own phone; from one address the web chat's flood limits would refuse sessions after 30 a minute), through
the real gateway, engine and action server (the launcher `make run` uses), with counsellors on shift. Then it reads from the store which case the
conversation has, and from the answer whether the numbers were shown at once and whether the assistant
asked its one gentle question (ask, don't guess). Goals (issue 12): every red message opens a red case and
shows the numbers; no more than 1 calm message in 50 opens a case; the question is asked rarely of calm
messages; a message the screens put at orange or red is answered by the crisis path (the numbers), never
by a goodbye, small talk or a topic reply alone.

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
from dataclasses import dataclass
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
from tests.support import variations
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


def stored(stack: Stack, message_id: int) -> tuple[str, str | None]:
    """The message's conversation and the level the gateway's screen gave it."""

    async def owner(session: Any) -> tuple[str, str | None]:
        message = await session.get(Message, message_id)
        return message.conversation_id, message.risk_level

    return asyncio.run(with_session(stack.config.database_url, owner))


def asked(texts: list[str]) -> bool:
    """The answer ends with the assistant's one gentle question (for either reader)."""
    questions = variations("utter_ask_risk_question", "student") | variations("utter_ask_risk_question", "parent")
    return any(text in questions for text in texts)


@dataclass(frozen=True)
class Lived:
    """What one labelled message met on the live path."""

    row: Labelled
    case: str | None  # the level of the conversation's case, or None
    numbers: bool  # the answer showed a number to call now
    asked: bool  # the assistant asked its question
    screened: str | None  # the level the gateway's screen gave


def writer_address(number: int) -> dict[str, str]:
    """The header that makes the n-th writer a client of their own behind the trusted proxy."""
    return {"X-Forwarded-For": f"10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}"}


def run(stack: Stack, rows: list[Labelled]) -> list[Lived]:
    """What each message met: its case, the numbers, the question, the screen's level."""
    results = []
    with httpx.Client(base_url=stack.config.gateway_url, timeout=60) as http:
        for number, row in enumerate(rows, start=1):
            audience = row.audience if row.audience in ("student", "parent") else "student"
            own = writer_address(number)
            session = http.post("/api/sessions", json={"audience": audience}, headers=own).json()["session"]
            answer = http.post(
                "/api/messages",
                json={"session": session, "message_id": uuid.uuid4().hex, "text": row.text},
                headers=own,
            ).json()
            texts = [reply["text"] for reply in answer.get("replies", [])]
            conversation, screened = stored(stack, answer["message_id"])
            results.append(Lived(row, case_level(stack, conversation), shows_numbers(texts), asked(texts), screened))
    return results


def report(name: str, results: list[Lived]) -> str:
    red = [r for r in results if r.row.level == Level.RED]
    at_risk = [r for r in results if r.row.level in (Level.ORANGE, Level.RED)]
    calm = [r for r in results if r.row.level == Level.GREEN]
    escalated = [r for r in results if r.screened in ("orange", "red")]
    count = lambda items, test: sum(1 for item in items if test(item))  # noqa: E731
    rows = [
        ("red: a red case and the numbers at once", percent(count(red, lambda r: r.case == "red" and r.numbers), len(red)), "100 %"),
        ("red: the numbers at once", percent(count(red, lambda r: r.numbers), len(red)), "100 %"),
        ("orange and red: a case at orange or red", percent(count(at_risk, lambda r: r.case in ("orange", "red")), len(at_risk)), ">= 95 %"),
        ("orange and red: a case, or the question asked", percent(count(at_risk, lambda r: r.case in ("orange", "red") or r.asked), len(at_risk)), ""),
        ("calm: a case opened", percent(count(calm, lambda r: r.case is not None), len(calm)), "<= 2 %"),
        ("calm: the question asked", percent(count(calm, lambda r: r.asked), len(calm)), "rare"),
        ("screened orange or red: the crisis path (numbers)", percent(count(escalated, lambda r: r.numbers), len(escalated)), "100 %"),
    ]
    opened = Counter((r.row.level.value, r.case or "none") for r in results)
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
    # one trusted proxy in front, so that each writer's X-Forwarded-For is their address (writer_address)
    with benchmark_stack({"SANIC_PROXIES_COUNT": "1"}) as stack:
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
