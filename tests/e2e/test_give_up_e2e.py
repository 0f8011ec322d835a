"""End to end, the tester's first defect (issue 11): with the engine dead, `转人工` outlasts the retries.
Giving up must hand it to a person (a case, a page, the console's mark), and when the engine comes back
the child must still get the answer. The real engine, action server and gateway, by the launcher."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from integrations.content import failsafe_text
from integrations.launcher import Stack, StackConfig, running
from records import messages, unanswered
from records.db import with_session
from records.migrate import upgrade
from records.models import AuditEntry, Case, InboundStatus, Message, OutboxItem
from records.roster import put_on_call
from tests.support import require_trained_model

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_trained_model()
    config = StackConfig.isolated(
        tmp_path_factory.mktemp("give_up"),
        {
            "XINQIAO_ENGINE_TIMEOUT_SECONDS": "20",
            "XINQIAO_RETRY_INTERVAL_SECONDS": "1",
            "XINQIAO_RETRY_LIMIT": "2",
        },
    )
    upgrade(config.database_url)
    asyncio.run(
        with_session(
            config.database_url, lambda s: put_on_call(s, volunteers=["v1", "v2"], supervisors=["s1"])
        )
    )
    with running(config, timeout=300) as started:
        yield started


def read(stack: Stack, work: Callable[[Any], Any]) -> Any:
    return asyncio.run(with_session(stack.config.database_url, work))


def wait_for(what: Callable[[], Any], timeout: float, step: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := what():
            return found
        time.sleep(step)
    raise AssertionError(f"not within {timeout} s")


def test_a_message_the_engine_never_answered_reaches_a_person_and_is_answered_later(stack: Stack) -> None:
    engine = stack.processes["engine"]
    engine.send_signal(signal.SIGKILL)
    engine.wait(timeout=30)
    http = httpx.Client(base_url=stack.config.gateway_url, timeout=60)
    session = http.post("/api/sessions", json={}).json()["session"]
    sent = http.post(
        "/api/messages", json={"session": session, "message_id": uuid.uuid4().hex, "text": "转人工"}
    )
    assert sent.status_code == 200
    assert [r["text"] for r in sent.json()["replies"]] == [failsafe_text()]
    message_id = sent.json()["message_id"]

    async def handed_over(session_: Any) -> tuple[Message, Case, list[AuditEntry], list[OutboxItem]] | None:
        message = await session_.get(Message, message_id)
        case = await session_.scalar(select(Case).where(Case.conversation_id == message.conversation_id))
        if message.status != InboundStatus.GAVE_UP or case is None:
            return None
        gave_up = (
            await session_.scalars(select(AuditEntry).where(AuditEntry.action == "assistant_gave_up"))
        ).all()
        pages = (await session_.scalars(select(OutboxItem).where(OutboxItem.case_id == case.id))).all()
        assert case.id in await unanswered.assistant_failed(session_, [case.id])
        return message, case, list(gave_up), list(pages)

    _, case, gave_up, pages = wait_for(lambda: read(stack, handed_over), timeout=60)
    assert case.level == "yellow" and case.opened_reason == "engine_gave_up"
    assert [e.detail["message_id"] for e in gave_up] == [message_id]
    assert any(p.kind == "page" for p in pages)

    stack.start_process("engine")  # the engine comes back: the retry worker answers the message
    stack.wait_ready(timeout=300)

    async def answered(session_: Any) -> list[str] | None:
        message = await session_.get(Message, message_id)
        if message.status != InboundStatus.ANSWERED:
            return None
        return [r.text for r in await messages.replies_to(session_, message_id)]

    replies = wait_for(lambda: read(stack, answered), timeout=120)
    assert len(replies) > 1, "the engine's answer follows the fail-safe script"
    later = http.get("/api/messages", params={"after": 0}, headers={"X-Xinqiao-Session": session}).json()
    assert [r["text"] for r in later["replies"]] == replies
