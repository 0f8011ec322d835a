"""From a screened message to a page: the switchboard opens the case with the message, wakes the page
dispatcher, tells a red writer to call now when nobody is on shift, and never opens a case twice."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from sanic import Sanic
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from integrations.content import failsafe_text, gateway_texts
from integrations.engine_client import BotReply
from integrations.gateway.app import create_app
from integrations.gateway.workers import watchdog_round
from integrations.inbound import InboundMessage
from integrations.switchboard import Outcome, Switchboard
from records import escalation as escalation_module
from records import messages
from records.models import AuditEntry, Case, FollowUp, InboundStatus, Message, OutboxItem, utcnow
from tests.records.conftest import Staff, add_counsellor, around, seed_staff
from tests.unit.apps import gateway_settings
from tests.unit.fakes import FakeEngine

Sessions = async_sessionmaker[AsyncSession]

Sanic.test_mode = True

RED = "药已经准备好了，今晚我就吃下去"
ORANGE = "我有时候会想，要是我消失了就好了"
ASQ_ANSWER = "是的，我最近想过自杀"
YELLOW = "最近考试压力好大"


@dataclass
class Wakes:
    """Stands in for the dispatcher's wake (and for a whole dispatcher in watchdog_round)."""

    calls: int = 0

    def __call__(self) -> None:
        self.calls += 1

    def wake(self) -> None:
        self.calls += 1


@dataclass
class LookingEngine(FakeEngine):
    """A FakeEngine that, when the crisis path is triggered, first looks at what the store holds."""

    seen: list[tuple[int, int]] = field(default_factory=list)  # (messages, cases) at trigger time
    sessions: Any = None

    async def trigger(self, sender_id: str, intent: str, entities: dict[str, Any]) -> list[BotReply]:
        self.seen.append((await _count(self.sessions, Message), await _count(self.sessions, Case)))
        return await super().trigger(sender_id, intent, entities)


@pytest.fixture
def now() -> datetime:
    return utcnow().replace(microsecond=0)


async def _count(sessions: Sessions, model: type, *conditions: object) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*conditions)) or 0)


async def _conversation(sessions: Sessions) -> str:
    async with sessions() as session:
        return (await messages.create_conversation(session, "webchat", "student")).id


async def _say(switchboard: Switchboard, conversation: str, text: str, external_id: str = "m1") -> Outcome:
    return await switchboard.receive(InboundMessage("webchat", external_id, conversation, text, "student"))


async def _cases(sessions: Sessions) -> list[Case]:
    async with sessions() as session:
        return list(await session.scalars(select(Case).order_by(Case.id)))


async def _pages(sessions: Sessions) -> list[OutboxItem]:
    async with sessions() as session:
        return list(await session.scalars(select(OutboxItem).order_by(OutboxItem.id)))


# ---------------------------------------------------------------- opening cases


async def test_a_red_message_opens_a_red_case_with_the_message_even_when_the_engine_is_down(
    sessions: Sessions, now: datetime
) -> None:
    staff = await seed_staff(sessions, now)
    conversation = await _conversation(sessions)
    wakes = Wakes()
    outcome = await _say(Switchboard(sessions, FakeEngine(down=True), on_escalated=wakes), conversation, RED)

    assert outcome.status == InboundStatus.RETRY_PENDING
    [case] = await _cases(sessions)
    assert outcome.case_id == case.id
    assert (case.conversation_id, case.level, case.status) == (conversation, "red", "open")
    assert wakes.calls == 1
    paged = {p.counsellor_id for p in await _pages(sessions) if p.case_id == case.id}
    assert staff.supervisor in paged and paged & set(staff.volunteers)
    async with sessions() as session:
        [message] = (await session.scalars(select(Message).where(Message.direction == "in"))).all()
    assert message.risk_level == "red" and message.status == InboundStatus.RETRY_PENDING


async def test_the_case_is_stored_before_the_engine_is_asked(sessions: Sessions, now: datetime) -> None:
    await seed_staff(sessions, now)
    conversation = await _conversation(sessions)
    engine = LookingEngine(sessions=sessions)
    outcome = await _say(Switchboard(sessions, engine), conversation, RED)
    assert engine.seen == [(1, 1)]
    assert outcome.case_id is not None


async def test_no_case_is_kept_without_its_message_nor_a_message_without_its_case(
    sessions: Sessions, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed_staff(sessions, now)
    conversation = await _conversation(sessions)

    async def broken(*_: object, **__: object) -> None:
        raise RuntimeError("test: the case store failed half way")

    monkeypatch.setattr(escalation_module, "_family_and_check_in", broken)  # after the case and its pages
    engine = FakeEngine()
    with pytest.raises(RuntimeError):
        await _say(Switchboard(sessions, engine), conversation, RED)
    assert await _count(sessions, Message) == 0
    assert await _count(sessions, Case) == 0
    assert await _count(sessions, OutboxItem) == 0
    assert engine.triggered == [] and engine.calls == []


async def test_a_redelivered_red_message_opens_no_second_case_and_writes_no_new_page(
    sessions: Sessions, now: datetime
) -> None:
    await seed_staff(sessions, now)
    conversation = await _conversation(sessions)
    wakes = Wakes()
    engine = FakeEngine()
    switchboard = Switchboard(sessions, engine, on_escalated=wakes)
    first = await _say(switchboard, conversation, RED, external_id="same")
    pages_after_first = [p.id for p in await _pages(sessions)]
    audit_after_first = await _count(sessions, AuditEntry)

    second = await _say(switchboard, conversation, RED, external_id="same")
    assert second.duplicate and not first.duplicate
    assert len(await _cases(sessions)) == 1
    assert [p.id for p in await _pages(sessions)] == pages_after_first
    assert pages_after_first
    assert await _count(sessions, AuditEntry) == audit_after_first
    assert wakes.calls == 1
    assert len(engine.triggered) == 1


async def test_an_asq_answer_raises_nothing_when_the_case_is_already_orange(
    sessions: Sessions, now: datetime
) -> None:
    await seed_staff(sessions, now)
    conversation = await _conversation(sessions)
    wakes = Wakes()
    engine = FakeEngine()
    switchboard = Switchboard(sessions, engine, on_escalated=wakes)
    opened = await _say(switchboard, conversation, ORANGE, external_id="m1")
    [case] = await _cases(sessions)
    assert case.level == "orange" and opened.case_id == case.id and wakes.calls == 1
    pages_before = [p.id for p in await _pages(sessions)]
    case_entries = AuditEntry.action.in_(("case_opened", "case_raised", "case_staffed"))
    entries_before = await _count(sessions, AuditEntry, case_entries)

    engine.loop = "asq_form"
    answer = await _say(switchboard, conversation, ASQ_ANSWER, external_id="m2")
    assert engine.calls[-1][2]["risk"]["level"] == "orange"  # it did screen orange
    assert answer.case_id == case.id
    [after] = await _cases(sessions)
    assert (after.id, after.level, after.raised_at) == (case.id, "orange", None)
    assert [p.id for p in await _pages(sessions)] == pages_before
    assert await _count(sessions, AuditEntry, case_entries) == entries_before
    assert wakes.calls == 1


async def test_a_yellow_message_opens_no_case(sessions: Sessions, now: datetime) -> None:
    await seed_staff(sessions, now)
    conversation = await _conversation(sessions)
    wakes = Wakes()
    engine = FakeEngine()
    outcome = await _say(Switchboard(sessions, engine, on_escalated=wakes), conversation, YELLOW)
    assert engine.calls[0][2]["risk"]["level"] == "yellow"
    assert outcome.case_id is None
    assert await _cases(sessions) == []
    assert await _pages(sessions) == []
    assert wakes.calls == 0


# ---------------------------------------------------------------- nobody on shift


async def test_a_red_reply_has_no_call_now_notice_when_counsellors_are_on_shift(
    sessions: Sessions, now: datetime
) -> None:
    await seed_staff(sessions, now)
    conversation = await _conversation(sessions)
    outcome = await _say(Switchboard(sessions, FakeEngine()), conversation, RED)
    assert outcome.case_id is not None
    texts = [r.text for r in outcome.replies]
    assert texts == ["你好，我在。"]
    assert gateway_texts().no_counsellor_on_shift not in texts


async def _supervisor_only(sessions: Sessions, now: datetime) -> int:
    """No one on shift: one supervisor off shift, and a volunteer whose shift ended an hour ago."""
    await add_counsellor(sessions, "vol_gone", shift=(now - timedelta(hours=9), now - timedelta(hours=1)))
    return await add_counsellor(sessions, "sup_home", role="supervisor")


@pytest.mark.parametrize("path", ["engine_up", "failsafe", "actions_down"])
async def test_a_red_message_with_nobody_on_shift_ends_with_the_numbers_to_call_now(
    sessions: Sessions, now: datetime, path: str
) -> None:
    supervisor = await _supervisor_only(sessions, now)
    conversation = await _conversation(sessions)
    wakes = Wakes()
    switchboard = Switchboard(
        sessions,
        FakeEngine(down=path == "failsafe"),
        actions_up=lambda: path != "actions_down",
        on_escalated=wakes,
    )
    outcome = await _say(switchboard, conversation, RED)
    texts = [r.text for r in outcome.replies]
    before = {
        "engine_up": ["你好，我在。"],
        "failsafe": [failsafe_text()],
        "actions_down": ["你好，我在。", failsafe_text()],
    }[path]
    assert texts == [*before, gateway_texts().no_counsellor_on_shift]
    async with sessions() as session:
        stored = await messages.replies_to(session, outcome.message_id)
    assert [m.text for m in stored] == texts  # kept as it was said

    [case] = await _cases(sessions)
    assert outcome.case_id == case.id and case.level == "red"
    paged = await _pages(sessions)
    # red pages two people: the supervisor first, then the only other active person, off shift
    assert (paged[0].case_id, paged[0].counsellor_id) == (case.id, supervisor)
    assert len({p.counsellor_id for p in paged}) == 2 and {p.case_id for p in paged} == {case.id}
    assert {p.payload["on_call_available"] for p in paged} == {False}
    assert wakes.calls == 1


async def test_an_orange_message_with_nobody_on_shift_gets_no_red_notice(
    sessions: Sessions, now: datetime
) -> None:
    await _supervisor_only(sessions, now)
    conversation = await _conversation(sessions)
    outcome = await _say(Switchboard(sessions, FakeEngine()), conversation, ORANGE)
    assert outcome.case_id is not None
    assert gateway_texts().no_counsellor_on_shift not in [r.text for r in outcome.replies]


# ---------------------------------------------------------------- the watchdog's round


async def test_the_watchdog_round_wakes_the_dispatcher_only_when_it_wrote_pages(
    sessions: Sessions, now: datetime
) -> None:
    staff: Staff = await seed_staff(sessions, now)
    conversation = await _conversation(sessions)
    outcome = await _say(Switchboard(sessions, FakeEngine()), conversation, RED)
    dispatcher = Wakes()
    round_ = watchdog_round(sessions, dispatcher)  # type: ignore[arg-type]

    done = await round_()  # the case was just opened: nothing is due
    assert (done.repaged_cases, done.overdue_follow_ups) == (0, 0)
    assert dispatcher.calls == 0

    pages_before = len(await _pages(sessions))
    async with sessions() as session:  # the claim deadline passes
        await session.execute(
            update(Case).where(Case.id == outcome.case_id).values(next_escalation_at=utcnow() - timedelta(1))
        )
        await session.commit()
    done = await round_()
    assert done.repaged_cases == 1
    assert len(await _pages(sessions)) > pages_before
    assert dispatcher.calls == 1

    assert (await round_()).repaged_cases == 0  # the next step is a claim deadline away
    assert dispatcher.calls == 1

    pages_before = len(await _pages(sessions))
    async with sessions() as session:  # the first check-in is overdue
        await session.execute(
            update(FollowUp).where(FollowUp.case_id == outcome.case_id).values(due_at=utcnow() - timedelta(1))
        )
        await session.commit()
    done = await round_()
    assert (done.repaged_cases, done.overdue_follow_ups) == (0, 1)
    assert len(await _pages(sessions)) > pages_before
    assert dispatcher.calls == 2
    overdue = [p.counsellor_id for p in await _pages(sessions) if p.payload["reason"] == "follow_up_overdue"]
    assert overdue and set(overdue) <= set(staff.volunteers)  # the case's staff hear of it


# ---------------------------------------------------------------- through the gateway


@dataclass
class ConsoleWatchingEngine(FakeEngine):
    """Answers the crisis path only once the console has a page, or after `patience` seconds.

    sanic-testing's ASGI client starts and stops the server around every request, which cancels the
    page dispatcher when the request ends; so the console is polled while the request is still running,
    as a counsellor's console would be, while Rasa is answering.
    """

    app: Any = None
    patience: float = 20.0

    async def trigger(self, sender_id: str, intent: str, entities: dict[str, Any]) -> list[BotReply]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        # the dispatcher's delivery from the outbox (outbox_id set), not the switchboard's announcement
        while (
            not any(p.outbox_id for p in self.app.ctx.alerts.recent) and loop.time() - start < self.patience
        ):
            await asyncio.sleep(0.01)
        return await super().trigger(sender_id, intent, entities)


@pytest.fixture
def engine() -> ConsoleWatchingEngine:
    return ConsoleWatchingEngine()


@pytest.fixture
def app(database_url: str, engine: ConsoleWatchingEngine) -> Iterator[Sanic]:
    settings = gateway_settings(
        database_url,
        engine_timeout_seconds=10.0,
        watchdog_interval_seconds=3600,
        dispatch_interval_seconds=3600,  # only a wake sends it within the test's patience
    )
    engine.app = create_app(
        settings, engine=engine, actions_up=lambda: True, name=f"paging_test_{id(engine)}"
    )
    yield engine.app


async def test_a_red_web_chat_message_reaches_the_console(
    app: Sanic, engine: ConsoleWatchingEngine, sessions: Sessions, now: datetime
) -> None:
    counsellor = await add_counsellor(sessions, "vol_web", shift=around(now))
    _, response = await app.asgi_client.post("/api/sessions", json={})
    token = response.json["session"]
    _, response = await app.asgi_client.post(
        "/api/messages", json={"session": token, "message_id": "a", "text": RED}
    )
    assert response.status == 200
    assert [intent for _, intent, _ in engine.triggered] == ["EXTERNAL_risk_red"]
    [case] = await _cases(sessions)
    announced = [p for p in app.ctx.alerts.recent if not p.outbox_id]
    dispatched = [p for p in app.ctx.alerts.recent if p.outbox_id]
    # told at once, then delivered durably (woken, not after the dispatcher's hour): the same page
    for pages in (announced, dispatched):
        assert [(p.case_id, p.counsellor_id, p.level, p.reason) for p in pages] == [
            (case.id, counsellor, "red", "case_opened")
        ]
