"""Splitting a text into the SMS messages it is sent as. It has a module of its own because the splitting
is pure text arithmetic (segments, sentence ends, numbers), tested apart from Twilio and the store, and
because every text the line sends goes through it (`sms_parts`): the webhook's TwiML answer, the REST
sender and the pages (sms.py).

Chinese is sent as UCS-2, 70 characters in a single SMS segment and 67 in each part of a concatenated
one. One message holds up to four segments (268 Chinese characters: an answer with the hotline list
stays in one message, so the numbers arrive whole and in order), cut at sentence ends (。！？ and line
breaks) where possible and never inside a number; one text takes at most six messages. Beyond that the
end is left out and marked, but never a hotline number.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from integrations.channels.sms_texts import sms_texts
from triage_protocols.directory import entries

# Segments: GSM-7 text takes 160 characters in one segment and 153 in each part of a longer one;
# anything else (Chinese) is UCS-2: 70 and 67 UTF-16 code units.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")  # two units each (an escape, then the character)
SEGMENTS_PER_MESSAGE = 4
MAX_MESSAGES = 6

_SENTENCE_END = frozenset("。！？!?\n")
_CLOSING = frozenset("”’\"'」』）)】》")
_SOFT_BREAK = frozenset("，、；：,; ")
# A run of digits, with single spaces or hyphens inside (a phone number written "400-161-9995").
_NUMBER = re.compile(r"\+?\d+(?:[- ]\d+)*")


@dataclass(frozen=True, slots=True)
class _Size:
    gsm: bool
    gsm_units: int
    utf16_units: int

    def __add__(self, other: _Size) -> _Size:
        return _Size(
            self.gsm and other.gsm, self.gsm_units + other.gsm_units, self.utf16_units + other.utf16_units
        )

    @property
    def segments(self) -> int:
        units, single, part = (self.gsm_units, 160, 153) if self.gsm else (self.utf16_units, 70, 67)
        if units == 0:
            return 0
        return 1 if units <= single else math.ceil(units / part)


def _size(text: str) -> _Size:
    gsm = all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in text)
    gsm_units = len(text) + sum(c in GSM7_EXTENDED for c in text) if gsm else 0
    return _Size(gsm, gsm_units, len(text.encode("utf-16-le")) // 2)


def sms_segments(text: str) -> int:
    """How many SMS segments `text` takes (what Twilio bills and a phone reassembles)."""
    return _size(text).segments


def _sentences(text: str) -> list[str]:
    """The text cut after each sentence end (。！？ and line breaks), closing quotes kept with it."""
    units: list[str] = []
    start = i = 0
    while i < len(text):
        if text[i] in _SENTENCE_END:
            i += 1
            while i < len(text) and (text[i] in _CLOSING or (text[i] in _SENTENCE_END and text[i] != "\n")):
                i += 1
            units.append(text[start:i])
            start = i
        else:
            i += 1
    if start < len(text):
        units.append(text[start:])
    return units


def _fits(text: str, segments: int) -> bool:
    return _size(text.strip()).segments <= segments


def _cut_point(text: str, segments: int) -> int:
    """Where to cut a sentence too long for one message: the longest prefix that fits, moved back to
    a comma or space in its second half if there is one, and never inside a number."""
    low, high = 1, len(text)  # the longest prefix that fits lies in [low, high)
    while low < high - 1:
        middle = (low + high) // 2
        if _fits(text[:middle], segments):
            low = middle
        else:
            high = middle
    cut = low
    soft = max((i + 1 for i in range(cut // 2, cut) if text[i] in _SOFT_BREAK), default=None)
    if soft is not None:
        cut = soft
    for number in _NUMBER.finditer(text):
        if number.start() < cut < number.end() and number.start() > 0:
            cut = number.start()
    return cut


def _pieces(text: str, segments: int) -> list[str]:
    """Sentences, each sentence too long for one message cut into pieces that fit."""
    pieces: list[str] = []
    for sentence in _sentences(text):
        rest = sentence
        while not _fits(rest, segments):
            cut = _cut_point(rest, segments)
            pieces.append(rest[:cut])
            rest = rest[cut:]
        pieces.append(rest)
    return pieces


def _pack(pieces: Sequence[str], segments: int) -> list[str]:
    messages: list[str] = []
    current, size = "", _Size(True, 0, 0)
    for piece in pieces:
        piece_size = _size(piece)
        if current and (size + piece_size).segments > segments:
            messages.append(current)
            current, size = "", _Size(True, 0, 0)
        current, size = current + piece, size + piece_size
    messages.append(current)
    return [m.strip() for m in messages if m.strip()]


def _has_number(text: str, numbers: Iterable[str]) -> bool:
    return any(re.search(rf"(?<!\d){re.escape(number)}(?!\d)", text) for number in numbers)


def hotline_numbers() -> tuple[str, ...]:
    return tuple(entry.number for entry in entries())


def split_for_sms(
    text: str,
    *,
    omitted: str = "……",
    keep: Iterable[str] = (),
    segments_per_message: int = SEGMENTS_PER_MESSAGE,
    max_messages: int = MAX_MESSAGES,
) -> list[str]:
    """`text` as the messages to send, in order: each fits `segments_per_message` segments, cut at
    sentence ends where possible and never inside a number. When more than `max_messages` would be
    needed, sentences are left out from the end (each gap marked with `omitted`), except those with one
    of the numbers in `keep` (the hotlines), so they are always sent."""
    pieces = _pieces(text, segments_per_message)
    messages = _pack(pieces, segments_per_message)
    if len(messages) <= max_messages:
        return messages
    keep = tuple(keep)
    droppable = [i for i, piece in enumerate(pieces) if piece.strip() and not _has_number(piece, keep)]

    def keeping(count: int) -> list[str]:
        """The messages when only the first `count` droppable pieces are kept."""
        dropped = set(droppable[count:])
        kept = [i not in dropped for i in range(len(pieces))]
        return _pack(_with_gaps(pieces, kept, omitted), segments_per_message)

    fewest = keeping(0)
    if len(fewest) > max_messages:  # the kept numbers alone need more: the first (urgent ones first)
        return fewest[:max_messages]
    low, high = 0, len(droppable)  # keeping `low` fits, keeping `high` (all) does not
    while high - low > 1:
        middle = (low + high) // 2
        if len(keeping(middle)) <= max_messages:
            low = middle
        else:
            high = middle
    return keeping(low)


def _with_gaps(pieces: Sequence[str], kept: Sequence[bool], omitted: str) -> list[str]:
    out: list[str] = []
    for piece, keep in zip(pieces, kept, strict=True):
        if keep:
            out.append(piece)
        elif not out or out[-1] != f"{omitted}\n":
            out.append(f"{omitted}\n")
    return out


def sms_parts(text: str) -> list[str]:
    """What `text` is sent as on this line: split, the hotline numbers always kept."""

    return split_for_sms(text, omitted=sms_texts().omitted, keep=hotline_numbers())
