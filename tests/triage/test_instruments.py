"""ASQ, PHQ-A and GAD-7: the questions in order for a form, and the scoring with its levels."""

from __future__ import annotations

import pytest

from triage_protocols import Level, instrument, next_item, questions, score


def test_asq_asks_four_then_acuity_only_when_positive() -> None:
    assert [i.id for i in instrument("asq").items] == ["asq_1", "asq_2", "asq_3", "asq_4"]
    answers: dict[str, str] = {}
    asked = []
    while (item := next_item("asq", answers)) is not None:
        asked.append(item.id)
        answers[item.id] = "no"
    assert asked == ["asq_1", "asq_2", "asq_3", "asq_4"]
    answers = {"asq_1": "yes", "asq_2": "no", "asq_3": "no", "asq_4": "no"}
    assert next_item("asq", answers).id == "asq_5"  # type: ignore[union-attr]
    assert next_item("asq", answers | {"asq_5": "no"}) is None


def test_asq_acuity_wording_is_the_protocol_one() -> None:
    assert questions("asq")[-1].text == "你现在有想要结束自己生命的念头吗？"


@pytest.mark.parametrize(
    ("answers", "outcome", "level"),
    [
        (["no", "no", "no", "no"], "negative", Level.GREEN),
        (["no", "yes", "no", "no", "no"], "non_acute_positive", Level.ORANGE),
        (["no", "no", "no", "refused", "no"], "non_acute_positive", Level.ORANGE),
        ([False, False, True, False, True], "acute_positive", Level.RED),
        (["不是", "是", "不是", "不是", "是"], "acute_positive", Level.RED),
    ],
)
def test_asq_scoring(answers: list[object], outcome: str, level: Level) -> None:
    result = score("asq", answers)
    assert (result.outcome, result.level) == (outcome, level)
    assert result.explanation


def test_asq_positive_without_acuity_is_an_error() -> None:
    with pytest.raises(ValueError, match="asq_5"):
        score("asq", {"asq_1": "yes", "asq_2": "no", "asq_3": "no", "asq_4": "no"})


@pytest.mark.parametrize(
    ("total_items", "outcome", "level"),
    [
        ([0] * 9, "minimal", Level.GREEN),
        ([1, 1, 1, 1, 1, 0, 0, 0, 0], "mild", Level.YELLOW),
        ([2, 2, 2, 2, 2, 0, 0, 0, 0], "moderate", Level.YELLOW),
        ([2, 2, 2, 2, 2, 2, 2, 1, 0], "moderately_severe", Level.ORANGE),
        ([3, 3, 3, 3, 3, 3, 2, 0, 0], "severe", Level.ORANGE),
    ],
)
def test_phq_a_cut_offs(total_items: list[int], outcome: str, level: Level) -> None:
    result = score("phq_a", total_items)
    assert (result.outcome, result.level, result.total, result.next) == (
        outcome,
        level,
        sum(total_items),
        None,
    )


@pytest.mark.parametrize("item9", [1, 2, 3])
def test_phq_a_item_9_always_leads_to_the_asq(item9: int) -> None:
    result = score("phq_a", [0] * 8 + [item9])
    assert result.next == "asq"
    assert result.level.at_least(Level.ORANGE)
    assert [r.rule for r in result.reasons] == ["minimal", "item9_positive"]


def answers_totalling(total: int, items: int) -> list[int]:
    """Answers of 0–3 over `items` items that add up to `total`, filled from the first item."""
    values = []
    for _ in range(items):
        values.append(min(3, total))
        total -= values[-1]
    assert total == 0
    return values


@pytest.mark.parametrize(
    ("total", "outcome"),
    [
        (4, "minimal"),
        (5, "mild"),
        (9, "mild"),
        (10, "moderate"),
        (14, "moderate"),
        (15, "moderately_severe"),
        (19, "moderately_severe"),
        (20, "severe"),
        (24, "severe"),
    ],
)
def test_phq_a_boundaries_are_exact(total: int, outcome: str) -> None:
    result = score("phq_a", answers_totalling(total, 8) + [0])  # item 9 stays 0
    assert (result.total, result.outcome) == (total, outcome)


@pytest.mark.parametrize(
    ("value", "outcome", "level"),
    [
        (0, "minimal", Level.GREEN),
        (1, "mild", Level.YELLOW),
        (2, "moderate", Level.YELLOW),
        (3, "severe", Level.ORANGE),
    ],
)
def test_gad7_cut_offs(value: int, outcome: str, level: Level) -> None:
    result = score("gad7", [value] * 7)
    assert (result.outcome, result.level, result.total) == (outcome, level, 7 * value)


def test_answers_may_be_option_texts_or_digit_strings() -> None:
    assert score("gad7", ["几乎每天"] * 7).total == 21
    assert score("gad7", ["1"] * 7).total == 7


@pytest.mark.parametrize("bad", [[0] * 6, [0] * 6 + [4], [0] * 6 + [True], [0] * 8 + ["sometimes"]])
def test_bad_answers_raise(bad: list[object]) -> None:
    with pytest.raises(ValueError):
        score("gad7", bad)


def test_items_have_chinese_text_and_sources() -> None:
    for name in ("asq", "phq_a", "gad7"):
        spec = instrument(name)
        assert spec.sources and spec.wording_note
        assert all(item.text and item.id for item in questions(name))
    assert len(instrument("phq_a").items) == 9
    assert len(instrument("gad7").items) == 7


def test_unknown_instrument() -> None:
    with pytest.raises(KeyError):
        instrument("mmpi")


def test_result_is_json_serialisable() -> None:
    import json

    data = json.loads(json.dumps(score("phq_a", [0] * 8 + [2]).to_dict(), ensure_ascii=False))
    assert data["next"] == "asq" and data["level"] == "orange"
