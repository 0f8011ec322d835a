"""Replies to a topic: a student's own words get the student reply, a parent gets practical guidance."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.base import XinqiaoAction
from actions.checkin import offer_checkin_when_yellow
from actions.guidance import guidance_for


class ActionTopicReply(XinqiaoAction):
    def name(self) -> str:
        return "action_topic_reply"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        intent = self.intent_of(tracker)
        guidance = guidance_for(intent, self.audience_of(tracker))
        if guidance is not None:
            self.guidance(dispatcher, guidance)
        elif self.has_response(domain, f"utter_{intent}"):
            dispatcher.utter_message(response=f"utter_{intent}")
        else:
            dispatcher.utter_message(response="utter_default")
        return offer_checkin_when_yellow(dispatcher, tracker)
