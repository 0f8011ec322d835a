"""What every action of ours shares: the latest intent, the audience, the hotline list."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.guidance import Answer, sections
from triage_protocols.directory import hotline_list


class XinqiaoAction(Action, ABC):
    """rasa-sdk registers every subclass of Action that `inspect.isabstract` calls concrete; the abstract
    `name` keeps this base class out of the registry."""

    @abstractmethod
    def name(self) -> str: ...

    @staticmethod
    def intent_of(tracker: Tracker) -> str:
        return (tracker.latest_message or {}).get("intent", {}).get("name") or ""

    @staticmethod
    def audience_of(tracker: Tracker) -> str | None:
        return tracker.get_slot("audience")

    @staticmethod
    def hotlines(dispatcher: CollectingDispatcher, response: str) -> None:
        """Sends a response whose {hotline_list} is filled from the one directory file."""
        dispatcher.utter_message(response=response, hotline_list=hotline_list())

    @staticmethod
    def guidance(dispatcher: CollectingDispatcher, guidance: Answer) -> None:
        """A guidance topic's parts, or a referral, each as a message of its own."""
        for text in guidance.messages(sections()):
            dispatcher.utter_message(text=text)

    @staticmethod
    def has_response(domain: dict[str, Any], name: str) -> bool:
        return name in (domain or {}).get("responses", {})
