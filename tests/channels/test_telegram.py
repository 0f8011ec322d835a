"""The Telegram channel through the real app, the real store and python-telegram-bot, with the Bot API
played by a loopback stand-in: Telegram's webhook posts (updates built with PTB's own types) are checked,
queued and handled by PTB's Application, and what the bot sends is read back from the stand-in.

In tests the app's listeners run around each ASGI request, so the bot starts with the request and stops
after it, having handled every queued update: a test still waits on the stand-in, never on a clock."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from telegram import MessageEntity, Update

from integrations.channels import base, telegram
from integrations.channels.telegram import (
    SECRET_HEADER,
    WEBHOOK_PATH,
    OneChatInOrder,
    TelegramSettings,
    telegram_plugin,
)
from integrations.content import failsafe_text, gateway_texts
from integrations.engine_client import BotReply
from integrations.paging.senders import Page
from records.models import Counsellor, Message
from tests.channels import telegram_payloads as tg
from tests.channels.line import Line, Sessions, line_for
from tests.channels.standin import StandIn, running_stand_in
from tests.unit.fakes import FakeEngine

RED = "药已经准备好了，今晚我就吃下去"
ONLY_TEXT = base.common_texts().only_text
# The words of issue 11 (defect 2), written after a command: red.
START_RED = "药我已经准备好了，今晚就全吃下去"
DOMAIN_DIR = Path(__file__).resolve().parents[2] / "bot" / "domain"
# What Rasa says to a student when the gateway triggers EXTERNAL_risk_red (data/rules/triage.yml).
RED_RESPONSES = (
    "utter_crisis_red",
    "utter_crisis_hotlines",
    "utter_counsellor_being_called",
    "utter_ask_safe_now",
)


@cache
def rasa_says(name: str) -> BotReply:
    """A domain response as Rasa sends it to a student (its variant without a condition), the hotline list
    filled in as the crisis action fills it."""
    for path in sorted(DOMAIN_DIR.glob("*.yml")):
        variants = (yaml.safe_load(path.read_text(encoding="utf-8")).get("responses") or {}).get(name)
        if variants:
            plain = next(variant for variant in variants if "condition" not in variant)
            text = plain["text"].replace("{hotline_list}", base.hotline_list())
            return BotReply(text, buttons=plain.get("buttons", []))
    raise LookupError(name)


def red_answer() -> list[str]:
    return [rasa_says(name).text for name in RED_RESPONSES]


@dataclass
class CrisisEngine(FakeEngine):
    """A FakeEngine whose crisis path answers as the real domain does for a student at red."""

    async def trigger(self, sender_id: str, intent: str, entities: dict[str, Any]) -> list[BotReply]:
        await super().trigger(sender_id, intent, entities)
        return [rasa_says(name) for name in RED_RESPONSES]


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    for running in running_stand_in():
        yield tg.bot_api(running)


def settings(stand_in: StandIn, **overrides: Any) -> TelegramSettings:
    values: dict[str, Any] = {"token": tg.TOKEN, "webhook_secret": tg.SECRET, "api_base_url": stand_in.url}
    return TelegramSettings(**{**values, **overrides})


def telegram_line(
    database_url: str, sessions: Sessions, stand_in: StandIn, engine: FakeEngine | None = None, **options: Any
) -> Line:
    gateway_options = {k: options.pop(k) for k in list(options) if k in ("public_url", "page_max_attempts")}
    plugin = telegram_plugin(settings(stand_in, **options))
    return line_for(database_url, sessions, plugin, engine=engine, **gateway_options)


@pytest.fixture
def line(database_url: str, sessions: Sessions, stand_in: StandIn) -> Line:
    return telegram_line(database_url, sessions, stand_in)


async def post(line: Line, update: dict[str, Any] | bytes, secret: str | None = tg.SECRET) -> Any:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    body = update if isinstance(update, bytes) else json.dumps(update, ensure_ascii=False).encode()
    _, response = await line.app.asgi_client.post(WEBHOOK_PATH, content=body, headers=headers)
    return response


async def inbound_messages(line: Line) -> list[Message]:
    async with line.sessions() as session:
        found = await session.scalars(select(Message).where(Message.direction == "in").order_by(Message.id))
        return list(found)


async def stored_inbound(line: Line) -> int:
    async with line.sessions() as session:
        return (
            await session.scalar(select(func.count()).select_from(Message).where(Message.direction == "in"))
            or 0
        )


async def test_a_text_message_is_answered_in_its_chat(line: Line, stand_in: StandIn) -> None:
    response = await post(line, tg.text_update("你好"))
    assert response.status == 200
    await stand_in.wait_for(tg.SEND)
    assert tg.sent(stand_in) == [(tg.CHAT_ID, "你好，我在。")]
    [(conversation, text, metadata)] = line.engine.calls
    assert text == "你好" and metadata["channel"] == "telegram"
    assert str(tg.CHAT_ID) not in conversation  # the engine sees the pseudonymous conversation only


@pytest.mark.parametrize("secret", [None, "", "wrong-secret-wrong-secret-wrong-secret-0000", tg.SECRET[:-1]])
async def test_a_forged_or_missing_secret_token_is_refused(
    line: Line, stand_in: StandIn, secret: str | None
) -> None:
    response = await post(line, tg.text_update(RED), secret=secret)
    assert response.status == 403
    assert await stored_inbound(line) == 0
    assert line.engine.calls == [] and line.engine.triggered == []
    assert tg.sent(stand_in) == []


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"text"', b'{"no_update_id": 1}', b""])
async def test_a_malformed_update_is_a_bad_request(line: Line, stand_in: StandIn, body: bytes) -> None:
    response = await post(line, body)
    assert response.status == 400
    assert await stored_inbound(line) == 0 and tg.sent(stand_in) == []


async def test_an_oversize_body_is_refused(line: Line) -> None:
    response = await post(line, tg.text_update("你" * 40_000))
    assert response.status == 413
    assert await stored_inbound(line) == 0


async def test_a_redelivered_update_is_processed_and_answered_once(line: Line, stand_in: StandIn) -> None:
    update = tg.text_update("你好")
    assert (await post(line, update)).status == 200
    await stand_in.wait_for(tg.SEND)
    assert (await post(line, update)).status == 200  # Telegram did not get our 200 and sends it again
    assert len(line.engine.calls) == 1
    # The first copy's replies went out; a redelivery sends nothing more (no duplicate in the child's chat).
    assert tg.sent(stand_in) == [(tg.CHAT_ID, "你好，我在。")]
    assert await stored_inbound(line) == 1


async def test_a_handling_that_fails_before_the_words_are_kept_is_not_acknowledged(
    line: Line, stand_in: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Telegram forgets an update once it has our 200: a 200 for words that were never kept would lose
    them. The child still reads the numbers at once, and Telegram's redelivery is kept and answered."""
    real = base.contacts.conversation_for

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a fault before the store")

    monkeypatch.setattr(base.contacts, "conversation_for", broken)
    update = tg.text_update(RED)
    assert (await post(line, update)).status == 503
    await stand_in.wait_for(tg.SEND)
    assert tg.sent(stand_in) == [(tg.CHAT_ID, failsafe_text())]
    assert await stored_inbound(line) == 0

    monkeypatch.setattr(base.contacts, "conversation_for", real)
    assert (await post(line, update)).status == 200
    assert await stored_inbound(line) == 1 and len(line.engine.triggered) == 1


async def test_a_store_that_is_down_gets_503_so_telegram_redelivers_and_the_numbers_once(
    line: Line, stand_in: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing could be kept: a 200 would make Telegram forget the child's words. The child reads the
    numbers at once, and not again at each of Telegram's redeliveries while the store is down."""
    real = base.contacts.conversation_for

    async def store_down(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("the database is down"))

    monkeypatch.setattr(base.contacts, "conversation_for", store_down)
    update = tg.text_update(RED)
    assert (await post(line, update)).status == 503
    assert (await post(line, update)).status == 503
    await stand_in.wait_for(tg.SEND)
    store_down_text = base._error_texts("store_down", 2000)[0]
    assert tg.sent(stand_in) == [(tg.CHAT_ID, store_down_text)]
    assert await stored_inbound(line) == 0

    monkeypatch.setattr(base.contacts, "conversation_for", real)
    assert (await post(line, update)).status == 200
    assert await stored_inbound(line) == 1 and len(line.engine.triggered) == 1


async def test_words_not_kept_within_the_deadline_get_503_and_are_answered_once(
    database_url: str, sessions: Sessions, stand_in: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    line = telegram_line(database_url, sessions, stand_in, ack_timeout_seconds=0.2)
    real = base.contacts.conversation_for

    async def slow(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.6)  # a store under load: slower than the webhook may wait
        return await real(*args, **kwargs)

    monkeypatch.setattr(base.contacts, "conversation_for", slow)
    update = tg.text_update("你好")
    assert (await post(line, update)).status == 503  # Telegram will send it again
    # the handling went on (the bot stops only when every queued update is handled): kept and answered
    assert await stored_inbound(line) == 1
    assert tg.sent(stand_in) == [(tg.CHAT_ID, "你好，我在。")]

    monkeypatch.setattr(base.contacts, "conversation_for", real)
    assert (await post(line, update)).status == 200  # the redelivery: kept already, not answered again
    assert len(line.engine.calls) == 1 and await stored_inbound(line) == 1
    assert len(tg.sent(stand_in)) == 1


@pytest.mark.parametrize("media", [tg.photo_update, tg.voice_update, tg.sticker_update])
async def test_photos_voice_and_stickers_get_the_only_text_reply(
    line: Line, stand_in: StandIn, media: Any
) -> None:
    assert (await post(line, media())).status == 200
    await stand_in.wait_for(tg.SEND)
    assert tg.sent(stand_in) == [(tg.CHAT_ID, ONLY_TEXT)]
    assert line.engine.calls == [] and await stored_inbound(line) == 0
    assert not stand_in.sent_to(f"{tg.API}/getFile")  # the media are never fetched


async def test_words_under_a_photo_are_screened_and_answered(line: Line, stand_in: StandIn) -> None:
    await line.staff()
    assert (await post(line, tg.photo_update(caption=RED))).status == 200
    await stand_in.wait_for(tg.SEND, 2)
    assert line.engine.triggered, "the caption reached the crisis path"
    texts = [text for _, text in tg.sent(stand_in)]
    assert texts[0] == "你好，我在。" and texts[-1] == ONLY_TEXT


async def test_an_edit_is_screened_as_a_new_message(line: Line, stand_in: StandIn) -> None:
    """Words added in an edit must not go unseen: the edited text is stored, screened and answered."""
    await line.staff()
    original = tg.text_update("今天好累")
    await post(line, original)
    await post(line, tg.edited_update(original, f"今天好累。{RED}"))
    await stand_in.wait_for(tg.SEND, 2)
    assert len(line.engine.calls) == 1 and len(line.engine.triggered) == 1
    assert await stored_inbound(line) == 2
    assert len([p for p in await line.pages() if p.case_id is not None]) >= 1


async def test_when_the_engine_is_down_the_fail_safe_is_sent(
    database_url: str, sessions: Sessions, stand_in: StandIn
) -> None:
    line = telegram_line(database_url, sessions, stand_in, engine=FakeEngine(down=True))
    assert (await post(line, tg.text_update("你好"))).status == 200
    await stand_in.wait_for(tg.SEND)
    assert tg.sent(stand_in) == [(tg.CHAT_ID, failsafe_text())]
    assert "12356" in failsafe_text()


async def test_a_red_message_takes_the_crisis_path_answers_and_pages(line: Line, stand_in: StandIn) -> None:
    await line.staff()
    assert (await post(line, tg.text_update(RED))).status == 200
    await stand_in.wait_for(tg.SEND)
    assert line.engine.triggered, "the switchboard triggered the crisis intent itself"
    assert tg.sent(stand_in)[0] == (tg.CHAT_ID, "你好，我在。")
    [conversation] = {sender for sender, _, _ in line.engine.triggered}
    case = await line.case_of(conversation)
    assert case.level == "red"
    pages = await line.pages()
    assert pages and {p.case_id for p in pages} == {case.id}


async def test_a_red_message_with_nobody_on_shift_gets_the_numbers_now(line: Line, stand_in: StandIn) -> None:
    await post(line, tg.text_update(RED))
    await stand_in.wait_for(tg.SEND, 2)
    assert [text for _, text in tg.sent(stand_in)][-1] == gateway_texts().no_counsellor_on_shift


async def test_a_counsellors_reply_from_the_console_reaches_the_chat(line: Line, stand_in: StandIn) -> None:
    await line.staff()
    await post(line, tg.text_update(RED))
    await stand_in.wait_for(tg.SEND)
    [conversation] = {sender for sender, _, _ in line.engine.triggered}
    await line.counsellor_writes(conversation, "我是心理老师，我在。", "你现在安全吗？")
    await stand_in.wait_for(tg.SEND, 3)
    assert tg.sent(stand_in)[1:] == [(tg.CHAT_ID, "我是心理老师，我在。"), (tg.CHAT_ID, "你现在安全吗？")]
    assert await line.deliver() == 0  # sent once


async def test_a_page_to_a_counsellor_on_telegram_goes_to_their_chat(
    database_url: str, sessions: Sessions, stand_in: StandIn
) -> None:
    line = telegram_line(database_url, sessions, stand_in, public_url="https://line.example.org")
    await line.staff()
    async with line.sessions() as session:
        for counsellor in await session.scalars(select(Counsellor)):
            counsellor.page_channel, counsellor.page_address = "telegram", str(9_000_000 + counsellor.id)
        await session.commit()
    await post(line, tg.text_update(RED))
    await stand_in.wait_for(tg.SEND)
    [conversation] = {sender for sender, _, _ in line.engine.triggered}
    case = await line.case_of(conversation)
    pages = await line.pages()
    paged = {p.counsellor_id for p in pages}
    await stand_in.wait_for(tg.SEND, 1 + len(paged))
    to_counsellors = [(chat, text) for chat, text in tg.sent(stand_in) if chat != tg.CHAT_ID]
    assert {chat - 9_000_000 for chat, _ in to_counsellors} == paged
    for _, text in to_counsellors:
        assert f"#{case.id}" in text and "红色" in text and "https://line.example.org/console" in text
        assert RED not in text and "药" not in text and str(tg.CHAT_ID) not in text
    assert all(p.status == "sent" and "telegram" in p.delivered_via for p in await line.pages())


async def test_a_page_without_a_chat_id_is_retried_not_lost(stand_in: StandIn) -> None:
    plugin = telegram_plugin(settings(stand_in))
    page = Page(outbox_id=1, counsellor_id=7, case_id=3, level="red", reason="case_opened")
    assert plugin.page_sender is not None
    with pytest.raises(ValueError, match="counsellor 7"):
        await plugin.page_sender.send(page)


async def test_many_messages_from_one_chat_get_the_slow_down_text(line: Line, stand_in: StandIn) -> None:
    for number in range(base.SENDER_LIMIT + 1):
        assert (await post(line, tg.text_update(f"第{number}句"))).status == 200
    await stand_in.wait_for(tg.SEND, base.SENDER_LIMIT + 1)
    slow_down = gateway_texts().slow_down.format(hotline_list=base.hotline_list())
    assert tg.sent(stand_in)[-1] == (tg.CHAT_ID, slow_down)
    assert len(line.engine.calls) == base.SENDER_LIMIT


async def test_buttons_become_an_inline_keyboard_and_a_press_is_the_childs_words(
    database_url: str, sessions: Sessions, stand_in: StandIn
) -> None:
    buttons = [{"title": "我是学生", "payload": "我是学生"}, {"title": "家长", "payload": "我是家长"}]
    engine = FakeEngine(replies=[BotReply("请问你是学生还是家长？", buttons=buttons)])
    line = telegram_line(database_url, sessions, stand_in, engine=engine)
    await post(line, tg.text_update("你好"))
    [request] = await stand_in.wait_for(tg.SEND)
    markup = json.loads(tg.sent_fields(request)["reply_markup"])
    assert [[(b["text"], b["callback_data"]) for b in row] for row in markup["inline_keyboard"]] == [
        [("我是学生", "我是学生")],
        [("家长", "我是家长")],
    ]
    press = tg.button_update("我是家长")
    await post(line, press)
    await stand_in.wait_for(tg.SEND, 2)
    assert line.engine.calls[-1][1] == "我是家长"  # the payload, as the web chat sends it
    [answered] = stand_in.sent_to(f"{tg.API}/answerCallbackQuery")
    assert tg.sent_fields(answered)["callback_query_id"] == press["callback_query"]["id"]
    await post(line, press)  # the same press redelivered
    assert len(line.engine.calls) == 2


async def test_start_and_myid_answer_without_storing_anything(line: Line, stand_in: StandIn) -> None:
    await post(line, tg.text_update("/start", entities=[_command("/start")]))
    await post(line, tg.text_update("/myid", entities=[_command("/myid")]))
    await stand_in.wait_for(tg.SEND, 2)
    welcome, my_id = (text for _, text in tg.sent(stand_in))
    assert welcome == telegram.telegram_texts().welcome and "12356" in welcome
    assert str(tg.CHAT_ID) in my_id
    assert await stored_inbound(line) == 0 and line.engine.calls == []


def _command(text: str) -> MessageEntity:
    return MessageEntity(MessageEntity.BOT_COMMAND, 0, len(text))


def welcome() -> str:
    return telegram.telegram_texts().welcome


def chat_id_text() -> str:
    return telegram.telegram_texts().your_chat_id.format(chat_id=tg.CHAT_ID)


def texts_sent(stand_in: StandIn) -> list[str]:
    """What the child's chat was sent, in order."""
    return [text for chat, text in tg.sent(stand_in) if chat == tg.CHAT_ID]


@pytest.mark.parametrize(
    ("command", "command_reply"),
    [("/start", welcome), ("/start@xinqiao_test_bot", welcome), ("/myid", chat_id_text)],
)
async def test_words_after_a_command_are_stored_screened_escalated_and_answered(
    database_url: str, sessions: Sessions, stand_in: StandIn, command: str, command_reply: Any
) -> None:
    """Issue 11, defect 2: `/start 药我已经准备好了，今晚就全吃下去` got the welcome and nothing else. The
    words are the child's message: stored, screened red, a red case opened and paged; the child reads the
    command's own reply first and then the crisis answer, which ends with the question whether they are
    safe now."""
    line = telegram_line(database_url, sessions, stand_in, engine=CrisisEngine())
    await line.staff()
    assert (await post(line, tg.command_update(f"{command} {START_RED}", command))).status == 200

    [stored] = await inbound_messages(line)
    assert stored.text == START_RED  # the words, without the bot's command
    assert stored.risk_level == "red" and stored.assessment is not None
    case = await line.case_of(stored.conversation_id)
    assert case.level == "red" and case.status == "open"
    pages = await line.pages()
    assert pages and {page.case_id for page in pages} == {case.id}
    [(_, intent, _)] = line.engine.triggered
    assert intent == "EXTERNAL_risk_red" and line.engine.calls == []

    await stand_in.wait_for(tg.SEND, 1 + len(RED_RESPONSES))
    assert texts_sent(stand_in) == [command_reply(), *red_answer()]
    assert "110" in red_answer()[0] and "12356" in red_answer()[1]


async def test_words_after_start_with_nobody_on_shift_end_with_the_numbers_to_call_now(
    line: Line, stand_in: StandIn
) -> None:
    assert (await post(line, tg.command_update(f"/start {START_RED}", "/start"))).status == 200
    [stored] = await inbound_messages(line)
    assert stored.risk_level == "red"
    assert (await line.case_of(stored.conversation_id)).level == "red"  # staffed once people come on shift
    sent = texts_sent(stand_in)
    assert sent[0] == welcome() and sent[-1] == gateway_texts().no_counsellor_on_shift


@pytest.mark.parametrize("payload", ["abc123", "school_42-poster", "A" * 64])
async def test_a_deep_link_payload_after_start_only_greets(
    line: Line, stand_in: StandIn, payload: str
) -> None:
    """t.me/<bot>?start=<payload> makes the app send `/start <payload>`: a code, not the child's words."""
    assert (await post(line, tg.command_update(f"/start {payload}", "/start"))).status == 200
    assert texts_sent(stand_in) == [welcome()]
    assert await stored_inbound(line) == 0 and line.engine.calls == [] and line.engine.triggered == []


@pytest.mark.parametrize("words", ["kms", "zisha", "woxiangsi", "i_want_to_die"])
async def test_a_payload_shaped_word_the_protocol_flags_is_the_childs_words(
    line: Line, stand_in: StandIn, words: str
) -> None:
    """Deep-link grammar does not make words safe to drop: `/start kms` typed by a child is screened."""
    await line.staff()
    assert (await post(line, tg.command_update(f"/start {words}", "/start"))).status == 200
    [stored] = await inbound_messages(line)
    assert stored.text == words and stored.risk_level in ("orange", "red")
    assert (await line.case_of(stored.conversation_id)).level == stored.risk_level
    assert line.engine.triggered
    sent = texts_sent(stand_in)
    assert sent[0] == welcome() and len(sent) >= 2


@pytest.mark.parametrize("words", ["我想死", "abc 123", "abc123 你好", "今晚\n就想消失", "A" * 65])
async def test_words_beyond_a_deep_link_payload_are_the_childs_words(
    line: Line, stand_in: StandIn, words: str
) -> None:
    """Chinese words, several words, or anything a link could not have carried reach the switchboard."""
    await line.staff()
    assert (await post(line, tg.command_update(f"/start {words}", "/start"))).status == 200
    [stored] = await inbound_messages(line)
    assert stored.text == words
    assert line.engine.calls or line.engine.triggered
    assert texts_sent(stand_in)[0] == welcome() and len(texts_sent(stand_in)) >= 2


@pytest.mark.parametrize(
    ("text", "command", "kept"),
    [
        ("/help 我想死", "/help", "help 我想死"),  # an unknown command: every word, the slash removed
        (f"{START_RED} /start", "/start", f"{START_RED} /start"),  # a command later in the text
        (f"/start@another_bot {START_RED}", "/start@another_bot", f"start@another_bot {START_RED}"),
    ],
)
async def test_other_commands_reach_the_switchboard_with_all_their_words(
    line: Line, stand_in: StandIn, text: str, command: str, kept: str
) -> None:
    await line.staff()
    assert (await post(line, tg.command_update(text, command))).status == 200
    [stored] = await inbound_messages(line)
    assert stored.text == kept and stored.risk_level in ("orange", "red")
    assert (await line.case_of(stored.conversation_id)).level == stored.risk_level
    assert line.engine.triggered
    assert welcome() not in texts_sent(stand_in)  # only /start addressed to this bot greets


async def test_a_redelivered_start_with_words_is_greeted_and_answered_once(
    database_url: str, sessions: Sessions, stand_in: StandIn
) -> None:
    line = telegram_line(database_url, sessions, stand_in, engine=CrisisEngine())
    await line.staff()
    update = tg.command_update(f"/start {START_RED}", "/start")
    assert (await post(line, update)).status == 200
    assert (await post(line, update)).status == 200  # Telegram did not get our 200 and sends it again
    assert await stored_inbound(line) == 1 and len(line.engine.triggered) == 1
    assert texts_sent(stand_in) == [welcome(), *red_answer()]


async def test_a_welcome_the_bot_api_refuses_does_not_hold_back_the_answer_to_the_words(
    database_url: str, sessions: Sessions, stand_in: StandIn
) -> None:
    failures = iter([(502, {"ok": False, "error_code": 502, "description": "Bad Gateway"})])
    stand_in.answer(tg.SEND, lambda request: next(failures, None) or tg.sent_message(request))
    line = telegram_line(database_url, sessions, stand_in, engine=CrisisEngine())
    await line.staff()
    assert (await post(line, tg.command_update(f"/start {START_RED}", "/start"))).status == 200
    assert texts_sent(stand_in) == [welcome(), *red_answer()]  # the first, the welcome, was refused
    assert await line.deliver() == 0  # the crisis answer went out at once: nothing left to retry


async def test_a_group_chat_is_not_a_childs_conversation(line: Line, stand_in: StandIn) -> None:
    assert (await post(line, tg.group_update(RED))).status == 200
    assert await stored_inbound(line) == 0 and line.engine.triggered == [] and tg.sent(stand_in) == []


async def test_a_reply_the_bot_api_refuses_is_sent_again_from_the_outbox(
    line: Line, stand_in: StandIn
) -> None:
    failures = iter([(502, {"ok": False, "error_code": 502, "description": "Bad Gateway"})])
    stand_in.answer(tg.SEND, lambda request: next(failures, None) or tg.sent_message(request))
    await post(line, tg.text_update("你好"))
    await stand_in.wait_for(tg.SEND)
    assert tg.sent(stand_in) == [(tg.CHAT_ID, "你好，我在。")]  # the one Telegram refused
    assert await line.deliver() == 1
    assert tg.sent(stand_in) == [(tg.CHAT_ID, "你好，我在。")] * 2


async def test_no_chat_id_text_or_token_in_the_logs(
    line: Line, stand_in: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for name in ("telegram", "httpx", "integrations", "sanic"):
        caplog.set_level(logging.DEBUG, logger=name)
    await line.staff()
    await post(line, tg.text_update(RED))
    await post(line, tg.photo_update())
    await post(line, tg.command_update(f"/start {START_RED}", "/start"))
    await post(line, tg.command_update("/start school_42", "/start"))
    await post(line, tg.text_update(RED), secret="forged")
    await post(line, b"{broken")
    [conversation] = {sender for sender, _, _ in line.engine.triggered}
    await line.counsellor_writes(conversation, "我是心理老师，我在。")
    await stand_in.wait_for(tg.SEND, 3)
    logged = caplog.text
    assert "sendMessage" in logged and "<redacted>" in logged  # httpx's request lines are there, redacted
    for private in (
        str(tg.CHAT_ID),
        RED,
        START_RED,
        "school_42",
        "我是心理老师",
        tg.TOKEN,
        tg.SECRET,
        "小明",
    ):
        assert private not in logged


async def test_the_webhook_is_registered_at_start_when_asked(
    database_url: str, sessions: Sessions, stand_in: StandIn
) -> None:
    line = telegram_line(
        database_url, sessions, stand_in, set_webhook=True, public_url="https://line.example.org/"
    )
    await post(line, tg.text_update("你好"))
    [registered] = await stand_in.wait_for(f"{tg.API}/setWebhook")
    fields = tg.sent_fields(registered)
    assert fields["url"] == "https://line.example.org/telegram/webhook"
    assert fields["secret_token"] == tg.SECRET
    assert json.loads(fields["allowed_updates"]) == ["message", "edited_message", "callback_query"]


async def test_a_bot_api_outage_at_start_leaves_the_gateway_up_and_telegram_redelivers(
    line: Line, stand_in: StandIn
) -> None:
    stand_in.answer(f"{tg.API}/getMe", (502, {"ok": False, "error_code": 502, "description": "Bad Gateway"}))
    update = tg.text_update("你好")
    assert (await post(line, update)).status == 503  # Telegram keeps the update and sends it again
    assert (await line.app.asgi_client.get("/console"))[1].status == 200
    stand_in.answer(f"{tg.API}/getMe", tg.ok(tg.BOT.to_dict()))
    assert (await post(line, update)).status == 200
    await stand_in.wait_for(tg.SEND)
    assert tg.sent(stand_in) == [(tg.CHAT_ID, "你好，我在。")]


async def test_the_bot_keeps_trying_to_start_while_the_bot_api_is_down(
    database_url: str, sessions: Sessions, stand_in: StandIn
) -> None:
    plugin = telegram_plugin(settings(stand_in, start_retry_seconds=0.05))
    line = line_for(database_url, sessions, plugin)
    get_me = f"{tg.API}/getMe"
    stand_in.answer(get_me, (502, {"ok": False, "error_code": 502, "description": "Bad Gateway"}))
    assert (await post(line, tg.text_update("你好"))).status == 503  # the listeners ran: the store is open
    bot = plugin.extra["line"]
    assert plugin.start is not None and plugin.stop is not None
    await plugin.start(line.app)
    try:
        await stand_in.wait_for(get_me, len(stand_in.sent_to(get_me)) + 2)  # tried again, and again
        assert not bot.application.running
        stand_in.answer(get_me, tg.ok(tg.BOT.to_dict()))
        for _ in range(250):
            if bot.application.running:
                break
            await asyncio.sleep(0.02)
        assert bot.application.running, "the bot started once the Bot API answered"
    finally:
        await plugin.stop(line.app)
    assert not bot.application.running


async def test_polling_mode_takes_updates_from_get_updates(
    database_url: str, sessions: Sessions, stand_in: StandIn
) -> None:
    plugin = telegram_plugin(settings(stand_in, mode="polling", webhook_secret=None))
    line = line_for(database_url, sessions, plugin)
    # No webhook in polling mode. The request also runs the listeners: the store and switchboard open.
    assert (await post(line, tg.text_update("你好"))).status == 404
    waiting = [tg.text_update("你好")]
    stand_in.answer(f"{tg.API}/getUpdates", lambda _: tg.ok([waiting.pop()] if waiting else []))
    assert plugin.start is not None and plugin.stop is not None
    await plugin.start(line.app)
    try:
        await stand_in.wait_for(tg.SEND)
    finally:
        await plugin.stop(line.app)
    assert tg.sent(stand_in) == [(tg.CHAT_ID, "你好，我在。")]
    assert stand_in.sent_to(f"{tg.API}/deleteWebhook"), "polling replaces any webhook"


def test_webhook_mode_refuses_to_run_without_a_good_secret() -> None:
    with pytest.raises(ValidationError, match="WEBHOOK_SECRET is required"):
        TelegramSettings(token=tg.TOKEN)
    with pytest.raises(ValidationError, match="32 to 256"):
        TelegramSettings(token=tg.TOKEN, webhook_secret="short")
    with pytest.raises(ValidationError, match="32 to 256"):
        TelegramSettings(token=tg.TOKEN, webhook_secret="秘" * 40)
    assert TelegramSettings(token=tg.TOKEN, mode="polling").webhook_secret is None


def test_the_channel_is_on_only_when_the_environment_configures_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TOKEN", "WEBHOOK_SECRET", "MODE"):
        monkeypatch.delenv(f"XINQIAO_TELEGRAM_{name}", raising=False)
    assert telegram.from_environment() is None
    monkeypatch.setenv("XINQIAO_TELEGRAM_TOKEN", tg.TOKEN)
    with pytest.raises(ValidationError):
        telegram.from_environment()
    monkeypatch.setenv("XINQIAO_TELEGRAM_WEBHOOK_SECRET", tg.SECRET)
    plugin = telegram.from_environment()
    assert plugin is not None and plugin.name == "telegram" and plugin.sender is not None
    assert plugin.page_sender is not None and plugin.page_sender.name == "telegram"


async def test_one_chats_updates_wait_for_each_other_and_other_chats_do_not() -> None:
    processor = OneChatInOrder()
    done: list[str] = []
    first_may_finish = asyncio.Event()

    async def handle(name: str, wait: bool = False) -> None:
        if wait:
            await first_may_finish.wait()
        done.append(name)

    def update(chat_id: int) -> Update:
        parsed = Update.de_json(tg.text_update("你好", chat_id), None)
        assert parsed is not None
        return parsed

    first = asyncio.create_task(processor.process_update(update(1), handle("a1", wait=True)))
    second = asyncio.create_task(processor.process_update(update(1), handle("a2")))
    other = asyncio.create_task(processor.process_update(update(2), handle("b1")))
    await other
    assert done == ["b1"]  # another chat is not held up by a slow one
    first_may_finish.set()
    await asyncio.gather(first, second)
    assert done == ["b1", "a1", "a2"]  # one chat's messages in the order they came
