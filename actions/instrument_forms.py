"""The screening instruments as Rasa forms: the ASQ (asq_form) and the self-check (self_check_form).

Every question, answer option, score and explanation comes from the protocol (`triage_protocols`): the
slots are the protocol's item ids, `action_ask_<item>` asks one item with its options as buttons, the
validation actions read each reply (instrument_content.py) and choose which items still apply, and the
result actions score the answers and act on the level the protocol gives:

- ASQ: green, the explanation; orange, the explanation, the numbers, a recorded request for a person,
  then a counsellor is offered (a rule); red, the red message, the numbers, "a counsellor is being
  called", a recorded request, then the question about safety now (a rule).
- Self-check: the explanation and what to do next; yellow adds the offer of a check-in; orange adds the
  numbers, a recorded request and the offer of a counsellor; PHQ-A item 9 above 0 leads on to the ASQ.

The slot `screening_next` tells the rules in data/rules/instruments.yml what follows a result. Both forms
start clean (answers left by an interrupted form are cleared when it starts again) and every result
clears its form's answers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import yaml
from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import REQUESTED_SLOT, FormValidationAction

from actions.base import XinqiaoAction
from actions.checkin import offer_checkin
from actions.instrument_content import (
    content,
    frequency_hint,
    is_stop,
    read_choice,
    read_frequency,
    read_yes_no,
    self_check_instruments,
)
from actions.screening_store import record_screening
from actions.store import record_handoff
from triage_protocols import Level, Result, instrument, questions, score

ASQ = "asq"
ASQ_FORM = "asq_form"
SELF_CHECK_FORM = "self_check_form"
INSTRUMENT_SLOT = "self_check_instrument"
NEXT_SLOT = "screening_next"
DOMAIN_FILE = Path(__file__).resolve().parent.parent / "bot" / "domain" / "instruments.yml"


# ------------------------------------------------------------------------------------------ helpers


def item_ids(name: str) -> list[str]:
    """Every question the instrument may ask, in order; these are also the slots' names."""
    return [item.id for item in questions(name)]


@cache
def _instrument_of() -> dict[str, str]:
    return {item: name for name in (ASQ, *self_check_instruments()) for item in item_ids(name)}


def asq_slots() -> list[str]:
    return item_ids(ASQ)


def self_check_slots() -> list[str]:
    return [INSTRUMENT_SLOT] + [item for name in self_check_instruments() for item in item_ids(name)]


def answers(tracker: Tracker, name: str) -> dict[str, Any]:
    return {item: tracker.get_slot(item) for item in item_ids(name) if tracker.get_slot(item) is not None}


def cleared(tracker: Tracker, slots: Iterable[str]) -> list[dict[str, Any]]:
    return [SlotSet(slot, None) for slot in slots if tracker.get_slot(slot) is not None]


def requested_when_user_spoke(tracker: Tracker) -> str | None:
    """The question the latest user message answered, if any (the requested slot at that moment)."""
    requested = at_user = None
    for event in tracker.events:
        if event.get("event") == "slot" and event.get("name") == REQUESTED_SLOT:
            requested = event.get("value")
        elif event.get("event") == "user":
            at_user = requested
    return at_user


def starting(tracker: Tracker, form: str) -> bool:
    """Rasa calls a form's validation action as the form starts; the form's active_loop event then follows
    the latest user message (the tracker already names the form as the active loop)."""
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            return False
        if event.get("event") == "active_loop" and event.get("name") == form:
            return True
    return False


def _latest(tracker: Tracker) -> tuple[str | None, str | None]:
    latest = tracker.latest_message or {}
    return latest.get("text"), (latest.get("intent") or {}).get("name")


def _buttons(titles: Iterable[str]) -> list[dict[str, str]]:
    """The gateway strips a leading "/", so a payload is the plain text a user could have typed."""
    return [{"title": title, "payload": title} for title in titles]


# ------------------------------------------------------------------------------------------ asking


class AskQuestion(XinqiaoAction, ABC):
    """Asks one item of an instrument, worded as in the protocol, with its options as buttons.

    The first item comes after the instrument's title and preamble, unless it is being asked again.
    One concrete subclass per item is made below, named `action_ask_<item id>` as Rasa looks them up.
    """

    item_id: ClassVar[str]

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        name = _instrument_of()[self.item_id]
        spec = instrument(name)
        ids = item_ids(name)
        number = ids.index(self.item_id) + 1
        if number == 1 and requested_when_user_spoke(tracker) != self.item_id:
            dispatcher.utter_message(text=content().intro.format(title=spec.title, preamble=spec.preamble))
        text = questions(name)[number - 1].text
        if name != ASQ:
            text = content().numbered_question.format(number=number, count=len(ids), text=text)
        dispatcher.utter_message(text=text, buttons=_buttons(option.text for option in spec.options))
        return []


def _asked_items() -> list[str]:
    """The items the forms ask, as the domain lists them (tests check they are the protocol's). Read from
    the domain, not the protocol, so that the action server starts even while a protocol file is broken."""
    forms = yaml.safe_load(DOMAIN_FILE.read_text(encoding="utf-8"))["forms"]
    slots = [slot for form in (ASQ_FORM, SELF_CHECK_FORM) for slot in forms[form]["required_slots"]]
    return [slot for slot in slots if slot != INSTRUMENT_SLOT]


def _ask_action(item_id: str) -> type[AskQuestion]:
    action_name = f"action_ask_{item_id}"
    class_name = f"ActionAsk_{item_id}"
    attributes = {
        "item_id": item_id,
        "name": lambda self: action_name,
        "__module__": __name__,
        "__qualname__": class_name,
    }
    return type(class_name, (AskQuestion,), attributes)


# rasa-sdk finds these through Action's subclasses (weak references) and pickles them by name for its
# worker processes: each is kept as an attribute of this module, under its class name.
ASK_ACTIONS: tuple[type[AskQuestion], ...] = tuple(_ask_action(item) for item in _asked_items())
globals().update({action.__name__: action for action in ASK_ACTIONS})


class ActionAskSelfCheckInstrument(XinqiaoAction):
    def name(self) -> str:
        return f"action_ask_{INSTRUMENT_SLOT}"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        words = content().self_check
        titles = [option.title for option in words.options]
        dispatcher.utter_message(text=words.choose, buttons=_buttons(titles))
        return []


# ------------------------------------------------------------------------------------------ validating


class InstrumentFormValidation(FormValidationAction, ABC):
    """What both forms share: a clean start, dynamic required slots, reading replies, stopping early."""

    @abstractmethod
    def name(self) -> str: ...

    @abstractmethod
    def all_slots(self) -> list[str]:
        """Every slot of the form, as listed in the domain."""

    @abstractmethod
    def applicable(self, tracker: Tracker) -> list[str]:
        """The slots that apply given the answers so far, in the order they are asked."""

    @abstractmethod
    def read(self, slot: str, tracker: Tracker, dispatcher: CollectingDispatcher) -> Any:
        """The answer in the latest reply, or None after saying how to answer."""

    def on_start(self, tracker: Tracker) -> list[dict[str, Any]]:
        return []

    async def required_slots(
        self,
        domain_slots: list[str],
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: dict[str, Any],
    ) -> list[str]:
        # The instruments are a young person's own report; a parent is never asked them.
        if tracker.get_slot("audience") == "parent":
            return []
        return self.applicable(tracker)

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        if starting(tracker, self.form_name()):
            events = cleared(tracker, self.all_slots()) + self.on_start(tracker)
            tracker.add_slots(events)
            return events + [await self._first_missing(dispatcher, tracker, domain)]
        return await super().run(dispatcher, tracker, domain)

    async def get_validation_events(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        required = await self.required_slots(self.domain_slots(domain), dispatcher, tracker, domain)
        events: list[dict[str, Any]] = []
        for slot in tracker.slots_to_validate():
            if slot not in required:
                continue
            text, _ = _latest(tracker)
            if is_stop(text):
                # requested_slot None ends the form; the result action sees the answers are incomplete.
                events += [SlotSet(slot, None), SlotSet(REQUESTED_SLOT, None)]
            else:
                events.append(SlotSet(slot, self.read(slot, tracker, dispatcher)))
        return events

    async def next_requested_slot(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        if tracker.get_slot(REQUESTED_SLOT) is None:
            return SlotSet(REQUESTED_SLOT, None)  # the student asked to stop
        return await self._first_missing(dispatcher, tracker, domain)

    async def _first_missing(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        required = await self.required_slots(self.domain_slots(domain), dispatcher, tracker, domain)
        missing = [slot for slot in required if tracker.get_slot(slot) is None]
        return SlotSet(REQUESTED_SLOT, missing[0] if missing else None)


class ValidateAsqForm(InstrumentFormValidation):
    def name(self) -> str:
        return f"validate_{ASQ_FORM}"

    def all_slots(self) -> list[str]:
        return asq_slots()

    def applicable(self, tracker: Tracker) -> list[str]:
        spec = instrument(ASQ)
        screening = [item.id for item in spec.items]
        positive = any(tracker.get_slot(item) in spec.positive_values for item in screening)
        return screening + ([spec.acuity.id] if positive else [])

    def read(self, slot: str, tracker: Tracker, dispatcher: CollectingDispatcher) -> Any:
        answer = read_yes_no(*_latest(tracker))
        if answer is None:
            dispatcher.utter_message(text=content().unclear.yes_no)
        return answer


class ValidateSelfCheckForm(InstrumentFormValidation):
    def name(self) -> str:
        return f"validate_{SELF_CHECK_FORM}"

    def all_slots(self) -> list[str]:
        return self_check_slots()

    def applicable(self, tracker: Tracker) -> list[str]:
        chosen = tracker.get_slot(INSTRUMENT_SLOT)
        return [INSTRUMENT_SLOT] + (item_ids(chosen) if chosen in self_check_instruments() else [])

    def on_start(self, tracker: Tracker) -> list[dict[str, Any]]:
        # "我想测测焦虑" names the self-check already: no need to ask which one.
        text, intent = _latest(tracker)
        chosen = read_choice(text) if intent == "request_self_check" else None
        return [SlotSet(INSTRUMENT_SLOT, chosen)] if chosen else []

    def read(self, slot: str, tracker: Tracker, dispatcher: CollectingDispatcher) -> Any:
        text, intent = _latest(tracker)
        if slot == INSTRUMENT_SLOT:
            answer: Any = read_choice(text)
            if answer is None:
                dispatcher.utter_message(text=content().self_check.choose_again)
            return answer
        name = tracker.get_slot(INSTRUMENT_SLOT)
        answer = read_frequency(name, text, intent)
        if answer is None:
            dispatcher.utter_message(text=frequency_hint(name))
        return answer


# ------------------------------------------------------------------------------------------ results


class ActionAsqResult(XinqiaoAction):
    def name(self) -> str:
        return "action_asq_result"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        events = cleared(tracker, asq_slots())
        words = content().asq
        if self.audience_of(tracker) == "parent":
            return events + await self._needs_a_person(dispatcher, tracker, words.parent, "asq:parent")
        try:
            result = score(ASQ, answers(tracker, ASQ))
        except ValueError:
            # Stopped before the end: never read as negative.
            return events + await self._needs_a_person(dispatcher, tracker, words.stopped, "asq:stopped")
        await record_screening(tracker.sender_id, result)
        if result.level.at_least(Level.RED):
            dispatcher.utter_message(response="utter_crisis_red")
            self.hotlines(dispatcher, "utter_crisis_hotlines")
            dispatcher.utter_message(response="utter_counsellor_being_called")
            await _record_handoff(tracker, result)
            return events + [SlotSet(NEXT_SLOT, "ask_safe_now")]
        if result.level.at_least(Level.ORANGE):
            return events + await self._needs_a_person(dispatcher, tracker, result.explanation, result)
        dispatcher.utter_message(text=result.explanation)
        dispatcher.utter_message(text=words.after_negative)
        return events + [SlotSet(NEXT_SLOT, "listen")]

    async def _needs_a_person(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, text: str, why: Result | str
    ) -> list[dict[str, Any]]:
        dispatcher.utter_message(text=text)
        self.hotlines(dispatcher, "utter_crisis_hotlines")
        if isinstance(why, Result):
            await _record_handoff(tracker, why)
        else:
            await record_handoff(tracker.sender_id, reason=why)
        return [SlotSet(NEXT_SLOT, "offer_counsellor")]


class ActionSelfCheckResult(XinqiaoAction):
    def name(self) -> str:
        return "action_self_check_result"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        events = cleared(tracker, self_check_slots())
        if self.audience_of(tracker) == "parent":
            dispatcher.utter_message(response="utter_self_check_parent")
            return events + [SlotSet(NEXT_SLOT, "offer_counsellor")]
        name = tracker.get_slot(INSTRUMENT_SLOT)
        try:
            result = score(name, answers(tracker, name)) if name in self_check_instruments() else None
        except ValueError:
            result = None
        if result is None:  # the student stopped before the end
            dispatcher.utter_message(text=content().self_check.stopped)
            return events + [SlotSet(NEXT_SLOT, "listen")]

        await record_screening(tracker.sender_id, result)
        dispatcher.utter_message(text=result.explanation)
        band = _band(result)
        if result.next == ASQ:
            # PHQ-A item 9 above 0: the ASQ decides. A total in an orange band still asks for a person.
            if band is not None and band.level.at_least(Level.ORANGE):
                await _record_handoff(tracker, result, outcome=band.rule)
            return events + [SlotSet(NEXT_SLOT, "asq")]

        next_steps = content().self_check.next_steps.get(name, {}).get(result.outcome)
        if next_steps:
            dispatcher.utter_message(text=next_steps)
        if result.level.at_least(Level.ORANGE):
            self.hotlines(dispatcher, "utter_crisis_hotlines")
            await _record_handoff(tracker, result)
            return events + [SlotSet(NEXT_SLOT, "offer_counsellor")]
        if result.level is Level.YELLOW:
            events += offer_checkin(dispatcher)
        return events + [SlotSet(NEXT_SLOT, "listen")]


def _band(result: Result) -> Any:
    """The reason that comes from the total's band (a trigger such as PHQ-A item 9 may add another)."""
    bands = {band.outcome for band in getattr(instrument(result.instrument), "bands", ())}
    return next((reason for reason in result.reasons if reason.rule in bands), None)


async def _record_handoff(tracker: Tracker, result: Result, outcome: str | None = None) -> None:
    origin = "asq" if result.instrument == ASQ else f"self_check:{result.instrument}"
    await record_handoff(
        tracker.sender_id,
        reason=f"{origin}:{outcome or result.outcome}",
        origin="instrument",
        level=result.level.value,
        protocol_version=result.protocol_version,
    )
