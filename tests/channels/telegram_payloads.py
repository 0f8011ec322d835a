"""Telegram updates and Bot API answers for the channel's tests, built with python-telegram-bot's own types
(`Update`, `Message`, `Chat`, `User`, … then `.to_dict()`), as Telegram would send and answer them."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from telegram import (
    CallbackQuery,
    Chat,
    Message,
    MessageEntity,
    PhotoSize,
    Sticker,
    Update,
    User,
    Voice,
)

from tests.channels.standin import Recorded, StandIn

TOKEN = "123456789:AAF-test-token-for-the-stand-in"
SECRET = "Qm9vdHN0cmFwLXNlY3JldC10b2tlbi0wMDAwMDAwMDAw"  # 44 of A-Z a-z 0-9 _ -
BOT = User(id=123456789, first_name="心桥", is_bot=True, username="xinqiao_test_bot")
CHAT_ID = 5550001234
API = f"/bot{TOKEN}"
SEND = f"{API}/sendMessage"

_update_ids = itertools.count(700_000_001)
_message_ids = itertools.count(1)


def child(chat_id: int = CHAT_ID) -> User:
    return User(id=chat_id, first_name="小明", is_bot=False, language_code="zh-hans")


def private_chat(chat_id: int = CHAT_ID) -> Chat:
    return Chat(id=chat_id, type=Chat.PRIVATE, first_name="小明")


def message(
    chat_id: int = CHAT_ID,
    *,
    text: str | None = None,
    message_id: int | None = None,
    chat: Chat | None = None,
    **parts: Any,
) -> Message:
    return Message(
        message_id=message_id or next(_message_ids),
        date=datetime.now(UTC).replace(microsecond=0),
        chat=chat or private_chat(chat_id),
        from_user=child(chat_id),
        text=text,
        **parts,
    )


def text_update(
    text: str, chat_id: int = CHAT_ID, *, update_id: int | None = None, **options: Any
) -> dict[str, Any]:
    return Update(update_id or next(_update_ids), message=message(chat_id, text=text, **options)).to_dict()


def utf16_length(text: str) -> int:
    """Telegram counts entity offsets and lengths in UTF-16 code units, not characters."""
    return len(text.encode("utf-16-le")) // 2


def command_update(text: str, command: str, chat_id: int = CHAT_ID, **options: Any) -> dict[str, Any]:
    """A text message in which Telegram marked `command` (its first occurrence, "/start" or
    "/start@bot") as a bot_command entity, wherever it stands, as the app does when it sends one."""
    at = text.index(command)
    entity = MessageEntity(MessageEntity.BOT_COMMAND, utf16_length(text[:at]), utf16_length(command))
    return text_update(text, chat_id, entities=[entity], **options)


def edited_update(original: dict[str, Any], text: str) -> dict[str, Any]:
    """The same message, edited to say `text` (Telegram sends it as a new update)."""
    first = Update.de_json(original, None)
    assert first is not None and first.message is not None
    edited = Message(
        message_id=first.message.message_id,
        date=first.message.date,
        chat=first.message.chat,
        from_user=first.message.from_user,
        text=text,
        edit_date=datetime.now(UTC).replace(microsecond=0),
    )
    return Update(next(_update_ids), edited_message=edited).to_dict()


def photo_update(chat_id: int = CHAT_ID, caption: str | None = None) -> dict[str, Any]:
    photo = (
        PhotoSize("AgACAgIAAxkBAAIBsmall", "AQADsmall", 90, 67, file_size=1201),
        PhotoSize("AgACAgIAAxkBAAIBlarge", "AQADlarge", 1280, 960, file_size=88011),
    )
    return Update(next(_update_ids), message=message(chat_id, photo=photo, caption=caption)).to_dict()


def voice_update(chat_id: int = CHAT_ID) -> dict[str, Any]:
    voice = Voice("AwACAgIAAxkBAAIBvoice", "AgADvoice", duration=4, mime_type="audio/ogg", file_size=9120)
    return Update(next(_update_ids), message=message(chat_id, voice=voice)).to_dict()


def sticker_update(chat_id: int = CHAT_ID) -> dict[str, Any]:
    sticker = Sticker(
        "CAACAgIAAxkBAAIBsticker", "AgADsticker", 512, 512, False, False, Sticker.REGULAR, emoji="😢"
    )
    return Update(next(_update_ids), message=message(chat_id, sticker=sticker)).to_dict()


def group_update(text: str) -> dict[str, Any]:
    group = Chat(id=-1001234567890, type=Chat.SUPERGROUP, title="某个群")
    return Update(next(_update_ids), message=message(text=text, chat=group)).to_dict()


def button_update(data: str, chat_id: int = CHAT_ID) -> dict[str, Any]:
    """The child pressed an inline button under one of the bot's messages."""
    under = Message(
        message_id=next(_message_ids),
        date=datetime.now(UTC).replace(microsecond=0),
        chat=private_chat(chat_id),
        from_user=BOT,
        text="请问你是学生还是家长？",
    )
    query = CallbackQuery(
        id=f"4382{next(_update_ids)}",
        from_user=child(chat_id),
        chat_instance="-82312",
        data=data,
        message=under,
    )
    return Update(next(_update_ids), callback_query=query).to_dict()


# --- the Bot API, as the stand-in answers it ---------------------------------------------------------------


def ok(result: Any) -> tuple[int, dict[str, Any]]:
    return 200, {"ok": True, "result": result}


def sent_message(request: Recorded) -> tuple[int, dict[str, Any]]:
    """sendMessage's answer: the Message Telegram made of it."""
    fields = sent_fields(request)
    answer = Message(
        message_id=next(_message_ids),
        date=datetime.now(UTC).replace(microsecond=0),
        chat=Chat(id=int(fields["chat_id"]), type=Chat.PRIVATE),
        from_user=BOT,
        text=fields["text"],
    )
    return ok(answer.to_dict())


def bot_api(stand_in: StandIn) -> StandIn:
    stand_in.answer(f"{API}/getMe", ok(BOT.to_dict()))
    stand_in.answer(SEND, sent_message)
    stand_in.answer(f"{API}/answerCallbackQuery", ok(True))
    stand_in.answer(f"{API}/setWebhook", ok(True))
    stand_in.answer(f"{API}/deleteWebhook", ok(True))
    stand_in.answer(f"{API}/getUpdates", ok([]))
    return stand_in


def sent_fields(request: Recorded) -> dict[str, str]:
    """A Bot API call's parameters (PTB posts them as a form, objects JSON-encoded)."""
    return {name: values[0] for name, values in request.form().items()}


def sent(stand_in: StandIn) -> list[tuple[int, str]]:
    """Every sendMessage so far, as (chat id, text)."""
    return [(int(f["chat_id"]), f["text"]) for f in map(sent_fields, stand_in.sent_to(SEND))]
