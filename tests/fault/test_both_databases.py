"""The inputs that differ by database, on SQLite and PostgreSQL (`database_url`): PostgreSQL refuses NUL in
text and enforces column lengths, SQLite does neither. A few fixed inputs per path rather than
properties, so both databases stay within the suite's time."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from records.migrate import upgrade
from tests.channels import telegram_payloads as tg
from tests.channels.standin import running_stand_in
from tests.channels.twilio_signing import incoming_sms
from tests.fault import support
from tests.fault.conftest import Forbidden
from tests.fault.test_console_properties import ConsoleLine
from tests.fault.test_telegram_properties import TelegramLine
from tests.fault.test_telegram_properties import deliver_and_check as tg_deliver_and_check
from tests.fault.test_twilio_properties import (
    ACCOUNT,
    SMS_NUMBER,
    TwilioLine,
    as_received,
    call_form,
    sms_and_check,
    turn_and_check,
    twiml,
)
from tests.fault.test_webchat_properties import Chat, send_and_check

RED = support.RED_TEXTS
ODD_REDS = [
    RED[0] + "\ud83d",
    "\x00" + RED[1],
    RED[0] + "\x00" * 3 + RED[1],
    "\ufeff/\u200b" + RED[1],
    "\U0001f62d" * 5 + RED[0] + "\udfff\ud800",
]


@pytest.fixture
def chat(database_url: str, forbidden: Forbidden) -> Iterator[Chat]:
    made = Chat(database_url, forbidden)
    yield made
    made.close()


def test_odd_red_words_and_ids_in_the_web_chat(chat: Chat) -> None:
    async def go() -> None:
        for text in ODD_REDS:
            for message_id in (uuid.uuid4().hex, "id\x00" + uuid.uuid4().hex, "\ud83d" + uuid.uuid4().hex):
                token = await chat.new_session()
                fields = {"session": token, "message_id": message_id, "text": text}
                chat.forbidden.add_text(support.cleaned(text))
                await send_and_check(chat, token, None, fields, support.json_bytes(fields))

    chat.runner.run(go())


@pytest.fixture
def twilio(database_url: str, forbidden: Forbidden) -> Iterator[TwilioLine]:
    for stand_in in running_stand_in():
        made = TwilioLine(database_url, stand_in, forbidden)
        yield made
        made.close()


def test_odd_red_words_on_the_phone_line(twilio: TwilioLine) -> None:
    twilio.add_phone("+8613812345678")

    async def go() -> None:
        for text in ODD_REDS:
            twilio.forbidden.add_text(support.cleaned(text))
            await turn_and_check(twilio, "+8613812345678", text)

    twilio.runner.run(go())


def test_odd_red_words_by_sms(twilio: TwilioLine) -> None:
    async def go() -> None:
        for n, text in enumerate(ODD_REDS):
            sender = f"+86138{123450000 + n}"
            twilio.add_phone(sender)
            twilio.forbidden.add_text(support.cleaned(as_received(text)))
            await sms_and_check(twilio, incoming_sms(text, sender=sender, to=SMS_NUMBER, account_sid=ACCOUNT))

    twilio.runner.run(go())


@pytest.fixture
def telegram(database_url: str, forbidden: Forbidden) -> Iterator[TelegramLine]:
    for stand_in in running_stand_in():
        made = TelegramLine(database_url, tg.bot_api(stand_in), forbidden)
        yield made
        made.close()


def test_odd_red_words_on_telegram(telegram: TelegramLine) -> None:
    async def go() -> None:
        for n, text in enumerate(ODD_REDS):
            chat_id = 7_100_000_000 + n
            telegram.forbidden.add("Telegram chat id", chat_id)
            update = tg.text_update(text, chat_id)
            await tg_deliver_and_check(telegram, update, support.cleaned(text), chat_id)

    telegram.runner.run(go())


def test_a_call_sid_of_any_shape_is_answered(twilio: TwilioLine) -> None:
    """Twilio's CallSid is ours to trust only as far as its signature: it becomes the message id
    (`CallSid:turn`, a 200-character column) and, for a withheld number, the caller's address."""

    async def go() -> None:
        for call_sid in (
            "CA" + "f" * 300,
            "CA\x00" + uuid.uuid4().hex,
            "CA" + "\u4e00" * 100,
            "CA" + "f" * 196,
        ):
            incoming = await twilio.post("/voice/incoming", call_form(call_sid, "+8613812345678"))
            assert incoming.status in (200, 400), (incoming.status, incoming.text)
            if incoming.status == 400:
                continue  # refused as not a call: Twilio's contract, and nothing was said yet
            assert twiml(incoming).find("Gather") is not None
            turn = "/voice/turn?turn=2&tries=0"
            response = await twilio.post(turn, call_form(call_sid, "+8613812345678", SpeechResult=RED[0]))
            assert response.status in (200, 400), (response.status, response.text)

    twilio.add_phone("+8613812345678")
    twilio.runner.run(go())


def console_on(url: str, forbidden: Forbidden, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleLine]:
    support.light_hashing(monkeypatch)
    made = ConsoleLine(url, forbidden)
    made.runner.run(made.start())
    yield made
    made.close()


@pytest.fixture
def console(
    database_url: str, forbidden: Forbidden, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ConsoleLine]:
    yield from console_on(database_url, forbidden, monkeypatch)


@pytest.fixture
def postgres_console(
    postgres_url: str, forbidden: Forbidden, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ConsoleLine]:
    upgrade(postgres_url)
    yield from console_on(postgres_url, forbidden, monkeypatch)


async def sign_ins(console: ConsoleLine, attempts: list[tuple[str, str]]) -> list[tuple[str, int]]:
    answers = []
    for handle, password in attempts:
        body = support.json_bytes({"handle": handle, "password": password})
        response = await console.post("/console/api/login", body, {})
        answers.append((handle[:8], response.status))
    return answers


def test_long_and_nul_passwords_are_wrong_passwords(console: ConsoleLine) -> None:
    answers = console.runner.run(
        sign_ins(console, [("h" * 5000, "p"), ("s1", "\x00" * 12), ("s1", "p" * 5000)])
    )
    assert all(status == 401 for _, status in answers), answers


def test_a_handle_with_nul_is_a_wrong_sign_in_on_postgresql(postgres_console: ConsoleLine) -> None:
    answers = postgres_console.runner.run(
        sign_ins(postgres_console, [("s1\x00", "x" * 12), ("\x00", "\x00")])
    )
    assert all(status == 401 for _, status in answers), answers


def test_nul_and_long_values_in_case_messages_and_notes(console: ConsoleLine) -> None:
    async def go() -> None:
        answers = []
        for route, field in (("messages", "text"), ("notes", "body")):
            for value in ("家长已经联系\x00", "\x00" * 50, "记" * 2000):
                body = support.json_bytes({field: value})
                response = await console.post(
                    f"/console/api/cases/{console.case_id}/{route}", body, console.who
                )
                answers.append((route, value[:8], response.status))
        assert all(status < 500 for *_, status in answers), answers

    console.runner.run(go())
