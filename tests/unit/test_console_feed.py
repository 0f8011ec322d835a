"""The console's live feed: who is told of what, and a real websocket through a real server that hears of
a red page the moment the dispatcher sends it."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

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


def _page(counsellor_id: int) -> Page:
    return Page(outbox_id=1, counsellor_id=counsellor_id, case_id=7, level="red", reason="case_opened")


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
