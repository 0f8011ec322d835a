"""Finding a parent's guidance topic in their own words (actions/topic_finder.py), and the guidance files
it searches: every topic complete, sourced and findable by its own phrasings."""

from __future__ import annotations

import re

import pytest

from actions.guidance import all_answers, all_guidance, all_referrals, sections, topic_of_intent
from actions.topic_finder import FindingSettings, TopicFinder, load_outside_questions, load_settings, topic_finder

TOPICS = sorted(all_guidance())
REFERRALS = sorted(all_referrals())
PHONE_NUMBER = re.compile(r"(?<!\d)(?:110|119|120|12348|12355|12356|400\d*)(?!\d)")


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
    assert not PHONE_NUMBER.search(words)


@pytest.mark.parametrize("referral", REFERRALS)
def test_every_referral_says_who_can_answer_in_one_message_without_a_phone_number(referral: str) -> None:
    [message] = all_referrals()[referral].messages(sections())
    assert message.startswith(f"【{all_referrals()[referral].title}】") and sections().referral_closing in message
    assert not PHONE_NUMBER.search(message)


@pytest.mark.parametrize("topic", [*TOPICS, *REFERRALS])
def test_no_space_between_chinese_words(topic: str) -> None:
    # a YAML folded block (>-) joins its lines with a space, which in Chinese reads as a stray gap
    for message in all_answers()[topic].messages(sections()):
        assert not re.search(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef] +[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]", message)


@pytest.mark.parametrize("topic", [*TOPICS, *REFERRALS])
def test_every_topic_and_referral_is_found_by_its_own_title(topic: str) -> None:
    assert topic_finder().rank(all_answers()[topic].title)[0][0] == topic


@pytest.mark.parametrize(
    ("question", "referral"),
    [
        ("孩子近视了要不要戴眼镜", "referral_health"),
        ("一年级入学登记要带户口本和房产证吗", "referral_school_affairs"),
        ("离婚后孩子他爸一直不给抚养费", "referral_legal"),
    ],
)
def test_a_question_the_line_cannot_answer_well_finds_who_can(question: str, referral: str) -> None:
    assert topic_finder().find(question).answer == referral


def test_a_question_between_a_topic_and_a_referral_is_asked_about_with_both() -> None:
    # a migrant family's paperwork: the school's rules (a referral) or settling in (a topic)?
    found = topic_finder().find("我们外地户口，孩子在这边读小学要什么材料")
    assert found.answer is None
    assert {"referral_school_affairs", "migrant_family"} <= {topic for topic, _ in found.nearest}


def test_a_guidance_topic_and_a_referral_never_share_an_id_or_a_title() -> None:
    answers = all_answers()
    assert len(answers) == len(TOPICS) + len(REFERRALS)
    assert len({a.title for a in answers.values()}) == len(answers)


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
    finder = TopicFinder(all_guidance(), strict, load_outside_questions())
    assert finder.find("孩子爷爷上个月去世了，他老问人死了会去哪里").answer is None


@pytest.mark.parametrize(
    "question",
    ["想给儿子买个手机，华为和小米哪个好", "我自己最近腰疼得厉害，贴膏药有用吗", "家里想养只猫，什么品种好"],
)
def test_a_question_outside_the_lines_field_is_said_to_be_outside_not_given_the_nearest_topic(question: str) -> None:
    found = topic_finder().find(question, "parent_phone_overuse", 0.95)
    assert found.outside and found.answer is None


def test_a_child_nobody_can_find_is_never_outside_the_field() -> None:
    found = topic_finder().find("孩子放学到现在还没回家，电话也打不通", "out_of_scope", 0.9)
    assert found.answer == "missing_child" and not found.outside


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
