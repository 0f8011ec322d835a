"""Who is writing, as a person says it: kept in the store of record as well as in Rasa's slot."""

from __future__ import annotations

from typing import Any, Literal

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.base import XinqiaoAction
from actions.store import record_audience
from actions.topic_finder import topic_finder
from actions.topics import answer_parent, answer_student, offering_counsellor

AUDIENCE_OF_INTENT = {"identify_student": "student", "identify_parent": "parent"}

# what a message the NLU read as "I am a student / a parent" is (see `read_introduction`)
Reading = Literal["introduction", "introduction_and_question", "parent_question", "ask"]


def read_introduction(text: str, claimed: str, known: str | None) -> Reading:
    """What a message the NLU read as an introduction is. A short one (data/guidance/_finding.yml,
    introduction_max_chars) is taken at its word: a person may say they are the other reader. A long one
    that contradicts who is known to write may be a question misread or a real correction: the person is
    asked, with buttons. A long one from a writer nobody has named that calls itself a student's while
    naming the writer's own child is a parent's question. Any other long one says who writes and asks
    something: both are answered."""
    finder = topic_finder()
    if len(text.strip()) <= finder.settings.introduction_max_chars:
        return "introduction"
    if known is not None and known != claimed:
        return "ask"
    if known is None and claimed == "student" and finder.about_own_child(text):
        return "parent_question"
    return "introduction_and_question"


def _next_student_topic(tracker: Tracker, domain: dict[str, Any]) -> str | None:
    """The NLU's best intent after the introduction that has a student reply of its own."""
    ranking = (tracker.latest_message or {}).get("intent_ranking") or []
    names = [str(entry.get("name") or "") for entry in ranking]
    return next(
        (name for name in names if name not in AUDIENCE_OF_INTENT and XinqiaoAction.has_response(domain, f"utter_{name}")),
        None,
    )


class ActionRememberAudience(XinqiaoAction):
    """The person said who they are (identify_student / identify_parent): Rasa's slot and the store of
    record keep it, so the gateway screens and introduces the conversation for that reader; the rest of a
    long message is answered for that reader. A message the NLU may have misread changes nobody unasked
    (see `read_introduction`)."""

    def name(self) -> str:
        return "action_remember_audience"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        claimed = AUDIENCE_OF_INTENT.get(self.intent_of(tracker))
        if claimed is None:
            return []
        text = str((tracker.latest_message or {}).get("text") or "")
        reading = read_introduction(text, claimed, self.audience_of(tracker))
        if reading == "ask":
            dispatcher.utter_message(response="utter_ask_audience")
            return []
        if reading == "parent_question":  # answer_parent also remembers the parent
            return offering_counsellor(await answer_parent(dispatcher, tracker))
        await record_audience(tracker.sender_id, claimed)
        remembered = SlotSet("audience", claimed)
        if reading == "introduction":
            dispatcher.utter_message(response=f"utter_audience_{claimed}_ack")
            return [remembered]
        if claimed == "parent":
            return [remembered, *offering_counsellor(await answer_parent(dispatcher, tracker, audience="parent"))]
        topic = _next_student_topic(tracker, domain)
        if topic is None:
            dispatcher.utter_message(response="utter_audience_student_ack")
            return [remembered]
        return [remembered, *answer_student(dispatcher, tracker, domain, topic)]
