"""Property tests: screen() never raises and always returns a level, for any Unicode text."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from triage_protocols import Level, screen

# Chinese, full-width forms, emoji, invisible characters and punctuation, with everything else mixed in
LEXICON = list("我想死不活了自杀割腕药今晚明天楼顶跳朋友孩子没有以前现在好《》，。！？ 　\u200b💊🔪🪢ＺＳzs")
TEXT = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(LEXICON), max_size=200),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=50),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(text=TEXT, audience=st.sampled_from(["student", "parent", "", "PARENT", None]))
def test_screen_never_raises(text: str, audience: str | None) -> None:
    result = screen(text, audience)
    assert isinstance(result.level, Level)
    assert result.rule
    json.dumps(result.to_dict())
    for signal in result.signals:
        start, end = signal.span
        assert 0 <= start <= end <= len(text)


LONG = st.tuples(
    st.text(alphabet=st.sampled_from(LEXICON), min_size=1, max_size=300), st.integers(2_000, 30_000)
).map(lambda pair: (pair[0] * (pair[1] // len(pair[0]) + 1))[: pair[1]])


@settings(max_examples=30, deadline=None)
@given(text=LONG)
def test_very_long_text(text: str) -> None:
    result = screen(text)
    assert isinstance(result.level, Level)
    assert all(0 <= s.span[0] <= s.span[1] <= len(text) for s in result.signals)


@settings(max_examples=200, deadline=None)
@given(prefix=st.text(alphabet=st.sampled_from(list("今天好的呀啊嗯，。 ")), max_size=20))
def test_adding_harmless_words_before_a_red_message_keeps_it_red(prefix: str) -> None:
    assert screen(prefix + "。我已经吞了一整瓶安眠药").level == Level.RED


@settings(max_examples=200, deadline=None)
@given(text=TEXT)
def test_deterministic(text: str) -> None:
    assert screen(text).to_dict() == screen(text).to_dict()
