"""The console as its tests drive it: the real app (sanic-testing's ASGI client) on the real store, a staffed
line (four volunteers and a supervisor on shift, each with a password), cases opened by a child's message
through the switchboard, and requests signed in as one counsellor or another."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sanic import Sanic
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from integrations.console.sessions import COOKIE
from integrations.gateway.app import create_app
from integrations.inbound import InboundMessage
from records import accounts, messages, roster
from records.models import Assignment, AuditEntry, CounsellorRole
from tests.unit.apps import gateway_settings
from tests.unit.fakes import FakeEngine

Sessions = async_sessionmaker[AsyncSession]
PASSWORD = "a long enough password"
RED = "药已经准备好了，今晚我就吃下去"
VOLUNTEERS = ["v1", "v2", "v3", "v4"]
SUPERVISOR = "s1"

_EMPTY_OBJECT: Any = object()  # `Console.post`'s default body, sent as `{}`


def console_app(database_url: str, name: str, engine: FakeEngine | None = None, **settings: Any) -> Sanic:
    """The gateway with a stand-in engine and the action server taken as up; `name` starts the app's name."""
    return create_app(
        gateway_settings(database_url, **settings),
        engine=FakeEngine() if engine is None else engine,
        actions_up=lambda: True,
        name=f"{name}_{uuid.uuid4().hex[:8]}",
    )


async def staff_line(session: AsyncSession, ids: dict[str, int], admins: Sequence[str] = ()) -> None:
    """The volunteers and the supervisor on shift (and `admins`, off shift), each with `PASSWORD`; their
    ids go into `ids` by handle."""
    people = await roster.put_on_call(session, volunteers=VOLUNTEERS, supervisors=[SUPERVISOR])
    people += [await roster.add_counsellor(session, h, h, CounsellorRole.ADMIN) for h in admins]
    for person in people:
        await accounts.set_password(session, person.handle, PASSWORD)
        ids[person.handle] = person.id


class Console:
    """The app, its stand-in engine and the store's sessions; `ids` holds the staff's ids by handle."""

    def __init__(
        self, app: Sanic, engine: FakeEngine, sessions: Sessions, *, admins: Sequence[str] = ()
    ) -> None:
        self.app, self.engine, self.sessions = app, engine, sessions
        self.admins = admins
        self.ids: dict[str, int] = {}

    async def staff(self) -> None:
        async with self.sessions() as session:
            await staff_line(session, self.ids, self.admins)

    async def case(self, words: str) -> tuple[str, int]:
        """A web-chat message through the switchboard: its conversation and the case it opened."""
        async with self.sessions() as session:
            conversation = (await messages.create_conversation(session, "webchat")).id
        outcome = await self.app.ctx.switchboard.receive(
            InboundMessage("webchat", uuid.uuid4().hex, conversation, words)
        )
        assert outcome.case_id is not None
        return conversation, outcome.case_id

    async def red_case(self) -> tuple[str, int]:
        return await self.case(RED)

    async def start(self, words: str = RED) -> tuple[str, int, str, str]:
        """Staffs the line and opens a case with `words`: its conversation, its id, the handle of its lead
        and of an on-shift volunteer not assigned to it."""
        await self.staff()
        await self.sign_in(SUPERVISOR)  # the app's listeners run with the first request
        conversation, case_id = await self.case(words)
        lead, outsider = await self.lead_and_outsider(case_id)
        return conversation, case_id, lead, outsider

    async def sign_in(self, handle: str) -> dict[str, str]:
        """The headers of a request by `handle`: the session cookie and the CSRF token."""
        _, response = await self.app.asgi_client.post(
            "/console/api/login", json={"handle": handle, "password": PASSWORD}
        )
        assert response.status == 200, response.json
        cookie = response.cookies[COOKIE]
        self.app.asgi_client.cookies.clear()
        return {"cookie": f"{COOKIE}={cookie}", "X-CSRF-Token": response.json["csrf"]}

    async def get(self, path: str, who: dict[str, str] | None = None) -> Any:
        _, response = await self.app.asgi_client.get(path, headers=who or {})
        return response

    async def post(self, path: str, who: dict[str, str] | None, body: Any = _EMPTY_OBJECT) -> Any:
        """`body` as JSON: `{}` unless given (None sends no body at all)."""
        sent = {} if body is _EMPTY_OBJECT else body
        _, response = await self.app.asgi_client.post(path, headers=who or {}, json=sent)
        return response

    async def read(self, case_id: int, who: dict[str, str]) -> dict[str, Any]:
        response = await self.get(f"/console/api/cases/{case_id}", who)
        assert response.status == 200, response.json
        return response.json

    async def staff_of(self, case_id: int) -> dict[str, int]:
        """role → counsellor id."""
        async with self.sessions() as session:
            found = await session.scalars(select(Assignment).where(Assignment.case_id == case_id))
            return {a.role: a.counsellor_id for a in found}

    def handle_of(self, counsellor_id: int) -> str:
        return next(h for h, i in self.ids.items() if i == counsellor_id)

    def free_volunteer(self, staff: dict[str, int]) -> str:
        """An on-shift volunteer who is not among `staff` (role → counsellor id)."""
        return next(h for h, i in self.ids.items() if h.startswith("v") and i not in staff.values())

    async def lead_and_outsider(self, case_id: int) -> tuple[str, str]:
        """The handle of the case's lead, and of an on-shift volunteer not assigned to it."""
        staff = await self.staff_of(case_id)
        return self.handle_of(staff["lead"]), self.free_volunteer(staff)

    async def count(self, model: type, *where: Any) -> int:
        async with self.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    async def audit(self, action: str) -> list[AuditEntry]:
        async with self.sessions() as session:
            query = select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
            return list(await session.scalars(query))

    async def raw(self, sql: str) -> list[Any]:
        async with self.sessions() as session:
            return list((await session.execute(text(sql))).scalars().all())


def console_for(database_url: str, sessions: Sessions, name: str, *, admins: Sequence[str] = ()) -> Console:
    """A `Console` on a new app (see `console_app`)."""
    engine = FakeEngine()
    return Console(console_app(database_url, name, engine), engine, sessions, admins=admins)
