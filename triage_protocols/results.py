"""What the engine hands back: levels, matched signals, assessments and instrument results.

Plain frozen dataclasses and named tuples, not pydantic models: `screen` builds several of these for every
message and must stay far below a millisecond, and nothing here comes from outside, so there is nothing to
validate. (Signal and Reason are named tuples because a frozen dataclass costs several times more to build.)
Each has `to_dict()`, whose output `json.dumps` takes as it is, so the gateway can store it with the message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, NamedTuple

Audience = Literal["student", "parent"]
AUDIENCES: tuple[Audience, ...] = ("student", "parent")


class Level(StrEnum):
    """The four triage levels, in rising order of concern. A str, so JSON shows "red", not a number."""

    GREEN = "green"
    YELLOW = "yellow"
    ORANGE = "orange"
    RED = "red"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def at_least(self, other: Level) -> bool:
        return self.rank >= other.rank


_RANK = {Level.GREEN: 0, Level.YELLOW: 1, Level.ORANGE: 2, Level.RED: 3}


def highest(levels: Any) -> Level:
    """The most serious of some levels (green when there are none)."""
    return max(levels, key=_RANK.__getitem__, default=Level.GREEN)


# How a matched signal counts. Only "present" signals satisfy a rule's categories; "negated" (我不会自杀)
# and "resolved" (以前想过, 现在好了) ones are kept so a reviewer sees them and a rule can still act on them.
Status = Literal["present", "negated", "resolved"]
Subject = Literal["self", "other"]


class Signal(NamedTuple):
    """One phrase that matched: which signal, its category, where it is in the given text, how it counts.

    `span` indexes the text as it was given (code points), not the normalised text, so a reviewer can cut
    out exactly what matched. `source` is "text" for the message itself, "context[i]" for a recent message
    the caller passed in. The matched words themselves are deliberately not copied here: whoever logs an
    assessment then logs no words of a child's message.
    """

    id: str
    category: str
    span: tuple[int, int]
    status: Status = "present"
    subject: Subject = "self"
    source: str = "text"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "category": self.category,
            "span": [self.span[0], self.span[1]],
            "status": self.status,
            "subject": self.subject,
            "source": self.source,
        }


class Reason(NamedTuple):
    """Why a level was reached: the source ("screen", "asq", "intent", ...), the rule or outcome, the level."""

    source: str
    rule: str
    level: Level

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "rule": self.rule, "level": self.level.value}


class LearnedVerdict(NamedTuple):
    """What the learned second screen said: the model's version, its at-risk score (0..1), the level its
    scores reach under the protocol's thresholds (learned.yml), and the red head's score (None without
    one). Numbers and codes only, never words."""

    model: str
    score: float
    level: Level
    red_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "score": self.score,
            "red_score": self.red_score,
            "level": self.level.value,
        }


# ok: both screens ran; missing / failed: there was no usable model, the lexicon screened alone;
# off: the caller asked for the lexicon alone; not_run: not a screen of a message (an intent, an instrument)
LearnedStatus = Literal["ok", "missing", "failed", "off", "not_run"]


@dataclass(frozen=True, slots=True)
class Assessment:
    """The result of screening a message (or of combining several results): what a case record stores.

    `rule` is the rule that decided the level; `reasons` keeps every source that was combined into it, so
    nothing is lost when a screen, a Rasa intent and an ASQ are merged. `learned` is the learned second
    screen's verdict (None when it did not run; `learned_status` says why).
    """

    level: Level
    rule: str
    signals: tuple[Signal, ...]
    protocol_version: str
    audience: Audience = "student"
    reasons: tuple[Reason, ...] = field(default=())
    learned: LearnedVerdict | None = None
    learned_status: LearnedStatus = "not_run"
    # why the screens are unsure of a message below orange ("grey_band", "idiom_in_low_mood"), else None:
    # the assistant may ask one direct question; it opens no case
    unsure: str | None = None

    def categories(self) -> frozenset[str]:
        """The categories of the signals that count (status present)."""
        return frozenset(s.category for s in self.signals if s.status == "present")

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level.value,
            "rule": self.rule,
            "signals": [s.to_dict() for s in self.signals],
            "protocol_version": self.protocol_version,
            "audience": self.audience,
            "reasons": [r.to_dict() for r in self.reasons],
            "learned": self.learned.to_dict() if self.learned else None,
            "learned_status": self.learned_status,
            "unsure": self.unsure,
        }

    def summary(self) -> dict[str, Any]:
        """What is safe to put in a log line: level, rule, signal ids. No spans, no text."""
        return {
            "level": self.level.value,
            "rule": self.rule,
            "signals": sorted({s.id for s in self.signals if s.status == "present"}),
            "protocol_version": self.protocol_version,
            "learned_status": self.learned_status,
            "unsure": self.unsure,
        }


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of a screening instrument (ASQ, PHQ-A, GAD-7).

    `next` names the instrument to run next when the protocol requires one (PHQ-A item 9 above 0 leads to
    the ASQ); `explanation` is the kind, plain-language text for the user, taken from the protocol file.
    """

    instrument: str
    outcome: str
    level: Level
    total: int | None
    next: str | None
    explanation: str
    protocol_version: str
    reasons: tuple[Reason, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "instrument": self.instrument,
            "outcome": self.outcome,
            "level": self.level.value,
            "total": self.total,
            "next": self.next,
            "explanation": self.explanation,
            "protocol_version": self.protocol_version,
            "reasons": [r.to_dict() for r in self.reasons],
        }
