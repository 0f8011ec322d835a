"""Issue 11's switchboard and web chat defects, each as the tester reproduced it: a message that outlasts
the engine's retries, a lone surrogate, a store fault after the message was kept, a huge `after`, an
orange message's two engine calls, a read-only store, a reused message id, and the web chat's flood."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sanic import Sanic
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from integrations.content import failsafe_text, gateway_texts
from integrations.engine_client import BotReply
from integrations.gateway.app import create_app
from integrations.inbound import InboundMessage
from integrations.switchboard import Switchboard
from integrations.webchat import limits as webchat_limits
from records import messages, unanswered
from records.models import AuditEntry, Case, InboundStatus, Message, OutboxItem, utcnow
from tests.records.conftest import Staff, new_conversation, seed_staff
from tests.unit.apps import gateway_settings
from tests.unit.fakes import FakeEngine
from tests.unit.webchat_client import post_message, start_session, webchat_app
from triage_protocols.directory import hotline_list

Sessions = async_sessionmaker[AsyncSession]
Sanic.test_mode = True

RED = "药我已经准备好了，今晚就全吃下去"
ORANGE = "我有时候会想，要是我消失了就好了"
CALM = "今天我们班篮球赛赢了"


@pytest.fixture
async def staff(sessions: Sessions) -> Staff:
    return await seed_staff(sessions, utcnow().replace(microsecond=0))


async def _count(sessions: Sessions, model: Any, *where: Any) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where)) or 0


# ---- 1. a message that outlasts the engine's retries is handed to a person, and answered later ----------


@pytest.mark.parametrize("text", ["转人工", CALM])
async def test_a_message_given_up_opens_a_case_pages_and_is_answered_when_the_engine_returns(
    sessions: Sessions, staff: Staff, text: str
) -> None:
    conversation = await new_conversation(sessions)
    engine = FakeEngine(down=True)
    switchboard = Switchboard(sessions, engine, retry_limit=3)
    first = await switchboard.receive(InboundMessage("webchat", "m1", conversation, text))
    assert [r.text for r in first.replies] == [failsafe_text()]
    for _ in range(3):
        await switchboard.retry_pending()
    async with sessions() as session:
        message = await session.get_one(Message, first.message_id)
        case = await session.scalar(select(Case).where(Case.conversation_id == conversation))
        gave_up = await session.scalar(select(AuditEntry).where(AuditEntry.action == "assistant_gave_up"))
    assert message.status == InboundStatus.GAVE_UP
    assert case is not None and case.level == "yellow" and case.opened_reason == "engine_gave_up"
    assert gave_up is not None and gave_up.detail["message_id"] == message.id
    assert await _count(sessions, OutboxItem, OutboxItem.kind == "page", OutboxItem.case_id == case.id) >= 1
    async with sessions() as session:
        assert await unanswered.assistant_failed(session, [case.id]) == {case.id}

    engine.down = False
    assert await switchboard.retry_pending() == 1
    async with sessions() as session:
        message = await session.get_one(Message, first.message_id)
        replies = await messages.replies_to(session, message.id)
    assert message.status == InboundStatus.ANSWERED
    assert [r.text for r in replies][-1] == "你好，我在。"


async def test_a_case_already_open_is_paged_again_when_its_message_is_given_up(
    sessions: Sessions, staff: Staff
) -> None:
    conversation = await new_conversation(sessions)
    engine = FakeEngine(down=True)
    switchboard = Switchboard(sessions, engine, retry_limit=2)
    await switchboard.receive(InboundMessage("webchat", "m1", conversation, ORANGE))  # opens orange
    pages_before = await _count(sessions, OutboxItem, OutboxItem.kind == "page")
    for _ in range(2):
        await switchboard.retry_pending()
    assert await _count(sessions, OutboxItem, OutboxItem.kind == "page") == pages_before + 1
    assert await _count(sessions, Case) == 1


# ---- 3. any code point ------------------------------------------------------------------------------


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def app(database_url: str, engine: FakeEngine) -> Iterator[Sanic]:
    yield webchat_app(database_url, engine)


_session = start_session
_post = post_message


async def test_a_lone_surrogate_never_loses_a_red_message(app: Sanic, engine: FakeEngine) -> None:
    session = await _session(app)
    # The raw JSON the tester sent: json.dumps would refuse to write a lone surrogate itself.
    body = (
        '{"session": "SESSION", "message_id": "s\\udc00", "text": "药我已经准备好了，今晚就全吃下去\\ud83d"}'
    )
    body = body.replace("SESSION", session)
    _, response = await app.asgi_client.post(
        "/api/messages", content=body.encode(), headers={"content-type": "application/json"}
    )
    assert response.status == 200, response.text
    assert engine.triggered and engine.triggered[0][1] == "EXTERNAL_risk_red"
    async with app.ctx.sessions() as db:
        stored = await db.scalar(select(Message).where(Message.risk_level == "red"))
    assert stored is not None and stored.text == RED


async def test_an_unexpected_error_answers_in_chinese_with_the_numbers(
    app: Sanic, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = await _session(app)

    async def broken(*_: object, **__: object) -> None:
        raise RuntimeError("a defect nobody foresaw")

    monkeypatch.setattr(messages, "get_conversation", broken)
    response = await _post(app, session, "x", "你好")
    assert response.status == 503
    assert hotline_list() in response.json["message"]


# ---- 4. a store fault after the message was kept ---------------------------------------------------


def _store_locked(monkeypatch: pytest.MonkeyPatch) -> None:
    async def locked(*_: object, **__: object) -> None:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(messages, "store_replies", locked)


async def test_a_stored_message_is_answered_as_stored_when_its_replies_cannot_be_kept(
    app: Sanic, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = await _session(app)
    _store_locked(monkeypatch)
    response = await _post(app, session, "a", RED)
    assert response.status == 200
    assert response.json["replies"][0]["text"] == "你好，我在。", "the engine's answer, not 'not sent'"
    assert await _count(app.ctx.sessions, Case, Case.level == "red") == 1
    # A resend with a new id while it is unanswered is the same message: told it arrived, with the numbers.
    again = await _post(app, session, "b", RED)
    assert again.status == 200 and again.json["duplicate"] is True
    assert again.json["message_id"] == response.json["message_id"]
    assert hotline_list() in again.json["replies"][0]["text"]
    assert len(engine.triggered) == 1


async def test_held_back_replies_are_stored_later_without_asking_the_engine_again(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    conversation = await new_conversation(sessions)
    engine = FakeEngine()
    switchboard = Switchboard(sessions, engine)
    real_store = messages.store_replies
    _store_locked(monkeypatch)
    outcome = await switchboard.receive(InboundMessage("webchat", "m1", conversation, CALM))
    assert [r.text for r in outcome.replies] == ["你好，我在。"] and outcome.replies[0].id < 0
    await switchboard.retry_pending()  # the store still refuses: nothing lost, nothing asked again
    monkeypatch.setattr(messages, "store_replies", real_store)
    await switchboard.retry_pending()
    assert len(engine.calls) == 1
    async with sessions() as session:
        message = await session.get_one(Message, outcome.message_id)
        replies = await messages.replies_to(session, message.id)
    assert message.status == InboundStatus.ANSWERED and [r.text for r in replies] == ["你好，我在。"]


async def test_the_same_words_after_an_answer_are_a_new_message(app: Sanic, engine: FakeEngine) -> None:
    session = await _session(app)
    first = await _post(app, session, "a", "是")
    second = await _post(app, session, "b", "是")
    assert not second.json["duplicate"]
    assert second.json["message_id"] != first.json["message_id"]
    assert len(engine.calls) == 2


async def test_a_resend_while_the_first_is_in_flight_says_it_arrived(sessions: Sessions) -> None:
    conversation = await new_conversation(sessions)
    switchboard = Switchboard(sessions, FakeEngine())
    async with sessions() as session:  # a first copy stored, not answered yet
        await messages.record_inbound(
            session, conversation_id=conversation, channel="webchat", external_id="a", text=RED
        )
    outcome = await switchboard.receive(InboundMessage("webchat", "b", conversation, RED))
    assert outcome.duplicate and outcome.replies == []


# ---- 5. a huge `after`, and no token in any log -------------------------------------------------------


@pytest.mark.parametrize("after", ["99999999999999999999999", "-99999999999999999999999", "1e5", "abc"])
async def test_a_bad_after_is_a_bad_request_and_logs_no_token(
    app: Sanic, after: str, caplog: pytest.LogCaptureFixture
) -> None:
    session = await _session(app)
    caplog.set_level(logging.DEBUG)
    _, response = await app.asgi_client.get("/api/messages", params={"session": session, "after": after})
    assert response.status == 400
    assert session not in caplog.text


async def test_later_replies_read_the_session_from_a_header(app: Sanic) -> None:
    session = await _session(app)
    await _post(app, session, "a", "你好")
    _, response = await app.asgi_client.get(
        "/api/messages", params={"after": "0"}, headers={"X-Xinqiao-Session": session}
    )
    assert response.status == 200 and [r["text"] for r in response.json["replies"]] == ["你好，我在。"]


def test_server_log_lines_never_carry_a_token_in_a_url(caplog: pytest.LogCaptureFixture) -> None:
    from integrations.gateway.log_redaction import redact_server_logs

    redact_server_logs()
    caplog.set_level(logging.DEBUG)
    logging.getLogger("sanic.error").error(
        "Exception occurred while handling uri: %r", "/api/messages?session=SECRETTOKEN.x&after=1"
    )
    assert "SECRETTOKEN" not in caplog.text and "after=1" in caplog.text


# ---- 6. one deadline for all of an orange message's engine calls ---------------------------------------


@dataclass
class SlowLoopEngine(FakeEngine):
    loop_delay: float = 0.0

    async def active_loop(self, sender_id: str) -> str | None:
        import asyncio

        await asyncio.sleep(self.loop_delay)
        return None


async def test_an_orange_message_has_one_deadline_for_both_engine_calls(sessions: Sessions) -> None:
    """Each call alone is within the deadline; together they are not. The fail-safe answers."""
    conversation = await new_conversation(sessions)
    engine = SlowLoopEngine(loop_delay=0.3, trigger_delay=0.3, replies=[BotReply("late")])
    switchboard = Switchboard(sessions, engine, deadline_seconds=0.5)
    outcome = await switchboard.receive(InboundMessage("webchat", "m1", conversation, ORANGE))
    assert outcome.status == InboundStatus.RETRY_PENDING
    assert [r.text for r in outcome.replies] == [failsafe_text()]


# ---- 7. a read-only store --------------------------------------------------------------------------


@pytest.fixture
def read_only_app(sqlite_url: str, engine: FakeEngine) -> Iterator[Sanic]:
    from records.migrate import upgrade

    upgrade(sqlite_url)
    path = sqlite_url.removeprefix("sqlite+aiosqlite:///")
    read_only = f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true"
    yield create_app(
        gateway_settings(read_only), engine=engine, actions_up=lambda: True, name=f"ro_{id(engine)}"
    )


async def test_a_read_only_store_still_gives_the_numbers_and_fails_the_health_check(
    read_only_app: Sanic,
) -> None:
    _, response = await read_only_app.asgi_client.post("/api/sessions", json={})
    assert response.status == 503
    assert response.json["error"] == "session_down"
    assert hotline_list() in response.json["message"]
    _, health = await read_only_app.asgi_client.get("/healthz")
    assert health.json["checks"]["database"]["ok"] is False


async def test_the_page_carries_the_numbers_for_when_it_cannot_start_a_chat(app: Sanic) -> None:
    _, response = await app.asgi_client.get("/")
    assert "{{offline_notice}}" not in response.text
    assert "12356" in response.text and "110" in response.text


async def test_the_health_check_writes(app: Sanic) -> None:
    _, health = await app.asgi_client.get("/healthz")
    assert health.json["checks"]["database"]["ok"] is True
    assert await _count(app.ctx.sessions, Message) == 0


# ---- 9. a reused message id with new words -------------------------------------------------------------


async def test_a_reused_message_id_with_new_words_is_a_new_message(app: Sanic, engine: FakeEngine) -> None:
    session = await _session(app)
    first = await _post(app, session, "same-id", "你好")
    second = await _post(app, session, "same-id", RED)
    assert second.status == 200 and second.json["duplicate"] is False
    assert second.json["message_id"] != first.json["message_id"]
    assert engine.triggered and engine.triggered[0][1] == "EXTERNAL_risk_red"
    assert await _count(app.ctx.sessions, Case, Case.level == "red") == 1
    again = await _post(app, session, "same-id", RED)  # its own redelivery is still recognised
    assert again.json["duplicate"] is True and again.json["message_id"] == second.json["message_id"]


# ---- 12. the web chat's rate limit ----------------------------------------------------------------------


async def test_a_calm_flood_gets_429_and_orange_and_red_are_always_answered(
    app: Sanic, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webchat_limits, "PER_SESSION", 3)
    session = await _session(app)
    statuses = [(await _post(app, session, f"c{n}", f"{CALM}{n}")).status for n in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    refused = await _post(app, session, "c9", CALM + "!")
    assert refused.headers["retry-after"].isdigit()
    assert gateway_texts().errors.rate_limited.split("\n")[0] in refused.json["message"]
    red = await _post(app, session, "r1", RED)
    assert red.status == 200 and engine.triggered[-1][1] == "EXTERNAL_risk_red"
    assert await _count(app.ctx.sessions, Message, Message.direction == "in") == 4  # refused ones unkept


async def test_a_flood_from_one_address_carries_a_flood_key(
    app: Sanic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webchat_limits, "ESCALATIONS_PER_ADDRESS", 2)
    seen: list[str | None] = []
    sessions_ = [await _session(app) for _ in range(4)]
    original = Switchboard.receive

    async def watch(self: Switchboard, inbound: InboundMessage, **kwargs: Any) -> Any:
        seen.append(inbound.flood_key)
        return await original(self, inbound, **kwargs)

    monkeypatch.setattr(Switchboard, "receive", watch)
    for n, token in enumerate(sessions_):
        assert (await _post(app, token, f"r{n}", RED)).status == 200
    assert seen[:2] == [None, None]
    assert seen[2] is not None and seen[2] == seen[3]
