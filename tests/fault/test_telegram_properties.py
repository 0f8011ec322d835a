"""Property tests of the Telegram webhook, in-process on a migrated SQLite store with the Bot API as a
loopback stand-in: updates built with python-telegram-bot's own types (any text, any entities, bot
commands with words after them, edits), raw bodies of any shape, right and wrong secret tokens. Each
answer is 200, 400 for what PTB cannot read, 403 for a wrong secret, never a 5xx; the answer names no
secret; red or orange words are stored once with their case, and red ones are answered with the numbers
in the chat."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from sanic import Sanic
from telegram import MessageEntity, Update

from integrations.channels.telegram import (
    SECRET_HEADER,
    WEBHOOK_PATH,
    TelegramSettings,
    external_id_of,
    telegram_plugin,
)
from tests.channels import telegram_payloads as tg
from tests.channels.line import Line, line_for
from tests.channels.standin import StandIn, running_stand_in
from tests.fault import support
from tests.fault.conftest import Forbidden
from tests.fault.support import Runner, Store, examples
from tests.unit.fakes import FakeEngine

Sanic.test_mode = True

ENTITY_TYPES = [
    MessageEntity.BOT_COMMAND,
    MessageEntity.BOLD,
    MessageEntity.URL,
    MessageEntity.MENTION,
    MessageEntity.CUSTOM_EMOJI,
    "no_such_entity_type",
]
COMMANDS = ["/start", "/myid", "/help", "/restart", "/start@xinqiao_test_bot", "/start@another_bot", "/"]


class TelegramLine:
    def __init__(self, url: str, stand_in: StandIn, forbidden: Forbidden) -> None:
        self.runner = Runner()
        self.stand_in = stand_in
        self.store = Store(url)
        plugin = telegram_plugin(
            TelegramSettings(token=tg.TOKEN, webhook_secret=tg.SECRET, api_base_url=stand_in.url)  # type: ignore[call-arg]
        )
        self.line: Line = line_for(
            url,
            self.store.sessions,
            plugin,
            engine=FakeEngine(),
            rasa_token=support.RASA_TOKEN,
            session_secret=support.SESSION_SECRET,
            engine_timeout_seconds=1.0,
        )
        self.forbidden = forbidden
        forbidden.add("Telegram bot token", tg.TOKEN)
        forbidden.add("Telegram bot token's secret part", tg.TOKEN.split(":", 1)[1])
        forbidden.add("Telegram webhook secret", tg.SECRET)
        forbidden.add("Rasa token", support.RASA_TOKEN)
        forbidden.add("session secret", support.SESSION_SECRET)
        for text in support.RED_TEXTS:
            forbidden.add("red text", text)

    @property
    def app(self) -> Sanic:
        return self.line.app

    def secrets(self) -> list[str]:
        return [tg.TOKEN, tg.SECRET, support.RASA_TOKEN, support.SESSION_SECRET]

    async def post(self, body: bytes, secret: str | None = tg.SECRET, *, allow_503: bool = False) -> Any:
        self.app.ctx.channel_sender_limiter = None  # a new rate window each example
        self.stand_in.requests.clear()
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers[SECRET_HEADER] = secret
        _, response = await self.app.asgi_client.post(WEBHOOK_PATH, content=body, headers=headers)
        if not (allow_503 and response.status == 503):
            support.assert_no_bare_5xx(response)
            assert response.status < 500, (
                f"Telegram's webhook answered {response.status}: {response.text[:300]}"
            )
        support.assert_no_secret(response, self.secrets())
        return response

    def sent_to(self, chat_id: int) -> list[str]:
        return [text for chat, text in tg.sent(self.stand_in) if chat == chat_id]

    def close(self) -> None:
        self.runner.run(self.store.close())
        self.runner.close()


@pytest.fixture
def telegram(db: str, forbidden: Forbidden) -> Iterator[TelegramLine]:
    for stand_in in running_stand_in():
        made = TelegramLine(db, tg.bot_api(stand_in), forbidden)
        yield made
        made.close()


def body_of(update: dict[str, Any]) -> bytes:
    return support.json_bytes(update)


@st.composite
def text_updates(draw: st.DrawFn) -> tuple[dict[str, Any], str, int]:
    """(update, its text, chat id): a private text message from a new chat, with any entities."""
    chat_id = draw(st.integers(min_value=10**9, max_value=2**52))
    kind = draw(st.sampled_from(["text", "command", "edited", "entities", "button"]))
    if kind == "button":  # a press on one of the bot's buttons: its payload is the child's words
        data = draw(st.one_of(support.red_mixed(), support.GARBAGE))
        return tg.button_update(data, chat_id), data, chat_id
    if kind == "command":
        command = draw(st.sampled_from(COMMANDS[:-1]))
        words = draw(st.one_of(support.red_mixed(), support.GARBAGE, st.just("")))
        separator = draw(st.sampled_from([" ", "", "\n", "\u3000"]))
        text = command + separator + words
        return tg.command_update(text, command, chat_id), text, chat_id
    text = draw(support.texts())
    if kind == "entities":
        length = len(text.encode("utf-16-le", "surrogatepass")) // 2
        entities = draw(
            st.lists(
                st.builds(
                    MessageEntity,
                    st.sampled_from(ENTITY_TYPES),
                    st.integers(0, length + 3),
                    st.integers(0, length + 3),
                ),
                max_size=3,
            )
        )
        return tg.text_update(text, chat_id, entities=entities), text, chat_id
    update = tg.text_update(text, chat_id)
    if kind == "edited":
        update = tg.edited_update(update, draw(support.texts()))
        text = update["edited_message"]["text"]
    return update, text, chat_id


SURROGATE = re.compile(r"[\ud800-\udfff]")


def is_command(update: dict[str, Any], text: str) -> bool:
    """Whether the product reads the update as /start or /myid addressed to this bot."""
    parsed = Update.de_json(update, None)
    if parsed is not None and parsed.callback_query is not None:
        return False
    message = parsed.effective_message if parsed else None
    first = message.entities[0] if message is not None and message.entities else None
    if first is None or first.type != MessageEntity.BOT_COMMAND or first.offset != 0:
        return False
    command = text.encode("utf-16-le", "surrogatepass")[: 2 * first.length].decode(
        "utf-16-le", "surrogatepass"
    )
    name, _, bot = command.partition("@")
    return name in ("/start", "/myid") and bot in ("", tg.BOT.username)


def defect_b(update: dict[str, Any], text: str) -> bool:
    """A lone surrogate in a /start or /myid message: defect B (test_a_command_with_a_lone_surrogate_…)."""
    return bool(SURROGATE.search(text)) and is_command(update, text)


def words_of(update: dict[str, Any], text: str) -> str | None:
    """The words the child wrote, as the product cleans them (after any command at the start)."""
    parsed = Update.de_json(update, None)
    if parsed is not None and parsed.callback_query is not None:
        return support.cleaned(parsed.callback_query.data)
    message = parsed.effective_message if parsed else None
    if message is None:
        return None
    first = message.entities[0] if message.entities else None
    if first is not None and first.type == MessageEntity.BOT_COMMAND and first.offset == 0:
        # as PTB's parse_entity reads it, in UTF-16 units, but keeping a lone surrogate
        units = text.encode("utf-16-le", "surrogatepass")
        command = units[: 2 * first.length].decode("utf-16-le", "surrogatepass")
        name, _, bot = command.partition("@")
        if name in ("/start", "/myid") and bot in ("", tg.BOT.username) and text.startswith(command):
            text = text[len(command) :]
    return support.cleaned(text)


def test_any_update_is_kept_and_answered_or_refused(telegram: TelegramLine) -> None:
    @examples(15)
    @given(drawn=text_updates())
    def check(drawn: tuple[dict[str, Any], str, int]) -> None:
        update, text, chat_id = drawn
        assume(not defect_b(update, text))
        telegram.forbidden.add("Telegram chat id", chat_id)
        telegram.forbidden.add_text(text)
        words = words_of(update, text)
        telegram.forbidden.add_text(words)
        telegram.runner.run(deliver_and_check(telegram, update, words, chat_id))

    check()


async def deliver_and_check(
    telegram: TelegramLine, update: dict[str, Any], words: str | None, chat_id: int
) -> None:
    response = await telegram.post(body_of(update))
    assert response.status == 200, (response.status, response.text, update)
    level = support.escalating(words, "student")
    if level is None:
        return
    parsed = Update.de_json(update, None)
    assert parsed is not None
    rows = await telegram.store.inbound("telegram", external_id_of(parsed))
    assert len(rows) == 1, f"{len(rows)} rows for {level} words {words!r}"
    assert await telegram.store.cases_of(rows[0].conversation_id), f"no case for {level} words {words!r}"
    answer = "\n".join(telegram.sent_to(chat_id))
    if level == "red":
        assert support.has_numbers(answer), f"red words {words!r} answered without the numbers: {answer!r}"
    # Telegram sends the same update again: still one row, nothing new sent
    again = await telegram.post(body_of(update))
    assert again.status == 200
    assert len(await telegram.store.inbound("telegram", external_id_of(parsed))) == 1


def test_red_words_after_a_command_or_in_garbage_are_never_lost(telegram: TelegramLine) -> None:
    @examples(8)
    @given(
        command=st.sampled_from(["/start", "/myid", "/start@xinqiao_test_bot", "/help", None]),
        text=support.red_mixed(),
        chat_id=st.integers(min_value=10**9, max_value=2**40),
    )
    def check(command: str | None, text: str, chat_id: int) -> None:
        full = text if command is None else f"{command} {text}"
        update = (
            tg.text_update(full, chat_id) if command is None else tg.command_update(full, command, chat_id)
        )
        assume(not defect_b(update, full))
        words = words_of(update, full)
        telegram.forbidden.add("Telegram chat id", chat_id)
        telegram.forbidden.add_text(words)
        telegram.runner.run(deliver_and_check(telegram, update, words, chat_id))

    check()


def test_red_words_past_the_per_sender_limit_get_the_numbers(telegram: TelegramLine) -> None:
    """After more than the per-sender limit of calm messages a minute, red words are still stored,
    escalated and answered with the numbers (the limit is kept for this test)."""
    chat_id = 7_000_000_003
    telegram.forbidden.add("Telegram chat id", chat_id)

    async def go() -> None:
        telegram.app.ctx.channel_sender_limiter = None
        for n in range(22):
            _, response = await telegram.app.asgi_client.post(
                WEBHOOK_PATH,
                content=body_of(tg.text_update(f"今天天气不错{n}", chat_id)),
                headers={"Content-Type": "application/json", SECRET_HEADER: tg.SECRET},
            )
            assert response.status == 200
        for text in (support.RED_TEXTS[0] + "\ud83d", "\u200b" + support.RED_TEXTS[1]):
            update = tg.text_update(text, chat_id)
            telegram.stand_in.requests.clear()
            _, response = await telegram.app.asgi_client.post(
                WEBHOOK_PATH,
                content=body_of(update),
                headers={"Content-Type": "application/json", SECRET_HEADER: tg.SECRET},
            )
            assert response.status == 200, response.text
            parsed = Update.de_json(update, None)
            assert parsed is not None
            rows = await telegram.store.inbound("telegram", external_id_of(parsed))
            assert len(rows) == 1 and await telegram.store.cases_of(rows[0].conversation_id)
            answer = "\n".join(telegram.sent_to(chat_id))
            assert support.has_numbers(answer), f"red words past the limit answered {answer!r}"

    telegram.runner.run(go())


def defect_i(body: bytes) -> bool:
    """A private chat whose id is no integer (a bool, a string, a list): defect I
    (test_an_update_with_a_chat_id_that_is_no_number_is_refused)."""
    try:
        data = json.loads(body)
        chat_id = data["message"]["chat"]["id"]
    except Exception:  # noqa: BLE001 - no chat id at all: not this defect
        return False
    return not isinstance(chat_id, int) or isinstance(chat_id, bool)


def raw_updates() -> st.SearchStrategy[bytes]:
    """Bodies a broken or hostile client sends with the right secret: not JSON, not an object, an update
    with fields of the wrong type, huge ids, missing parts."""
    message = st.fixed_dictionaries(
        {
            "message_id": support.field(st.integers(min_value=-(2**70), max_value=2**70)),
            "date": support.field(st.integers(min_value=0, max_value=2**40)),
            "chat": support.field(
                st.fixed_dictionaries(
                    {
                        "id": support.field(st.integers(min_value=-(2**70), max_value=2**70)),
                        "type": support.field(st.sampled_from(["private", "group", "channel", "x"])),
                    }
                )
            ),
            "text": support.field(support.texts()),
            "entities": support.field(
                st.lists(
                    st.fixed_dictionaries(
                        {
                            "type": support.field(st.sampled_from(ENTITY_TYPES)),
                            "offset": support.field(st.integers(-5, 5000)),
                            "length": support.field(st.integers(-5, 5000)),
                        }
                    ),
                    max_size=2,
                )
            ),
        }
    ).map(support.without_missing)
    update = st.fixed_dictionaries(
        {
            "update_id": support.field(st.integers(min_value=-(2**70), max_value=2**70)),
            "message": support.field(message),
        },
        optional={
            "edited_message": message,
            "callback_query": support.JSON_VALUES,
            "extra": support.JSON_VALUES,
        },
    ).map(support.without_missing)
    return st.one_of(support.MALFORMED_BODIES, support.JSON_VALUES.map(body_of), update.map(body_of))


def test_any_body_with_the_secret_is_handled_or_refused_as_malformed(telegram: TelegramLine) -> None:
    @examples(20)
    @given(body=raw_updates())
    def check(body: bytes) -> None:
        with contextlib.suppress(Exception):  # not an update: nothing to look for
            telegram.forbidden.add_text(json.loads(body).get("message", {}).get("text"))
        response = telegram.runner.run(telegram.post(body, allow_503=defect_i(body)))
        assert response.status in (200, 400, 413) or defect_i(body), (response.status, response.text)

    check()


def test_a_wrong_secret_is_refused_before_anything_is_kept(telegram: TelegramLine) -> None:
    @examples(8)
    @given(
        secret=st.one_of(st.none(), st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=60)),
        text=support.red_mixed(),
    )
    def check(secret: str | None, text: str) -> None:
        if secret == tg.SECRET:
            return

        async def go() -> None:
            before = await telegram.store.count_inbound()
            response = await telegram.post(body_of(tg.text_update(text, 7_000_000_001)), secret=secret)
            assert response.status == 403, response.text
            assert await telegram.store.count_inbound() == before

        telegram.runner.run(go())

    check()


# --- defects found ---------------------------------------------------------------------------------------


def test_a_command_with_a_lone_surrogate_keeps_its_red_words(telegram: TelegramLine) -> None:
    text = "/start " + support.RED_TEXTS[0] + "\ud83d"
    chat_id = 7_000_000_002
    update = tg.command_update(text, "/start", chat_id)
    telegram.forbidden.add("Telegram chat id", chat_id)
    telegram.runner.run(deliver_and_check(telegram, update, support.cleaned(support.RED_TEXTS[0]), chat_id))


def test_an_update_with_a_chat_id_that_is_no_number_is_refused(telegram: TelegramLine) -> None:
    async def go() -> None:
        answers = []
        for chat_id in (False, "abc"):
            update = {
                "update_id": 5,
                "message": {
                    "date": 5,
                    "text": "",
                    "chat": {"id": chat_id, "type": "private"},
                    "message_id": 7,
                },
            }
            response = await telegram.post(json.dumps(update).encode(), allow_503=True)
            answers.append((chat_id, response.status))
        assert all(status == 400 for _, status in answers), answers

    telegram.runner.run(go())
