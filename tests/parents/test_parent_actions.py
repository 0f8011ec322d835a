"""A parent's question through action_parent_topic, and the audience a person states kept in the store."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.events import FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from actions.guidance import all_guidance, all_referrals, sections
from actions.audience import ActionRememberAudience
from actions.topics import ActionParentTopic, ActionTopicReply
from actions.unsure import ActionMisread, ActionServiceQuestion
from actions.topic_finder import load_settings
from records import messages
from records.db import with_session
from records.models import Case, Conversation
from triage_protocols.directory import hotline_list
from tests.unit.dispatched import response, text


def tracker(said: str, intent: str, confidence: float = 0.9, audience: str | None = "parent", sender: str = "c0ffee") -> Tracker:
    parse = {"intent": {"name": intent, "confidence": confidence}, "entities": []}
    return Tracker.from_dict(
        {
            "sender_id": sender,
            "slots": {"audience": audience},
            "latest_message": {**parse, "text": said},
            "events": [{"event": "action", "name": "action_listen"}, {"event": "user", "text": said, "parse_data": parse}],
            "paused": False,
            "followup_action": None,
            "active_loop": {},
            "latest_action_name": "action_listen",
        }
    )


async def run(action: Any, given: Tracker, domain: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Any]]:
    dispatcher = CollectingDispatcher()
    events = await action.run(dispatcher, given, domain)
    return dispatcher.messages, events


async def new_conversation(database: str) -> str:
    """A web chat conversation in the store of record, for an action that writes to it."""

    async def opened(session: Any) -> str:
        return (await messages.create_conversation(session, "webchat")).id

    return await with_session(database, opened)


def guidance(topic: str) -> list[dict[str, Any]]:
    return [text(t) for t in all_guidance()[topic].messages(sections())]


async def test_a_clear_question_gets_its_topic_whatever_the_nlu_guessed(domain: dict[str, Any]) -> None:
    # the NLU knows no bereavement intent and read it as divorce; the search finds the topic
    said = "孩子爷爷上个月去世了，他老问人死了会去哪里，我该怎么跟他说"
    messages, events = await run(ActionParentTopic(), tracker(said, "parent_divorce", 0.97), domain)
    assert (messages, events) == (guidance("bereavement"), [SlotSet("topic_found", True)])


async def test_an_unclear_question_is_asked_about_with_the_nearest_topics_and_a_person(domain: dict[str, Any]) -> None:
    messages, events = await run(ActionParentTopic(), tracker("儿子偷拿我钱包里的钱", "out_of_scope", 0.6), domain)
    [asked] = messages
    assert asked["response"] == "utter_ask_topic"
    titles = [b["title"] for b in asked["buttons"]]
    assert titles[0] == all_guidance()["lying_stealing"].title and titles[-1] == load_settings().person_button
    assert events == [SlotSet("topic_found", False)]


async def test_the_chosen_button_is_answered(domain: dict[str, Any]) -> None:
    said = load_settings().choice_prefix + all_guidance()["lying_stealing"].title
    messages, events = await run(ActionParentTopic(), tracker(said, "choose_topic", 0.99), domain)
    assert (messages, events) == (guidance("lying_stealing"), [SlotSet("topic_found", True)])


async def test_a_question_the_line_cannot_answer_is_told_who_can_without_a_counsellor_offer(
    domain: dict[str, Any],
) -> None:
    # glasses are a doctor's question: not phone overuse's guidance, not "not understood"; the referral
    # names 转人工 itself, so the rules offer no counsellor after it (topic_found false)
    said = "孩子近视三百度了，要不要给他配眼镜，还是先点药水"
    messages, events = await run(ActionParentTopic(), tracker(said, "parent_phone_overuse", 0.62), domain)
    referral = all_referrals()["referral_health"]
    assert (messages, events) == ([text(t) for t in referral.messages(sections())], [SlotSet("topic_found", False)])
    assert "转人工" in messages[0]["text"]


async def test_a_question_outside_the_lines_field_gets_the_out_of_scope_reply(domain: dict[str, Any]) -> None:
    # a phone to buy is not phone overuse, however sure the NLU is
    said = "想给儿子买个手机，华为和小米哪个好"
    messages, events = await run(ActionParentTopic(), tracker(said, "parent_phone_overuse", 0.95), domain)
    assert (messages, events) == ([response("utter_out_of_scope")], [SlotSet("topic_found", False)])


async def test_a_question_near_no_topic_is_not_understood(domain: dict[str, Any]) -> None:
    messages, events = await run(ActionParentTopic(), tracker("今天天气怎么样", "out_of_scope", 0.9), domain)
    assert (messages, events) == ([response("utter_parent_not_understood")], [SlotSet("topic_found", False)])


async def test_nobody_said_who_writes_so_one_kind_question(domain: dict[str, Any], recorded: str) -> None:
    # the NLU read a parent's intent in a student's words: who writes is asked, not guessed
    said = tracker("最近考试压力好大，晚上老是睡不着", "parent_exam_stress", 0.54, audience=None)
    messages, events = await run(ActionParentTopic(), said, domain)
    assert (messages, events) == ([response("utter_ask_audience")], [SlotSet("topic_found", False)])


async def test_a_writer_who_names_their_own_child_is_a_parent(domain: dict[str, Any], recorded: str) -> None:
    conversation = await new_conversation(recorded)
    said = tracker("我儿子的爷爷上个月去世了，他老问人死了会去哪里", "parent_divorce", 0.9, audience=None, sender=conversation)
    messages_, events = await run(ActionParentTopic(), said, domain)
    assert messages_ == guidance("bereavement")
    assert events == [SlotSet("audience", "parent"), SlotSet("topic_found", True)]

    async def audience(session: Any) -> str | None:
        return await session.scalar(select(Conversation.audience).where(Conversation.id == conversation))

    assert await with_session(recorded, audience) == "parent"


async def test_the_audience_a_person_states_is_kept_for_the_gateway(domain: dict[str, Any], recorded: str) -> None:
    conversation = await new_conversation(recorded)
    said = tracker("我是家长", "identify_parent", audience="student", sender=conversation)
    messages_, events = await run(ActionRememberAudience(), said, domain)  # a short introduction: at its word
    assert (messages_, events) == ([response("utter_audience_parent_ack")], [SlotSet("audience", "parent")])

    async def audience(session: Any) -> str | None:
        return await session.scalar(select(Conversation.audience).where(Conversation.id == conversation))

    assert await with_session(recorded, audience) == "parent"


async def test_a_student_whose_words_the_nlu_read_as_a_parents_gets_the_student_reply(domain: dict[str, Any]) -> None:
    said = tracker("同学天天在网上骂我", "parent_bullying", 0.7, audience="student")
    messages, events = await run(ActionParentTopic(), said, domain)
    assert messages == [response("utter_bullying")]
    assert events == [SlotSet("topic_found", False)]


SIBLINGS = "二胎出生后，老大（7岁）变得特别黏人，还经常偷偷掐弟弟，说也不听，我该怎么办"


async def test_a_long_message_that_contradicts_who_writes_changes_nobody_unasked(domain: dict[str, Any]) -> None:
    """A parent's question about two children was read as identify_student and turned the parent into a
    student; a child who says 我是学生不是家长 after a parent used the phone is right to change it. Asked."""
    for said, known in ((SIBLINGS, "parent"), ("我是学生不是家长，刚才是我妈在用，我现在心里很难受", "parent")):
        assert await run(ActionRememberAudience(), tracker(said, "identify_student", audience=known), domain) == (
            [response("utter_ask_audience")],
            [],
        )
    aunt = tracker("我是孩子的姑姑，她爸妈在外地打工，我来问问", "identify_parent", audience="student")
    assert await run(ActionRememberAudience(), aunt, domain) == ([response("utter_ask_audience")], [])


async def test_a_long_introduction_of_unknown_audience_that_names_the_writers_child_is_a_parents(
    domain: dict[str, Any], recorded: str
) -> None:
    conversation = await new_conversation(recorded)
    said = tracker(SIBLINGS, "identify_student", audience=None, sender=conversation)
    _, events = await run(ActionRememberAudience(), said, domain)
    assert SlotSet("audience", "parent") in events


async def test_an_introduction_with_a_question_gets_both_answered(domain: dict[str, Any], recorded: str) -> None:
    parent = tracker("我是家长，我家孩子最近总是不想上学，早上一叫就说肚子疼", "identify_parent", audience=None)
    messages_, events = await run(ActionRememberAudience(), parent, domain)
    assert events[0] == SlotSet("audience", "parent")
    assert messages_ == guidance("school_refusal") or messages_[0]["response"] == "utter_ask_topic"

    student = Tracker.from_dict(
        {
            **tracker("我是初三学生，最近压力好大，每天都睡不着", "identify_student", audience=None).current_state(),
            "latest_message": {
                "text": "我是初三学生，最近压力好大，每天都睡不着",
                "intent": {"name": "identify_student", "confidence": 0.6},
                "intent_ranking": [{"name": "identify_student"}, {"name": "exam_stress"}],
                "entities": [],
            },
        }
    )
    messages_, events = await run(ActionRememberAudience(), student, domain)
    assert events[0] == SlotSet("audience", "student") and messages_[0] == response("utter_exam_stress")


async def test_a_parent_who_says_who_they_are_with_a_question_is_offered_a_counsellor_after_the_guidance(
    domain: dict[str, Any], recorded: str
) -> None:
    said = "我是家长，孩子爷爷上个月去世了，他老问人死了会去哪里，我该怎么跟他说"
    messages_, events = await run(ActionRememberAudience(), tracker(said, "identify_parent", audience=None), domain)
    assert messages_ == guidance("bereavement")
    # the offer follows as the next action, so the parent's 好的 reaches a person by the offer's rule
    assert events == [SlotSet("audience", "parent"), FollowupAction("utter_offer_counsellor")]


async def test_a_child_nobody_can_find_is_answered_whoever_writes_and_a_counsellor_is_paged(
    domain: dict[str, Any], recorded: str
) -> None:
    conversation = await new_conversation(recorded)
    said = tracker(
        "都晚上十点了还没到家，电话手表也关机了，同学都说不知道去哪了", "out_of_scope", 0.5, audience=None, sender=conversation
    )
    messages_, events = await run(ActionParentTopic(), said, domain)
    # the steps for now, then the numbers to call from the directory
    numbers = response("utter_hotlines", hotline_list=hotline_list())
    assert (messages_, events) == ([*guidance("missing_child"), numbers], [SlotSet("topic_found", True)])

    async def case(session: Any) -> tuple[str, str] | None:
        found = (await session.execute(select(Case.level, Case.subject).where(Case.conversation_id == conversation))).first()
        return None if found is None else (str(found[0]), str(found[1]))

    # an orange case about the child (not the writer), so the on-call counsellor is paged
    assert await with_session(recorded, case) == ("orange", "other")


async def test_a_message_near_nothing_from_a_writer_nobody_named_is_not_understood(domain: dict[str, Any]) -> None:
    said = tracker("今天天气怎么样", "nlu_fallback", 0.3, audience=None)
    assert await run(ActionParentTopic(), said, domain) == ([response("utter_default")], [SlotSet("topic_found", False)])


def _fallback(said: str, ranking: list[tuple[str, float]], audience: str = "student") -> Tracker:
    state = tracker(said, "nlu_fallback", 0.3, audience=audience).current_state()
    ranked = [{"name": "nlu_fallback", "confidence": 0.3}] + [{"name": n, "confidence": c} for n, c in ranking]
    state["latest_message"] = {**state["latest_message"], "intent_ranking": ranked}
    return Tracker.from_dict(state)


async def test_a_students_tie_between_the_student_and_parent_intent_of_one_topic_gets_the_student_reply(
    domain: dict[str, Any],
) -> None:
    tie = _fallback("最近考试压力好大，晚上老是睡不着", [("parent_exam_stress", 0.34), ("exam_stress", 0.31)])
    assert (await run(ActionTopicReply(), tie, domain))[0] == [response("utter_exam_stress")]
    unrelated = _fallback("嗯嗯那个就是", [("greet", 0.31), ("exam_stress", 0.29)])
    assert (await run(ActionTopicReply(), unrelated, domain))[0] == [response("utter_default")]
    crisis = _fallback("……", [("parent_child_self_harm", 0.33), ("self_harm", 0.31)])
    assert (await run(ActionTopicReply(), crisis, domain))[0] == [response("utter_default")]


def service_tracker(said: str, intent: str, confidence: float, audience: str | None, utter_action: str) -> Tracker:
    given = tracker(said, intent, confidence, audience=audience)
    state = given.current_state()
    state["latest_message"] = {
        **state["latest_message"],
        "response_selector": {"default": {"response": {"utter_action": utter_action, "confidence": 0.9}}},
    }
    return Tracker.from_dict(state)


async def test_a_parents_question_the_nlu_took_unsurely_for_a_service_question_goes_to_the_search(
    domain: dict[str, Any],
) -> None:
    # 抚养费 was answered 在心桥聊天是免费的: the NLU's faq at 0.30; a legal question is referred
    said = service_tracker("抚养费一个月给多少合适，法律上是按工资的百分之几算", "faq", 0.30, "parent", "utter_faq/cost")
    messages, events = await run(ActionServiceQuestion(), said, domain)
    referral = all_referrals()["referral_legal"]
    assert (messages, events) == ([text(t) for t in referral.messages(sections())], [])


async def test_a_sure_service_question_and_a_students_get_the_chosen_reply(domain: dict[str, Any]) -> None:
    sure = service_tracker("家长咨询需要付费吗", "faq", 0.99, "parent", "utter_faq/cost")
    assert await run(ActionServiceQuestion(), sure, domain) == ([response("utter_faq/cost")], [])
    student = service_tracker("抚养费一个月给多少合适", "faq", 0.30, "student", "utter_faq/cost")
    assert await run(ActionServiceQuestion(), student, domain) == ([response("utter_faq/cost")], [])
    bot = tracker("你是机器人吗", "bot_challenge", 0.95, audience="parent")
    assert await run(ActionServiceQuestion(), bot, domain) == ([response("utter_bot_challenge")], [])


async def test_a_misread_crisis_intent_sends_a_parent_to_the_search_and_a_student_to_not_understood(
    domain: dict[str, Any],
) -> None:
    # 前妻要把孩子带去外省 was read as parent_child_self_harm; the gate found no risk
    parent = tracker("前妻要把孩子带去外省生活，我不同意，法律上她能这么做吗", "parent_child_self_harm", 0.64)
    messages, _ = await run(ActionMisread(), parent, domain)
    assert messages and messages[0]["response"] != "utter_default"
    student = tracker("笑死我了", "suicidal_thoughts", 0.7, audience="student")
    assert await run(ActionMisread(), student, domain) == ([response("utter_default")], [])
