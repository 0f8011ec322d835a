"""The console's live feed: who is told of what, a real websocket through a real server that hears of a
red page the moment the dispatcher sends it, and a feed that closes when its counsellor's sessions end
(a new password, set inactive), here at once and, for a change made through another gateway, at its next
event or its next round."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import select, update

from integrations.console.feed import UNAUTHORISED, event_for
from integrations.console.sessions import COOKIE
from integrations.gateway.app import create_app
from integrations.inbound import InboundMessage
from integrations.paging.senders import ChatEvent, ConsoleAlerts, Page
from records import accounts, messages, roster
from records.db import with_session
from records.escalation import EscalationResult
from records.models import Counsellor, CounsellorRole
from tests.unit.apps import gateway_settings
from tests.unit.fakes import FakeEngine

PASSWORD = "a long enough password"
RED = "药已经准备好了，今晚我就吃下去"


def _counsellor(id_: int, role: CounsellorRole) -> Counsellor:
    return Counsellor(id=id_, handle=f"c{id_}", display_name=f"c{id_}", role=role)


def _page(counsellor_id: int, case_id: int = 7) -> Page:
    return Page(outbox_id=1, counsellor_id=counsellor_id, case_id=case_id, level="red", reason="case_opened")


def test_a_volunteer_hears_of_their_own_pages_and_a_supervisor_of_all() -> None:
    volunteer, supervisor = (
        _counsellor(1, CounsellorRole.VOLUNTEER),
        _counsellor(2, CounsellorRole.SUPERVISOR),
    )
    assert event_for(volunteer, _page(1)) == {
        "kind": "page",
        "case_id": 7,
        "level": "red",
        "reason": "case_opened",
    }
    assert event_for(volunteer, _page(3)) is None
    assert event_for(supervisor, _page(3)) is not None


def test_only_the_holder_hears_of_the_childs_messages() -> None:
    holder, other = _counsellor(1, CounsellorRole.VOLUNTEER), _counsellor(2, CounsellorRole.SUPERVISOR)
    event = ChatEvent("conv", 55, 1, "red")
    assert event_for(holder, event) == {
        "kind": "message",
        "conversation_id": "conv",
        "message_id": 55,
        "level": "red",
    }
    assert event_for(other, event) is None


@pytest.fixture
def app(database_url: str) -> Any:
    async def staff(session: Any) -> None:
        people = await roster.put_on_call(session, volunteers=["v1", "v2", "v3"], supervisors=["s1"])
        for person in people:
            await accounts.set_password(session, person.handle, PASSWORD)

    asyncio.run(with_session(database_url, staff))
    settings = gateway_settings(database_url, dispatch_interval_seconds=30)
    return create_app(
        settings, engine=FakeEngine(), actions_up=lambda: True, name=f"feed_{uuid.uuid4().hex[:8]}"
    )


def _cookie(app: Any, handle: str) -> str:
    _, response = app.test_client.post("/console/api/login", json={"handle": handle, "password": PASSWORD})
    assert response.status == 200, response.json
    return f"{COOKIE}={response.cookies[COOKIE]}"


def test_a_signed_in_supervisor_hears_a_red_page_at_once(app: Any, database_url: str) -> None:
    cookie = _cookie(app, "s1")
    heard: list[dict[str, Any]] = []

    async def supervisor(ws: Any) -> None:
        await _listening(app)

        async def red_message(session: Any) -> str:
            return (await messages.create_conversation(session, "webchat")).id

        conversation = await with_session(database_url, red_message)
        await app.ctx.switchboard.receive(InboundMessage("webchat", "m1", conversation, RED))
        heard.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=5)))

    app.test_client.websocket("/console/ws", mimic=supervisor, extra_headers={"cookie": cookie})
    assert heard and heard[0]["kind"] == "page" and heard[0]["level"] == "red"


def test_without_a_sign_in_the_feed_closes(app: Any) -> None:
    async def stranger(ws: Any) -> None:
        await asyncio.wait_for(ws.recv(), timeout=5)  # closed by the server before anything is sent

    # sanic-testing reports the server's close as the request's exception
    with pytest.raises(ValueError, match=f"code={UNAUTHORISED}, reason='signed_out'"):
        app.test_client.websocket("/console/ws", mimic=stranger)


async def test_an_announced_page_is_published_once_even_when_the_dispatcher_delivers_it() -> None:
    alerts = ConsoleAlerts()
    heard = alerts.listen()
    alerts.announce(EscalationResult(case_id=7, level="red", opened=True, paged=[1, 2]))
    await alerts.send(Page(outbox_id=31, counsellor_id=1, case_id=7, level="red", reason="case_opened"))
    await alerts.send(Page(outbox_id=32, counsellor_id=3, case_id=7, level="red", reason="case_opened"))
    published = [heard.get_nowait() for _ in range(heard.qsize())]
    assert [(p.counsellor_id, p.outbox_id) for p in published] == [(1, 0), (2, 0), (3, 32)]
    assert len(alerts.recent) == 4  # every delivery is still on record


# --- a feed ends with its counsellor's sessions --------------------------------------------------------


def _id_of(database_url: str, handle: str) -> int:
    async def find(session: Any) -> int:
        return int(await session.scalar(select(Counsellor.id).where(Counsellor.handle == handle)))

    return asyncio.run(with_session(database_url, find))


async def _listening(app: Any) -> None:
    """Until the feed's handler listens: the handshake completes before the handler runs, so an event
    published at once could reach nobody and the test would wait for nothing."""
    async with asyncio.timeout(5):
        while not app.ctx.alerts._listeners:
            await asyncio.sleep(0.01)


async def _told(ws: Any) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout=5))


async def _change(database_url: str, handle: str, **values: Any) -> None:
    """A change made through another gateway (or by hand): straight to the store, so nothing in this
    process hears of it."""

    async def write(session: Any) -> None:
        await session.execute(update(Counsellor).where(Counsellor.handle == handle).values(**values))
        await session.commit()

    await with_session(database_url, write)


def _closed_signed_out(app: Any, cookie: str, client: Any) -> None:
    """Runs `client` on the feed and expects the server to close it with 4401 (sanic-testing reports the
    server's close as the request's exception)."""
    with pytest.raises(ValueError, match=f"code={UNAUTHORISED}, reason='signed_out'"):
        app.test_client.websocket("/console/ws", mimic=client, extra_headers={"cookie": cookie})
    assert not app.ctx.alerts._listeners  # the closed feed listens no more


def test_a_password_change_closes_the_feed_at_once_and_nothing_more_is_sent(
    app: Any, database_url: str
) -> None:
    cookie = _cookie(app, "v1")
    v1 = _id_of(database_url, "v1")
    heard: list[dict[str, Any]] = []

    async def new_password(handle: str) -> None:
        async def change(session: Any) -> None:
            await accounts.set_password(session, handle, "a brand new password")

        await with_session(database_url, change)

    async def volunteer(ws: Any) -> None:
        await _listening(app)
        await app.ctx.alerts.send(_page(v1, case_id=1))
        heard.append(await _told(ws))
        await new_password("v2")  # someone else's sessions end: this feed goes on
        await app.ctx.alerts.send(_page(v1, case_id=2))
        heard.append(await _told(ws))
        await new_password("v1")
        await app.ctx.alerts.send(_page(v1, case_id=3))  # after the change: never sent
        heard.append(await _told(ws))

    _closed_signed_out(app, cookie, volunteer)
    assert [event["case_id"] for event in heard] == [1, 2]


def test_deactivating_a_counsellor_closes_their_feed_at_once(app: Any, database_url: str) -> None:
    cookie = _cookie(app, "v1")
    v1 = _id_of(database_url, "v1")
    heard: list[dict[str, Any]] = []

    async def volunteer(ws: Any) -> None:
        await _listening(app)

        async def deactivate(session: Any) -> None:
            await accounts.deactivate(session, "v1", actor="test")

        await with_session(database_url, deactivate)
        await app.ctx.alerts.send(_page(v1))
        heard.append(await _told(ws))

    _closed_signed_out(app, cookie, volunteer)
    assert heard == []


def test_a_change_made_elsewhere_closes_the_feed_before_its_next_event(app: Any, database_url: str) -> None:
    cookie = _cookie(app, "v1")
    v1 = _id_of(database_url, "v1")
    elsewhere = accounts.hash_password("changed on another gateway")
    heard: list[dict[str, Any]] = []

    async def volunteer(ws: Any) -> None:
        await _listening(app)
        await app.ctx.alerts.send(_page(v1, case_id=1))
        heard.append(await _told(ws))
        await _change(database_url, "v1", password_hash=elsewhere)
        await app.ctx.alerts.send(_page(v1, case_id=2))
        heard.append(await _told(ws))

    _closed_signed_out(app, cookie, volunteer)
    assert [event["case_id"] for event in heard] == [1]


def test_an_idle_feed_finds_a_change_made_elsewhere_on_its_next_round(app: Any, database_url: str) -> None:
    cookie = _cookie(app, "v1")
    app.ctx.console_feed_recheck_seconds = 0.05  # the round; a deployment's is tens of seconds
    heard: list[dict[str, Any]] = []

    async def volunteer(ws: Any) -> None:
        await _listening(app)
        await _change(database_url, "v1", active=False)
        heard.append(await _told(ws))  # no event at all: the round alone closes the feed

    _closed_signed_out(app, cookie, volunteer)
    assert heard == []
