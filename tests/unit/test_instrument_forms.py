"""The screening forms (actions/instrument_forms.py), run as rasa-sdk runs them: a Tracker from a JSON
fixture (the reply under test added to it), a CollectingDispatcher, and the messages and events compared
exactly. The questions, options and explanations expected here are read from the protocol, as the actions
read them, so a reworded item changes both sides; the flow and the records are what is under test."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import ActionExecutor, CollectingDispatcher

from actions import store
from actions.instrument_content import content, frequency_hint, self_check_instruments
from actions.instrument_forms import (
    ASK_ACTIONS,
    ActionAskSelfCheckInstrument,
    ActionAsqResult,
    ActionSelfCheckResult,
    ValidateAsqForm,
    ValidateSelfCheckForm,
)
from tests.unit.dispatched import response, text
from tests.unit.store_reads import audit_log
from triage_protocols import instrument, questions, score
from triage_protocols.directory import hotline_list

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "trackers"
INTERRUPTING = {"request_human", "EXTERNAL_risk_red", "EXTERNAL_risk_orange", "EXTERNAL_risk_orange_other"}
PHQ_NONE = {f"phq_{i}": 0 for i in range(1, 10)}


# ------------------------------------------------------------------------------------------ fixtures


def state(name: str, **slots: Any) -> dict[str, Any]:
    loaded = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    loaded["slots"].update(slots)
    return loaded


def tracker(name: str, **slots: Any) -> Tracker:
    return Tracker.from_dict(state(name, **slots))


def reply(name: str, text: str, intent: str = "nlu_fallback", **slots: Any) -> Tracker:
    """A fixture whose form asked a question, and the user's reply to it, as Rasa's form sends it to the
    validation action: the reply, the form running again, and the reply extracted into the asked slot."""
    loaded = state(name, **slots)
    asked = loaded["slots"]["requested_slot"]
    parse = {"text": text, "intent": {"name": intent, "confidence": 0.9}, "entities": []}
    loaded["latest_message"] = {**parse, "intent_ranking": []}
    loaded["events"] += [
        {"event": "slot", "name": "requested_slot", "value": asked},
        {"event": "action", "name": "action_listen"},
        {"event": "user", "text": text, "parse_data": parse},
        {"event": "slot", "name": "requested_slot", "value": asked},
        {"event": "action", "name": loaded["active_loop"]["name"]},
        {"event": "slot", "name": asked, "value": text},
    ]
    loaded["slots"][asked] = text
    loaded["latest_action_name"] = loaded["active_loop"]["name"]
    return Tracker.from_dict(loaded)


async def run(
    action: Action, given: Tracker, domain: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[Any]]:
    dispatcher = CollectingDispatcher()
    events = await action.run(dispatcher, given, domain)
    return dispatcher.messages, events


def buttons(*titles: str) -> list[dict[str, str]]:
    return [{"title": t, "payload": t} for t in titles]


def options(name: str) -> list[dict[str, str]]:
    return buttons(*(o.text for o in instrument(name).options))


def intro(name: str) -> dict[str, Any]:
    spec = instrument(name)
    return text(content().intro.format(title=spec.title, preamble=spec.preamble))


def item_text(name: str, number: int) -> str:
    return questions(name)[number - 1].text


def hotlines() -> dict[str, Any]:
    return response("utter_crisis_hotlines", hotline_list=hotline_list())


def cleared(*slots: str) -> list[dict[str, Any]]:
    return [SlotSet(s, None) for s in slots]


async def audit_entries(url: str) -> list[tuple[str, str, dict[str, Any]]]:
    """What the actions recorded themselves (the case entries are checked on their own)."""
    return [(r.action, r.subject, r.detail) for r in await audit_log(url)]


def screening(name: str, answers: dict[str, Any]) -> dict[str, Any]:
    result = score(name, answers)
    return {
        "instrument": name,
        "outcome": result.outcome,
        "level": result.level.value,
        "total": result.total,
        "next": result.next,
        "protocol_version": result.protocol_version,
    }


def handoff(reason: str, level: str) -> dict[str, Any]:
    return {"reason": reason, "level": level, "protocol_version": score("asq", ["no"] * 4).protocol_version}


# ------------------------------------------------------------------------------------------ the domain


def test_the_forms_ask_exactly_the_protocols_questions(domain: dict[str, Any]) -> None:
    asq = [q.id for q in questions("asq")]
    self_check = ["self_check_instrument"] + [q.id for n in self_check_instruments() for q in questions(n)]
    assert domain["forms"]["asq_form"]["required_slots"] == asq
    assert domain["forms"]["self_check_form"]["required_slots"] == self_check
    asked = {f"action_ask_{slot}" for slot in asq + self_check}
    assert asked <= set(domain["actions"])
    assert {action().name() for action in ASK_ACTIONS} | {ActionAskSelfCheckInstrument().name()} == asked


def test_no_slot_of_a_form_is_filled_by_a_request_for_a_person_or_an_escalation(
    domain: dict[str, Any],
) -> None:
    for form in ("asq_form", "self_check_form"):
        for slot in domain["forms"][form]["required_slots"]:
            for mapping in domain["slots"][slot]["mappings"]:
                assert INTERRUPTING <= set(mapping["not_intent"]), slot
                assert mapping["conditions"] == [{"active_loop": form, "requested_slot": slot}]


def test_the_action_server_serves_every_form_action(domain: dict[str, Any]) -> None:
    executor = ActionExecutor()
    executor.register_package("actions")
    ours = {
        a
        for a in domain["actions"]
        if a.startswith(("action_ask_", "validate_", "action_asq", "action_self"))
    }
    assert ours <= set(executor.actions)


def test_every_ask_action_pickles_by_name_for_the_action_servers_workers() -> None:
    assert all(pickle.loads(pickle.dumps(action)) is action for action in ASK_ACTIONS)


def test_every_response_the_forms_send_exists(domain: dict[str, Any]) -> None:
    for name in (
        "utter_crisis_red",
        "utter_counsellor_being_called",
        "utter_crisis_hotlines",
        "utter_offer_checkin",
        "utter_self_check_parent",
        "utter_offer_counsellor",
        "utter_ask_safe_now",
    ):
        assert name in domain["responses"], name


def test_the_content_names_only_real_instruments_and_outcomes() -> None:
    for name, steps in content().self_check.next_steps.items():
        spec = instrument(name)
        assert set(steps) <= {band.outcome for band in spec.bands}, name
    for name in self_check_instruments():
        assert instrument(name).kind == "sum_score"
    assert "asq" not in self_check_instruments()


# ------------------------------------------------------------------------------------------ asking


async def test_the_asq_starts_with_its_title_and_asks_one_question_with_buttons(
    domain: dict[str, Any],
) -> None:
    ask = next(a for a in ASK_ACTIONS if a.item_id == "asq_1")()
    messages, events = await run(ask, tracker("asq_starting"), domain)
    assert (messages, events) == ([intro("asq"), text(item_text("asq", 1), options("asq"))], [])
    assert options("asq") == buttons("是", "不是", "我不想回答")


async def test_a_question_asked_again_comes_without_the_title(domain: dict[str, Any]) -> None:
    ask = next(a for a in ASK_ACTIONS if a.item_id == "asq_1")()
    messages, _ = await run(ask, reply("asq_asking", "啊？"), domain)
    assert messages == [text(item_text("asq", 1), options("asq"))]


async def test_the_self_check_is_chosen_with_buttons(domain: dict[str, Any]) -> None:
    messages, _ = await run(ActionAskSelfCheckInstrument(), tracker("self_check_starting"), domain)
    assert messages == [text(content().self_check.choose, buttons("测测心情", "测测紧张和担心"))]


async def test_self_check_questions_are_numbered_and_the_first_is_introduced(domain: dict[str, Any]) -> None:
    first = next(a for a in ASK_ACTIONS if a.item_id == "phq_1")()
    messages, _ = await run(first, tracker("self_check_asking"), domain)
    assert messages == [intro("phq_a"), text(f"第1题，一共9题：{item_text('phq_a', 1)}", options("phq_a"))]
    third = next(a for a in ASK_ACTIONS if a.item_id == "gad_3")()
    messages, _ = await run(third, reply("self_check_asking", "有几天", requested_slot="gad_2"), domain)
    assert messages == [text(f"第3题，一共7题：{item_text('gad7', 3)}", options("gad7"))]


def test_no_button_payload_starts_with_a_slash() -> None:
    payloads = [o.text for n in ("asq", *self_check_instruments()) for o in instrument(n).options]
    payloads += [o.title for o in content().self_check.options]
    assert [p for p in payloads if p.lstrip().startswith(("/", "／"))] == []


# ------------------------------------------------------------------------------------------ the ASQ's answers


async def test_the_asq_starts_clean_even_after_an_interrupted_one(domain: dict[str, Any]) -> None:
    messages, events = await run(ValidateAsqForm(), tracker("asq_starting"), domain)
    assert (messages, events) == ([], cleared("asq_1", "asq_5") + [SlotSet("requested_slot", "asq_1")])


async def test_an_asq_resumed_after_another_orange_message_keeps_its_answers(domain: dict[str, Any]) -> None:
    """The orange rules run asq_form again while it is active: the same question is asked again."""
    loaded = state("asq_asking", asq_1="no", requested_slot="asq_2")
    loaded["events"] += [
        {"event": "slot", "name": "asq_1", "value": "no"},
        {"event": "slot", "name": "requested_slot", "value": "asq_2"},
        {"event": "action", "name": "action_listen"},
        {
            "event": "user",
            "text": None,
            "parse_data": {"intent": {"name": "EXTERNAL_risk_orange"}, "entities": []},
        },
        {"event": "action", "name": "utter_crisis_orange"},
        {"event": "action", "name": "action_crisis_support"},
        {"event": "slot", "name": "requested_slot", "value": "asq_2"},
        {"event": "action", "name": "asq_form"},
    ]
    messages, events = await run(ValidateAsqForm(), Tracker.from_dict(loaded), domain)
    assert (messages, events) == ([], [SlotSet("requested_slot", "asq_2")])


async def test_a_parent_is_never_asked_the_asq(domain: dict[str, Any]) -> None:
    _, events = await run(ValidateAsqForm(), tracker("asq_starting", audience="parent"), domain)
    assert events == cleared("asq_1", "asq_5") + [SlotSet("requested_slot", None)]


@pytest.mark.parametrize(
    ("said", "intent", "answer"),
    [
        ("是", "affirm", "yes"),
        ("不是", "deny", "no"),
        ("我不想回答", "deny", "refused"),
        ("没有。", "deny", "no"),
        ("嗯，有过", "affirm", "yes"),
        ("有过吧", "nlu_fallback", "yes"),
        ("没想过", "nlu_fallback", "no"),
    ],
)
async def test_an_asq_answer_is_read_and_the_next_question_follows(
    domain: dict[str, Any], said: str, intent: str, answer: str
) -> None:
    messages, events = await run(ValidateAsqForm(), reply("asq_asking", said, intent), domain)
    assert (messages, events) == ([], [SlotSet("asq_1", answer), SlotSet("requested_slot", "asq_2")])


@pytest.mark.parametrize(
    ("said", "intent"), [("不知道", "deny"), ("你是谁", "bot_challenge"), ("也许吧", "affirm")]
)
async def test_an_unclear_asq_answer_is_never_guessed(domain: dict[str, Any], said: str, intent: str) -> None:
    messages, events = await run(ValidateAsqForm(), reply("asq_asking", said, intent), domain)
    assert messages == [text(content().unclear.yes_no)]
    assert events == [SlotSet("asq_1", None), SlotSet("requested_slot", "asq_1")]


async def test_the_acuity_question_follows_any_yes_or_refusal(domain: dict[str, Any]) -> None:
    given = reply(
        "asq_asking", "不是", "deny", requested_slot="asq_4", asq_1="no", asq_2="refused", asq_3="no"
    )
    _, events = await run(ValidateAsqForm(), given, domain)
    assert events == [SlotSet("asq_4", "no"), SlotSet("requested_slot", "asq_5")]


async def test_four_noes_end_the_asq_without_the_acuity_question(domain: dict[str, Any]) -> None:
    given = reply("asq_asking", "不是", "deny", requested_slot="asq_4", asq_1="no", asq_2="no", asq_3="no")
    _, events = await run(ValidateAsqForm(), given, domain)
    assert events == [SlotSet("asq_4", "no"), SlotSet("requested_slot", None)]


async def test_the_student_may_stop_the_asq(domain: dict[str, Any]) -> None:
    messages, events = await run(ValidateAsqForm(), reply("asq_asking", "不想做了", "deny"), domain)
    assert (messages, events) == (
        [],
        [SlotSet("asq_1", None), SlotSet("requested_slot", None), SlotSet("requested_slot", None)],
    )


# ---------------------------------------------------------------------------------- the self-check's answers


async def test_a_self_check_that_names_the_instrument_starts_at_its_first_question(
    domain: dict[str, Any],
) -> None:
    messages, events = await run(ValidateSelfCheckForm(), tracker("self_check_starting"), domain)
    assert (messages, events) == (
        [],
        cleared("phq_1") + [SlotSet("self_check_instrument", "gad7"), SlotSet("requested_slot", "gad_1")],
    )


async def test_a_plain_request_asks_which_self_check(domain: dict[str, Any]) -> None:
    loaded = state("self_check_starting", phq_1=None)
    loaded["latest_message"]["text"] = "我想做个心理测评"
    _, events = await run(ValidateSelfCheckForm(), Tracker.from_dict(loaded), domain)
    assert events == [SlotSet("requested_slot", "self_check_instrument")]


@pytest.mark.parametrize(
    ("said", "chosen", "first"),
    [
        ("测测心情", "phq_a", "phq_1"),
        ("测测紧张和担心", "gad7", "gad_1"),
        ("2", "gad7", "gad_1"),
        ("焦虑那个", "gad7", "gad_1"),
    ],
)
async def test_the_choice_of_self_check_is_read(
    domain: dict[str, Any], said: str, chosen: str, first: str
) -> None:
    given = reply(
        "self_check_asking",
        said,
        "request_self_check",
        requested_slot="self_check_instrument",
        self_check_instrument=None,
    )
    _, events = await run(ValidateSelfCheckForm(), given, domain)
    assert events == [SlotSet("self_check_instrument", chosen), SlotSet("requested_slot", first)]


async def test_an_unclear_choice_is_asked_again(domain: dict[str, Any]) -> None:
    given = reply(
        "self_check_asking",
        "都行",
        "affirm",
        requested_slot="self_check_instrument",
        self_check_instrument=None,
    )
    messages, events = await run(ValidateSelfCheckForm(), given, domain)
    assert messages == [text(content().self_check.choose_again)]
    assert events == [
        SlotSet("self_check_instrument", None),
        SlotSet("requested_slot", "self_check_instrument"),
    ]


@pytest.mark.parametrize(
    ("said", "intent", "value"),
    [
        ("完全没有", "deny", 0),
        ("有几天", "answer_frequency", 1),
        ("一半以上的日子", "answer_frequency", 2),
        ("几乎每天", "answer_frequency", 3),
        ("３", "answer_frequency", 3),
        ("选1", "answer_frequency", 1),
        ("偶尔吧", "answer_frequency", 1),
        ("没有", "deny", 0),
    ],
)
async def test_a_self_check_answer_is_read(
    domain: dict[str, Any], said: str, intent: str, value: int
) -> None:
    _, events = await run(ValidateSelfCheckForm(), reply("self_check_asking", said, intent), domain)
    assert events == [SlotSet("phq_1", value), SlotSet("requested_slot", "phq_2")]


@pytest.mark.parametrize("said", ["没几天", "不是每天", "5", "有几天，也经常", "嗯"])
async def test_an_unclear_self_check_answer_is_never_guessed(domain: dict[str, Any], said: str) -> None:
    messages, events = await run(ValidateSelfCheckForm(), reply("self_check_asking", said, "affirm"), domain)
    assert messages == [text(frequency_hint("phq_a"))]
    assert events == [SlotSet("phq_1", None), SlotSet("requested_slot", "phq_1")]


async def test_only_the_chosen_instruments_items_are_asked(domain: dict[str, Any]) -> None:
    answered = {f"gad_{i}": 1 for i in range(1, 7)}
    given = reply(
        "self_check_asking",
        "有几天",
        "answer_frequency",
        requested_slot="gad_7",
        self_check_instrument="gad7",
        **answered,
    )
    _, events = await run(ValidateSelfCheckForm(), given, domain)
    assert events == [SlotSet("gad_7", 1), SlotSet("requested_slot", None)]


async def test_the_student_may_stop_the_self_check(domain: dict[str, Any]) -> None:
    _, events = await run(ValidateSelfCheckForm(), reply("self_check_asking", "算了吧", "deny"), domain)
    assert events == [
        SlotSet("phq_1", None),
        SlotSet("requested_slot", None),
        SlotSet("requested_slot", None),
    ]


# ------------------------------------------------------------------------------------------ the ASQ's result

ASQ_CLEARED = cleared("asq_1", "asq_2", "asq_3", "asq_4")


async def test_asq_negative_is_explained_and_recorded(domain: dict[str, Any], recorded: str) -> None:
    messages, events = await run(ActionAsqResult(), tracker("asq_answered"), domain)
    negative = score("asq", ["no"] * 4)
    assert messages == [text(negative.explanation), text(content().asq.after_negative)]
    assert events == ASQ_CLEARED + [SlotSet("screening_next", "listen")]
    assert await audit_entries(recorded) == [
        (
            "screening_completed",
            "c0ffee25",
            screening("asq", {"asq_1": "no", "asq_2": "no", "asq_3": "no", "asq_4": "no"}),
        )
    ]


async def test_asq_non_acute_positive_gives_the_numbers_and_asks_for_a_person(
    domain: dict[str, Any], recorded: str
) -> None:
    answers = {"asq_1": "yes", "asq_2": "no", "asq_3": "no", "asq_4": "no", "asq_5": "no"}
    messages, events = await run(ActionAsqResult(), tracker("asq_answered", **answers), domain)
    assert messages == [text(score("asq", answers).explanation), hotlines()]
    assert events == ASQ_CLEARED + cleared("asq_5") + [SlotSet("screening_next", "offer_counsellor")]
    assert await audit_entries(recorded) == [
        ("screening_completed", "c0ffee25", screening("asq", answers)),
        ("handoff_requested", "c0ffee25", handoff("asq:non_acute_positive", "orange")),
    ]


async def test_asq_acute_positive_is_red(domain: dict[str, Any], recorded: str) -> None:
    answers = {"asq_1": "no", "asq_2": "no", "asq_3": "yes", "asq_4": "no", "asq_5": "refused"}
    messages, events = await run(ActionAsqResult(), tracker("asq_answered", **answers), domain)
    assert messages == [response("utter_crisis_red"), hotlines(), response("utter_counsellor_being_called")]
    assert events == ASQ_CLEARED + cleared("asq_5") + [SlotSet("screening_next", "ask_safe_now")]
    assert await audit_entries(recorded) == [
        ("screening_completed", "c0ffee25", screening("asq", answers)),
        ("handoff_requested", "c0ffee25", handoff("asq:acute_positive", "red")),
    ]


async def test_a_stopped_asq_is_never_read_as_negative(domain: dict[str, Any], recorded: str) -> None:
    given = tracker("asq_answered", asq_1="yes", asq_2=None, asq_3=None, asq_4=None)
    messages, events = await run(ActionAsqResult(), given, domain)
    assert messages == [text(content().asq.stopped), hotlines()]
    assert events == cleared("asq_1") + [SlotSet("screening_next", "offer_counsellor")]
    assert await audit_entries(recorded) == [("handoff_requested", "c0ffee25", {"reason": "asq:stopped"})]


async def test_a_parent_at_the_asq_is_told_what_to_do(domain: dict[str, Any], recorded: str) -> None:
    messages, _ = await run(ActionAsqResult(), tracker("asq_answered", audience="parent"), domain)
    assert messages == [text(content().asq.parent), hotlines()]
    assert await audit_entries(recorded) == [("handoff_requested", "c0ffee25", {"reason": "asq:parent"})]


async def test_the_student_is_answered_even_when_the_store_is_down(
    domain: dict[str, Any], tmp_path: Path
) -> None:
    store.use_database(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'none.db'}")
    try:
        answers = {"asq_1": "yes", "asq_2": "yes", "asq_3": "yes", "asq_4": "no", "asq_5": "yes"}
        messages, _ = await run(ActionAsqResult(), tracker("asq_answered", **answers), domain)
    finally:
        store._sessions = None
    assert messages == [response("utter_crisis_red"), hotlines(), response("utter_counsellor_being_called")]


# ---------------------------------------------------------------------------------- the self-check's result

SELF_CHECK_CLEARED = cleared("self_check_instrument", *PHQ_NONE)


async def test_a_minimal_self_check_is_explained_and_recorded(domain: dict[str, Any], recorded: str) -> None:
    messages, events = await run(ActionSelfCheckResult(), tracker("self_check_answered"), domain)
    assert messages == [text(score("phq_a", PHQ_NONE).explanation)]
    assert events == SELF_CHECK_CLEARED + [SlotSet("screening_next", "listen")]
    assert await audit_entries(recorded) == [
        ("screening_completed", "c0ffee26", screening("phq_a", PHQ_NONE))
    ]


async def test_a_mild_self_check_adds_what_to_do_and_a_check_in(
    domain: dict[str, Any], recorded: str
) -> None:
    answers = {**PHQ_NONE, "phq_1": 2, "phq_3": 2, "phq_5": 2}
    messages, events = await run(ActionSelfCheckResult(), tracker("self_check_answered", **answers), domain)
    assert messages == [
        text(score("phq_a", answers).explanation),
        text(content().self_check.next_steps["phq_a"]["mild"]),
        response("utter_offer_checkin"),
    ]
    assert events == SELF_CHECK_CLEARED + [
        SlotSet("checkin_offered", True),
        SlotSet("screening_next", "listen"),
    ]


async def test_a_severe_gad7_gives_the_numbers_and_asks_for_a_person(
    domain: dict[str, Any], recorded: str
) -> None:
    answers = {f"gad_{i}": 3 for i in range(1, 8)}
    given = tracker(
        "self_check_answered", self_check_instrument="gad7", **{k: None for k in PHQ_NONE}, **answers
    )
    messages, events = await run(ActionSelfCheckResult(), given, domain)
    assert messages == [text(score("gad7", answers).explanation), hotlines()]
    assert events == cleared("self_check_instrument", *answers) + [
        SlotSet("screening_next", "offer_counsellor")
    ]
    assert await audit_entries(recorded) == [
        ("screening_completed", "c0ffee26", screening("gad7", answers)),
        ("handoff_requested", "c0ffee26", handoff("self_check:gad7:severe", "orange")),
    ]


async def test_phq_a_item_9_always_leads_on_to_the_asq(domain: dict[str, Any], recorded: str) -> None:
    answers = {**PHQ_NONE, "phq_9": 1}
    messages, events = await run(ActionSelfCheckResult(), tracker("self_check_answered", **answers), domain)
    assert messages == [text(score("phq_a", answers).explanation)]
    assert events == SELF_CHECK_CLEARED + [SlotSet("screening_next", "asq")]
    assert await audit_entries(recorded) == [("screening_completed", "c0ffee26", screening("phq_a", answers))]


async def test_item_9_with_a_severe_total_also_asks_for_a_person(
    domain: dict[str, Any], recorded: str
) -> None:
    answers = {f"phq_{i}": 3 for i in range(1, 10)}
    _, events = await run(ActionSelfCheckResult(), tracker("self_check_answered", **answers), domain)
    assert events[-1] == SlotSet("screening_next", "asq")
    assert (await audit_entries(recorded))[1] == (
        "handoff_requested",
        "c0ffee26",
        handoff("self_check:phq_a:severe", "orange"),
    )


async def test_a_stopped_self_check_is_not_scored(domain: dict[str, Any], recorded: str) -> None:
    given = tracker("self_check_answered", phq_8=None, phq_9=None)
    messages, events = await run(ActionSelfCheckResult(), given, domain)
    assert messages == [text(content().self_check.stopped)]
    assert events == cleared("self_check_instrument", *list(PHQ_NONE)[:7]) + [
        SlotSet("screening_next", "listen")
    ]
    assert await audit_entries(recorded) == []


async def test_a_parent_is_told_the_self_check_is_the_childs_own(domain: dict[str, Any]) -> None:
    messages, events = await run(
        ActionSelfCheckResult(), tracker("self_check_answered", audience="parent"), domain
    )
    assert messages == [response("utter_self_check_parent")]
    assert events[-1] == SlotSet("screening_next", "offer_counsellor")
