"""The gateway with one channel plugged in, a staffed line and the console, for channel tests: a red
message on the channel opens a case and pages; a counsellor answers from the console and the delivery
dispatcher sends it on the channel. Background rounds are run by the test, so it decides what happens."""

from __future__ import annotations

import uuid
from typing import Any

from sanic import Sanic
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from integrations.channels.base import ChannelPlugin
from integrations.gateway.app import create_app
from records.models import Assignment, Case, OutboxItem
from tests.unit.apps import gateway_settings
from tests.unit.console_client import Console
from tests.unit.fakes import FakeEngine

Sessions = async_sessionmaker[AsyncSession]


class Line(Console):
    """`Console`'s sign-in and requests, plus the channel's side."""

    async def case_of(self, conversation_id: str) -> Case:
        async with self.sessions() as session:
            case = await session.scalar(select(Case).where(Case.conversation_id == conversation_id))
        assert case is not None, "no case was opened for the conversation"
        return case

    async def lead_of(self, case_id: int) -> str:
        async with self.sessions() as session:
            lead = await session.scalar(
                select(Assignment.counsellor_id).where(
                    Assignment.case_id == case_id, Assignment.role == "lead"
                )
            )
        return next(handle for handle, i in self.ids.items() if i == lead)

    async def counsellor_writes(self, conversation_id: str, *texts: str) -> None:
        """The case's lead takes the conversation over in the console and writes; the delivery
        dispatcher then runs a round (a test has no background tasks)."""
        case = await self.case_of(conversation_id)
        who = await self.sign_in(await self.lead_of(case.id))
        claimed = await self.post(f"/console/api/cases/{case.id}/claim", who)
        assert claimed.status in (200, 409), claimed.json
        for text in texts:
            sent = await self.post(f"/console/api/cases/{case.id}/messages", who, {"text": text})
            assert sent.status == 201, sent.json
        await self.deliver()

    async def deliver(self) -> int:
        """Delivery rounds until nothing is due (one message per conversation goes out a round)."""
        total = 0
        while sent := await self.app.ctx.deliveries.run_once():
            total += sent
        return total

    async def pages(self) -> list[OutboxItem]:
        """Runs a page round and returns every page written so far."""
        await self.app.ctx.dispatcher.run_once()
        async with self.sessions() as session:
            return list(await session.scalars(select(OutboxItem).where(OutboxItem.kind == "page")))


def line_for(
    database_url: str,
    sessions: Sessions,
    plugin: ChannelPlugin,
    engine: FakeEngine | None = None,
    **settings: Any,
) -> Line:
    """The app serving only `plugin`'s channel (besides the web chat and the console)."""
    engine = engine or FakeEngine()
    app: Sanic = create_app(
        gateway_settings(database_url, **settings),
        engine=engine,
        actions_up=lambda: True,
        channels=[plugin],
        background=False,
        name=f"line_{uuid.uuid4().hex[:8]}",
    )
    return Line(app, engine, sessions)
