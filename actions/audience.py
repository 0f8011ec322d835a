"""Who is writing, as a person says it: kept in the store of record as well as in Rasa's slot."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.base import XinqiaoAction
from actions.store import record_audience
from actions.topic_finder import topic_finder
from actions.topics import answer_parent

AUDIENCE_OF_INTENT = {"identify_student": "student", "identify_parent": "parent"}


def misread_introduction(text: str, claimed: str, known: str | None) -> str | None:
    """The reader who really wrote a message the NLU read as an introduction, when it is a question misread
    (see data/guidance/_finding.yml, introduction_max_chars), else None. A short message is always taken at
    its word: a person may say they are the other reader."""
    finder = topic_finder()
    if len(text.strip()) <= finder.settings.introduction_max_chars:
        return None
    if known is not None and known != claimed:
        return known
    if claimed == "student" and finder.about_own_child(text):
        return "parent"
    return None


class ActionRememberAudience(XinqiaoAction):
    """The person said who they are (identify_student / identify_parent): Rasa's slot and the store of
    record keep it, so the gateway screens and introduces the conversation for that reader. A long message
    the NLU misread as an introduction changes nobody: it is answered for the reader who wrote it."""

    def name(self) -> str:
        return "action_remember_audience"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        claimed = AUDIENCE_OF_INTENT.get(self.intent_of(tracker))
        if claimed is None:
            return []
        text = str((tracker.latest_message or {}).get("text") or "")
        writer = misread_introduction(text, claimed, self.audience_of(tracker))
        if writer == "student":
            dispatcher.utter_message(response="utter_default")
            return []
        if writer == "parent":  # answer_parent also remembers a parent nobody had named
            answered = await answer_parent(dispatcher, tracker)
            return [event for event in answered if event.get("name") != "topic_found"]
        dispatcher.utter_message(response=f"utter_audience_{claimed}_ack")
        await record_audience(tracker.sender_id, claimed)
        return [SlotSet("audience", claimed)]
