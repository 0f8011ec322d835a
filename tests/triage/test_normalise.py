"""Normalisation: traditional, full-width and invisible characters, with offsets back to the original."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from triage_protocols.loader import load_protocol

normalise = load_protocol().normaliser


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("我想自殺", "我想自杀"),
        ("ＺＳ了", "zs了"),
        ("自 . 杀", "自杀"),
        ("不想\u200b活了", "不想活了"),
        ("⾃杀", "自杀"),  # a Kangxi radical that looks like 自
        ("3.5 分", "3.5 分"),
        ("HELLO，世界！", "hello,世界!"),
    ],
)
def test_normalises(text: str, expected: str) -> None:
    assert normalise(text).text == expected


@given(st.text(max_size=80))
def test_spans_map_back_inside_the_original(text: str) -> None:
    result = normalise(text)
    for start in range(len(result.text) + 1):
        for end in range(start, min(len(result.text), start + 4) + 1):
            a, b = result.span(start, end)
            assert 0 <= a <= b <= len(text)


def test_an_unchanged_length_text_keeps_identity_offsets() -> None:
    assert normalise("我们今天去打球").origin is None
