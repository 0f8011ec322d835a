"""The screening instruments (ASQ, PHQ-A, GAD-7): their questions in order, and their scoring.

The questions, options, cut-offs and explanations live in `protocols/instruments/*.yml`; this module only
reads them. A Rasa form asks `next_item(name, answers)` for the next question until it returns None, then
calls `score(name, answers)`: the form never holds its own copy of a question or a cut-off.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from triage_protocols.loader import Protocol, load_protocol
from triage_protocols.models import Item, SumScore, YesNoScreen
from triage_protocols.results import Level, Reason, Result, highest

Instrument = SumScore | YesNoScreen
Answers = Mapping[str, Any] | Sequence[Any]

_YES = {"yes", "y", "true", "1", "是", "是的", "对", "有", "嗯", "会"}
_NO = {"no", "n", "false", "0", "不是", "否", "没有", "没", "不", "不会", "无"}
_REFUSED = {"refused", "refuse", "skip", "不想回答", "不回答", "拒绝回答"}


def instrument(name: str, protocol: Protocol | None = None) -> Instrument:
    """The instrument called `name` ("asq", "phq_a", "gad7"): `.items` in order, `.options`, `.preamble`…"""
    instruments = (protocol or load_protocol()).instruments
    try:
        return instruments[name]
    except KeyError:
        raise KeyError(f"unknown instrument {name!r}; known: {sorted(instruments)}") from None


def questions(name: str, protocol: Protocol | None = None) -> tuple[Item, ...]:
    """Every question the instrument may ask, in order (for the ASQ the acuity question comes last)."""
    spec = instrument(name, protocol)
    return spec.items + ((spec.acuity,) if isinstance(spec, YesNoScreen) else ())


def next_item(name: str, answers: Answers | None = None, protocol: Protocol | None = None) -> Item | None:
    """The next question to ask given the answers so far, or None when the instrument is complete.

    For the ASQ the acuity question is asked only when an answer so far is yes (or refused).
    """
    spec = instrument(name, protocol)
    given = _by_id(spec, answers or {})
    for item in spec.items:
        if item.id not in given:
            return item
    if isinstance(spec, YesNoScreen):
        values = [_yes_no(spec, given[i.id], i.id) for i in spec.items]
        if any(v in spec.positive_values for v in values) and spec.acuity.id not in given:
            return spec.acuity
    return None


def score(name: str, answers: Answers, protocol: Protocol | None = None) -> Result:
    """Score a completed instrument. `answers` maps item id to answer (or lists them in item order).

    Sum-score items take their option value (0–3) or option text; ASQ items take "yes"/"no"/"refused",
    True/False, or the Chinese option text. Raises ValueError when an answer is missing or not an option:
    that is a programming error in the caller, and a wrong score must never be returned silently.
    """
    loaded = protocol or load_protocol()
    spec = instrument(name, loaded)
    given = _by_id(spec, answers)
    if isinstance(spec, YesNoScreen):
        return _score_screen(spec, given, loaded.version)
    return _score_sum(spec, given, loaded.version)


def _by_id(spec: Instrument, answers: Answers) -> dict[str, Any]:
    if isinstance(answers, Mapping):
        return {str(k): v for k, v in answers.items() if v is not None}
    if isinstance(answers, (str, bytes)):
        raise ValueError(  # noqa: TRY004 - callers treat every bad answer as a ValueError
            "answers must be a mapping of item id to answer, or a sequence in item order"
        )
    ids = [q.id for q in spec.items] + ([spec.acuity.id] if isinstance(spec, YesNoScreen) else [])
    if len(answers) > len(ids):
        raise ValueError(f"{spec.id}: {len(answers)} answers for {len(ids)} questions")
    return {i: v for i, v in zip(ids, answers, strict=False) if v is not None}


def _sum_value(spec: SumScore, value: Any, item: str) -> int:
    allowed = {o.value for o in spec.options}
    if isinstance(value, bool):
        raise ValueError(f"{spec.id}.{item}: {value!r} is not an option")  # noqa: TRY004 - as above
    if isinstance(value, str):
        text = value.strip()
        for option in spec.options:
            if text == option.text:
                return int(option.value)
        if text.lstrip("-").isdigit():
            value = int(text)
    if isinstance(value, int) and value in allowed:
        return value
    raise ValueError(f"{spec.id}.{item}: {value!r} is not one of {sorted(allowed)}")  # type: ignore[type-var]


def _yes_no(spec: YesNoScreen, value: Any, item: str) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value).strip().lower()
    for option in spec.options:
        if text == option.text:
            return str(option.value)
    if text in _YES:
        return "yes"
    if text in _NO:
        return "no"
    if text in _REFUSED:
        return "refused"
    raise ValueError(f"{spec.id}.{item}: {value!r} is not yes, no or refused")


def _score_sum(spec: SumScore, given: dict[str, Any], version: str) -> Result:
    missing = [q.id for q in spec.items if q.id not in given]
    if missing:
        raise ValueError(f"{spec.id}: missing answers for {missing}")
    values = {q.id: _sum_value(spec, given[q.id], q.id) for q in spec.items}
    total = sum(values.values())
    band = next(b for b in spec.bands if b.min <= total <= b.max)
    reasons = [Reason(spec.id, band.outcome, band.level)]
    outcome, level, explanation, follow = band.outcome, band.level, band.explanation, None
    for trigger in spec.triggers:
        if values[trigger.item] >= trigger.min:
            reasons.append(Reason(spec.id, trigger.outcome, trigger.level))
            outcome, explanation, follow = trigger.outcome, trigger.explanation, trigger.next
            level = highest([level, trigger.level])
    return Result(spec.id, outcome, level, total, follow, explanation, version, tuple(reasons))


def _score_screen(spec: YesNoScreen, given: dict[str, Any], version: str) -> Result:
    missing = [q.id for q in spec.items if q.id not in given]
    if missing:
        raise ValueError(f"{spec.id}: missing answers for {missing}")
    positive = any(_yes_no(spec, given[q.id], q.id) in spec.positive_values for q in spec.items)
    if not positive:
        outcome = "negative"
    else:
        if spec.acuity.id not in given:
            raise ValueError(f"{spec.id}: the screen is positive, so {spec.acuity.id} must be answered")
        acute = _yes_no(spec, given[spec.acuity.id], spec.acuity.id) in spec.positive_values
        outcome = "acute_positive" if acute else "non_acute_positive"
    result = next(o for o in spec.outcomes if o.id == outcome)
    level: Level = result.level
    return Result(
        spec.id, outcome, level, None, None, result.explanation, version, (Reason(spec.id, outcome, level),)
    )
