"""The console's case API through the real app (sanic-testing's ASGI client) and the real store: the
queue, an audited read, who may open which case, taking over (the bot paused), writing to the child
(who reads it through the web chat's polling), handing back (the bot resumed), notes, closing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sanic import Sanic
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from integrations.console.content import console_texts
from integrations.console.sessions import COOKIE
from integrations.gateway.app import create_app
from integrations.inbound import InboundMessage
from records import accounts, messages, roster
from records.models import Assignment, AuditEntry, Author, Message
from tests.unit.apps import gateway_settings
from tests.unit.fakes import FakeEngine

Sessions = async_sessionmaker[AsyncSession]
PASSWORD = "a long enough password"
RED = "药已经准备好了，今晚我就吃下去"


class Console:
    """The app with a staffed line, and one red case waiting."""

    def __init__(self, app: Sanic, engine: FakeEngine, sessions: Sessions) -> None:
        self.app, self.engine, self.sessions = app, engine, sessions
        self.ids: dict[str, int] = {}

    async def staff(self) -> None:
        async with self.sessions() as session:
            people = await roster.put_on_call(
                session, volunteers=["v1", "v2", "v3", "v4"], supervisors=["s1"]
            )
            for person in people:
                await accounts.set_password(session, person.handle, PASSWORD)
                self.ids[person.handle] = person.id

    async def red_case(self) -> tuple[str, int]:
        """A red web-chat message through the switchboard: its conversation and its case."""
        async with self.sessions() as session:
            conversation = (await messages.create_conversation(session, "webchat")).id
        switchboard = self.app.ctx.switchboard
        outcome = await switchboard.receive(InboundMessage("webchat", uuid.uuid4().hex, conversation, RED))
        assert outcome.case_id is not None
        return conversation, outcome.case_id

    async def sign_in(self, handle: str) -> dict[str, str]:
        _, response = await self.app.asgi_client.post(
            "/console/api/login", json={"handle": handle, "password": PASSWORD}
        )
        assert response.status == 200, response.json
        cookie = response.cookies[COOKIE]
        self.app.asgi_client.cookies.clear()
        return {"cookie": f"{COOKIE}={cookie}", "X-CSRF-Token": response.json["csrf"]}

    async def get(self, path: str, who: dict[str, str]) -> Any:
        _, response = await self.app.asgi_client.get(path, headers=who)
        return response

    async def post(self, path: str, who: dict[str, str], body: dict[str, Any] | None = None) -> Any:
        _, response = await self.app.asgi_client.post(path, headers=who, json=body or {})
        return response


@pytest.fixture
def console(database_url: str, sessions: Sessions) -> Iterator[Console]:
    settings = gateway_settings(database_url)
    engine = FakeEngine()
    app = create_app(settings, engine=engine, actions_up=lambda: True, name=f"cases_{uuid.uuid4().hex[:8]}")
    yield Console(app, engine, sessions)


async def _lead_and_other(console: Console, case_id: int) -> tuple[str, str]:
    """The handle of the case's lead, and of an on-call volunteer not assigned to it."""
    async with console.sessions() as session:
        found = await session.scalars(select(Assignment).where(Assignment.case_id == case_id))
        staff = {a.counsellor_id: a.role for a in found}
    by_id = {v: k for k, v in console.ids.items()}
    lead = next(by_id[i] for i, role in staff.items() if role == "lead")
    other = next(h for h, i in console.ids.items() if i not in staff and h.startswith("v"))
    return lead, other


async def _start(console: Console) -> tuple[str, int, str, str]:
    await console.staff()
    # the app's listeners run with the first request; a login starts them
    await console.sign_in("s1")
    conversation, case_id = await console.red_case()
    lead, other = await _lead_and_other(console, case_id)
    return conversation, case_id, lead, other


async def test_the_queue_puts_red_first_and_shows_no_words(console: Console) -> None:
    _, case_id, lead, _ = await _start(console)
    who = await console.sign_in(lead)
    response = await console.get("/console/api/queue", who)
    assert response.status == 200
    [entry] = response.json["cases"]
    assert (entry["id"], entry["level"], entry["assigned_to_me"]) == (case_id, "red", True)
    assert RED not in str(response.json)


async def test_a_volunteer_opens_only_cases_assigned_to_them_and_every_read_is_audited(
    console: Console,
) -> None:
    _, case_id, lead, other = await _start(console)
    outsider = await console.sign_in(other)
    assert (await console.get(f"/console/api/cases/{case_id}", outsider)).status == 403
    assert (await console.post(f"/console/api/cases/{case_id}/claim", outsider)).status == 403
    response = await console.get(f"/console/api/cases/{case_id}", await console.sign_in(lead))
    assert response.status == 200
    assert [m["text"] for m in response.json["messages"] if m["author"] == "user"] == [RED]
    supervisor = await console.get(f"/console/api/cases/{case_id}", await console.sign_in("s1"))
    assert supervisor.status == 200
    async with console.sessions() as session:
        reads = list(await session.scalars(select(AuditEntry).where(AuditEntry.action == "case_read")))
    assert sorted(e.actor for e in reads) == sorted(
        [f"counsellor:{console.ids[lead]}", f"counsellor:{console.ids['s1']}"]
    )


async def test_a_takeover_pauses_the_bot_and_the_child_reads_the_counsellor(console: Console) -> None:
    conversation, case_id, lead, _ = await _start(console)
    who = await console.sign_in(lead)
    claimed = await console.post(f"/console/api/cases/{case_id}/claim", who)
    assert claimed.status == 200 and claimed.json["held_by"] == console.ids[lead]
    assert conversation in console.engine.paused
    sent = await console.post(f"/console/api/cases/{case_id}/messages", who, {"text": "我在这里陪着你。"})
    assert sent.status == 201
    async with console.sessions() as session:
        later = await messages.outbound_after(session, conversation, sent.json["id"] - 1)
    assert [(m.author, m.text) for m in later] == [(Author.COUNSELLOR, "我在这里陪着你。")]


async def test_only_one_counsellor_holds_a_conversation(console: Console) -> None:
    _, case_id, lead, _ = await _start(console)
    assert (
        await console.post(f"/console/api/cases/{case_id}/claim", await console.sign_in(lead))
    ).status == 200
    supervisor = await console.sign_in("s1")
    refused = await console.post(f"/console/api/cases/{case_id}/claim", supervisor)
    assert (refused.status, refused.json["error"]) == (409, "held_by_another")
    writes = await console.post(f"/console/api/cases/{case_id}/messages", supervisor, {"text": "你好"})
    assert (writes.status, writes.json["error"]) == (409, "not_holding")


async def test_handing_back_resumes_the_bot_with_the_closing_message(console: Console) -> None:
    conversation, case_id, lead, _ = await _start(console)
    who = await console.sign_in(lead)
    await console.post(f"/console/api/cases/{case_id}/claim", who)
    released = await console.post(f"/console/api/cases/{case_id}/release", who)
    assert released.status == 200 and conversation not in console.engine.paused
    async with console.sessions() as session:
        last = await session.scalar(
            select(Message)
            .where(Message.conversation_id == conversation)
            .order_by(Message.id.desc())
            .limit(1)
        )
    assert (last.author, last.text) == (Author.SYSTEM, console_texts().hand_back)


async def test_notes_and_closing_with_an_outcome(console: Console) -> None:
    conversation, case_id, lead, _ = await _start(console)
    who = await console.sign_in(lead)
    await console.post(f"/console/api/cases/{case_id}/claim", who)
    assert (await console.post(f"/console/api/cases/{case_id}/notes", who, {"body": "  "})).status == 400
    assert (
        await console.post(f"/console/api/cases/{case_id}/notes", who, {"body": "已联系班主任"})
    ).status == 201
    closed = await console.post(f"/console/api/cases/{case_id}/close", who, {"outcome": "referred_hospital"})
    assert closed.status == 200 and conversation not in console.engine.paused  # handed back on close
    read = await console.get(f"/console/api/cases/{case_id}", who)
    assert read.json["case"]["status"] == "closed" and read.json["case"]["outcome"] == "referred_hospital"
    assert [n["body"] for n in read.json["notes"]] == ["已联系班主任"]


async def test_writing_needs_the_csrf_token(console: Console) -> None:
    _, case_id, lead, _ = await _start(console)
    who = await console.sign_in(lead)
    forged = {**who, "X-CSRF-Token": "forged"}
    assert (await console.post(f"/console/api/cases/{case_id}/claim", forged)).status == 403


async def test_quick_replies_come_from_the_content_file(console: Console) -> None:
    await _start(console)
    response = await console.get("/console/api/quick-replies", await console.sign_in("v1"))
    assert response.json["quick_replies"] == list(console_texts().quick_replies)
