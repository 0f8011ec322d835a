"""The behaviour of screen(): what it returns, how signals count, and that it keeps its promises."""

from __future__ import annotations

import json

import pytest

from triage_protocols import Assessment, Level, protocol_version, screen
from triage_protocols.engine import Screener
from triage_protocols.loader import load_protocol


def test_assessment_has_level_signals_rule_and_version() -> None:
    result = screen("我真的不想活了", "student")
    assert isinstance(result, Assessment)
    assert result.level == Level.ORANGE
    assert result.rule == "ideation"
    assert result.protocol_version == protocol_version()
    assert [s.category for s in result.signals] == ["ideation"]


def test_spans_index_the_original_text() -> None:
    text = "今天   我想自殺，真的"  # traditional character, full-width comma, spaces
    result = screen(text)
    signal = next(s for s in result.signals if s.category == "ideation")
    start, end = signal.span
    assert text[start:end] == "自殺"


def test_spans_survive_removed_characters() -> None:
    text = "好累\u200b\u200b，不想\u200b活了"
    signal = screen(text).signals[-1]
    start, end = signal.span
    assert text[start:end].replace("\u200b", "") == "不想活了"


def test_is_json_serialisable() -> None:
    result = screen("我在楼顶，数到十就跳", "student")
    data = json.loads(json.dumps(result.to_dict(), ensure_ascii=False))
    assert data["level"] == "red"
    assert data["protocol_version"] == protocol_version()
    assert {"id", "category", "span", "status", "subject", "source"} <= set(data["signals"][0])


def test_summary_carries_no_words_of_the_message() -> None:
    text = "我想死，我叫王小明"
    summary = json.dumps(screen(text).summary(), ensure_ascii=False)
    assert "王小明" not in summary and "想死" not in summary


def test_deterministic() -> None:
    text = "我朋友说她今晚要跳河，让我别告诉别人"
    first = screen(text).to_dict()
    assert all(screen(text).to_dict() == first for _ in range(20))


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("我不会自杀的", "negated"),
        ("我从来没有想过死", "negated"),
        ("我以前想过自杀，现在已经好了", "resolved"),
        ("我想死，但是不敢", "present"),
        ("我以前想过自杀，最近又开始想了", "present"),
    ],
)
def test_negation_and_past(text: str, status: str) -> None:
    statuses = {s.status for s in screen(text).signals if s.category == "ideation"}
    assert statuses == {status}


@pytest.mark.parametrize(
    ("text", "audience"),
    [("我同学说她想死", "student"), ("孩子说活着没意思", "parent"), ("我闺蜜在割自己", "student")],
)
def test_third_party_is_never_below_orange(text: str, audience: str) -> None:
    result = screen(text, audience)
    assert result.level.at_least(Level.ORANGE)
    assert any(s.subject == "other" for s in result.signals)


def test_a_parent_speaking_of_themselves_is_self() -> None:
    result = screen("我自己也快撑不下去了", "parent")
    assert {s.subject for s in result.signals} == {"self"}


@pytest.mark.parametrize(
    "text",
    ["笑死我了", "热死了", "累死了", "难死了", "这道题难死我了", "我们在看《活着》", "想死你们了", "xswl"],
)
def test_hyperbole_and_titles_are_not_risk(text: str) -> None:
    assert not screen(text).level.at_least(Level.ORANGE)


@pytest.mark.parametrize("text", ["我想死💊", "不想活了🔪", "今晚就结束一切🪢"])
def test_emoji_means(text: str) -> None:
    assert screen(text).level == Level.RED


def test_context_combines_with_the_message_before() -> None:
    assert screen("今晚", context=["今天数学课好无聊"]).level == Level.GREEN
    result = screen("今晚", context=["我真的不想活了"])  # the answer to "when?" after ideation
    assert result.level == Level.RED
    assert any(s.source.startswith("context") for s in result.signals)


def test_context_alone_never_raises_an_unrelated_message() -> None:
    assert screen("谢谢你", context=["我想死"]).level == Level.GREEN


def test_context_accepts_a_mapping_and_ignores_nonsense() -> None:
    assert screen("今晚就动手", context={"recent": ["不想活了"]}).level == Level.RED
    for odd in (42, "不想活了", {"recent": None}, [None, 3, b"x"]):
        assert screen("你好", context=odd).level == Level.GREEN


@pytest.mark.parametrize(
    "value", [None, 42, 3.5, b"\xff\xfe", object(), ["我想死"], "", " ", "\x00", "\ud800"]
)
def test_never_raises_on_odd_input(value: object) -> None:
    result = screen(value, audience=value)
    assert isinstance(result.level, Level)


def test_unknown_audience_counts_as_student() -> None:
    assert screen("我想死", audience="teacher").audience == "student"


def test_long_text_is_screened_whole() -> None:
    """The words that matter may come last; how fast this goes is measured in benchmarks/triage_eval.py."""
    text = "今天天气不错，" * 280 + "我想死"
    assert screen(text).level == Level.ORANGE


def test_a_broken_engine_still_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    screener = Screener(load_protocol())

    def boom(*args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(screener, "_screen", boom)
    result = screener.screen("随便什么")
    assert result.rule == "engine_error" and result.level == Level.YELLOW


@pytest.mark.parametrize(
    ("text", "at_risk"), [("i_want_to_die", True), ("kill_myself", True), ("want_to_diet", False)]
)
def test_english_shorthand_with_underscores_is_read_by_the_lexicon(text: str, at_risk: bool) -> None:
    """A Telegram /start link carries words joined by underscores: the lexicon reads them, whatever the
    learned screen scores (i_want_to_die was green once the model's score fell to 0.598). Kept out of the
    protocol's embedded examples, which the learned screen trains on."""
    signals = {s.id for s in screen(text).signals}
    assert ("ideation.shorthand" in signals) is at_risk
