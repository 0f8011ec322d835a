"""End to end (issue 12): the reader chooses the words, and the assistant asks rather than guesses.

The real engine with the trained model, the action server and the gateway, on loopback ports:
- every crisis intent of the NLU, for a student and for a parent: the crisis reply is written for the
  reader the session was opened for (the gateway tells the engine who writes before the first message).
  These messages go straight to the engine's REST channel with the screen's verdict in the metadata, as
  the gateway sends a message it put below orange: through the gateway the screen itself would take them;
- a message the screens are unsure of is answered, then asked about once; a yes opens an orange case and
  starts the ASQ, a no opens nothing and the talk carries on;
- a calm message the NLU misreads as a crisis opens no case and gets no crisis reply.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from integrations.engine_client import RasaClient
from integrations.launcher import Stack, StackConfig, running
from records.db import with_session
from records.migrate import upgrade
from records.models import AuditEntry, Case, Message
from records.roster import put_on_call
from tests.support import require_trained_model, variations
from triage_protocols import instrument, screen
from triage_protocols.directory import hotline_list

pytestmark = pytest.mark.engine

# One message a crisis intent (the NLU's held-out paraphrases, which training never sees) and its reply.
CRISIS_INTENTS = {
    "suicidal_thoughts": ("活着没意思 不想活了", "utter_crisis_suicidal_thoughts"),
    "self_harm": ("我又割自己了", "utter_crisis_self_harm"),
    "abuse": ("我爸喝醉了就打我", "utter_crisis_abuse"),
    "friend_at_risk": ("我朋友说她想死", "utter_crisis_friend_at_risk"),
    "parent_child_self_harm": ("娃承认自己割过手 我该怎么跟她谈", "utter_crisis_parent_child_self_harm"),
    "parent_child_death_talk": ("孩子最近老问人死了会去哪里 还说想消失", "utter_crisis_parent_child_death_talk"),
}
# learned.yml's own example of the grey band: the screens are unsure of it
UNSURE = "不想再努力了"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_trained_model()
    work = tmp_path_factory.mktemp("stack")
    config = StackConfig.isolated(
        work, {"XINQIAO_ENGINE_TIMEOUT_SECONDS": "20", "XINQIAO_RETRY_INTERVAL_SECONDS": "3600"}
    )
    upgrade(config.database_url)
    asyncio.run(
        with_session(config.database_url, lambda s: put_on_call(s, volunteers=["v1", "v2", "v3"], supervisors=["s1"]))
    )
    with running(config, timeout=300) as started:
        yield started


def read(stack: Stack, work: Any) -> Any:
    return asyncio.run(with_session(stack.config.database_url, work))


def case_of(stack: Stack, conversation: str) -> Case | None:
    async def found(session: Any) -> Case | None:
        return await session.scalar(select(Case).where(Case.conversation_id == conversation))

    return read(stack, found)


def audit_actions(stack: Stack, conversation: str) -> list[str]:
    async def found(session: Any) -> list[str]:
        query = select(AuditEntry.action).where(AuditEntry.subject == conversation).order_by(AuditEntry.id)
        return list((await session.scalars(query)).all())

    return read(stack, found)


def to_engine(stack: Stack, text: str, audience: str, score: float) -> tuple[str, list[str]]:
    """A message as the gateway sends one it screened below orange: a new conversation whose audience the
    gateway's own client tells the engine first, and the screen's verdict in the metadata. Returns the
    conversation and the texts."""
    conversation = uuid.uuid4().hex

    async def introduce() -> None:
        async with httpx.AsyncClient() as http:
            client = RasaClient(http, stack.config.engine_url, stack.config.rasa_token, 30)
            await client.set_audience(conversation, audience)

    asyncio.run(introduce())
    metadata = {"audience": audience, "risk": {"level": "green", "rule": "no_signal", "score": score}}
    response = httpx.post(
        f"{stack.config.engine_url}/webhooks/rest/webhook",
        params={"token": stack.config.rasa_token},
        json={"sender": conversation, "message": text, "metadata": metadata},
        timeout=60,
    )
    response.raise_for_status()
    return conversation, [reply.get("text") or "" for reply in response.json()]


def predicted_intent(stack: Stack, conversation: str) -> str:
    tracker = httpx.get(
        f"{stack.config.engine_url}/conversations/{conversation}/tracker",
        params={"token": stack.config.rasa_token},
        timeout=30,
    ).json()
    return tracker["latest_message"]["intent"]["name"]


@pytest.mark.parametrize("audience", ["student", "parent"])
@pytest.mark.parametrize("intent", sorted(CRISIS_INTENTS))
def test_every_crisis_intent_is_answered_in_the_readers_own_words(stack: Stack, intent: str, audience: str) -> None:
    text, response = CRISIS_INTENTS[intent]
    conversation, replies = to_engine(stack, text, audience, score=0.9)
    assert predicted_intent(stack, conversation) == intent
    assert replies[0] in variations(response, audience)
    assert replies[1] == next(iter(variations("utter_crisis_hotlines", hotline_list=hotline_list())))
    if audience == "student":
        assert not any("您" in reply for reply in replies), replies  # nothing written for a parent
    else:
        assert "您" in replies[0] or "孩子" in replies[0], replies
    assert case_of(stack, conversation) is not None  # the crisis path records a request for a person


def test_a_crisis_intent_the_screen_is_sure_is_calm_opens_nothing(stack: Stack) -> None:
    conversation, replies = to_engine(stack, "活着没意思 不想活了", "student", score=0.01)
    assert replies[0] in variations("utter_default")
    assert case_of(stack, conversation) is None
    assert audit_actions(stack, conversation) == ["crisis_intent_gated"]


class Chat:
    """One web chat user through the gateway, the session opened for a reader."""

    def __init__(self, stack: Stack, audience: str | None = "student") -> None:
        self.http = httpx.Client(base_url=stack.config.gateway_url, timeout=60)
        body = {"audience": audience} if audience else {}
        self.session = self.http.post("/api/sessions", json=body).json()["session"]

    def say(self, text: str) -> list[dict[str, Any]]:
        response = self.http.post(
            "/api/messages", json={"session": self.session, "message_id": uuid.uuid4().hex, "text": text}
        )
        assert response.status_code == 200, response.text
        return response.json()["replies"]


def test_an_unsure_message_is_answered_then_asked_about_and_a_yes_opens_an_orange_case(stack: Stack) -> None:
    assert screen(UNSURE).unsure == "grey_band"
    chat = Chat(stack)
    first = chat.say(UNSURE)
    assert first[-1]["text"] in variations("utter_ask_risk_question", "student")
    assert [b["title"] for b in first[-1]["buttons"]] == ["是的，有过", "没有"]
    assert len(first) > 1  # the message itself was answered first
    conversation = latest_conversation(stack)
    assert case_of(stack, conversation) is None  # the question alone opens no case
    answer = [r["text"] for r in chat.say("是的，有过")]
    assert answer[0] in variations("utter_risk_question_yes", "student")
    assert answer[1] == next(iter(variations("utter_crisis_hotlines", hotline_list=hotline_list())))
    assert answer[-1] == instrument("asq").items[0].text  # then the ASQ, one question at a time
    case = case_of(stack, conversation)
    assert case is not None and case.level == "orange"
    assert "risk_question_asked" in audit_actions(stack, conversation)


def test_a_no_carries_on_and_opens_nothing(stack: Stack) -> None:
    chat = Chat(stack)
    assert chat.say(UNSURE)[-1]["text"] in variations("utter_ask_risk_question", "student")
    conversation = latest_conversation(stack)
    answer = [r["text"] for r in chat.say("没有")]
    assert answer == [t for t in answer if t in variations("utter_risk_question_no", "student")]
    assert case_of(stack, conversation) is None
    assert audit_actions(stack, conversation)[-1] == "risk_question_denied"
    # and the talk carries on: the next message is answered as any other, and not asked about again
    again = chat.say(UNSURE)
    assert not any(r["text"] in variations("utter_ask_risk_question", "student") for r in again)


def test_a_parent_is_asked_about_the_child(stack: Stack) -> None:
    chat = Chat(stack, "parent")
    replies = chat.say(UNSURE)
    assert replies[-1]["text"] in variations("utter_ask_risk_question", "parent")


def latest_conversation(stack: Stack) -> str:
    """The conversation of the newest stored message (each test's chat writes last)."""

    async def found(session: Any) -> str:
        return await session.scalar(select(Message.conversation_id).order_by(Message.id.desc()).limit(1))

    return read(stack, found)


def test_a_parent_who_says_so_with_a_question_gets_the_guidance_a_counsellors_offer_and_on_yes_a_person(
    stack: Stack,
) -> None:
    # nobody said who writes; the parent says it in the same message as the question (action_remember_audience)
    chat = Chat(stack, None)
    replies = [r["text"] for r in chat.say("我是学生家长，想问问兄弟俩天天吵架争宠怎么办")]
    assert replies[0].startswith("【兄弟姐妹吵架争宠】")
    assert replies[-1] in variations("utter_offer_counsellor", "parent")
    conversation = latest_conversation(stack)
    answer = [r["text"] for r in chat.say("好的")]
    assert answer[0] == next(iter(variations("utter_handoff", hotline_list=hotline_list())))
    case = case_of(stack, conversation)
    assert case is not None and "handoff_requested" in audit_actions(stack, conversation)
