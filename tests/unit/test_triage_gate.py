"""The gateway screens every message before the engine: orange and red go to the crisis path directly,
the assessment is stored with the message, and a red message is recorded even when the engine is down."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from integrations.content import failsafe_text, gateway_texts
from integrations.inbound import InboundMessage
from actions.guidance import all_guidance
from actions.topic_finder import load_settings
from integrations.switchboard import TOPIC_CHOICE, Switchboard
from integrations.triage_gate import route_for, subject_at_risk
from records import messages
from records.models import AuditEntry, InboundStatus, Message
from tests.unit.fakes import FakeEngine
from triage_protocols import protocol_version

Sessions = async_sessionmaker[AsyncSession]


async def _say(
    sessions: Sessions, engine: FakeEngine, text: str, external_id: str = "m1"
) -> tuple[str, object]:
    async with sessions() as session:
        conversation = (await messages.create_conversation(session, "webchat")).id
    outcome = await Switchboard(sessions, engine).receive(
        InboundMessage("webchat", external_id, conversation, text)
    )
    return conversation, outcome


async def _stored(sessions: Sessions, message_id: int) -> Message:
    async with sessions() as session:
        message = await session.get(Message, message_id)
        assert message is not None
        return message


async def test_a_red_message_triggers_the_crisis_path_and_never_reaches_the_nlu(sessions: Sessions) -> None:
    engine = FakeEngine()
    conversation, outcome = await _say(sessions, engine, "药已经准备好了，今晚我就吃下去")
    assert engine.calls == []
    [(sender, intent, entities)] = engine.triggered
    assert (sender, intent, entities["risk_level"], entities["risk_subject"]) == (
        conversation,
        "EXTERNAL_risk_red",
        "red",
        "self",
    )
    assert entities["risk_signals"]
    stored = await _stored(sessions, outcome.message_id)  # type: ignore[attr-defined]
    assert stored.risk_level == "red"
    assert stored.assessment["protocol_version"] == protocol_version()
    assert stored.assessment["rule"]


async def test_a_friend_at_risk_takes_the_path_for_someone_else(sessions: Sessions) -> None:
    engine = FakeEngine()
    await _say(sessions, engine, "我同学跟我说她想自杀")
    assert [intent for _, intent, _ in engine.triggered] == ["EXTERNAL_risk_orange_other"]


async def test_an_idiom_is_not_an_escalation(sessions: Sessions) -> None:
    engine = FakeEngine()
    _, outcome = await _say(sessions, engine, "今天热死了，作业也难死了")
    assert engine.triggered == []
    assert engine.calls[0][2]["risk"]["level"] in ("green", "yellow")
    assert (await _stored(sessions, outcome.message_id)).risk_level in ("green", "yellow")  # type: ignore[attr-defined]


async def test_a_guidance_topics_button_is_a_choice_not_words_to_screen(sessions: Sessions) -> None:
    """A parent pressing 我想了解：孩子说想死 chose the topic the line offered for words already screened:
    the guidance is shown, no case opens; the same words typed on their own still take the crisis path."""
    choice = load_settings().choice_prefix + all_guidance()["child_death_talk"].title
    engine = FakeEngine()
    _, outcome = await _say(sessions, engine, choice)
    assert engine.triggered == [] and engine.calls
    stored = await _stored(sessions, outcome.message_id)  # type: ignore[attr-defined]
    assert (stored.risk_level, stored.assessment["rule"]) == ("green", TOPIC_CHOICE)
    await _say(sessions, engine, all_guidance()["child_death_talk"].title, external_id="m2")
    assert engine.triggered


async def test_a_red_message_is_recorded_and_answered_even_when_the_engine_is_down(
    sessions: Sessions,
) -> None:
    engine = FakeEngine(down=True)
    conversation, outcome = await _say(sessions, engine, "我现在站在楼顶，准备跳下去了")
    assert outcome.status == InboundStatus.RETRY_PENDING  # type: ignore[attr-defined]
    # nobody is on shift in this store: the numbers to call now come right after the fail-safe script
    assert [r.text for r in outcome.replies] == [  # type: ignore[attr-defined]
        failsafe_text(),
        gateway_texts().no_counsellor_on_shift,
    ]
    async with sessions() as session:
        entries = (await session.scalars(select(AuditEntry).where(AuditEntry.subject == conversation))).all()
    assert [(e.action, e.detail["level"]) for e in entries] == [
        ("risk_screened", "red"),
        ("too_few_to_page", "red"),  # nobody at all to page: said in the record, not only in a log
        ("case_opened", "red"),
    ]
    engine.down = False  # the retry takes the crisis path again, from the stored assessment
    switchboard = Switchboard(sessions, engine)
    assert await switchboard.retry_pending() == 1
    assert [intent for _, intent, _ in engine.triggered][-1] == "EXTERNAL_risk_red"


async def test_an_answer_to_the_asq_is_an_answer_not_a_new_escalation(sessions: Sessions) -> None:
    engine = FakeEngine(loop="asq_form")
    await _say(sessions, engine, "是的，我最近想过自杀")
    assert engine.triggered == []
    assert engine.calls[0][2]["risk"]["level"] == "orange"  # still screened, stored and passed on


async def test_red_interrupts_any_form(sessions: Sessions) -> None:
    engine = FakeEngine(loop="asq_form")
    await _say(sessions, engine, "药已经准备好了，今晚我就吃下去")
    assert [intent for _, intent, _ in engine.triggered] == ["EXTERNAL_risk_red"]


async def test_orange_interrupts_a_self_check(sessions: Sessions) -> None:
    engine = FakeEngine(loop="self_check_form")
    await _say(sessions, engine, "是的，我最近想过自杀")
    assert [intent for _, intent, _ in engine.triggered] == ["EXTERNAL_risk_orange"]


@pytest.mark.parametrize(
    ("signals", "subject"),
    [
        ([{"id": "a", "subject": "other", "status": "present"}], "other"),
        ([{"id": "a", "subject": "other", "status": "present"}, {"id": "b", "subject": "self"}], "self"),
        ([], "self"),
    ],
)
def test_who_is_at_risk(signals: list[dict], subject: str) -> None:
    assert subject_at_risk({"signals": signals}) == subject


def test_green_and_yellow_go_as_text() -> None:
    assert route_for({"level": "green"}).kind == "text"
    assert route_for({"level": "yellow"}).kind == "text"
    assert route_for({}).kind == "text"


# ---------------------------------------------------------------- ask, don't guess


def unsure_screen(level: str = "green", unsure: str | None = "grey_band", score: float = 0.5):
    """A screen that says what the test needs (the switchboard takes any screen)."""

    def screen(text: str, audience: str) -> dict:
        return {
            "level": level,
            "rule": "no_signal",
            "signals": [],
            "protocol_version": protocol_version(),
            "learned": {"model": "test", "score": score, "red_score": 0.1, "level": "green"},
            "learned_status": "ok",
            "unsure": unsure,
        }

    return screen


async def _say_with(sessions: Sessions, engine: FakeEngine, screen) -> object:  # type: ignore[no-untyped-def]
    async with sessions() as session:
        conversation = (await messages.create_conversation(session, "webchat")).id
    return await Switchboard(sessions, engine, screen=screen).receive(
        InboundMessage("webchat", "m1", conversation, "也许我消失一下会比较好")
    )


async def test_an_unsure_message_is_answered_and_then_the_question_is_asked(sessions: Sessions) -> None:
    engine = FakeEngine()
    outcome = await _say_with(sessions, engine, unsure_screen())
    [(_, text, metadata)] = engine.calls
    assert text == "也许我消失一下会比较好"
    # the actions weigh the NLU against the screen: the score and the mark travel, never the words
    assert (metadata["risk"]["score"], metadata["risk"]["unsure"]) == (0.5, "grey_band")
    [(_, intent, entities)] = engine.triggered
    assert (intent, entities) == ("EXTERNAL_risk_unsure", {"risk_level": "green"})
    assert len(outcome.replies) == 2  # type: ignore[attr-defined]  # the answer, then the question


async def test_a_sure_message_is_only_answered(sessions: Sessions) -> None:
    engine = FakeEngine()
    await _say_with(sessions, engine, unsure_screen(unsure=None))
    assert (len(engine.calls), engine.triggered) == (1, [])


async def test_nobody_is_asked_in_the_middle_of_a_form(sessions: Sessions) -> None:
    engine = FakeEngine(loop="asq_form")
    await _say_with(sessions, engine, unsure_screen())
    assert (len(engine.calls), engine.triggered) == (1, [])


async def test_an_unsure_mark_never_replaces_the_crisis_path(sessions: Sessions) -> None:
    engine = FakeEngine()
    await _say_with(sessions, engine, unsure_screen(level="orange"))
    assert engine.calls == []
    assert [intent for _, intent, _ in engine.triggered] == ["EXTERNAL_risk_orange"]


async def test_an_engine_that_fails_at_the_question_costs_the_question_not_the_answer(sessions: Sessions) -> None:
    class FailsAtTheQuestion(FakeEngine):
        async def trigger(self, sender_id, intent, entities):  # type: ignore[no-untyped-def]
            self.down = True
            return await super().trigger(sender_id, intent, entities)

    engine = FailsAtTheQuestion()
    outcome = await _say_with(sessions, engine, unsure_screen())
    assert [reply.text for reply in outcome.replies] == ["你好，我在。"]  # type: ignore[attr-defined]
    assert outcome.status == "answered"  # type: ignore[attr-defined]
