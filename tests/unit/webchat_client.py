"""The web chat API as a client drives it in-process: an app with a stand-in engine, a session, a message."""

from __future__ import annotations

from typing import Any

from sanic import Sanic

from integrations.gateway.app import create_app
from tests.unit.apps import gateway_settings
from tests.unit.fakes import FakeEngine

Sanic.test_mode = True


def webchat_app(database_url: str, engine: FakeEngine, **settings: Any) -> Sanic:
    """The gateway on this database with the stand-in engine; a 1 s engine deadline unless told."""
    settings.setdefault("engine_timeout_seconds", 1.0)
    return create_app(
        gateway_settings(database_url, **settings),
        engine=engine,
        actions_up=lambda: True,
        name=f"webchat_test_{id(engine)}",
    )


async def start_session(app: Sanic) -> str:
    _, response = await app.asgi_client.post("/api/sessions", json={})
    assert response.status == 201
    return response.json["session"]


async def post_message(app: Sanic, session: str, message_id: str, text: str) -> Any:
    _, response = await app.asgi_client.post(
        "/api/messages", json={"session": session, "message_id": message_id, "text": text}
    )
    return response
