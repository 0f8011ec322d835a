"""Finding a parent's guidance topic in their own words (actions/topic_finder.py), and the guidance files
it searches: every topic complete, sourced and findable by its own phrasings."""

from __future__ import annotations

import re

import pytest

from actions.guidance import all_guidance, sections, topic_of_intent
from actions.topic_finder import FindingSettings, TopicFinder, load_settings, topic_finder

TOPICS = sorted(all_guidance())


def test_the_line_has_at_least_thirty_topics_with_the_seeds() -> None:
    assert len(TOPICS) >= 30
    # the seeds: left-behind, single-parent and migrant families; stigma and treatment; return to school
    assert {"left_behind", "single_parent", "migrant_family", "stigma_treatment", "return_to_school"} <= set(TOPICS)


@pytest.mark.parametrize("topic", TOPICS)
def test_every_topic_is_in_four_parts_with_its_sources_and_no_phone_number(topic: str) -> None:
    guidance = all_guidance()[topic]
    assert len(guidance.messages(sections())) == 4
    assert guidance.sources and guidance.asked_as
    # the numbers to call come from the directory, never typed into a topic
    words = " ".join([guidance.what_is_happening, *guidance.this_week, *guidance.avoid, guidance.get_help])
    assert not re.search(r"(?<!\d)(?:110|119|120|12355|12356|400\d*)(?!\d)", words)


@pytest.mark.parametrize("topic", TOPICS)
def test_every_topic_is_found_by_its_own_title(topic: str) -> None:
    assert topic_finder().rank(all_guidance()[topic].title)[0][0] == topic


def test_a_question_clearly_about_one_topic_is_answered_with_it() -> None:
    found = topic_finder().find("孩子爷爷上个月去世了，他老问人死了会去哪里，我该怎么跟他说")
    assert found.answer == "bereavement"


def test_a_question_between_topics_is_asked_about_with_the_nearest_three() -> None:
    found = topic_finder().find("儿子偷拿我钱包里的钱")
    assert found.answer is None
    assert [topic for topic, _ in found.nearest][:2] == ["lying_stealing", "game_spending"]
    assert len(found.nearest) == load_settings().nearest


def test_a_question_near_no_topic_offers_no_topic() -> None:
    assert topic_finder().find("今天天气怎么样") == type(topic_finder().find("x"))(None, ())


def test_the_nlu_topic_is_taken_only_when_the_search_puts_it_near() -> None:
    finder = topic_finder()
    question = "儿子偷拿我钱包里的钱"
    assert finder.find(question, "lying_stealing", 0.9).answer == "lying_stealing"
    # the NLU sure of a topic the search does not rank near: never answered with it
    assert finder.find(question, "divorce", 0.99).answer is None
    # the NLU unsure: the search decides
    assert finder.find(question, "lying_stealing", 0.5).answer is None


def test_a_button_names_its_topic_and_nothing_else_does() -> None:
    finder = topic_finder()
    prefix = load_settings().choice_prefix
    assert finder.chosen(f"{prefix}{all_guidance()['bereavement'].title}") == "bereavement"
    assert finder.chosen(all_guidance()["bereavement"].title) is None
    assert finder.chosen(f"{prefix}随便写的") is None


def test_the_buttons_are_the_topics_titles_then_a_person() -> None:
    finder = topic_finder()
    buttons = finder.buttons(["bereavement", "grief_pet"], all_guidance())
    settings = load_settings()
    assert buttons == [
        {"title": all_guidance()["bereavement"].title, "payload": settings.choice_prefix + all_guidance()["bereavement"].title},
        {"title": all_guidance()["grief_pet"].title, "payload": settings.choice_prefix + all_guidance()["grief_pet"].title},
        {"title": settings.person_button, "payload": settings.person_button},
    ]


def test_a_stricter_setting_asks_more_often() -> None:
    strict = FindingSettings.model_validate({**load_settings().model_dump(), "answer_when_ahead_by": 50.0})
    assert TopicFinder(all_guidance(), strict).find("孩子爷爷上个月去世了，他老问人死了会去哪里").answer is None


def test_every_parent_intent_names_its_topic() -> None:
    assert topic_of_intent("parent_exam_stress") == "exam_stress"
    assert topic_of_intent("bullying") == "bullying"  # a parent in a student's words
    assert topic_of_intent("greet") is None


def test_a_missing_child_is_found_and_what_to_do_now_comes_first() -> None:
    """A child nobody can find is an emergency: the parent reads the steps for now before anything else
    (batch 2026-12-07b's missing child was offered the topics of grief and lying)."""
    found = topic_finder().find("都晚上十点了，女儿还没到家，手表关机，同学都说不知道她去哪了")
    assert "missing_child" in [topic for topic, _ in found.nearest[:1]]
    first = all_guidance()["missing_child"].messages(sections())[0]
    assert first.startswith("【孩子不见了、联系不上】\n" + sections().right_now) and "报警" in first
