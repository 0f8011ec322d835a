"""The protocol's case policy, as the case store reads it: who is paged, how fast, how many staff follow
a case, and which signal categories make staff judge first whether calling the family is safe."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from triage_protocols import Level, level_spec, load_protocol
from triage_protocols.loader import ProtocolError
from triage_protocols.models import LevelsFile


def _levels_yaml(root: Path) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((root / "levels.yml").read_text(encoding="utf-8"))


def test_every_family_safety_category_exists_in_the_protocol() -> None:
    protocol = load_protocol()
    named = {name for spec in protocol.levels.values() for name in spec.case.family_safety_first_for}
    assert named, "no level names a category after which the family is contacted with care"
    assert named <= set(protocol.categories), sorted(named - set(protocol.categories))


def test_levels_that_bring_the_family_in_ask_about_abuse_at_home_first() -> None:
    for level in Level:
        spec = level_spec(level)
        if spec.staffing.family:
            assert {"abuse_physical", "abuse_sexual", "domestic_violence"} <= set(
                spec.case.family_safety_first_for
            ), level


@pytest.mark.parametrize("level", list(Level), ids=lambda level: level.value)
def test_a_level_that_opens_cases_has_a_claim_deadline_and_pages_at_once(level: Level) -> None:
    policy = level_spec(level).case
    if policy.opens == "never":
        assert level == Level.GREEN
        return
    assert policy.claim_within_minutes is not None and policy.claim_within_minutes >= 1
    assert policy.page_at_once
    assert policy.if_unclaimed  # the watchdog has a next step


def test_red_pages_the_lead_and_the_supervisor_at_once_and_orange_and_red_always_open() -> None:
    red, orange = level_spec("red").case, level_spec("orange").case
    assert set(red.page_at_once) == {"lead", "supervisor"}
    assert red.opens == orange.opens == "always"
    assert level_spec("yellow").case.opens == "on_request"
    assert level_spec("green").case.opens == "never"
    # the more serious, the sooner someone must claim it
    claims = [level_spec(level).case.claim_within_minutes for level in ("yellow", "orange", "red")]
    assert claims[0] > claims[1] > claims[2]  # type: ignore[operator]


def test_staffing_is_two_for_yellow_and_three_with_the_family_for_orange_and_red() -> None:
    staffing = {level.value: level_spec(level).staffing for level in Level}
    assert (staffing["green"].staff, staffing["green"].family) == (0, False)
    assert (staffing["yellow"].staff, staffing["yellow"].family, staffing["yellow"].label) == (
        2,
        False,
        "二包一",
    )
    for level in ("orange", "red"):
        assert (staffing[level].staff, staffing[level].family, staffing[level].label) == (3, True, "三包一")


def test_the_return_to_school_plan_steps_forward_in_time() -> None:
    plan = load_protocol().follow_up_plans["return_to_school"]
    days = [step.after_days for step in plan]
    assert len(days) >= 2
    assert days[0] == 0  # the first day back
    assert all(earlier < later for earlier, later in pairwise(days)), days
    assert all(step.what.strip() for step in plan)


def test_the_shipped_levels_file_validates(protocol_copy: Path) -> None:
    LevelsFile.model_validate(_levels_yaml(protocol_copy))


@pytest.mark.parametrize("level_index", [1, 3], ids=["yellow", "red"])
def test_an_unknown_key_under_case_is_refused(protocol_copy: Path, level_index: int) -> None:
    data = _levels_yaml(protocol_copy)
    data["levels"][level_index]["case"]["page_at_one"] = ["lead"]  # a typo of page_at_once
    with pytest.raises(ValidationError) as error:
        LevelsFile.model_validate(data)
    assert "page_at_one" in str(error.value)

    (protocol_copy / "levels.yml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ProtocolError) as refused:
        load_protocol(protocol_copy)
    assert any("levels.yml" in problem and "page_at_one" in problem for problem in refused.value.problems)


def test_a_case_policy_without_a_claim_deadline_is_refused(protocol_copy: Path) -> None:
    data = _levels_yaml(protocol_copy)
    del data["levels"][3]["case"]["claim_within_minutes"]
    with pytest.raises(ValidationError, match="claim_within_minutes"):
        LevelsFile.model_validate(data)
