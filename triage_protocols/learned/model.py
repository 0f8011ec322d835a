"""Load the trained learned screen once, and score a message with it in a few microseconds.

Two heads, scored the same way: at risk (orange or red) and red (red rather than orange).
scikit-learn's `predict_proba` on one message costs about half a millisecond (input checks, sparse
matrices), most of a message's budget. A trained TF-IDF + logistic regression is one dot product, so on
loading, each pipeline is folded into a table: character n-gram -> (idf, coefficient x idf). Scoring then
runs the vectorizer's own analyzer (the same n-grams as in training), looks each one up and computes
exactly what `predict_proba` computes (sublinear tf, l2 norm, sigmoid); `tests/triage/test_learned.py`
checks the two agree. A model that is not a logistic regression is scored through scikit-learn itself.

A missing or unreadable model never stops screening: `default_model()` says so once in the log
(warning) and the screen runs on the lexicon alone, recording `learned_status` "missing" or "failed" in
every assessment, so nobody mistakes a lexicon-only figure for the two screens.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from triage_protocols.results import LearnedStatus

log = logging.getLogger(__name__)

MODEL_DIR = Path(__file__).resolve().parent / "model"
MODEL_FILE = "model.joblib"  # the at-risk head
RED_FILE = "red.joblib"  # the red head (absent when no training row was red)
META_FILE = "meta.json"


class LinearScorer:
    """One trained pipeline (TfidfVectorizer, then a binary classifier) as a function text -> probability."""

    def __init__(self, pipeline: Any) -> None:
        from sklearn.linear_model import LogisticRegression

        self.pipeline = pipeline
        tfidf = pipeline.named_steps["tfidf"]
        classifier = pipeline.named_steps["model"]
        self._analyzer: Callable[[str], list[str]] = tfidf.build_analyzer()
        self._fast = (
            isinstance(classifier, LogisticRegression)
            and tfidf.norm == "l2"
            and tfidf.use_idf
            and list(classifier.classes_) == [False, True]
        )
        if self._fast:
            idf = tfidf.idf_.tolist()
            coef = classifier.coef_[0].tolist()
            self._table = {gram: (idf[j], coef[j] * idf[j]) for gram, j in tfidf.vocabulary_.items()}
            self._intercept = float(classifier.intercept_[0])
            self._sublinear = bool(tfidf.sublinear_tf)

    def grams(self, text: str) -> Counter[str]:
        """The character n-grams of the text, counted, as the vectorizer sees them."""
        return Counter(self._analyzer(text))

    def __call__(self, text: str, grams: Counter[str] | None = None) -> float:
        """The probability of the positive class; `grams` (from `grams()` of a scorer with the same
        vectorizer settings) saves running the analyzer again."""
        if not self._fast:
            return float(self.pipeline.predict_proba([text])[0, 1])
        table = self._table
        dot = norm = 0.0
        for gram, count in (grams if grams is not None else self.grams(text)).items():
            entry = table.get(gram)
            if entry is None:
                continue
            tf = 1.0 + math.log(count) if self._sublinear else float(count)
            norm += (tf * entry[0]) ** 2
            dot += tf * entry[1]
        z = self._intercept + (dot / math.sqrt(norm) if norm else 0.0)
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


class LearnedModel:
    """The two heads of the learned screen and their version: at risk (orange or red), and red."""

    def __init__(self, pipeline: Any, version: str, red: Any | None = None) -> None:
        self.version = version
        self.pipeline = pipeline
        self._at_risk = LinearScorer(pipeline)
        self._red = LinearScorer(red) if red is not None else None
        # both heads are trained with the same vectorizer settings: one analyzer run serves both
        self._shared = self._red is not None and _settings(pipeline) == _settings(red)

    def score(self, text: str) -> float:
        """The probability that the text (as `Screener.model_text` reads it) is at risk, orange or red."""
        return self._at_risk(text)

    def red_score(self, text: str) -> float | None:
        """The probability that the text is red rather than orange or below (None without a red head)."""
        return self._red(text) if self._red is not None else None

    def scores(self, text: str) -> tuple[float, float | None]:
        """Both heads' scores (at risk, red), running the analyzer once when the heads allow it."""
        if self._red is None:
            return self._at_risk(text), None
        if not self._shared:
            return self._at_risk(text), self._red(text)
        grams = self._at_risk.grams(text)
        return self._at_risk(text, grams), self._red(text, grams)


def _settings(pipeline: Any) -> dict[str, Any]:
    params = pipeline.named_steps["tfidf"].get_params()
    return {k: params[k] for k in ("analyzer", "ngram_range", "lowercase", "preprocessor", "tokenizer")}


@dataclass(frozen=True, slots=True)
class Loaded:
    """The model a screener uses, or why it has none."""

    model: LearnedModel | None
    status: LearnedStatus

    @classmethod
    def off(cls) -> Loaded:
        return cls(None, "off")


def load(folder: Path) -> LearnedModel:
    """The model in `folder` (FileNotFoundError when it was never trained)."""
    import joblib

    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    pipeline = joblib.load(folder / MODEL_FILE)
    red = joblib.load(folder / RED_FILE) if (folder / RED_FILE).exists() else None
    return LearnedModel(pipeline, str(meta["version"]), red)


def load_or_report(folder: Path) -> Loaded:
    """The model in `folder`, or the reason there is none, said once in the log."""
    try:
        model = load(folder)
    except FileNotFoundError:
        log.warning(
            "learned screen MISSING (no model in %s; run `make learned`): screening with the lexicon only",
            folder,
        )
        return Loaded(None, "missing")
    except Exception as error:  # noqa: BLE001 - any unreadable model means lexicon only, said loudly
        log.error("learned screen FAILED to load (%s): screening with the lexicon only", type(error).__name__)
        return Loaded(None, "failed")
    log.info("learned screen %s loaded", model.version)
    return Loaded(model, "ok")


@cache
def default_model() -> Loaded:
    """The model shipped beside this module, loaded once per process."""
    return load_or_report(MODEL_DIR)
