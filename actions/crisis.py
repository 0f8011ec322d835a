"""After a crisis reply: the numbers to call now, a recorded request for a human, guidance for parents.

The first crisis message is a domain response sent by a rule, so it reaches the user even when this
action server is down (the gateway then adds the fail-safe script with the numbers).
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.base import XinqiaoAction
from actions.guidance import guidance_for
from actions.risk import signal_ids, turn_risk
from actions.store import record_handoff


class ActionCrisisSupport(XinqiaoAction):
    def name(self) -> str:
        return "action_crisis_support"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        intent = self.intent_of(tracker)
        self.hotlines(dispatcher, "utter_crisis_hotlines")
        await record_handoff(
            tracker.sender_id,
            reason=f"crisis:{intent}",
            origin="intent",
            audience=self.audience_of(tracker),
            subject=tracker.get_slot("risk_subject") or "self",
            **turn_risk(tracker),
        )
        # guidance is written for parents: a student never reads it, whichever intent the NLU predicted
        audience = self.audience_of(tracker)
        guidance = guidance_for(intent, audience, signal_ids(tracker)) if audience == "parent" else None
        if guidance is not None:
            self.guidance(dispatcher, guidance)
        return []
