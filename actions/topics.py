"""Replies to a topic, for the reader who is writing (issue 13).

A student's own words get the student reply (and, at yellow, the offer of a check-in). A parent's question
gets the guidance topic found for their own words by searching the guidance (actions/topic_finder.py),
with the NLU's intent as a hint, or one clarifying question: the nearest topics and a person as buttons,
the parent's choice coming back as choose_topic; a question near no topic gets the not-understood reply.
For a parent the rules then offer a counsellor when the topic was found (`topic_found`); a question the
line cannot answer well itself (glasses, school registration, custody) is told who can (a referral, which
names 转人工 itself); a question outside the line's field (a pet to buy, the parent's own marriage) gets the
out-of-scope reply.

Who is writing is never guessed from the NLU's intent (it confuses a student's and a parent's words about
the same topic): a student whose words the NLU read as a parent's gets the student reply. When nobody has
said, a message that names the writer's own child is a parent's (and is remembered in the store); any
other is met with one kind question, student or parent?
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.events import FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.base import XinqiaoAction
from actions.checkin import offer_checkin_when_yellow
from actions.guidance import Answer, Referral, all_answers, routes, topic_of_intent
from actions.store import record_audience, record_handoff
from actions.topic_finder import topic_finder
from triage_protocols import Level, assess_intent


def answer_student(
    dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any], intent: str
) -> list[dict[str, Any]]:
    """The student reply to a topic intent (a parent's intent: the student topic it stands for)."""
    student_intent = intent
    topic = topic_of_intent(intent) if intent.startswith("parent_") else None
    if topic is not None:
        student_intent = next(
            (s for s, t in routes().parent_topic_for_student_intent.items() if t == topic), intent
        )
    if XinqiaoAction.has_response(domain, f"utter_{student_intent}"):
        dispatcher.utter_message(response=f"utter_{student_intent}")
    else:
        dispatcher.utter_message(response="utter_default")
    return offer_checkin_when_yellow(dispatcher, tracker)


async def answer_parent(
    dispatcher: CollectingDispatcher, tracker: Tracker, audience: str | None = None
) -> list[dict[str, Any]]:
    """A parent's question answered with its topic, or a clarifying question; for a writer nobody has
    named, first whether they are a parent (see the module), except for an urgent topic (a child nobody
    can find), answered for whoever writes. `audience` is who is writing when the caller knows it better
    than the slot (the person said so in this very message). Returns the events, `topic_found` last."""
    latest = tracker.latest_message or {}
    text = str(latest.get("text") or "")
    intent = latest.get("intent") or {}
    finder = topic_finder()
    found = finder.find(
        text, topic_of_intent(str(intent.get("name") or "")), float(intent.get("confidence") or 0.0)
    )
    topic = finder.chosen(text) or found.answer
    answers = all_answers()
    events: list[dict[str, Any]] = []
    if topic is None and found.outside:  # a pet to buy, the parent's own back: not ours, said kindly
        dispatcher.utter_message(response="utter_out_of_scope")
        return [SlotSet("topic_found", False)]
    if (audience or tracker.get_slot("audience")) is None:
        if topic is not None and answers[topic].urgent:
            await show(dispatcher, tracker, answers[topic])
            return [SlotSet("topic_found", True)]
        if not found.nearest:  # near nothing the guidance covers: whoever writes, not understood
            dispatcher.utter_message(response="utter_default")
            return [SlotSet("topic_found", False)]
        if not finder.about_own_child(text):
            dispatcher.utter_message(response="utter_ask_audience")
            return [SlotSet("topic_found", False)]
        events.append(SlotSet("audience", "parent"))
        await record_audience(tracker.sender_id, "parent")
    if topic is not None:  # a referral names 转人工 itself: no counsellor offer after it
        await show(dispatcher, tracker, answers[topic])
        return [*events, SlotSet("topic_found", not isinstance(answers[topic], Referral))]
    if not found.nearest:  # near no topic at all; the slot may be set only by the events below
        dispatcher.utter_message(response="utter_parent_not_understood")
        return [*events, SlotSet("topic_found", False)]
    nearest = [name for name, _ in found.nearest]
    dispatcher.utter_message(response="utter_ask_topic", buttons=finder.buttons(nearest, answers))
    return [*events, SlotSet("topic_found", False)]


async def show(dispatcher: CollectingDispatcher, tracker: Tracker, answer: Answer) -> None:
    """A topic's guidance or a referral. An urgent topic's (a child nobody can find) comes with the
    directory's numbers after it, so the writer can call at once, and opens an orange case about the
    child, so a counsellor is paged to stand by them: never a child in danger left to a bot."""
    XinqiaoAction.guidance(dispatcher, answer)
    if answer.urgent:
        XinqiaoAction.hotlines(dispatcher, "utter_hotlines")
        await record_handoff(
            tracker.sender_id,
            reason=f"urgent_topic:{answer.topic}",
            level="orange",
            audience=tracker.get_slot("audience"),
            subject="other",
        )


def offering_counsellor(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """answer_parent's events for a caller whose rules do not go on to offer a counsellor (an introduction
    with a question, a service question or a crisis intent misread): when a topic's guidance was given,
    the offer follows as the next action, as after action_parent_topic, so a parent's 好的 reaches a person
    by the same rule. A referral, a question back or the out-of-scope reply offers none."""
    found = any(event.get("name") == "topic_found" and event.get("value") for event in events)
    rest = [event for event in events if event.get("name") != "topic_found"]
    return [*rest, FollowupAction("utter_offer_counsellor")] if found else rest


def student_intent_of_a_tie(tracker: Tracker) -> str | None:
    """The student's intent of a message the NLU could not place only because a student's intent and the
    parent's intent for the same topic tied (最近考试压力好大: parent_exam_stress 0.34, exam_stress 0.31,
    so nlu_fallback); None for any other fallback. Never a crisis intent: those go through the crisis gate."""
    ranking = (tracker.latest_message or {}).get("intent_ranking") or []
    best_two = [str(e.get("name") or "") for e in ranking if e.get("name") != "nlu_fallback"][:2]
    topics = {topic_of_intent(name) for name in best_two}
    if len(best_two) < 2 or len(topics) != 1 or None in topics:
        return None
    student = next((name for name in best_two if not name.startswith("parent_")), None)
    if student is None or assess_intent(student).level.at_least(Level.ORANGE):
        return None
    return student


class ActionTopicReply(XinqiaoAction):
    """A student's topic intent: the student reply; a parent (or a writer nobody has named who names their
    own child) is answered as a parent."""

    def name(self) -> str:
        return "action_topic_reply"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        text = str((tracker.latest_message or {}).get("text") or "")
        audience = self.audience_of(tracker)
        if audience == "parent" or (audience is None and topic_finder().about_own_child(text)):
            return offering_counsellor(await answer_parent(dispatcher, tracker))
        intent = self.intent_of(tracker)
        if intent == "nlu_fallback":  # a student's message: the not-understood reply, unless a tie
            intent = student_intent_of_a_tie(tracker) or intent
        return answer_student(dispatcher, tracker, domain, intent)


class ActionParentTopic(XinqiaoAction):
    """A parent's topic intent, a parent in other words, or a button of the clarifying question."""

    def name(self) -> str:
        return "action_parent_topic"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        if self.audience_of(tracker) == "student":  # the NLU read a parent's words; a student wrote them
            return [*answer_student(dispatcher, tracker, domain, self.intent_of(tracker)), SlotSet("topic_found", False)]
        return await answer_parent(dispatcher, tracker)
