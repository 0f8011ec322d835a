"""Ask, don't guess (issue 12): one gentle, direct question when the screens or the NLU are unsure.

Two ways lead to the question, and neither opens a case:
- the gateway screened a message below orange but marked it `unsure` (the learned screen's grey band, or a
  death word read as an idiom in a low-mood message); after the answer it triggers EXTERNAL_risk_unsure,
  and `ActionAskWhenUnsure` decides whether to ask now;
- the NLU predicted a crisis intent for a message the screen put below orange; `ActionCrisisGate` weighs
  the NLU's confidence against the screen's score (`crisis_gate` in triage_protocols/protocols/intents.yml):
  the crisis path, the question, or "not understood".

The person's answer decides: the rules in data/rules/triage.yml send a yes to `ActionRiskQuestionYes`
(an orange case, the numbers, then the ASQ for a student) and a no to `ActionRiskQuestionNo` (recorded,
and the conversation carries on). Only the answer right after the question counts: the rules match on the
question being the last thing the assistant did.
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.base import XinqiaoAction
from actions.risk import screened
from actions.store import record, record_handoff
from triage_protocols import gate_crisis_intent, load_protocol

QUESTION = "utter_ask_risk_question"
# What shows that a turn already went to a person or asked: then the question would only repeat it.
ALREADY_ANSWERED_BY = frozenset({QUESTION, "action_crisis_support", "action_handoff", "action_risk_question_yes"})


def _is_gateway_turn(event: dict[str, Any]) -> bool:
    """A turn the gateway triggered (EXTERNAL_risk_*), not words the person wrote."""
    intent = ((event.get("parse_data") or {}).get("intent") or {}).get("name") or ""
    return intent.startswith("EXTERNAL_")


def actions_of_the_last_message(tracker: Tracker) -> set[str]:
    """The actions that answered the person's last own message, before the gateway's trigger that
    follows it (empty when the latest turn is not the gateway's)."""
    found: set[str] = set()
    after_trigger = False
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            if after_trigger or not _is_gateway_turn(event):
                break
            after_trigger = True
        elif after_trigger and event.get("event") == "action":
            found.add(str(event.get("name")))
    return found


def messages_since_asked(tracker: Tracker) -> int | None:
    """How many of the person's own messages came since the question was last asked (None: never)."""
    count = 0
    for event in reversed(tracker.events):
        if event.get("event") == "user" and not _is_gateway_turn(event):
            count += 1
        elif event.get("event") == "action" and event.get("name") == QUESTION:
            return count
    return None


class ActionAskWhenUnsure(XinqiaoAction):
    """The gateway's EXTERNAL_risk_unsure: ask now, unless the answer to that message already went to a
    person or asked, or the question was asked within the protocol's `ask_again_after` messages."""

    def name(self) -> str:
        return "action_ask_when_unsure"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        spec = load_protocol().unsure
        since = messages_since_asked(tracker)
        recently = since is not None and spec is not None and since <= spec.ask_again_after
        if recently or actions_of_the_last_message(tracker) & ALREADY_ANSWERED_BY:
            return [SlotSet("risk_question", "skip")]
        await record(tracker.sender_id, "risk_question_asked", origin="screen_unsure")
        return [SlotSet("risk_question", "ask")]


class ActionCrisisGate(XinqiaoAction):
    """A crisis intent from the NLU: the crisis path, the question, or not understood (intents.yml)."""

    def name(self) -> str:
        return "action_crisis_gate"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        intent = (tracker.latest_message or {}).get("intent") or {}
        name = str(intent.get("name") or "")
        confidence = float(intent.get("confidence") or 0.0)
        screen = screened(tracker)
        score = screen.get("score")
        outcome = gate_crisis_intent(
            name, confidence, score if isinstance(score, (int, float)) else None, screen.get("rule")
        )
        events: list[dict[str, Any]] = [SlotSet("crisis_gate", outcome)]
        # a parent's crisis intent says who writes, unless the person said otherwise (then their word holds)
        if outcome != "none" and name.startswith("parent_") and self.audience_of(tracker) is None:
            events.append(SlotSet("audience", "parent"))
        if outcome != "crisis":
            await record(
                tracker.sender_id,
                "crisis_intent_gated",
                intent=name,
                confidence=round(confidence, 3),
                score=score,
                outcome=outcome,
            )
        if outcome == "ask":
            await record(tracker.sender_id, "risk_question_asked", origin="crisis_intent")
        return events


class ActionRiskQuestionYes(XinqiaoAction):
    """Yes to the question: warm words, the numbers, and an orange case (the person's own answer is what
    escalates). The rules then run the ASQ for a student, or ask a parent whether the child is safe now."""

    def name(self) -> str:
        return "action_risk_question_yes"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        dispatcher.utter_message(response="utter_risk_question_yes")
        self.hotlines(dispatcher, "utter_crisis_hotlines")
        audience = self.audience_of(tracker)
        await record_handoff(
            tracker.sender_id,
            reason="risk_question:yes",
            origin="question",
            level="orange",
            audience=audience,
            subject="other" if audience == "parent" else "self",
        )
        return []


class ActionRiskQuestionNo(XinqiaoAction):
    """No to the question: thanks, recorded (codes only), and the conversation carries on."""

    def name(self) -> str:
        return "action_risk_question_no"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        dispatcher.utter_message(response="utter_risk_question_no")
        await record(tracker.sender_id, "risk_question_denied")
        return []
