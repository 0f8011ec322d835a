"""Bring a message to one written form before matching, and remember where each character came from.

Patterns are written once, in simplified characters and half-width forms. A student who writes 我想自殺,
ＺＳ or 自.杀 means the same thing, so the text is normalised first: NFKC (full-width letters and digits,
compatibility forms such as Kangxi radicals), traditional and variant characters to simplified (an explicit
table in `protocols/normalise.yml`, reviewed like every other protocol file), ASCII lower case, invisible
characters removed, and joiners between two Chinese characters removed. Spans found in the normalised text
are mapped back to the original text through `Normalised.span`.

Most messages are already normalised and contain nothing to remove; they take a fast path with no
per-character Python loop and identical offsets.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from triage_protocols.models import NormaliseFile

_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True, slots=True)
class Normalised:
    """The normalised text and, when its length differs from the original, where each character came from."""

    text: str
    origin: tuple[int, ...] | None  # origin[i]: index in the original of normalised character i; None: same

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The span in the original text that the normalised span [start, end) came from."""
        if self.origin is None:
            return start, end
        if end <= start:
            at = (
                self.origin[start]
                if start < len(self.origin)
                else (self.origin[-1] + 1 if self.origin else 0)
            )
            return at, at
        return self.origin[start], self.origin[end - 1] + 1


@lru_cache(maxsize=4096)
def _nfkc(ch: str) -> str:
    return unicodedata.normalize("NFKC", ch)


class Normaliser:
    """Built once from normalise.yml; calling it normalises one message."""

    def __init__(self, spec: NormaliseFile) -> None:
        table: dict[int, str] = {ord(c): c.lower() for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}
        # Full-width ASCII and the ideographic space, as NFKC would map them, so that ordinary Chinese
        # punctuation (，！？) does not force the slow path.
        for code in range(0xFF01, 0xFF5F):
            table[code] = chr(code - 0xFEE0).lower()
        table[0x3000] = " "
        for pair in spec.characters.split():
            table[ord(pair[0])] = pair[1]
        self._table = table
        self._remove = frozenset(spec.remove)
        self._joiners = frozenset(spec.joiners)
        removable = "".join(re.escape(c) for c in sorted(self._remove | self._joiners))
        self._needs_slow = re.compile(f"[{removable}]")

    def __call__(self, text: str) -> Normalised:
        translated = text.translate(self._table)  # one character for one: offsets unchanged
        if unicodedata.is_normalized("NFKC", translated) and self._needs_slow.search(translated) is None:
            return Normalised(translated, None)
        return self._slow(text)

    def _slow(self, text: str) -> Normalised:
        chars: list[str] = []
        origin: list[int] = []
        for index, ch in enumerate(text):
            if ch in self._remove:
                continue
            for out in _nfkc(ch).translate(self._table):
                if out in self._remove:
                    continue
                chars.append(out)
                origin.append(index)
        keep = self._drop_joiners(chars)
        if keep is not None:
            chars = [chars[i] for i in keep]
            origin = [origin[i] for i in keep]
        normalised = "".join(chars)
        if len(normalised) == len(text) and origin == list(range(len(text))):
            return Normalised(normalised, None)
        return Normalised(normalised, tuple(origin))

    def _drop_joiners(self, chars: list[str]) -> list[int] | None:
        """Indices to keep once runs of joiners standing between two Chinese characters are dropped."""
        drop: set[int] = set()
        i, n = 0, len(chars)
        while i < n:
            if chars[i] in self._joiners and i > 0 and _HAN.match(chars[i - 1]):
                j = i
                while j < n and chars[j] in self._joiners:
                    j += 1
                if j < n and _HAN.match(chars[j]):
                    drop.update(range(i, j))
                i = j
            else:
                i += 1
        if not drop:
            return None
        return [i for i in range(n) if i not in drop]
