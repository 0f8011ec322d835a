"""How well and how fast the triage engine screens a labelled file, scored as ../shared/eval/README.md says.

The file is tab-separated, one message a line: level, audience (student or parent), text; a header line
starting with "level" is skipped. Figures, in order of importance:

1. red recall: red messages that come out red (a red that comes out orange is a miss);
2. escalation recall: orange or red messages that come out orange or red;
3. false alarms: green messages that come out orange or red (yellow is tolerated);
4. level accuracy over all messages;
and speed: messages screened a second, in this one process (one core), and the time to screen the longest
message the gateway accepts (2,000 characters, the words that matter at its end).
Goals on the development set: red recall 100 %, escalation recall >= 98 %, no false alarm, >= 20,000 msgs/s,
the longest message in under 50 ms.

    .venv/bin/python benchmarks/triage_eval.py                       # ../shared/eval/risk_dev.tsv
    .venv/bin/python benchmarks/triage_eval.py my_labelled.tsv --errors
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import table
from triage_protocols import screen
from triage_protocols.loader import load_protocol
from triage_protocols.results import Level

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT.parent / "shared" / "eval" / "risk_dev.tsv"
ESCALATED = {Level.ORANGE, Level.RED}


@dataclass(frozen=True)
class Labelled:
    level: Level
    audience: str
    text: str


@dataclass(frozen=True)
class Scores:
    total: int
    red: tuple[int, int]  # (found, of)
    escalation: tuple[int, int]
    false_alarms: tuple[int, int]  # (alarms, greens)
    correct: int
    confusion: Counter[tuple[Level, Level]]


def read(path: Path) -> list[Labelled]:
    """The labelled messages; a malformed line stops the run with its line number."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or (number == 1 and line.lower().startswith("level\t")):
            continue
        parts = line.split("\t", 2)
        if len(parts) != 3 or parts[0].strip() not in Level.__members__.values():
            raise SystemExit(f"{path}:{number}: expected level<TAB>audience<TAB>text")
        rows.append(Labelled(Level(parts[0].strip()), parts[1].strip(), parts[2]))
    return rows


def evaluate(rows: list[Labelled]) -> tuple[Scores, list[tuple[Labelled, Level, str]]]:
    """Scores, and each message whose level differs from its label (with the rule that decided)."""
    confusion: Counter[tuple[Level, Level]] = Counter()
    misses = []
    for row in rows:
        result = screen(row.text, row.audience)
        confusion[(row.level, result.level)] += 1
        if result.level != row.level:
            misses.append((row, result.level, result.rule))
    gold = Counter(row.level for row in rows)

    def count(condition) -> int:  # type: ignore[no-untyped-def]
        return sum(n for (g, p), n in confusion.items() if condition(g, p))

    scores = Scores(
        total=len(rows),
        red=(count(lambda g, p: g == Level.RED and p == Level.RED), gold[Level.RED]),
        escalation=(
            count(lambda g, p: g in ESCALATED and p in ESCALATED),
            gold[Level.RED] + gold[Level.ORANGE],
        ),
        false_alarms=(count(lambda g, p: g == Level.GREEN and p in ESCALATED), gold[Level.GREEN]),
        correct=count(lambda g, p: g == p),
        confusion=confusion,
    )
    return scores, misses


def throughput(rows: list[Labelled], seconds: float = 2.0, rounds: int = 8) -> float:
    """Messages a second of this process's CPU time (one core), screening the file over and over.

    CPU time rather than wall-clock time, and the best of several rounds (as `timeit` reports the best of
    its repeats), so that other work on the machine does not count against the engine: `screen` is
    single-threaded and does no I/O, so on an idle machine every round gives the same figure.
    """
    items = [(row.text, row.audience) for row in rows] or [("你好", "student")]
    for text, audience in items:
        screen(text, audience)
    best = 0.0
    for _ in range(max(1, rounds)):
        done, start = 0, time.process_time()
        while (elapsed := time.process_time() - start) < seconds / rounds:
            for text, audience in items:
                screen(text, audience)
            done += len(items)
        best = max(best, done / elapsed)
    return best


def longest_message_ms(rounds: int = 20) -> float:
    """CPU milliseconds, best of several rounds, to screen a 2,000-character message (the gateway's limit)
    whose last words are the ones that matter: a long message must not slow the line down."""
    text = ("今天天气不错，" * 290)[: 2000 - 3] + "我想死"
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        screen(text)
        best = min(best, time.process_time() - start)
    return best * 1000


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} % ({part}/{whole})" if whole else "n/a (0)"


def report(path: Path, scores: Scores, rate: float, longest_ms: float) -> str:
    alarms, greens = scores.false_alarms
    rows = [
        ("red recall", percent(*scores.red), "100 %"),
        ("escalation recall", percent(*scores.escalation), ">= 98 %"),
        ("false alarms (green -> orange/red)", f"{alarms} of {greens} green", "0"),
        ("level accuracy", percent(scores.correct, scores.total), ""),
        ("throughput (one core)", f"{rate:,.0f} msgs/s", ">= 20,000 msgs/s"),
        ("longest message (2,000 characters)", f"{longest_ms:.1f} ms", "< 50 ms"),
    ]
    levels = list(Level)
    matrix = [(f"label {g.value}", *(scores.confusion[(g, p)] for p in levels)) for g in levels]
    return "\n\n".join(
        [
            f"Triage on {path.name} ({scores.total} messages), protocol {load_protocol().version}",
            table(("figure", "value", "goal"), rows),
            "Confusion (rows: label, columns: screen)",
            table(("", *(level.value for level in levels)), matrix),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "labelled", nargs="?", type=Path, default=DEFAULT, help=f"labelled TSV (default {DEFAULT})"
    )
    parser.add_argument(
        "--errors", action="store_true", help="list every message whose level differs from its label"
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="how long to measure throughput")
    args = parser.parse_args(argv)
    path: Path = args.labelled if args.labelled.is_absolute() else (Path.cwd() / args.labelled)
    if not path.exists():
        print(f"no labelled file at {path}", file=sys.stderr)
        return 2
    rows = read(path)
    scores, misses = evaluate(rows)
    print(report(path, scores, throughput(rows, args.seconds), longest_message_ms()))
    if args.errors and misses:
        print("\nMisses (label -> screen, rule):")
        for row, level, rule in misses:
            print(f"  {row.level.value:>6} -> {level.value:<6} {rule:<40} [{row.audience}] {row.text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
