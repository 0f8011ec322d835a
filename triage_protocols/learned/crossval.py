"""Stratified k-fold cross-validation of the learned screen's two heads.

The at-risk head is scored on the real PsySUICIDE texts; the red head on our own labelled set (the only
rows that say red or orange in our levels' sense). Only the scored rows are split into folds; every
fold's model also trains on the rows that are never scored (synthetic rows at their lower weight, the
other sets, the protocol's examples), exactly as the shipped model does. For each held-out fold: the
share of positives the model flags and of negatives it flags (false alarms), alone and together with
the lexicon, at a threshold. Used by `benchmarks/triage_eval.py`; nothing here is a test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold

from triage_protocols.learned.corpus import Row
from triage_protocols.learned.train import SEED, fit


@dataclass(frozen=True, slots=True)
class Fold:
    number: int
    positives: int
    negatives: int
    scores: tuple[float, ...]  # the model's score of each held-out row
    targets: tuple[bool, ...]
    lexicon: tuple[bool, ...]  # the lexicon alone flags the row (at orange+, or red for the red head)
    gate: tuple[bool, ...]  # the model's flag counts only here (the red head: already at orange or above)

    def recall(self, threshold: float, with_lexicon: bool = False) -> float:
        hits = [self._flag(i, threshold, with_lexicon) for i, t in enumerate(self.targets) if t]
        return sum(hits) / len(hits) if hits else float("nan")

    def false_alarms(self, threshold: float, with_lexicon: bool = False) -> float:
        hits = [self._flag(i, threshold, with_lexicon) for i, t in enumerate(self.targets) if not t]
        return sum(hits) / len(hits) if hits else float("nan")

    def auc(self) -> float:
        """Area under the ROC curve of the model's scores: quality at every threshold at once."""
        from sklearn.metrics import roc_auc_score

        return float(roc_auc_score(self.targets, self.scores))

    def _flag(self, i: int, threshold: float, with_lexicon: bool) -> bool:
        model = self.scores[i] >= threshold
        if not with_lexicon:
            return model
        return (model and self.gate[i]) or self.lexicon[i]


def cross_validate(
    name: str,
    rows: Sequence[Row],
    model_text: Callable[[str], str],
    lexicon_flags: Callable[[Row], bool],
    folds: int = 5,
    seed: int = SEED,
    target: str = "at_risk",
    scored: Callable[[Row], bool] = lambda row: row.real,
    gate: Callable[[Row], bool] | None = None,
) -> list[Fold]:
    """The folds of one head of one candidate model; the same `seed` gives every candidate the same folds."""
    held_out = [i for i, row in enumerate(rows) if scored(row) and getattr(row, target) is not None]
    chosen = set(held_out)
    rest = [row for i, row in enumerate(rows) if i not in chosen]
    targets = np.array([bool(getattr(rows[i], target)) for i in held_out])
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    found = []
    for number, (train_at, test_at) in enumerate(splitter.split(np.zeros(len(held_out)), targets), start=1):
        train_rows = [rows[held_out[i]] for i in train_at] + rest
        pipeline = fit(name, train_rows, model_text, seed, target)
        held = [rows[held_out[i]] for i in test_at]
        scores = pipeline.predict_proba([model_text(row.text) for row in held])[:, 1]
        found.append(
            Fold(
                number=number,
                positives=sum(bool(getattr(row, target)) for row in held),
                negatives=sum(not getattr(row, target) for row in held),
                scores=tuple(float(s) for s in scores),
                targets=tuple(bool(getattr(row, target)) for row in held),
                lexicon=tuple(lexicon_flags(row) for row in held),
                gate=tuple(gate(row) if gate else True for row in held),
            )
        )
    return found
