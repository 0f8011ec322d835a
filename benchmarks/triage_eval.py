"""How well and how fast the triage engine screens a labelled file, scored as ../shared/eval/README.md says.

The file is tab-separated, one message a line: level, audience (student or parent), text; a header line
starting with "level" is skipped. Figures, in order of importance:

1. red recall: red messages that come out red (a red that comes out orange is a miss);
2. escalation recall: orange or red messages that come out orange or red;
3. false alarms: green messages that come out orange or red (yellow is tolerated);
4. level accuracy over all messages;
and speed: messages screened a second, in this one process (one core), the p99 of one message (both
screens, and the learned screen alone), and the time to screen the longest message the gateway accepts
(2,000 characters, the words that matter at its end).
Goals on the development set: red recall 100 %, escalation recall >= 98 %, no false alarm, both screens
under 1 ms p99, the longest message in under 50 ms.

Then the learned second screen's cross-validation (`--no-cv` skips it): the at-risk head of every
candidate model of triage_protocols/learned/train.py on the same 5 stratified folds of the real
PsySUICIDE texts (synthetic rows never scored), and the red head on our own labelled set; each fold, the
mean and the worst fold at the thresholds in learned.yml, and a sweep of thresholds.

    .venv/bin/python benchmarks/triage_eval.py                       # ../shared/eval/risk_dev.tsv
    .venv/bin/python benchmarks/triage_eval.py my_labelled.tsv --errors --no-cv
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
from triage_protocols.engine import Screener, default_screener
from triage_protocols.learned.model import Loaded
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
    unsure: Counter[Level]  # messages marked unsure (asked one question), by their label


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
    unsure: Counter[Level] = Counter()
    misses = []
    for row in rows:
        result = screen(row.text, row.audience)
        confusion[(row.level, result.level)] += 1
        if result.unsure:
            unsure[row.level] += 1
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
        unsure=unsure,
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


def p99_us(rows: list[Labelled], learned_only: bool = False, repeats: int = 20) -> tuple[float, float]:
    """(median, p99) CPU microseconds of one message: both screens, or the learned screen alone."""
    screener = default_screener()
    model = screener.learned.model
    items = [(row.text, row.audience) for row in rows] or [("你好", "student")]
    times = []
    for _ in range(repeats):
        for text, audience in items:
            if learned_only:
                if model is None:
                    return float("nan"), float("nan")
                prepared = screener.model_text(text)
                start = time.process_time_ns()
                model.score(prepared)
            else:
                start = time.process_time_ns()
                screener.screen(text, audience)
            times.append(time.process_time_ns() - start)
    times.sort()
    return times[len(times) // 2] / 1000, times[min(len(times) - 1, int(len(times) * 0.99))] / 1000


def fold_table(folds: list, threshold: float, what: tuple[str, str, str]) -> str:
    """Each fold, the mean and the worst fold (lowest recall and AUC, highest false alarms)."""
    positives, flagged, false = what
    lines = [
        (
            f"fold {f.number}",
            f"{f.positives} / {f.negatives}",
            f"{f.auc():.3f}",
            pct(f.recall(threshold)),
            pct(f.false_alarms(threshold)),
            pct(f.recall(threshold, True)),
            pct(f.false_alarms(threshold, True)),
        )
        for f in folds
    ]
    for label, low, high in (("mean", mean, mean), ("worst", min, max)):
        lines.append(
            (
                label,
                "",
                f"{low([f.auc() for f in folds]):.3f}",
                pct(low([f.recall(threshold) for f in folds])),
                pct(high([f.false_alarms(threshold) for f in folds])),
                pct(low([f.recall(threshold, True) for f in folds])),
                pct(high([f.false_alarms(threshold, True) for f in folds])),
            )
        )
    header = (
        "fold",
        positives,
        "model AUC",
        f"model {flagged}",
        f"model {false}",
        f"both {flagged}",
        f"both {false}",
    )
    return table(header, lines)


def sweep_table(
    folds: list, thresholds: tuple[float, ...], chosen: float | None, what: tuple[str, str]
) -> str:
    flagged, false = what
    lines = [
        (
            f"{t:.2f}{' (learned.yml)' if t == chosen else ''}",
            pct(mean([f.recall(t) for f in folds])),
            pct(mean([f.false_alarms(t) for f in folds])),
            pct(mean([f.recall(t, True) for f in folds])),
            pct(mean([f.false_alarms(t, True) for f in folds])),
        )
        for t in thresholds
    ]
    return table(("at", f"model {flagged}", f"model {false}", f"both {flagged}", f"both {false}"), lines)


def conversation_report() -> str:
    """Calm conversation: the NLU's held-out paraphrases (benchmarks/data/nlu_heldout.yml; neither screen
    trains on them), by the level the protocol gives their intent: everyday talk (green intents: greetings,
    questions about the service, small talk) and distress (yellow intents: exam stress, a break-up,
    bullying). Below orange, a message at orange or above is a false alarm (a case opened for nothing),
    though a distress paraphrase may describe what the protocol calls orange (几个男生放学堵我要钱 is
    extortion); a crisis intent should escalate."""
    from benchmarks.common import held_out

    protocol = load_protocol()
    lexicon = Screener(protocol, Loaded.off())
    levels = protocol.intents.intents
    lines = []
    for name, screener in (("lexicon alone", lexicon), ("both screens", default_screener())):
        seen = {Level.GREEN: [0, 0, 0], Level.YELLOW: [0, 0, 0]}  # messages, at orange+, asked
        crisis = crisis_found = 0
        for text, intent in held_out():
            result = screener.screen(text)
            level = levels.get(intent.split("/")[0], Level.GREEN)
            if level in ESCALATED:
                crisis += 1
                crisis_found += result.level in ESCALATED
                continue
            counts = seen[level]
            counts[0] += 1
            counts[1] += result.level in ESCALATED
            counts[2] += result.unsure is not None
        everyday, distress = seen[Level.GREEN], seen[Level.YELLOW]
        lines.append(
            (
                name,
                f"{everyday[1]} of {everyday[0]}",
                f"{everyday[2]} of {everyday[0]}",
                f"{distress[1]} of {distress[0]}",
                f"{distress[2]} of {distress[0]}",
                f"{crisis_found} of {crisis}",
            )
        )
    headers = (
        "screen",
        "everyday at orange+ (goal <= 1 in 50)",
        "everyday asked",
        "distress at orange+",
        "distress asked",
        "crisis at orange+",
    )
    return "\n\n".join(
        [
            "Conversation: the NLU's held-out paraphrases, by their intent's level (never trained on)",
            table(headers, lines),
        ]
    )


def cross_validation_report() -> str:
    """Each candidate on the same folds, the red head, and threshold sweeps (see --no-cv)."""
    from triage_protocols.learned.corpus import training_rows
    from triage_protocols.learned.crossval import cross_validate
    from triage_protocols.learned.train import CANDIDATES, CHOSEN, model_text

    protocol = load_protocol()
    orange_at, red_at = protocol.learned.orange, protocol.learned.red
    lexicon = Screener(protocol, Loaded.off())
    rows = training_rows(protocol)
    read_as = model_text()
    level_of = lambda row: lexicon.screen(row.text, row.audience).level
    parts = []
    pooled: dict[str, list] = {}
    for name in CANDIDATES:
        pooled[name] = cross_validate(name, rows, read_as, lambda row: level_of(row) in ESCALATED)
        parts.append(
            f"At-risk head {name}{' (shipped)' if name == CHOSEN else ''}, orange at score >= {orange_at}"
        )
        parts.append(fold_table(pooled[name], orange_at, ("at risk / unrelated", "recall", "false alarms")))
    real = sum(r.real for r in rows)
    head = (
        f"Learned screen: 5-fold stratified cross-validation. At-risk head on the {real} real PsySUICIDE "
        f"texts ({sum(r.real and r.at_risk for r in rows)} at risk); the lexicon alone on the same rows: "
        f"recall {pct(mean([f.recall(2.0, True) for f in pooled[CHOSEN]]))}, "
        f"false alarms {pct(mean([f.false_alarms(2.0, True) for f in pooled[CHOSEN]]))}"
    )
    parts.append(f"Threshold sweep, at-risk head {CHOSEN} (mean of the folds)")
    parts.append(
        sweep_table(pooled[CHOSEN], (0.3, 0.4, 0.5, 0.6, 0.7, 0.8), orange_at, ("recall", "false alarms"))
    )
    own = lambda row: row.source == "own"
    red = cross_validate(
        CHOSEN,
        rows,
        read_as,
        lambda row: level_of(row) == Level.RED,
        target="red",
        scored=own,
        gate=lambda row: level_of(row) in ESCALATED,
    )
    parts.append(
        f"Red head {CHOSEN} on our own labelled set ({sum(own(r) for r in rows)} rows, "
        f"{sum(own(r) and bool(r.red) for r in rows)} red), red at score >= {red_at}; "
        "'both': the lexicon says red, or the red head does on a message the lexicon put at orange or above "
        "(the lexicon was written to this set, so 'both' is a regression figure, 'model' the estimate)"
    )
    if red_at is not None:
        parts.append(fold_table(red, red_at, ("red / not red", "red recall", "false reds")))
    parts.append(f"Threshold sweep, red head {CHOSEN} (mean of the folds)")
    parts.append(sweep_table(red, (0.5, 0.6, 0.7, 0.8, 0.9), red_at, ("red recall", "false reds")))
    return "\n\n".join([head, *parts])


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} % ({part}/{whole})" if whole else "n/a (0)"


def report(
    path: Path,
    scores: Scores,
    rate: float,
    longest_ms: float,
    both: tuple[float, float],
    learned: tuple[float, float],
) -> str:
    alarms, greens = scores.false_alarms
    missed = sum(n for (g, p), n in scores.confusion.items() if g in ESCALATED and p not in ESCALATED)
    rows = [
        ("red recall", percent(*scores.red), "100 %"),
        ("escalation recall", percent(*scores.escalation), ">= 98 %"),
        ("false alarms (green -> orange/red)", f"{alarms} of {greens} green", "0"),
        ("level accuracy", percent(scores.correct, scores.total), ""),
        (
            "asked (unsure): calm (green) messages",
            f"{scores.unsure[Level.GREEN]} of {greens} green",
            "rare",
        ),
        ("asked (unsure): yellow messages", f"{scores.unsure[Level.YELLOW]}", ""),
        (
            "asked (unsure): orange or red messages screened lower",
            f"{scores.unsure[Level.ORANGE] + scores.unsure[Level.RED]} of {missed}",
            "",
        ),
        ("throughput, both screens (one core)", f"{rate:,.0f} msgs/s", ""),
        ("one message, both screens: median / p99", f"{both[0]:.0f} / {both[1]:.0f} µs", "p99 < 1,000 µs"),
        ("one message, learned screen: median / p99", f"{learned[0]:.0f} / {learned[1]:.0f} µs", ""),
        ("longest message (2,000 characters)", f"{longest_ms:.1f} ms", "< 50 ms"),
    ]
    levels = list(Level)
    matrix = [(f"label {g.value}", *(scores.confusion[(g, p)] for p in levels)) for g in levels]
    return "\n\n".join(
        [
            (
                f"Triage on {path.name} ({scores.total} messages), protocol {load_protocol().version}, "
                f"learned screen {_learned_label()}"
            ),
            table(("figure", "value", "goal"), rows),
            "Confusion (rows: label, columns: screen)",
            table(("", *(level.value for level in levels)), matrix),
        ]
    )


def _learned_label() -> str:
    learned = default_screener().learned
    return learned.model.version if learned.model else learned.status.upper()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "labelled", nargs="?", type=Path, default=DEFAULT, help=f"labelled TSV (default {DEFAULT})"
    )
    parser.add_argument(
        "--errors", action="store_true", help="list every message whose level differs from its label"
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="how long to measure throughput")
    parser.add_argument("--no-cv", action="store_true", help="skip the learned screen's cross-validation")
    args = parser.parse_args(argv)
    path: Path = args.labelled if args.labelled.is_absolute() else (Path.cwd() / args.labelled)
    if not path.exists():
        print(f"no labelled file at {path}", file=sys.stderr)
        return 2
    rows = read(path)
    scores, misses = evaluate(rows)
    print(
        report(
            path,
            scores,
            throughput(rows, args.seconds),
            longest_message_ms(),
            p99_us(rows),
            p99_us(rows, learned_only=True),
        )
    )
    if args.errors and misses:
        print("\nMisses (label -> screen, rule):")
        for row, level, rule in misses:
            print(f"  {row.level.value:>6} -> {level.value:<6} {rule:<40} [{row.audience}] {row.text}")
    print()
    print(conversation_report())
    if not args.no_cv:
        print()
        print(cross_validation_report())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
