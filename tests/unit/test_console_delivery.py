"""A counsellor sees at once when their words did not reach the child.

The delivery dispatcher tells of a message that failed for good (once, with its ids; a failure it will
retry is not told), and a channel with no sender is such a failure, never "sent". The case read gives
each pushed message's state; the live feed tells the holder (and the case's staff and the supervisors)
of a final failure, and tells a counsellor taken off a case by a reassignment. The page's words for all
this come from data/content/console.yml."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sanic import Blueprint
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from integrations.channels.base import ChannelPlugin, PermanentDeliveryError
from integrations.channels.delivery import DeliveryDispatcher
from integrations.console.content import console_texts
from integrations.console.feed import event_for
from integrations.console.page import STATIC_DIR
from integrations.console.sessions import COOKIE
from integrations.gateway.app import create_app
from integrations.inbound import InboundMessage
from integrations.paging.senders import ConsoleAlerts, ReassignedAway
from records import contacts, escalation, handoff
from records.db import with_session
from records.deliveries import FailedDelivery
from records.escalation import Escalation
from records.models import (
    Assignment,
    AuditEntry,
    Counsellor,
    CounsellorRole,
    OutboxItem,
    OutboxStatus,
    utcnow,
)
from tests.records.conftest import seed_staff
from tests.unit.apps import gateway_settings
from tests.unit.console_client import PASSWORD, RED, Console, Sessions, console_app, staff_line
from tests.unit.fakes import FakeEngine
from tests.unit.test_console_page import api_calls

ADDRESS = "+8613800138000"  # made up
WORDS = "我在，你先把药放远一点"
SCRIPT = (STATIC_DIR / "console.js").read_text(encoding="utf-8")


class Refused(PermanentDeliveryError):
    pass


@dataclass
class Sender:
    """A stand-in channel: sends fail `failures` times, or are all refused for good."""

    channel: str = "testchan"
    sent: list[str] = field(default_factory=list)
    failures: int = 0
    refuse: bool = False

    async def send_text(self, address: str, text: str) -> None:
        if self.refuse:
            raise Refused("test: the user cannot be reached on this channel")
        if self.failures:
            self.failures -= 1
            raise ConnectionError("test: channel down")
        self.sent.append(text)


async def _make_due(sessions: Sessions) -> None:
    """Time passes: every back-off is over."""
    async with sessions() as session:
        await session.execute(update(OutboxItem).values(available_at=utcnow() - timedelta(seconds=1)))
        await session.commit()


async def _held_case(sessions: Sessions, channel: str) -> tuple[str, int, int, set[int]]:
    """A red case on `channel`'s conversation, held by an on-shift volunteer who is not on its staff:
    (conversation, case, holder, staff)."""
    now = utcnow().replace(microsecond=0)
    staff = await seed_staff(sessions, now)
    async with sessions() as session:
        conversation = (await contacts.conversation_for(session, channel, ADDRESS)).id
        opened = await escalation.escalate(
            session, Escalation(conversation_id=conversation, level="red", origin="screen", reason="test:red")
        )
        await session.commit()
    assert opened.case_id is not None
    async with sessions() as session:
        on_case = set(
            await session.scalars(
                select(Assignment.counsellor_id).where(Assignment.case_id == opened.case_id)
            )
        )
    holder = next(v for v in staff.volunteers if v not in on_case)
    async with sessions() as session:
        await handoff.take_over(session, opened.case_id, holder)
    return conversation, opened.case_id, holder, on_case


async def _says(sessions: Sessions, conversation: str, holder: int, text: str = WORDS) -> int:
    async with sessions() as session:
        return (await handoff.counsellor_says(session, conversation, holder, text)).id


async def _items(sessions: Sessions) -> list[OutboxItem]:
    async with sessions() as session:
        query = select(OutboxItem).where(OutboxItem.kind == "deliver").order_by(OutboxItem.id)
        return list(await session.scalars(query))


# ---- the dispatcher -----------------------------------------------------------------------------------


async def test_a_final_failure_is_told_once_with_its_ids_and_a_retried_one_is_not(sessions: Sessions) -> None:
    conversation, case_id, holder, on_case = await _held_case(sessions, "testchan")
    message_id = await _says(sessions, conversation, holder)
    told: list[FailedDelivery] = []
    sender = Sender(failures=5)
    dispatcher = DeliveryDispatcher(sessions, {"testchan": sender}, max_attempts=2, on_failed=told.append)

    assert await dispatcher.run_once() == 1
    assert told == []  # failed once: it will be retried
    [item] = await _items(sessions)
    assert (item.status, item.attempts) == (OutboxStatus.PENDING, 1)

    await _make_due(sessions)
    assert await dispatcher.run_once() == 1
    assert told == [FailedDelivery(conversation, message_id, case_id, frozenset(on_case | {holder}))]
    await _make_due(sessions)
    assert await dispatcher.run_once() == 0  # failed for good: nothing is sent, or told, again
    assert len(told) == 1 and sender.sent == []


async def test_a_message_that_goes_out_is_never_told(sessions: Sessions) -> None:
    conversation, _, holder, _ = await _held_case(sessions, "testchan")
    await _says(sessions, conversation, holder)
    told: list[FailedDelivery] = []
    sender = Sender(failures=1)
    dispatcher = DeliveryDispatcher(sessions, {"testchan": sender}, max_attempts=2, on_failed=told.append)
    await dispatcher.run_once()
    await _make_due(sessions)
    await dispatcher.run_once()
    assert sender.sent == [WORDS] and told == []


async def test_a_refusal_is_told_at_once(sessions: Sessions) -> None:
    conversation, case_id, holder, _ = await _held_case(sessions, "testchan")
    message_id = await _says(sessions, conversation, holder)
    told: list[FailedDelivery] = []
    dispatcher = DeliveryDispatcher(sessions, {"testchan": Sender(refuse=True)}, on_failed=told.append)
    await dispatcher.run_once()
    assert [(t.message_id, t.case_id) for t in told] == [(message_id, case_id)]


async def test_a_channel_with_no_sender_fails_at_once_and_is_never_sent(sessions: Sessions) -> None:
    conversation, case_id, holder, _ = await _held_case(sessions, "sms")  # no SMS sender configured
    message_id = await _says(sessions, conversation, holder)
    told: list[FailedDelivery] = []
    dispatcher = DeliveryDispatcher(sessions, {"testchan": Sender()}, on_failed=told.append)
    assert await dispatcher.run_once() == 1
    [item] = await _items(sessions)
    assert (item.status, item.attempts, item.last_error, item.delivered_via, item.sent_at) == (
        OutboxStatus.FAILED,
        1,
        "sms:unconfigured",
        [],
        None,
    )
    assert [(t.message_id, t.case_id) for t in told] == [(message_id, case_id)]
    async with sessions() as session:
        [audited] = await session.scalars(select(AuditEntry).where(AuditEntry.action == "delivery_failed"))
    assert audited.subject == conversation and audited.detail["error"] == "sms:unconfigured"


async def test_a_failing_callback_does_not_undo_the_round(sessions: Sessions) -> None:
    conversation, _, holder, _ = await _held_case(sessions, "sms")
    await _says(sessions, conversation, holder)

    def broken(_: FailedDelivery) -> None:
        raise RuntimeError("test: the console is gone")

    assert await DeliveryDispatcher(sessions, {}, on_failed=broken).run_once() == 1
    [item] = await _items(sessions)
    assert item.status == OutboxStatus.FAILED


# ---- the case read --------------------------------------------------------------------------------------


@pytest.fixture
def sender() -> Sender:
    return Sender()


@pytest.fixture
def console(database_url: str, sessions: Sessions, sender: Sender) -> Console:
    plugin = ChannelPlugin("testchan", Blueprint(f"testchan_{uuid.uuid4().hex[:6]}"), sender=sender)
    app = create_app(
        gateway_settings(database_url, page_max_attempts=3),
        engine=(engine := FakeEngine()),
        actions_up=lambda: True,
        channels=[plugin],
        background=False,  # the test runs the delivery rounds
        name=f"delivery_{uuid.uuid4().hex[:8]}",
    )
    return Console(app, engine, sessions)


async def _channel_case(console: Console) -> tuple[int, dict[str, str]]:
    """A red message on the test channel; the case's lead takes it over. (case, the lead's headers)"""
    await console.staff()
    await console.sign_in("s1")  # the app's listeners run with the first request
    async with console.sessions() as session:
        conversation = (await contacts.conversation_for(session, "testchan", ADDRESS)).id
    outcome = await console.app.ctx.switchboard.receive(
        InboundMessage("testchan", uuid.uuid4().hex, conversation, RED)
    )
    assert outcome.case_id is not None
    lead, _ = await console.lead_and_outsider(outcome.case_id)
    who = await console.sign_in(lead)
    assert (await console.post(f"/console/api/cases/{outcome.case_id}/claim", who)).status == 200
    return outcome.case_id, who


async def _write(console: Console, case_id: int, who: dict[str, str], text: str) -> int:
    sent = await console.post(f"/console/api/cases/{case_id}/messages", who, {"text": text})
    assert sent.status == 201, sent.json
    return int(sent.json["id"])


async def _states(console: Console, case_id: int, who: dict[str, str]) -> dict[int, Any]:
    return {m["id"]: m["delivery"] for m in (await console.read(case_id, who))["messages"]}


async def test_the_case_read_gives_each_pushed_messages_delivery_state(
    console: Console, sender: Sender
) -> None:
    case_id, who = await _channel_case(console)
    first = await _write(console, case_id, who, WORDS)
    states = await _states(console, case_id, who)
    assert states[first] == {"state": "pending", "attempts": 0, "error": None}
    assert {s for i, s in states.items() if i != first} == {
        None
    }  # the child's words, the replies: not pushed

    sender.failures = 1
    await console.app.ctx.deliveries.run_once()
    assert (await _states(console, case_id, who))[first] == {"state": "pending", "attempts": 1, "error": None}
    await _make_due(console.sessions)
    await console.app.ctx.deliveries.run_once()
    assert (await _states(console, case_id, who))[first] == {"state": "sent", "attempts": 2, "error": None}

    sender.refuse = True
    second = await _write(console, case_id, who, "你现在安全吗？")
    alerts = console.app.ctx.alerts  # the in-process app builds its clients anew for each request
    await console.app.ctx.deliveries.run_once()
    assert (await _states(console, case_id, who))[second] == {
        "state": "failed",
        "attempts": 1,
        "error": "testchan:Refused",
    }
    # the console's alerts hub heard of it at once
    [failed] = alerts.failed
    assert (failed.message_id, failed.case_id) == (second, case_id)


async def test_a_web_chat_history_has_no_delivery_states(database_url: str, sessions: Sessions) -> None:
    console = Console(console_app(database_url, "delivery_webchat"), FakeEngine(), sessions)
    _, case_id, lead, _ = await console.start()
    who = await console.sign_in(lead)
    await console.post(f"/console/api/cases/{case_id}/claim", who)
    await _write(console, case_id, who, WORDS)
    assert set((await _states(console, case_id, who)).values()) == {None}


async def test_the_pages_words_come_from_the_content_file(console: Console) -> None:
    await console.staff()
    assert (await console.get("/console/api/texts")).status == 401
    response = await console.get("/console/api/texts", await console.sign_in("v1"))
    assert response.status == 200
    texts = console_texts()
    assert response.json == {
        "delivery": texts.delivery.model_dump(),
        "reassigned": texts.reassigned.model_dump(),
        "queue": texts.queue.model_dump(),
    }
    assert "{attempts}" in texts.delivery.retrying and "{who}" in texts.reassigned.away
    # none of them is written in the script, which asks for them
    for words in [
        *texts.delivery.model_dump().values(),
        *texts.reassigned.model_dump().values(),
        *texts.queue.model_dump().values(),
    ]:
        assert words.split("{")[0] not in SCRIPT
    assert ("GET", "/console/api/texts") in api_calls(SCRIPT)
    for kind in ("delivery_failed", "case_reassigned_away"):
        assert f'"{kind}"' in SCRIPT


# ---- the live feed ----------------------------------------------------------------------------------


def _counsellor(id_: int, role: CounsellorRole = CounsellorRole.VOLUNTEER) -> Counsellor:
    return Counsellor(id=id_, handle=f"c{id_}", display_name=f"c{id_}", role=role)


def test_a_failure_is_told_to_those_who_follow_the_conversation_and_to_supervisors() -> None:
    failure = FailedDelivery("conv", 55, 7, frozenset({1, 2}))
    told = {"kind": "delivery_failed", "message_id": 55, "case_id": 7}  # no conversation id
    assert event_for(_counsellor(1), failure) == told
    assert event_for(_counsellor(2), failure) == told
    assert event_for(_counsellor(3), failure) is None
    assert event_for(_counsellor(4, CounsellorRole.SUPERVISOR), failure) == told
    assert event_for(_counsellor(5, CounsellorRole.ADMIN), failure) == told


def test_only_the_counsellor_who_left_hears_of_a_reassignment() -> None:
    change = ReassignedAway(case_id=7, counsellor_id=1, to_counsellor_id=2)
    assert event_for(_counsellor(1), change) == {
        "kind": "case_reassigned_away",
        "case_id": 7,
        "counsellor_id": 2,
    }
    assert event_for(_counsellor(2), change) is None
    assert event_for(_counsellor(3, CounsellorRole.SUPERVISOR), change) is None


async def test_the_hub_publishes_failures_and_reassignments() -> None:
    alerts = ConsoleAlerts()
    heard = alerts.listen()
    failure = FailedDelivery("conv", 55, 7, frozenset({1}))
    change = ReassignedAway(7, 1, 2)
    alerts.delivery_failed(failure)
    alerts.reassigned_away(change)
    assert [heard.get_nowait(), heard.get_nowait()] == [failure, change]


def _sign_in(app: Any, handle: str) -> tuple[str, str]:
    _, response = app.test_client.post("/console/api/login", json={"handle": handle, "password": PASSWORD})
    assert response.status == 200, response.json
    return f"{COOKIE}={response.cookies[COOKIE]}", response.json["csrf"]


async def _until(ws: Any, kind: str) -> dict[str, Any]:
    """The first event of `kind` (pages of the case's opening may come first)."""
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), timeout=5))
        if event.get("kind") == kind:
            return event


def _red_sms_case(database_url: str, ids: dict[str, int]) -> tuple[str, int, dict[str, int]]:
    """The staffed line and a red case on an SMS conversation: (conversation, case, role → counsellor)."""

    async def prepare(session: AsyncSession) -> tuple[str, int, dict[str, int]]:
        await staff_line(session, ids)
        conversation = (await contacts.conversation_for(session, "sms", ADDRESS)).id
        opened = await escalation.escalate(
            session, Escalation(conversation_id=conversation, level="red", origin="screen", reason="test:red")
        )
        await session.commit()
        assert opened.case_id is not None
        staff = await session.execute(
            select(Assignment.role, Assignment.counsellor_id).where(Assignment.case_id == opened.case_id)
        )
        return conversation, opened.case_id, dict(staff.tuples().all())

    return asyncio.run(with_session(database_url, prepare))


def test_a_signed_in_holder_hears_at_once_that_their_message_did_not_arrive(database_url: str) -> None:
    ids: dict[str, int] = {}
    conversation, case_id, staff = _red_sms_case(database_url, ids)
    holder = next(h for h, i in ids.items() if h.startswith("v") and i not in staff.values())  # not on staff
    app = console_app(database_url, "delivery_feed", dispatch_interval_seconds=30)  # no SMS sender
    cookie, _ = _sign_in(app, holder)
    found: dict[str, Any] = {}

    async def holder_listens(ws: Any) -> None:
        async with app.ctx.sessions() as session:
            await handoff.take_over(session, case_id, ids[holder])
        async with app.ctx.sessions() as session:
            found["message_id"] = (
                await handoff.counsellor_says(session, conversation, ids[holder], WORDS)
            ).id
        await app.ctx.deliveries.run_once()
        found["heard"] = await _until(ws, "delivery_failed")

    app.test_client.websocket("/console/ws", mimic=holder_listens, extra_headers={"cookie": cookie})
    assert found["heard"] == {
        "kind": "delivery_failed",
        "message_id": found["message_id"],
        "case_id": case_id,
    }


def test_a_counsellor_taken_off_a_case_hears_of_it(database_url: str) -> None:
    ids: dict[str, int] = {}
    _, case_id, staff = _red_sms_case(database_url, ids)
    app = console_app(database_url, "reassigned_feed", dispatch_interval_seconds=30)
    supervisor_cookie, csrf = _sign_in(app, "s1")
    lead_cookie, _ = _sign_in(app, next(h for h, i in ids.items() if i == staff["lead"]))
    newcomer = next(i for h, i in ids.items() if h.startswith("v") and i not in staff.values())
    heard: list[dict[str, Any]] = []

    async def lead_listens(ws: Any) -> None:
        url = f"http://127.0.0.1:{app.test_client.port}/console/api/supervision/cases/{case_id}/reassign"
        async with httpx.AsyncClient() as http:
            moved = await http.post(
                url,
                json={"role": "lead", "counsellor_id": newcomer},
                headers={"cookie": supervisor_cookie, "X-CSRF-Token": csrf},
            )
        assert moved.status_code == 200, moved.text
        heard.append(await _until(ws, "case_reassigned_away"))

    app.test_client.websocket("/console/ws", mimic=lead_listens, extra_headers={"cookie": lead_cookie})
    assert heard == [{"kind": "case_reassigned_away", "case_id": case_id, "counsellor_id": newcomer}]
