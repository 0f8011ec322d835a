"""The words around the screening questions (data/content/instruments.yml), and how a reply is read.

The questions and answer options themselves come from the protocol (`triage_protocols.instrument`); this
module reads the content file once, validates it, and turns a typed or tapped reply into an answer. A reply
it cannot read with confidence gives None, and the question is asked again: an answer is never guessed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from triage_protocols import instrument

CONTENT_FILE = Path(__file__).resolve().parent.parent / "data" / "content" / "instruments.yml"

YesNo = Literal["yes", "no", "refused"]

_PUNCTUATION = re.compile(r"[\W_]+")
_CLOSING = "吧呀啊呢哦啦"
_NUMBER = re.compile(r"^(?:选择?|选项|第)?(\d)(?:分|个|项)?$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Choice(Strict):
    instrument: str
    title: str
    words: tuple[str, ...] = Field(min_length=1)


class SelfCheck(Strict):
    choose: str
    options: tuple[Choice, ...] = Field(min_length=1)
    choose_again: str
    stopped: str
    next_steps: dict[str, dict[str, str]] = {}


class Asq(Strict):
    after_negative: str
    stopped: str
    parent: str


class Unclear(Strict):
    yes_no: str
    frequency: str
    frequency_option: str
    separator: str


class Understand(Strict):
    yes: tuple[str, ...]
    no: tuple[str, ...]
    refused: tuple[str, ...]
    unsure: tuple[str, ...]
    frequency: dict[int, tuple[str, ...]]
    negation: tuple[str, ...]
    stop: tuple[str, ...]


class InstrumentContent(Strict):
    intro: str
    numbered_question: str
    self_check: SelfCheck
    asq: Asq
    unclear: Unclear
    understand: Understand


@cache
def content() -> InstrumentContent:
    """The content file, validated once; a file that does not validate stops the action server at start."""
    return InstrumentContent.model_validate(yaml.safe_load(CONTENT_FILE.read_text(encoding="utf-8")))


def self_check_instruments() -> tuple[str, ...]:
    """The instruments a student may choose for a self-check, in the order of the buttons."""
    return tuple(option.instrument for option in content().self_check.options)


def clean(text: str | None) -> str:
    """A reply as it is compared: full-width folded, lower case, no spaces or punctuation, no closing 吧/啊."""
    text = _PUNCTUATION.sub("", unicodedata.normalize("NFKC", text or "").lower())
    while len(text) > 1 and text[-1] in _CLOSING:
        text = text[:-1]
    return text


def _among(text: str, phrases: Iterable[str]) -> bool:
    return text in {clean(p) for p in phrases}


def is_stop(text: str | None) -> bool:
    """The student wants to stop the questions ("不想做了", "算了")."""
    return _among(clean(text), content().understand.stop)


def read_yes_no(text: str | None, intent: str | None) -> YesNo | None:
    """An ASQ answer: the option's text, a plain yes/no/refusal, or else the NLU's affirm or deny."""
    said = clean(text)
    if not said:
        return None
    for option in instrument("asq").options:
        if said == clean(option.text):
            return str(option.value)  # type: ignore[return-value]
    words = content().understand
    if _among(said, words.refused):
        return "refused"
    if _among(said, words.unsure):
        return None
    if _among(said, words.yes):
        return "yes"
    if _among(said, words.no):
        return "no"
    if intent == "affirm":
        return "yes"
    if intent == "deny":
        return "no"
    return None


def read_frequency(name: str, text: str | None, intent: str | None) -> int | None:
    """A 0–3 answer of PHQ-A or GAD-7: the option's text, its digit, or one unambiguous word of frequency."""
    said = clean(text)
    if not said:
        return None
    options = instrument(name).options
    values = {int(option.value) for option in options}
    for option in options:
        if said == clean(option.text):
            return int(option.value)
    number = _NUMBER.match(said)
    if number:
        value = int(number.group(1))
        return value if value in values else None
    words = content().understand
    found = {value for value, phrases in words.frequency.items() if any(clean(p) in said for p in phrases)}
    if len(found) == 1:
        value = found.pop()
        negated = any(n in said for n in words.negation)
        return value if value in values and not (negated and value > 0) else None
    if not found and intent == "deny":
        return 0
    return None


def read_choice(text: str | None) -> str | None:
    """Which self-check a reply asks for: a button's title, its number, or words that name only one."""
    said = clean(text)
    if not said:
        return None
    options = content().self_check.options
    for option in options:
        if said == clean(option.title):
            return option.instrument
    number = _NUMBER.match(said)
    if number:
        index = int(number.group(1)) - 1
        return options[index].instrument if 0 <= index < len(options) else None
    named = {option.instrument for option in options if any(clean(w) in said for w in option.words)}
    return named.pop() if len(named) == 1 else None


def frequency_hint(name: str) -> str:
    """What to say when a 0–3 answer could not be read: the options with their digits."""
    unclear = content().unclear
    listed = unclear.separator.join(
        unclear.frequency_option.format(value=o.value, text=o.text) for o in instrument(name).options
    )
    return unclear.frequency.format(options=listed)
