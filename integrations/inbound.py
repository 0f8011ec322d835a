"""What every channel adapter hands the switchboard, and the checks every message passes first."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

Audience = Literal["student", "parent"]

# Rasa reads a text that starts with "/" (after stripping white space) as an intent with entities, so a
# user could type "/restart" or "/suicidal_thoughts". Slashes of any width, white space and invisible
# format characters in front of the text are removed for that reason.
_LEADING_COMMAND = re.compile(r"^[\s/／⁄∕\u200b-\u200f\u2060\ufeff]+")
# Control characters other than newline and tab cannot be stored in PostgreSQL text and mean nothing.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# A lone surrogate (JSON's "\ud83d" without its pair, a broken client) is no character: no database can
# store it and no encoder can write it, so one of them would cost a child's whole message. JSON and
# Python join a valid pair into one code point, so any surrogate left is alone.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class InvalidMessage(ValueError):
    """A message that is refused with a clear error. `code` names the text the user is shown."""

    def __init__(self, code: Literal["empty", "too_long", "bad_request"], detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code


@dataclass(frozen=True, slots=True)
class InboundMessage:
    channel: str
    external_id: str
    conversation_id: str
    text: str
    audience: Audience | None = None
    # A digest naming a source that is over its rate limit (never the address itself): the cases its
    # messages open are grouped, so a flood pages the on-call counsellor once (records/escalation.py).
    flood_key: str | None = None


def storable(raw: str) -> str:
    """Any string made safe to store and to encode: lone surrogates and control characters removed.
    Used for every value from outside that reaches the store (texts, message ids)."""
    return _CONTROL.sub("", _SURROGATE.sub("", raw))


def clean_text(raw: object, max_length: int) -> str:
    """The text as the engine may see it, or InvalidMessage. Length counts characters, not bytes."""
    if not isinstance(raw, str):
        raise InvalidMessage("bad_request", "text must be a string")
    text = unicodedata.normalize("NFC", storable(raw))
    text = _LEADING_COMMAND.sub("", text).strip()
    if not text:
        raise InvalidMessage("empty")
    if len(text) > max_length:
        raise InvalidMessage("too_long", f"{len(text)} > {max_length}")
    return text
