"""The level behind the latest turn: the gateway's screen and Rasa's own intent, combined by the protocol.

A turn triggered by the gateway (EXTERNAL_risk_*) carries the screen's level in its entities; a turn the
NLU read carries it in the message metadata. Rasa's crisis intents map to levels through the protocol
(triage_protocols/protocols/intents.yml) too, and the highest level wins.
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Tracker

from triage_protocols import assess_intent
from triage_protocols.results import Level, highest


def signal_ids(tracker: Tracker) -> list[str]:
    """The gateway's signal ids. Rasa fills a list slot with every value of its entity, and the gateway
    sends one entity whose value is the whole list, so the slot holds a list inside a list."""
    found: list[str] = []
    pending: list[Any] = [tracker.get_slot("risk_signals") or []]
    while pending:
        value = pending.pop(0)
        if isinstance(value, list):
            pending = value + pending
        elif isinstance(value, str):
            found.append(value)
    return found


def screened(tracker: Tracker) -> dict[str, Any]:
    """The gateway's assessment of the latest message: level, rule, signal ids, protocol version."""
    latest = tracker.latest_message or {}
    intent = (latest.get("intent") or {}).get("name") or ""
    if intent.startswith("EXTERNAL_risk_"):
        return {
            "level": tracker.get_slot("risk_level"),
            "rule": "gateway_screen",
            "signals": signal_ids(tracker),
        }
    return dict((latest.get("metadata") or {}).get("risk") or {})


def turn_risk(tracker: Tracker) -> dict[str, Any]:
    """What an escalation record keeps: the combined level and where each part came from."""
    latest = tracker.latest_message or {}
    intent = (latest.get("intent") or {}).get("name") or ""
    audience = "parent" if tracker.get_slot("audience") == "parent" else "student"
    from_intent = assess_intent(intent, audience)  # type: ignore[arg-type]
    from_screen = screened(tracker)
    levels = [from_intent.level]
    if from_screen.get("level") in Level.__members__.values():
        levels.append(Level(from_screen["level"]))
    return {
        "level": highest(levels).value,
        "screen_level": from_screen.get("level"),
        "screen_rule": from_screen.get("rule"),
        "signals": from_screen.get("signals", []),
        "intent": intent,
        "intent_level": from_intent.level.value,
        "protocol_version": from_intent.protocol_version,
    }
