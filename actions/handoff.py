"""A person asked for a human, or for numbers to call. Until counsellors are online in the system, the
reply says how to reach one, and the request is recorded so that someone follows it up."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.base import XinqiaoAction
from actions.store import record_handoff


class ActionHandoff(XinqiaoAction):
    def name(self) -> str:
        return "action_handoff"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        await record_handoff(tracker.sender_id, reason=f"request:{self.intent_of(tracker)}")
        self.hotlines(dispatcher, "utter_handoff")
        return []


class ActionShareHotlines(XinqiaoAction):
    def name(self) -> str:
        return "action_share_hotlines"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        self.hotlines(dispatcher, "utter_hotlines")
        return []
