"""The web chat API as a client sees it, in-process, with a stand-in engine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sanic import Sanic
from sqlalchemy.exc import OperationalError

from integrations.content import failsafe_text, gateway_texts
from records import messages
from tests.unit.fakes import FakeEngine
from tests.unit.webchat_client import start_session, webchat_app
from triage_protocols.directory import hotline_list

Sanic.test_mode = True


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def app(database_url: str, engine: FakeEngine) -> Iterator[Sanic]:
    yield webchat_app(database_url, engine)


_session = start_session


async def test_a_message_gets_the_engine_reply(app: Sanic, engine: FakeEngine) -> None:
    session = await _session(app)
    _, response = await app.asgi_client.post(
        "/api/messages", json={"session": session, "message_id": "a", "text": "你好"}
    )
    assert response.status == 200
    assert [r["text"] for r in response.json["replies"]] == ["你好，我在。"]
    assert response.json["status"] == "answered"
    assert engine.calls[0][1] == "你好"


async def test_leading_slash_never_reaches_the_engine(app: Sanic, engine: FakeEngine) -> None:
    session = await _session(app)
    _, response = await app.asgi_client.post(
        "/api/messages", json={"session": session, "message_id": "a", "text": "/restart"}
    )
    assert response.status == 200
    assert engine.calls[0][1] == "restart"


async def test_redelivered_message_is_answered_once(app: Sanic, engine: FakeEngine) -> None:
    session = await _session(app)
    body = {"session": session, "message_id": "same", "text": "在吗"}
    _, first = await app.asgi_client.post("/api/messages", json=body)
    _, second = await app.asgi_client.post("/api/messages", json=body)
    assert len(engine.calls) == 1
    assert second.json["duplicate"] is True
    assert second.json["replies"] == first.json["replies"]


@pytest.mark.parametrize(
    ("text", "code"),
    [("", "empty"), ("   ", "empty"), ("/", "empty"), ("啊" * 2001, "too_long"), (None, "bad_request")],
)
async def test_bad_text_gets_a_clear_error_in_chinese(app: Sanic, engine: FakeEngine, text, code) -> None:  # type: ignore[no-untyped-def]
    session = await _session(app)
    _, response = await app.asgi_client.post(
        "/api/messages", json={"session": session, "message_id": "a", "text": text}
    )
    assert response.status == 400
    assert response.json["error"] == code
    assert response.json["message"] == getattr(gateway_texts().errors, code).format(limit=2000)
    assert engine.calls == []


async def test_two_thousand_characters_are_accepted(app: Sanic, engine: FakeEngine) -> None:
    session = await _session(app)
    _, response = await app.asgi_client.post(
        "/api/messages", json={"session": session, "message_id": "a", "text": "啊" * 2000}
    )
    assert response.status == 200


@pytest.mark.parametrize("body", ["not json", "[1, 2]", '{"session": 1}'])
async def test_malformed_body_is_refused(app: Sanic, body: str) -> None:
    _, response = await app.asgi_client.post(
        "/api/messages", content=body, headers={"content-type": "application/json"}
    )
    assert response.status in (400, 401)
    assert response.json["error"] in ("bad_request", "bad_session")


async def test_forged_or_missing_session_is_refused(app: Sanic, engine: FakeEngine) -> None:
    session = await _session(app)
    # a whole base64 character of the signature, not the last (its padding bits may decode the same)
    forged = session[:-5] + ("A" if session[-5] != "A" else "B") + session[-4:]
    for token in (forged, "", None):
        _, response = await app.asgi_client.post(
            "/api/messages", json={"session": token, "message_id": "a", "text": "你好"}
        )
        assert response.status == 401
        assert response.json["error"] == "bad_session"
    assert engine.calls == []


async def test_missing_message_id_is_refused(app: Sanic) -> None:
    session = await _session(app)
    _, response = await app.asgi_client.post("/api/messages", json={"session": session, "text": "你好"})
    assert response.status == 400


async def test_engine_down_gives_the_failsafe_and_the_retry_reply_comes_later(
    app: Sanic, engine: FakeEngine
) -> None:
    engine.down = True
    session = await _session(app)
    _, response = await app.asgi_client.post(
        "/api/messages", json={"session": session, "message_id": "a", "text": "我好难受"}
    )
    assert response.status == 200
    assert [r["text"] for r in response.json["replies"]] == [failsafe_text()]
    last = response.json["replies"][-1]["id"]
    engine.down = False
    assert await app.ctx.switchboard.retry_pending() == 1
    _, later = await app.asgi_client.get("/api/messages", params={"session": session, "after": last})
    assert [r["text"] for r in later.json["replies"]] == ["你好，我在。"]


@pytest.mark.parametrize("failing", ["get_conversation", "record_inbound"])
async def test_store_down_gives_the_numbers_and_asks_to_send_again(
    app: Sanic, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    session = await _session(app)

    async def store_unreachable(*_: object, **__: object) -> None:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("the database is down"))

    monkeypatch.setattr(messages, failing, store_unreachable)
    _, response = await app.asgi_client.post(
        "/api/messages", json={"session": session, "message_id": "a", "text": "我不想活了"}
    )
    assert response.status == 503
    assert response.json["error"] == "store_down"
    assert hotline_list() in response.json["message"]
    assert engine.calls == [] and engine.triggered == []  # nothing is processed that was not kept


async def test_page_is_served_in_chinese(app: Sanic) -> None:
    _, response = await app.asgi_client.get("/")
    assert response.status == 200
    assert 'lang="zh-CN"' in response.text
    assert "/api/messages" in response.text


async def test_hotlines_come_from_the_directory(app: Sanic) -> None:
    _, response = await app.asgi_client.get("/api/hotlines")
    numbers = [e["number"] for e in response.json["entries"]]
    assert {"110", "120", "12356", "12355"} <= set(numbers)


async def test_healthz_reports_each_dependency(app: Sanic) -> None:
    _, response = await app.asgi_client.get("/healthz")
    assert response.status == 503
    checks = response.json["checks"]
    assert checks["database"]["ok"] is True
    assert checks["engine"]["ok"] is False
    assert checks["action_server"]["ok"] is False
