"""NLU intent accuracy and macro-F1 on the held-out paraphrases (benchmarks/data/nlu_heldout.yml), which
training never sees (tests/engine/test_training_data.py checks that). Goal: macro-F1 >= 0.90.

    .venv/bin/python benchmarks/nlu_eval.py            # starts its own engine
    .venv/bin/python benchmarks/nlu_eval.py --errors   # also lists each miss
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import benchmark_stack, held_out, table


def predicted_intent(parse: dict) -> str:
    """The intent as the held-out file names it: retrieval intents by their full name."""
    intent = (parse.get("intent") or {}).get("name") or ""
    if intent in ("faq", "chitchat"):
        selectors = parse.get("response_selector") or {}
        # One ResponseSelector serves both retrieval intents, so Rasa files it under "default".
        selected = (selectors.get(intent) or selectors.get("default") or {}).get("response", {})
        return selected.get("intent_response_key") or intent
    return intent


def scores(pairs: list[tuple[str, str]]) -> tuple[float, float, dict[str, tuple[float, float, float, int]]]:
    """(accuracy, macro-F1 over the true intents, per-intent precision/recall/F1/support)."""
    true_count = Counter(t for t, _ in pairs)
    pred_count = Counter(p for _, p in pairs)
    hits = Counter(t for t, p in pairs if t == p)
    per_intent = {}
    for intent in sorted(true_count):
        precision = hits[intent] / pred_count[intent] if pred_count[intent] else 0.0
        recall = hits[intent] / true_count[intent]
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_intent[intent] = (precision, recall, f1, true_count[intent])
    accuracy = sum(hits.values()) / len(pairs)
    macro_f1 = sum(v[2] for v in per_intent.values()) / len(per_intent)
    return accuracy, macro_f1, per_intent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--errors", action="store_true", help="list every misclassified example")
    args = parser.parse_args()
    examples = held_out()
    results: list[tuple[str, str]] = []
    misses: list[tuple[str, str, str]] = []
    with benchmark_stack() as stack, httpx.Client(timeout=30) as http:
        url = f"{stack.config.engine_url}/model/parse?token={stack.config.rasa_token}"
        for text, intent in examples:
            predicted = predicted_intent(http.post(url, json={"text": text}).json())
            results.append((intent, predicted))
            if predicted != intent:
                misses.append((intent, predicted, text))
    accuracy, macro_f1, per_intent = scores(results)
    weakest = sorted(per_intent.items(), key=lambda kv: kv[1][2])[:8]
    print(f"NLU on {len(examples)} held-out examples, {len(per_intent)} intents\n")
    print(
        table(
            ["metric", "value", "goal"],
            [["accuracy", f"{accuracy:.3f}", ""], ["macro-F1", f"{macro_f1:.3f}", ">= 0.90"]],
        )
    )
    print("\nweakest intents\n")
    print(
        table(
            ["intent", "precision", "recall", "F1", "n"],
            [[i, f"{p:.2f}", f"{r:.2f}", f"{f:.2f}", n] for i, (p, r, f, n) in weakest],
        )
    )
    if args.errors:
        print("\nmisses\n")
        print(table(["expected", "predicted", "text"], misses))
    return 0


if __name__ == "__main__":
    sys.exit(main())
