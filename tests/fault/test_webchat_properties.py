"""Property tests of the web chat API (`POST /api/sessions`, `POST /api/messages`, `GET /api/messages`),
in-process on a migrated SQLite store, with any body: any code point (lone surrogates as JSON escapes,
control characters), huge and empty strings, wrong types, missing and extra fields, malformed JSON, any
`after`. Each answer is a 2xx, a 4xx JSON refusal with an `error` code naming no secret, or a 503 with
the numbers; a message whose cleaned words screen orange or red is stored once, has its case, and a red
one is answered with the numbers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sanic import Sanic

from integrations.gateway.app import create_app
from integrations.inbound import storable
from tests.fault import support
from tests.fault.conftest import Forbidden
from tests.fault.support import MISSING, Runner, Store, examples, field, without_missing
from tests.unit.apps import gateway_settings
from tests.unit.fakes import FakeEngine

Sanic.test_mode = True

AUDIENCES = st.sampled_from([None, "student", "parent"])


class Chat:
    """The app, its store and the test's loop."""

    def __init__(self, url: str, forbidden: Forbidden) -> None:
        self.runner = Runner()
        self.engine = FakeEngine()
        settings = gateway_settings(
            url,
            rasa_token=support.RASA_TOKEN,
            session_secret=support.SESSION_SECRET,
            engine_timeout_seconds=1.0,
        )
        self.app = create_app(
            settings,
            engine=self.engine,
            actions_up=lambda: True,
            background=False,
            name=f"fault_webchat_{uuid.uuid4().hex[:8]}",
        )
        self.store = Store(url)
        self.forbidden = forbidden
        self.tokens: list[str] = []
        forbidden.add("Rasa token", support.RASA_TOKEN)
        forbidden.add("session secret", support.SESSION_SECRET)
        for text in support.RED_TEXTS:
            forbidden.add("red text", text)

    def secrets(self) -> list[str]:
        return [support.RASA_TOKEN, support.SESSION_SECRET, *self.tokens]

    def fresh_limits(self) -> None:
        """Each example starts a new rate-limit window: the limit is not what these tests are about."""
        self.app.ctx.webchat_limits = None

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        self.fresh_limits()
        _, response = await getattr(self.app.asgi_client, method)(path, **kwargs)
        support.assert_no_bare_5xx(response)
        support.assert_no_secret(response, self.secrets())
        if response.status >= 400:
            body = response.json
            assert isinstance(body, dict) and isinstance(body.get("error"), str), support.body_text(response)
        return response

    async def new_session(self, audience: str | None = None) -> str:
        response = await self.request("post", "/api/sessions", json={"audience": audience})
        assert response.status == 201, response.text
        token = response.json["session"]
        self.tokens.append(token)
        self.forbidden.add("web chat session token", token)
        return token

    def close(self) -> None:
        self.runner.run(self.store.close())
        self.runner.close()


@pytest.fixture
def chat(db: str, forbidden: Forbidden) -> Iterator[Chat]:
    made = Chat(db, forbidden)
    yield made
    made.close()


def conversation_of(chat: Chat, token: str) -> str:
    from integrations.webchat.sessions import SessionTokens

    conversation = SessionTokens(support.SESSION_SECRET, 3600).conversation_of(token)
    assert conversation is not None
    return conversation


# --- POST /api/sessions ---------------------------------------------------------------------------------


def test_any_body_starts_a_session_or_is_refused_clearly(chat: Chat) -> None:
    bodies = st.one_of(
        support.MALFORMED_BODIES,
        support.JSON_VALUES.map(support.json_bytes),
        st.fixed_dictionaries({"audience": support.JSON_VALUES}).map(support.json_bytes),
    )
    content_types = st.sampled_from(
        ["application/json", "text/plain", "application/x-www-form-urlencoded", ""]
    )

    @examples(20)
    @given(body=bodies, content_type=content_types)
    def check(body: bytes, content_type: str) -> None:
        response = chat.runner.run(
            chat.request("post", "/api/sessions", content=body, headers={"content-type": content_type})
        )
        assert response.status in (201, 400, 413, 429), response.text
        if response.status == 201:
            token = response.json["session"]
            chat.tokens.append(token)
            chat.forbidden.add("web chat session token", token)

    check()


# --- POST /api/messages ---------------------------------------------------------------------------------


def message_bodies(session: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            # a session with a lone surrogate is defect A (test_a_session_with_a_lone_surrogate_is_a_bad_session)
            "session": field(st.one_of(st.just(session), st.just(session), support.GARBAGE_NO_SURROGATE)),
            "message_id": field(
                st.one_of(st.uuids().map(str), support.GARBAGE, st.text(min_size=120, max_size=140))
            ),
            "text": field(support.texts()),
        },
        optional={"extra": support.JSON_VALUES, "audience": support.JSON_VALUES},
    )


def test_any_message_is_kept_and_answered_or_refused_clearly(chat: Chat) -> None:
    sessions = {
        audience: chat.runner.run(chat.new_session(audience)) for audience in (None, "student", "parent")
    }

    @examples(40)
    @given(audience=AUDIENCES, data=st.data())
    def check(audience: str | None, data: st.DataObject) -> None:
        token = sessions[audience]
        fields = data.draw(message_bodies(token))
        chat.forbidden.add_text(fields.get("text"))
        if isinstance(fields.get("text"), str):
            chat.forbidden.add_text(support.cleaned(fields["text"]))
        raw = support.json_bytes(without_missing(fields))
        chat.runner.run(send_and_check(chat, token, audience, fields, raw))

    check()


async def send_and_check(
    chat: Chat, token: str, audience: str | None, fields: dict[str, Any], raw: bytes
) -> None:
    headers = {"content-type": "application/json"}
    response = await chat.request("post", "/api/messages", content=raw, headers=headers)
    valid_session = fields["session"] == token
    message_id = fields["message_id"]
    valid_id = isinstance(message_id, str) and 0 < len(storable(message_id)) <= 128
    text = fields["text"]
    words = support.cleaned(text) if text is not MISSING else None
    if not valid_session:
        assert response.status == 401, (response.status, response.text)
        return
    if not valid_id:
        assert response.status == 400, (response.status, response.text)
        return
    if words is None:
        assert response.status == 400, (response.status, response.text)
        return
    assert response.status == 200, (response.status, response.text, fields)
    conversation = conversation_of(chat, token)
    external_id = f"{conversation}:{storable(message_id)}"
    rows = await chat.store.inbound("webchat", external_id)
    assert len(rows) <= 1, f"{len(rows)} rows for one message id"
    if not response.json["duplicate"]:
        assert len(rows) == 1, "an accepted message was not stored under its id"
    kept = await chat.store.message(response.json["message_id"])
    assert kept is not None and kept.direction == "in" and kept.conversation_id == conversation, (
        "the answer names no stored message of this conversation"
    )
    stored = [kept]
    level = support.escalating(words, audience)
    answer = "\n".join(r["text"] for r in response.json["replies"])
    assert answer, "an accepted message got no reply at all"
    if level is not None:
        assert stored[0].risk_level in ("orange", "red"), (stored[0].risk_level, words)
        assert await chat.store.cases_of(conversation), f"no case for {level} words {words!r}"
    if level == "red" and not response.json["duplicate"]:
        assert support.has_numbers(answer), f"a red message answered without the numbers: {answer!r}"
    # the same message again: one row, answered from the store
    again = await chat.request("post", "/api/messages", content=raw, headers=headers)
    assert again.status == 200, again.text
    assert again.json["duplicate"] is True
    assert len(await chat.store.inbound("webchat", external_id)) == len(rows)


def test_red_words_in_garbage_always_open_a_case_and_get_the_numbers(chat: Chat) -> None:
    """Every red text, wrapped in garbage or followed by a lone surrogate, in a new conversation each time
    (so a case open from an earlier example proves nothing)."""

    @examples(10)
    @given(text=support.red_mixed(), audience=AUDIENCES)
    def check(text: str, audience: str | None) -> None:
        words = support.cleaned(text)
        chat.forbidden.add_text(words)
        if words is None or support.escalating(words, audience) is None:
            return  # the garbage broke the words (over the limit, or a character inside the phrase)

        async def go() -> None:
            token = await chat.new_session(audience)
            fields = {"session": token, "message_id": uuid.uuid4().hex, "text": text}
            await send_and_check(chat, token, audience, fields, support.json_bytes(fields))

        chat.runner.run(go())

    check()


# --- GET /api/messages ----------------------------------------------------------------------------------


def test_later_replies_with_any_session_and_any_after(chat: Chat) -> None:
    token = chat.runner.run(chat.new_session())
    chat.runner.run(
        chat.request(
            "post", "/api/messages", json={"session": token, "message_id": "m1", "text": "你好，在吗"}
        )
    )
    afters = st.one_of(
        st.integers(min_value=-(2**80), max_value=2**80).map(str),
        st.sampled_from(
            [
                "99999999999999999999999",
                "9223372036854775808",
                "-9223372036854775809",
                "1e9",
                "0x10",
                " 1",
                "１２",
                "٣",
                "",
                "NaN",
                "-0",
                "+5",
                "1_000",
            ]
        ),
        support.GARBAGE,
    )

    @examples(25)
    @given(
        where=st.sampled_from(["header", "query", "both", "none"]),
        session=st.one_of(st.just(token), support.GARBAGE),
        after=st.one_of(st.just(MISSING), afters),
    )
    def check(where: str, session: str, after: Any) -> None:
        params: dict[str, str] = {}
        headers: dict[str, str] = {}
        # a header value must be latin-1 text without line breaks; anything else is not sendable
        header_ok = session.isascii() and session.isprintable()
        if where in ("header", "both") and header_ok:
            headers["X-Xinqiao-Session"] = session
        if where in ("query", "both"):
            params["session"] = session.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        if after is not MISSING:
            params["after"] = after.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        response = chat.runner.run(chat.request("get", "/api/messages", params=params, headers=headers))
        assert response.status in (200, 400, 401), response.text
        if response.status == 200:
            assert isinstance(response.json["replies"], list)

    check()


def test_red_words_are_kept_and_answered_past_the_rate_limit(chat: Chat) -> None:
    """The one test here that keeps the limits: a session that sent many calm messages (and was refused)
    still has every red message stored, its case opened and the numbers answered."""

    @examples(5)
    @given(texts=st.lists(support.red_mixed(), min_size=1, max_size=3), calm=st.integers(21, 30))
    def check(texts: list[str], calm: int) -> None:
        async def go() -> None:
            token = await chat.new_session()
            _, limited = None, None
            for n in range(calm):
                _, limited = await chat.app.asgi_client.post(
                    "/api/messages",
                    json={"session": token, "message_id": f"calm-{n}", "text": "今天天气不错"},
                )
            assert limited is not None and limited.status == 429, "the web chat never slowed a flood"
            for text in texts:
                words = support.cleaned(text)
                if words is None or support.escalating(words, None) is None:
                    continue
                chat.forbidden.add_text(words)
                fields = {"session": token, "message_id": uuid.uuid4().hex, "text": text}
                _, response = await chat.app.asgi_client.post(
                    "/api/messages",
                    content=support.json_bytes(fields),
                    headers={"content-type": "application/json"},
                )
                assert response.status == 200, (response.status, response.text)
                answer = "\n".join(r["text"] for r in response.json["replies"])
                assert await chat.store.cases_of(conversation_of(chat, token))
                if support.escalating(words, None) == "red":
                    assert support.has_numbers(answer), answer

        chat.fresh_limits()
        chat.runner.run(go())

    check()


# --- defects found ---------------------------------------------------------------------------------------


def test_a_session_with_a_lone_surrogate_is_a_bad_session(chat: Chat) -> None:
    async def go() -> None:
        body = {"session": "\ud800", "message_id": "a", "text": support.RED_TEXTS[0]}
        response = await chat.request(
            "post",
            "/api/messages",
            content=support.json_bytes(body),
            headers={"content-type": "application/json"},
        )
        assert response.status == 401, response.text
        assert response.json["error"] == "bad_session"

    chat.runner.run(go())
