"""Messages the NLU put in an intent it was wrong or unsure about: a parent's goes to the guidance search.

The NLU knows a parent's question only by its twelve parent intents; a question it cannot place often
lands in a service or small-talk intent, or in a crisis intent the crisis gate then finds to be a
misreading. On the blind parent batches that answered 抚养费一个月给多少合适 with 在心桥聊天是免费的,
微信聊天记录怎么备份 with 我是人工智能助手, and 前妻要把孩子带去外省 with 没太明白. For a parent these
go to the search over the guidance (actions/topics.py, answer_parent), which answers a topic or a
referral, asks one clarifying question, or says kindly that the question is outside the line's field.
A student's message keeps the reply it had: their words were never measured here.
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.base import XinqiaoAction
from actions.topic_finder import topic_finder
from actions.topics import answer_parent, offering_counsellor

# the NLU's intents whose reply is chosen by the response selector (bot/config.yml, one selector)
RETRIEVAL_INTENTS = frozenset({"faq", "chitchat"})


def selected_response(tracker: Tracker) -> str:
    """The reply the NLU chose for a service question: the response selector's for faq and chitchat
    (utter_faq/cost), the intent's own otherwise (utter_bot_challenge)."""
    latest = tracker.latest_message or {}
    intent = str((latest.get("intent") or {}).get("name") or "")
    if intent in RETRIEVAL_INTENTS:
        selected = ((latest.get("response_selector") or {}).get("default") or {}).get("response") or {}
        return str(selected.get("utter_action") or f"utter_{intent}")
    return f"utter_{intent}"


class ActionServiceQuestion(XinqiaoAction):
    """A question about the line, small talk, or "are you a bot?": the chosen reply when the NLU is sure
    (data/guidance/_finding.yml, `service_confidence`) or a student writes; a parent's message the NLU was
    unsure of goes to the guidance search."""

    def name(self) -> str:
        return "action_service_question"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        confidence = float(((tracker.latest_message or {}).get("intent") or {}).get("confidence") or 0.0)
        if self.audience_of(tracker) == "parent" and confidence < topic_finder().settings.service_confidence:
            return offering_counsellor(await answer_parent(dispatcher, tracker))
        dispatcher.utter_message(response=selected_response(tracker))
        return []


class ActionMisread(XinqiaoAction):
    """A crisis intent the crisis gate found to be a misreading (笑死, a goldfish that died): a parent's
    question goes to the guidance search, anyone else's gets the not-understood reply."""

    def name(self) -> str:
        return "action_misread"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        if self.audience_of(tracker) == "parent":
            return offering_counsellor(await answer_parent(dispatcher, tracker))
        dispatcher.utter_message(response="utter_default")
        return []
