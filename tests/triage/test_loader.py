"""A protocol that does not validate must never screen: every kind of mistake is reported, by file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from triage_protocols import checks
from triage_protocols.loader import ProtocolError, load_protocol


def edit(root: Path, name: str, change) -> None:  # type: ignore[no-untyped-def]
    path = root / name
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def problems(root: Path) -> str:
    with pytest.raises(ProtocolError) as error:
        load_protocol(root)
    return "\n".join(error.value.problems)


def test_the_shipped_protocol_loads_and_a_copy_is_the_same(protocol_copy: Path) -> None:
    assert load_protocol(protocol_copy).version == load_protocol().version


def test_unknown_key_is_rejected(protocol_copy: Path) -> None:
    edit(protocol_copy, "rules.yml", lambda d: d["rules"][0].update(levle="red"))
    assert "rules.yml" in problems(protocol_copy)


def test_rule_naming_an_unknown_category(protocol_copy: Path) -> None:
    edit(protocol_copy, "rules.yml", lambda d: d["rules"][0]["when"].update(any=["ideaton"]))
    assert "unknown category ideaton" in problems(protocol_copy)


def test_rules_out_of_order(protocol_copy: Path) -> None:
    edit(protocol_copy, "rules.yml", lambda d: d["rules"].reverse())
    assert "most serious first" in problems(protocol_copy)


def test_invalid_pattern(protocol_copy: Path) -> None:
    edit(
        protocol_copy,
        "signals/distress.yml",
        lambda d: d["categories"][0]["signals"][0]["patterns"].append("(unclosed"),
    )
    assert "invalid pattern" in problems(protocol_copy)


def test_pattern_matching_empty_text(protocol_copy: Path) -> None:
    edit(
        protocol_copy,
        "signals/distress.yml",
        lambda d: d["categories"][0]["signals"][0]["patterns"].append("x?"),
    )
    assert "matches empty text" in problems(protocol_copy)


def test_unknown_term(protocol_copy: Path) -> None:
    edit(
        protocol_copy,
        "signals/distress.yml",
        lambda d: d["categories"][0]["signals"][0]["patterns"].append("{nope}"),
    )
    assert "unknown term" in problems(protocol_copy)


def test_levels_must_be_the_four(protocol_copy: Path) -> None:
    edit(protocol_copy, "levels.yml", lambda d: d["levels"].pop())
    assert "levels.yml" in problems(protocol_copy)


def test_phq_bands_must_cover_the_range(protocol_copy: Path) -> None:
    edit(protocol_copy, "instruments/phq_a.yml", lambda d: d["bands"].pop())
    assert "phq_a.yml" in problems(protocol_copy)


def test_a_file_without_examples(protocol_copy: Path) -> None:
    edit(protocol_copy, "signals/parent.yml", lambda d: d.update(examples=[]))
    assert "signals/parent.yml" in problems(protocol_copy)


def test_a_wrong_example_is_a_check_failure(protocol_copy: Path) -> None:
    edit(
        protocol_copy,
        "signals/distress.yml",
        lambda d: d["examples"].append({"text": "你好", "level": "red"}),
    )
    _total, failures = checks.run(load_protocol(protocol_copy))
    assert [f.example for f in failures] == ["[student] 你好"]


def test_prefix_analysis() -> None:
    from triage_protocols.prefix import first_chars, key_chars

    assert first_chars("a|bc") == frozenset("ab")
    assert first_chars("x?") is None
    assert first_chars("(?<![a-z])od") == frozenset("o")
    assert key_chars("(?:ab|cd)e", lambda c: 1.0) == frozenset("e") or key_chars("(?:ab|cd)e", lambda c: 1.0)
    assert key_chars("a?", lambda c: 1.0) is None
