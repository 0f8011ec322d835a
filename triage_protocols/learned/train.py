"""Train the learned second screen: character n-gram TF-IDF and a linear model, from data in the repository.

    .venv/bin/python -m triage_protocols.learned.train            # writes triage_protocols/learned/model/

`make` runs this only when a training file changed (Makefile: `learned`). Training takes a few seconds on
one core and is deterministic: the rows come in a fixed order, every estimator that could draw a random
number gets `SEED`, and the model's version is a hash of the rows and the parameters, so the same data
always gives the same version and the same scores.

Two heads are trained, with the same features and model: the at-risk head (orange or red against
the rest, on every row) and the red head (red against orange and below, on the rows that say which;
corpus.py). Two candidate models are defined so that the benchmark (`benchmarks/triage_eval.py`) can
compare them on the same folds; `CHOSEN` is the one shipped. Why LR: see the README, Benchmarks → Triage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import joblib
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from triage_protocols.learned.corpus import Row, fingerprint, training_rows
from triage_protocols.learned.model import META_FILE, MODEL_DIR, MODEL_FILE, RED_FILE
from triage_protocols.loader import load_protocol

log = logging.getLogger(__name__)

SEED = 20261204
# 1-3 characters: single characters carry much of Chinese (死, 割, 药); trigrams catch 不想活, 想自杀
VECTORIZER: dict[str, Any] = {"analyzer": "char", "ngram_range": (1, 3), "sublinear_tf": True, "min_df": 1}
CANDIDATES: dict[str, dict[str, Any]] = {
    # logistic regression: probabilities of its own (no calibration folds), one dot product a message
    "char13_lr": {"C": 10.0},
    # linear SVM, calibrated with Platt scaling over 5 inner folds
    "char13_svc_calibrated": {"C": 0.5},
}
CHOSEN = "char13_lr"


def build(name: str, seed: int = SEED) -> Pipeline:
    """An untrained pipeline of one of the `CANDIDATES`."""
    params = CANDIDATES[name]
    vectorizer = TfidfVectorizer(**VECTORIZER)
    if name == "char13_lr":
        classifier: Any = LogisticRegression(
            C=params["C"], class_weight="balanced", max_iter=5000, random_state=seed
        )
    elif name == "char13_svc_calibrated":
        classifier = CalibratedClassifierCV(
            LinearSVC(C=params["C"], class_weight="balanced", random_state=seed), method="sigmoid", cv=5
        )
    else:  # pragma: no cover - CANDIDATES and this function are edited together
        raise KeyError(name)
    return Pipeline([("tfidf", vectorizer), ("model", classifier)])


def fit(
    name: str,
    rows: Sequence[Row],
    normalise: Callable[[str], str],
    seed: int = SEED,
    target: str = "at_risk",
) -> Pipeline:
    """A pipeline trained on the rows (texts read as the screen reads them), weights applied. `target`
    "at_risk" uses every row; "red" only the rows that say whether they are red."""
    used = [row for row in rows if getattr(row, target) is not None]
    pipeline = build(name, seed)
    texts = [normalise(row.text) for row in used]
    labels = [bool(getattr(row, target)) for row in used]
    pipeline.fit(texts, labels, model__sample_weight=[row.weight for row in used])
    return pipeline


def model_text() -> Callable[[str], str]:
    """The shipped protocol's reading of a text for the model (normalised, harmless forms blanked): the
    same at training and at screening."""
    from triage_protocols.engine import Screener
    from triage_protocols.learned.model import Loaded

    return Screener(load_protocol(), Loaded.off()).model_text


def params(name: str, seed: int = SEED) -> dict[str, Any]:
    """What, besides the rows, decides the model: part of its version. The protocol's version is in it
    because the model reads texts through the protocol's normalisation and masks (`model_text`)."""
    return {
        "protocol": load_protocol().version,
        "input": "normalised, masks blanked",
        "name": name,
        "seed": seed,
        "vectorizer": {k: list(v) if isinstance(v, tuple) else v for k, v in VECTORIZER.items()},
        "classifier": CANDIDATES[name],
        "sklearn": sklearn.__version__,
    }


def train(
    out: Path = MODEL_DIR, rows: Sequence[Row] | None = None, name: str = CHOSEN, seed: int = SEED
) -> str:
    """Train, write the model and its metadata into `out`, and return the model's version."""
    protocol = load_protocol()
    chosen = list(rows) if rows is not None else training_rows(protocol)
    version = fingerprint(chosen, params(name, seed))
    read_as = model_text()
    at_risk = fit(name, chosen, read_as, seed)
    red = fit(name, chosen, read_as, seed, target="red") if any(row.red for row in chosen) else None
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(at_risk, out / MODEL_FILE)
    if red is not None:
        joblib.dump(red, out / RED_FILE)
    else:
        (out / RED_FILE).unlink(missing_ok=True)
    meta = {
        "version": version,
        "params": params(name, seed),
        "rows": len(chosen),
        "at_risk": sum(row.at_risk for row in chosen),
        "red": sum(bool(row.red) for row in chosen),
        "red_rows": sum(row.red is not None for row in chosen),
    }
    (out / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m triage_protocols.learned.train", description=__doc__)
    parser.add_argument("--out", type=Path, default=MODEL_DIR, help=f"output folder (default {MODEL_DIR})")
    args = parser.parse_args(argv)
    version = train(args.out)
    print(f"learned screen {CHOSEN} trained: version {version}, written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
