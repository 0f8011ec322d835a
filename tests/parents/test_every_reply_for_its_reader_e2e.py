"""Every intent, for a student and for a parent: no reply is written for the other reader (issue 13).

The real engine and action server: for each intent a person's words can carry (and the gateway's own
crisis intents), a new conversation whose reader the gateway's client tells the engine first, then the
intent itself (Rasa's trigger_intent, so the rules answer exactly that intent, whatever the NLU would read
in some words). Each reply is looked up in `tests/support.py:written_for`, which reads every response of
the domain and every guidance topic: a reply written for the other reader fails the test. The reader is
the one the conversation has after the turn (a person who says "我是家长" is a parent from then on).

Small talk and service questions (faq/*, chitchat/*) are answered by retrieval with words for either
reader (responses_shared.yml); `written_for` says so, and they are not walked here.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from integrations.engine_client import RasaClient
from integrations.launcher import Stack, StackConfig, running
from records.migrate import upgrade
from tests.support import ROOT, require_trained_model, wrong_reader

pytestmark = pytest.mark.engine

GATEWAY_INTENTS = {
    "EXTERNAL_risk_red": {"risk_level": "red", "risk_subject": "self", "risk_signals": ["plan.concrete"]},
    "EXTERNAL_risk_orange": {"risk_level": "orange", "risk_subject": "self", "risk_signals": ["ideation.want_to_die"]},
    "EXTERNAL_risk_orange_other": {"risk_level": "orange", "risk_subject": "other", "risk_signals": ["ideation.want_to_die"]},
    "EXTERNAL_risk_unsure": {"risk_level": "green"},
}
ANSWERED_BY_RETRIEVAL = ("faq", "chitchat")


def walked_intents() -> list[str]:
    names: list[str] = []
    for path in sorted((ROOT / "bot" / "domain").glob("*.yml")):
        for intent in yaml.safe_load(path.read_text(encoding="utf-8")).get("intents") or []:
            name = intent if isinstance(intent, str) else next(iter(intent))
            if name not in ANSWERED_BY_RETRIEVAL:
                names.append(name)
    return sorted(names)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_trained_model()
    work = tmp_path_factory.mktemp("stack")
    config = StackConfig.isolated(work, {"XINQIAO_RETRY_INTERVAL_SECONDS": "3600"})
    upgrade(config.database_url)
    with running(config, timeout=300) as started:
        yield started


def turn(stack: Stack, intent: str, audience: str) -> tuple[list[str], str | None]:
    """The replies to one intent in a new conversation for this reader, and the reader afterwards."""
    conversation = uuid.uuid4().hex

    async def run() -> tuple[list[str], str | None]:
        async with httpx.AsyncClient() as http:
            client = RasaClient(http, stack.config.engine_url, stack.config.rasa_token, 60)
            await client.set_audience(conversation, audience)
            replies = await client.trigger(conversation, intent, GATEWAY_INTENTS.get(intent, {}))
            tracker = await http.get(
                f"{stack.config.engine_url}/conversations/{conversation}/tracker",
                params={"token": stack.config.rasa_token, "include_events": "NONE"},
            )
            return [reply.text for reply in replies], tracker.json()["slots"].get("audience")

    return asyncio.run(run())


@pytest.mark.parametrize("audience", ["student", "parent"])
@pytest.mark.parametrize("intent", walked_intents())
def test_no_reply_is_written_for_the_other_reader(stack: Stack, intent: str, audience: str) -> None:
    try:
        replies, reader = turn(stack, intent, audience)
    except Exception as error:  # noqa: BLE001 - an intent with no reply of its own (affirm, deny) is fine
        if "empty reply" in str(error):
            return
        raise
    wrong = [text for text in replies if wrong_reader(text, reader or audience)]
    assert wrong == [], f"{intent} for a {reader}: {wrong}"
