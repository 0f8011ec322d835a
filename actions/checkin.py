"""A student whose message screened yellow was offered a check-in; this answers their yes or no and
records it, so that a counsellor can follow up (the follow-up itself belongs to the case records)."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.base import XinqiaoAction
from actions.risk import screened
from actions.store import record_checkin


class ActionCheckinAnswer(XinqiaoAction):
    def name(self) -> str:
        return "action_checkin_answer"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        accepted = self.intent_of(tracker) == "affirm"
        await record_checkin(tracker.sender_id, accepted)
        dispatcher.utter_message(response="utter_checkin_accepted" if accepted else "utter_checkin_declined")
        return [SlotSet("checkin_offered", False)]


def offer_checkin(dispatcher: CollectingDispatcher) -> list[dict[str, Any]]:
    """Offers to check in again; the next yes or no is answered by ActionCheckinAnswer."""
    dispatcher.utter_message(response="utter_offer_checkin")
    return [SlotSet("checkin_offered", True)]


def offer_checkin_when_yellow(dispatcher: CollectingDispatcher, tracker: Tracker) -> list[dict[str, Any]]:
    """Yellow: support, then an offer to check in again. Parents are offered a counsellor instead."""
    if screened(tracker).get("level") != "yellow" or tracker.get_slot("audience") == "parent":
        return []
    return offer_checkin(dispatcher)
