"""The engine's two shortcuts (prefix.py) must never change a result: skipping the patterns whose key
characters are absent, and the first-character lookahead put in front of each pattern.

A second screener runs every pattern, as written, on every message; both must agree on every example of
the protocol, every labelled message we have, and on generated text.
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.triage.conftest import DEV_SET
from triage_protocols.engine import Screener
from triage_protocols.loader import load_protocol

PROTOCOL = load_protocol()
FAST = Screener(PROTOCOL)
SLOW = Screener(PROTOCOL)
SLOW._always = (1 << len(PROTOCOL.matchers)) - 1  # every pattern, every time
SLOW._index = {}
SLOW._key_chars = frozenset()


def _without_lookahead(pattern: str) -> str:
    """The pattern as written, without the first-character lookahead the loader put in front."""
    if pattern.startswith("(?=[") and "])(?:" in pattern and pattern.endswith(")"):
        return pattern[pattern.index("])(?:") + len("])(?:") : -1]
    return pattern


SLOW._patterns = tuple(
    (re.compile(_without_lookahead(m.regex.pattern)).search, m.signal, m.category, m.negatable, m.resolvable)
    for m in PROTOCOL.matchers
)


def texts() -> list[str]:
    found = [e.text for examples in PROTOCOL.examples.values() for e in examples]
    for path in (DEV_SET, Path(__file__).parent / "data" / "own_labelled.tsv"):
        if path.exists():
            found += [
                line.split("\t", 2)[2] for line in path.read_text(encoding="utf-8").splitlines()[1:] if line
            ]
    return found


def test_the_shortcut_agrees_with_running_every_pattern() -> None:
    for text in texts():
        for audience in ("student", "parent"):
            assert FAST.screen(text, audience).to_dict() == SLOW.screen(text, audience).to_dict(), text


ALPHABET = list(
    "我想死不活了自杀割腕药今晚明天楼顶跳朋友孩子没有以前现在好打妈爸被刀绳吞片瓶安眠，。！？ 💊🔪"
)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(ALPHABET), max_size=40))
def test_the_shortcut_agrees_on_generated_text(text: str) -> None:
    assert FAST.screen(text).to_dict() == SLOW.screen(text).to_dict()
