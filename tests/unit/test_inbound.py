"""The checks every message passes before it is stored: no injected intents, no empty or huge text."""

from __future__ import annotations

import pytest

from integrations.inbound import InvalidMessage, clean_text

LIMIT = 2000


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/restart", "restart"),
        ("//restart", "restart"),
        ("  /restart", "restart"),
        ("／restart", "restart"),  # full-width slash
        ("\u200b/restart", "restart"),  # zero-width space in front
        ("\ufeff / / suicidal_thoughts", "suicidal_thoughts"),
        ('/greet{"audience": "parent"}', 'greet{"audience": "parent"}'),
        ("我想和老师聊", "我想和老师聊"),
        ("  你好  ", "你好"),
        ("a/b 不是命令", "a/b 不是命令"),  # a slash inside the text stays
        ("你好\x00世界", "你好世界"),  # NUL cannot be stored in PostgreSQL
        ("第一行\n第二行", "第一行\n第二行"),
    ],
)
def test_clean_text_removes_commands_and_noise(raw: str, expected: str) -> None:
    assert clean_text(raw, LIMIT) == expected


@pytest.mark.parametrize("raw", ["", "   ", "/", "／／", "\u200b", "\x00\x01"])
def test_empty_text_is_refused(raw: str) -> None:
    with pytest.raises(InvalidMessage) as error:
        clean_text(raw, LIMIT)
    assert error.value.code == "empty"


def test_limit_counts_characters_not_bytes() -> None:
    assert clean_text("难" * LIMIT, LIMIT) == "难" * LIMIT
    with pytest.raises(InvalidMessage) as error:
        clean_text("难" * (LIMIT + 1), LIMIT)
    assert error.value.code == "too_long"


@pytest.mark.parametrize("raw", [None, 42, ["你好"], {"text": "你好"}])
def test_text_that_is_not_a_string_is_a_bad_request(raw: object) -> None:
    with pytest.raises(InvalidMessage) as error:
        clean_text(raw, LIMIT)
    assert error.value.code == "bad_request"
