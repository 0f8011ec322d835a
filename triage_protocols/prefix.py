"""The set of characters a regular expression's match can start with, worked out once when loading.

Why: CPython's `re` only skips ahead quickly when a pattern starts with a literal or a simple alternation of
literals; our category patterns are alternations of groups, so without help every position of a message
tries every branch. Knowing the first characters lets the engine (1) skip a whole category when none of
them occurs in the message, and (2) put a one-character lookahead in front, so that scanning a position
that cannot start a match costs one set lookup.

The analysis reads the parse tree of `re._parser` (CPython's own). When it meets anything it does not
understand, or a match could start with any character, it returns None and the category is simply
matched without the shortcut: the shortcut may only ever make matching faster, never change a result.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

try:  # CPython 3.11+
    from re import _constants as C  # type: ignore[attr-defined]
    from re import _parser as P  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - other interpreters: no shortcut
    C = P = None

_LIMIT = 4000  # give up on sets larger than this (a class such as [^,。] could start with anything)


class _Unknown(Exception):
    pass


def first_chars(pattern: str) -> frozenset[str] | None:
    """Every character a match of `pattern` can start with, or None when that cannot be bounded."""
    if P is None:
        return None
    try:
        chars, nullable = _seq(P.parse(pattern).data)
    except (_Unknown, RecursionError, re.error):
        return None
    if nullable or len(chars) > _LIMIT:
        return None
    return frozenset(chars)


def lookahead(chars: frozenset[str]) -> str:
    """A lookahead that a match must pass: one of `chars` stands here."""
    return "(?=[" + "".join(_escape(c) for c in sorted(chars)) + "])"


def _escape(c: str) -> str:
    return "\\" + c if c in "\\]^-[" else c


def _seq(items: Any) -> tuple[set[str], bool]:
    """First characters of a sequence of nodes, and whether the whole sequence can match empty text."""
    chars: set[str] = set()
    for op, av in items:
        first, nullable = _node(op, av)
        chars |= first
        if not nullable:
            return chars, False
    return chars, True


def _node(op: Any, av: Any) -> tuple[set[str], bool]:
    if op is C.LITERAL:
        return {chr(av)}, False
    if op is C.NOT_LITERAL or op is C.ANY:
        raise _Unknown
    if op is C.IN:
        return _charset(av), False
    if op is C.BRANCH:
        chars: set[str] = set()
        nullable = False
        for alternative in av[1]:
            first, empty = _seq(alternative.data)
            chars |= first
            nullable = nullable or empty
        return chars, nullable
    if op is C.SUBPATTERN:
        return _seq(av[-1].data)
    if op in (C.MAX_REPEAT, C.MIN_REPEAT, getattr(C, "POSSESSIVE_REPEAT", None)):
        low, _high, body = av
        first, empty = _seq(body.data)
        return first, empty or low == 0
    if op is getattr(C, "ATOMIC_GROUP", None):
        return _seq(av.data)
    if op in (C.ASSERT, C.ASSERT_NOT, C.AT):
        return set(), True  # zero width: the next node decides
    raise _Unknown


def _charset(items: Any) -> set[str]:
    chars: set[str] = set()
    for op, av in items:
        if op is C.LITERAL:
            chars.add(chr(av))
        elif op is C.RANGE:
            low, high = av
            if high - low > _LIMIT:
                raise _Unknown
            chars.update(chr(c) for c in range(low, high + 1))
        else:
            raise _Unknown  # NEGATE, categories such as \d (which match digits of every script): unbounded
        if len(chars) > _LIMIT:
            raise _Unknown
    return chars


def key_chars(pattern: str, weight: Callable[[str], float]) -> frozenset[str] | None:
    """A set of characters of which every match of `pattern` contains at least one, chosen to be rare.

    For each alternative the analysis picks, among the parts every match must go through, the one whose
    possible characters are least common (by `weight`); the answer is the union over the alternatives.
    A message containing none of these characters cannot match, so the whole category is skipped. None
    when some alternative has no such part (then the category always runs).
    """
    if P is None:
        return None
    try:
        need = _need_seq(P.parse(pattern).data, weight)
    except (RecursionError, re.error):
        return None
    return frozenset(need) if need else None


def _cost(chars: set[str], weight: Callable[[str], float]) -> float:
    return sum(weight(c) for c in chars)


def _need_seq(items: Any, weight: Callable[[str], float]) -> set[str] | None:
    best: set[str] | None = None
    best_cost = float("inf")
    for op, av in items:
        need = _need_node(op, av, weight)
        if need is not None and (cost := _cost(need, weight)) < best_cost:
            best, best_cost = need, cost
    return best


def _need_node(op: Any, av: Any, weight: Callable[[str], float]) -> set[str] | None:
    if op is C.LITERAL:
        return {chr(av)}
    if op is C.IN:
        try:
            return _charset(av)
        except _Unknown:
            return None
    if op is C.BRANCH:
        union: set[str] = set()
        for alternative in av[1]:
            need = _need_seq(alternative.data, weight)
            if need is None:
                return None
            union |= need
        return union
    if op is C.SUBPATTERN:
        return _need_seq(av[-1].data, weight)
    if op in (C.MAX_REPEAT, C.MIN_REPEAT, getattr(C, "POSSESSIVE_REPEAT", None)):
        low, _high, body = av
        return _need_seq(body.data, weight) if low > 0 else None
    if op is getattr(C, "ATOMIC_GROUP", None):
        return _need_seq(av.data, weight)
    return None  # assertions, anchors, any character: no constraint
