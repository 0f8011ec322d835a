"""The Telegram channel, on python-telegram-bot (PTB) inside the gateway's own web server.

Telegram posts each update to `POST /telegram/webhook` with the secret token it was given when the webhook
was set; the route checks it (constant time, 403 otherwise), parses the update with PTB and puts it on the
`Application`'s update queue, and answers 200 as soon as the update's words are stored, before they are
answered (telegram_acks.py: Telegram forgets an update once it has our 200). PTB's handlers below hand the words to the one
switchboard (`base.receive`) and send the replies with the Bot API. For a developer's machine there is a
polling mode instead (XINQIAO_TELEGRAM_MODE=polling): no public address, no webhook.

What the channel decides:
- Only private chats are a student's or parent's conversation; anything from a group is ignored, but for a
  press on a claim button in the counsellors' group, which is a claim, never words (telegram_group.py).
- Photos, voice, stickers, files: the only-text reply, and the media are neither stored nor fetched. Words
  written under a photo (its caption) are read like any message, then the only-text reply follows.
- An edited message is treated as a new message: words added in an edit ("……今晚就吃药") are screened
  like any other. The original stays stored as it was.
- A redelivered update is stored once (its external id is the same) and answered once: the replies to the
  first copy were sent, or are pushed by the retry worker, so a redelivery sends nothing again.
- A reply the Bot API does not take is put in the outbox: the delivery dispatcher retries it, in order.
- Buttons in the bot's replies become an inline keyboard; pressing one is the child writing its payload.
- A command's words are a message: `/start 药我已经准备好了…` gets the welcome and then the answer to the
  words, which are stored, screened and escalated like any message (`on_command`). Only `/start` and
  `/myid` addressed to this bot are commands; anything else that looks like one (`/help 我想死`, a command
  later in the text, `/start@another_bot …`) is handled as words, every word of it. A deep-link code
  alone after /start is not words (`is_start_parameter`).

Chat ids, texts and the bot token are never logged (PTB's debug logs carry whole updates, httpx's carry
the token in the URL: both are filtered below).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import cache
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sanic import Blueprint, Request, Sanic
from sanic.response import HTTPResponse, empty
from sanic.response import json as json_response
from sqlalchemy import select
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.error import NetworkError, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    BaseUpdateProcessor,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from integrations.channels import base
from integrations.channels.base import ChannelAnswer, ChannelMessage, ChannelPlugin
from integrations.channels.telegram_acks import Acknowledgements
from integrations.channels.telegram_group import CounsellorGroup, GroupTexts
from integrations.content import failsafe_text
from integrations.paging.senders import Page
from records import deliveries
from records.crypto import lookup_digest
from records.models import Message as StoredMessage
from triage_protocols import Level, screen

log = logging.getLogger(__name__)

CHANNEL = "telegram"
WEBHOOK_PATH = "/telegram/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# The updates the bot asks Telegram for, by webhook or by polling. Anything else is never sent to us.
ALLOWED_UPDATES = [Update.MESSAGE, Update.EDITED_MESSAGE, Update.CALLBACK_QUERY]
MAX_MESSAGE_LENGTH = 4096  # the Bot API's limit for one message's text
MAX_CALLBACK_DATA = 64  # bytes, the Bot API's limit for a button's payload
GATEWAY = "gateway"  # the Sanic app, in the Application's bot_data
ACKS = "acks"  # the webhook's Acknowledgements, in the Application's bot_data
# Updates refused because the store was down whose writer was already told so (with the numbers), on the
# gateway's ctx; the redeliveries Telegram makes meanwhile are not told again. Bounded, oldest out first.
STORE_DOWN_TOLD = "telegram_store_down_told"
STORE_DOWN_TOLD_KEPT = 10_000
# t.me/<bot>?start=<code> makes the Telegram app send "/start <code>"; the Bot API allows 1 to 64 of these.
START_PARAMETER = re.compile(r"[A-Za-z0-9_-]{1,64}")


class TelegramSettings(BaseSettings):
    """XINQIAO_TELEGRAM_*. The channel is on when `token` is set (from @BotFather). In webhook mode the
    webhook secret is required: a webhook anyone can post to is refused by design."""

    model_config = SettingsConfigDict(env_prefix="XINQIAO_TELEGRAM_", extra="ignore")

    token: SecretStr | None = None
    # Telegram sends it back in X-Telegram-Bot-Api-Secret-Token. 32 to 256 of A-Z a-z 0-9 _ -, e.g.
    # `python -c "import secrets; print(secrets.token_urlsafe(32))"`.
    webhook_secret: SecretStr | None = None
    mode: Literal["webhook", "polling"] = "webhook"
    # true: the gateway registers XINQIAO_PUBLIC_URL + /telegram/webhook with Telegram when it starts.
    set_webhook: bool = False
    # Only tests change it: the Bot API's address (a loopback stand-in) instead of https://api.telegram.org.
    api_base_url: str | None = None
    # Deadlines in pages are shown in this time zone.
    timezone: str = "Asia/Shanghai"
    # When the Bot API cannot be reached as the gateway starts, it is tried again this often (the rest of
    # the gateway runs meanwhile; the webhook answers 503, so Telegram keeps the updates and redelivers).
    start_retry_seconds: float = 10.0
    # How long the webhook waits for an update's words to be stored before answering 503 (Telegram then
    # sends it again). One chat's updates are handled in order, so this covers the one before it too.
    ack_timeout_seconds: float = 20.0
    # The counsellors' group chat (its id; a group's is negative): orange and red cases are posted there
    # with a 认领 (claim) button (telegram_group.py). Off when unset. The bot must be in the group.
    counsellor_group: int | None = None
    # How often each gateway looks for a case event to post to the group.
    counsellor_group_interval_seconds: float = 2.0

    @model_validator(mode="after")
    def _webhook_needs_a_secret(self) -> TelegramSettings:
        if self.token is None or self.mode != "webhook":
            return self
        secret = self.webhook_secret.get_secret_value() if self.webhook_secret else ""
        if not secret:
            raise ValueError(
                "XINQIAO_TELEGRAM_WEBHOOK_SECRET is required in webhook mode: a webhook without a secret "
                "is refused (use XINQIAO_TELEGRAM_MODE=polling on a developer's machine)"
            )
        if not 32 <= len(secret) <= 256 or not all(
            c.isascii() and (c.isalnum() or c in "_-") for c in secret
        ):
            raise ValueError("XINQIAO_TELEGRAM_WEBHOOK_SECRET must be 32 to 256 of A-Z, a-z, 0-9, _ and -")
        return self

    def bot_urls(self) -> dict[str, str]:
        """PTB's base_url and base_file_url: the real Bot API unless a test points them elsewhere."""
        if not self.api_base_url:
            return {}
        api = self.api_base_url.rstrip("/")
        return {"base_url": f"{api}/bot", "base_file_url": f"{api}/file/bot"}


class PageTexts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    console_link: str
    no_deadline: str
    deadline_format: str
    levels: dict[str, str]
    reasons: dict[str, str]
    other_reason: str


class TelegramTexts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    welcome: str
    your_chat_id: str
    page: PageTexts
    counsellor_group: GroupTexts


@cache
def telegram_texts() -> TelegramTexts:
    return base.channel_texts(CHANNEL, TelegramTexts)


class PrivateLogs(logging.Filter):
    """Keeps what identifies a person or opens the bot out of the logs: PTB's debug records (they carry
    whole updates and the parameters of each call: chat ids, texts) are dropped, and the bot token (which
    PTB and httpx write in URLs) and the webhook secret are replaced."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("telegram") and record.levelno < logging.INFO:
            return False
        if self.secrets:
            message = record.getMessage()
            if any(secret in message for secret in self.secrets):
                for secret in self.secrets:
                    message = message.replace(secret, "<redacted>")
                record.msg, record.args = message, None
        return True


PRIVATE_LOGS = PrivateLogs()
# Where PTB logs (telegram._utils.logging names them after the class) and httpx's request lines.
FILTERED_LOGGERS = (
    "telegram",
    "telegram.Bot",
    "telegram.ext",
    "telegram.ext.ExtBot",
    "telegram.ext.Application",
    "telegram.ext.Updater",
    "telegram.ext.BaseUpdateProcessor",
    "telegram.request.BaseRequest",
    "telegram.request.HTTPXRequest",
    "httpx",
)


def keep_private(secret: str) -> None:
    """From now on `secret` is replaced wherever PTB or httpx would log it."""
    PRIVATE_LOGS.secrets.add(secret)
    for name in FILTERED_LOGGERS:
        logging.getLogger(name).addFilter(PRIVATE_LOGS)  # once: addFilter ignores a filter already there


class OneChatInOrder(BaseUpdateProcessor):
    """Updates from different chats are handled at the same time (a slow answer to one child must not hold
    up another's), those from one chat one after another in the order they came, so a child's messages
    are stored and answered in the order they were written."""

    def __init__(self, max_concurrent_updates: int = 256, acks: Acknowledgements | None = None) -> None:
        super().__init__(max_concurrent_updates)
        self._locks: dict[int, asyncio.Lock] = {}
        self._waiting: dict[int, int] = {}
        self._acks = acks or Acknowledgements()

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        try:
            await self._in_order(update, coroutine)
        finally:
            self._acks.handled(update)

    async def _in_order(self, update: object, coroutine: Awaitable[Any]) -> None:
        chat = update.effective_chat if isinstance(update, Update) else None
        if chat is None:
            await coroutine
            return
        lock = self._locks.setdefault(chat.id, asyncio.Lock())
        self._waiting[chat.id] = self._waiting.get(chat.id, 0) + 1
        try:
            async with lock:
                await coroutine
        finally:
            self._waiting[chat.id] -= 1
            if not self._waiting[chat.id]:
                del self._waiting[chat.id], self._locks[chat.id]

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None


# --- handlers: small functions, wired in `TelegramLine.build` -------------------------------------------


def external_id_of(update: Update) -> str:
    """The message's id in the store, the same for every delivery of one message. Not the update id:
    Telegram may restart those at random after a quiet week, and a new message taken for an old one would
    never be screened. A message id is unique within its chat; the chat is named by its keyed digest (the
    one the contact is found by), so the store holds no chat id in the clear."""
    if update.callback_query is not None:
        return f"button:{update.callback_query.id}"
    message = update.effective_message
    assert message is not None
    chat = lookup_digest(CHANNEL, str(message.chat_id))[:32]
    if update.edited_message is not None:
        edited = int(message.edit_date.timestamp()) if message.edit_date else update.update_id
        return f"edit:{chat}:{message.message_id}:{edited}"
    return f"msg:{chat}:{message.message_id}"


def keyboard(buttons: list[dict[str, str]]) -> InlineKeyboardMarkup | None:
    """The bot's buttons as an inline keyboard, one a row; pressing one sends its payload as the child's
    words. A payload too long for Telegram falls back to the title; a button fitting neither is left out."""
    rows = []
    for button in buttons:
        title, payload = button.get("title", ""), button.get("payload") or button.get("title", "")
        data = next((d for d in (payload, title) if d and len(d.encode()) <= MAX_CALLBACK_DATA), None)
        if title and data:
            rows.append([InlineKeyboardButton(title, callback_data=data)])
        else:
            log.warning("telegram: a button was left out (its payload is too long for the Bot API)")
    return InlineKeyboardMarkup(rows) if rows else None


def chunks(text: str) -> list[str]:
    """A text in pieces the Bot API takes (4096 characters at most each)."""
    return [text[i : i + MAX_MESSAGE_LENGTH] for i in range(0, len(text), MAX_MESSAGE_LENGTH)] or [""]


async def send_text(bot: Bot, chat_id: int, text: str, buttons: list[dict[str, str]] | None = None) -> None:
    pieces = chunks(text)
    for number, piece in enumerate(pieces, start=1):
        markup = keyboard(buttons) if buttons and number == len(pieces) else None
        await bot.send_message(chat_id=chat_id, text=piece, reply_markup=markup)


async def answer_with(bot: Bot, gateway: Sanic, chat_id: int, answer: ChannelAnswer, update_id: int) -> None:
    """Sends what the switchboard answered, in order. A reply Telegram does not take is put in the outbox
    with every reply after it, and the delivery dispatcher sends them (with retries, in order)."""
    if answer.outcome is None:  # refused (empty, too long, store down): nothing stored, just say why
        replies = [(text, [], None) for text in answer.texts]
    else:
        replies = [(reply.text, reply.buttons, reply.id) for reply in answer.outcome.replies]
    for index, (text, buttons, _) in enumerate(replies):
        try:
            await send_text(bot, chat_id, text, buttons)
        except TelegramError as failure:
            unsent = [i for _, _, i in replies[index:] if i is not None and i > 0]  # < 0: not stored yet
            log.warning(
                "telegram: reply to update %s not sent (%s); %s queued for retry",
                update_id,
                type(failure).__name__,
                len(unsent),
            )
            await queue_for_retry(gateway, unsent)
            return


async def queue_for_retry(gateway: Sanic, message_ids: list[int]) -> None:
    if not message_ids:
        return
    async with gateway.ctx.sessions() as session:
        found = await session.scalars(
            select(StoredMessage).where(StoredMessage.id.in_(message_ids)).order_by(StoredMessage.id)
        )
        for message in found:
            await deliveries.push(session, message)
        await session.commit()


async def take_words(
    update: Update,
    context: ContextTypes.DEFAULT_TYPE,
    chat_id: int,
    words: str,
    first: str | None = None,
) -> bool:
    """The child wrote `words`: through the switchboard, and the replies back to the chat. `first` (a
    command's own reply) is sent after the words are stored and before their replies, so the last thing
    the child reads is the answer to what they wrote. False for a redelivery, which was answered (and
    greeted) the first time."""
    gateway: Sanic = context.bot_data[GATEWAY]
    acks: Acknowledgements = context.bot_data[ACKS]
    answer = await base.receive(
        gateway,
        ChannelMessage(CHANNEL, str(chat_id), external_id_of(update), words),
        on_stored=lambda _level: acks.kept(update),
    )
    if answer.error == "store_down":
        # Nothing was kept: the webhook answers 503 so that Telegram sends the update again, and the
        # child reads the numbers once, not at every redelivery.
        acks.failed(update)
        told: OrderedDict[int, None] = getattr(gateway.ctx, STORE_DOWN_TOLD, None) or OrderedDict()
        setattr(gateway.ctx, STORE_DOWN_TOLD, told)
        if update.update_id in told:
            return False
        told[update.update_id] = None
        while len(told) > STORE_DOWN_TOLD_KEPT:
            told.popitem(last=False)
    if answer.outcome is not None and answer.outcome.duplicate:
        log.info("telegram: update %s is a redelivery; already answered", update.update_id)
        return False
    if first is not None:
        await send_before_the_answer(context.bot, chat_id, first, update.update_id)
    await answer_with(context.bot, gateway, chat_id, answer, update.update_id)
    return True


async def send_before_the_answer(bot: Bot, chat_id: int, text: str, update_id: int) -> None:
    """A command's reply ahead of the answer to the words after it. If the Bot API refuses it, the answer
    still goes out: the words' answer is what the child needs (a crisis answer carries the numbers), and
    a command's reply is not stored, so there is nothing to retry."""
    try:
        await send_text(bot, chat_id, text)
    except TelegramError as failure:
        log.warning(
            "telegram: a command's reply to update %s not sent (%s); the answer follows",
            update_id,
            type(failure).__name__,
        )


def words_after_command(message: Message) -> str:
    """What the writer put after the bot command that opens the message ("/start 我…" gives "我…"),
    without the white space around it; "" for the command alone. PTB's CommandHandler only hands over a
    message whose first entity is a bot_command at offset 0, counted in Telegram's UTF-16 units, so the
    words are cut exactly where the command ("/start" or "/start@bot") ends."""
    text = message.text or ""
    if not message.entities:
        return text.strip()
    entity = message.entities[0]
    # UTF-16 with surrogatepass, as PTB's parse_entity counts, but a lone surrogate (a broken client's
    # text) cannot make it raise and lose the words after the command.
    units = text.encode("utf-16-le", "surrogatepass")
    end = 2 * (entity.offset + entity.length)
    command = units[:end].decode("utf-16-le", "surrogatepass")
    rest = units[end:].decode("utf-16-le", "surrogatepass")
    return rest.strip() if text.startswith(command) else text.strip()


def is_start_parameter(words: str) -> bool:
    """Whether the words after /start are a deep-link code, not the writer's words.

    A link t.me/<bot>?start=<code> makes the Telegram app send "/start <code>", the code 1 to 64 of A-Z
    a-z 0-9 _ -. Such a code (a poster's `school_42`) says nothing about the writer; storing it would send
    it to the dialogue as if a child had written it. So a code alone is not stored and the writer is only
    greeted. Nothing else can be a code: Chinese words, several words, any punctuation or a longer text
    are always the writer's words. And because a child may type `/start kms` or `/start zisha` by hand,
    a code the protocol reads as anything above green, as written or with _ and - as spaces
    (`i_want_to_die`), for a student or a parent, is words after all and goes through the switchboard."""
    if not START_PARAMETER.fullmatch(words):
        return False
    readings = {words, re.sub(r"[_-]+", " ", words)}
    return all(
        screen(reading, audience).level == Level.GREEN
        for reading in readings
        for audience in ("student", "parent")
    )


async def on_command(update: Update, context: ContextTypes.DEFAULT_TYPE, reply: str, words: str) -> None:
    """A command's own `reply`, and any `words` written after the command as the child's message: stored,
    screened and answered through the switchboard like any other, their answer after the reply. The
    command alone stores nothing."""
    message = update.effective_message
    assert message is not None
    if words:
        await take_words(update, context, message.chat_id, words, first=reply)
    else:
        await send_text(context.bot, message.chat_id, reply)


async def on_start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/start, the first thing anyone sends: a welcome with the numbers, then the answer to any words
    written after it. A deep-link code alone (`is_start_parameter`) is greeted, not stored."""
    message = update.effective_message
    assert message is not None
    words = words_after_command(message)
    if is_start_parameter(words):
        log.info(
            "telegram: update %s is /start with a deep-link code; greeted, nothing stored", update.update_id
        )
        words = ""
    await on_command(update, context, telegram_texts().welcome, words)


async def on_my_id(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/myid: the writer's own chat id, for a counsellor setting up their pages, then the answer to any
    words written after it."""
    message = update.effective_message
    assert message is not None
    reply = telegram_texts().your_chat_id.format(chat_id=message.chat_id)
    await on_command(update, context, reply, words_after_command(message))


async def on_words(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A text message, an edited one, or words written under a photo or a file."""
    message = update.effective_message
    assert message is not None
    taken = await take_words(update, context, message.chat_id, message.text or message.caption or "")
    if taken and message.effective_attachment is not None and update.message is not None:
        # the words were read, the picture or the file was not: say so
        await send_text(context.bot, message.chat_id, base.common_texts().only_text)


async def on_media(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A photo, voice message, sticker, file… without words: only text can be read. The media are
    neither stored nor downloaded."""
    message = update.effective_message
    assert message is not None
    log.info("telegram: update %s carried no text; asked for words", update.update_id)
    await send_text(context.bot, message.chat_id, base.common_texts().only_text)


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A button of the bot's pressed: its payload is the child's words, like the web chat's buttons."""
    query = update.callback_query
    assert query is not None
    with contextlib.suppress(TelegramError):  # stops the button's spinner; a late answer changes nothing
        await query.answer()
    chat = query.message.chat if query.message is not None else None
    if chat is None or chat.type != chat.PRIVATE or not query.data:
        return
    await take_words(update, context, chat.id, query.data)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """An update's handling failed unexpectedly: logged by id and type, and a child in a private chat
    still gets the fail-safe script (with the numbers) rather than silence."""
    update_id = update.update_id if isinstance(update, Update) else None
    log.error("telegram: update %s failed (%s)", update_id, type(context.error).__name__)
    context.bot_data[ACKS].failed(update)  # unless its words were kept: Telegram sends it again
    chat = update.effective_chat if isinstance(update, Update) else None
    if chat is not None and chat.type == chat.PRIVATE:
        with contextlib.suppress(TelegramError):
            await send_text(context.bot, chat.id, failsafe_text())


# --- the channel -----------------------------------------------------------------------------------------

PRIVATE = filters.ChatType.PRIVATE
WORDS = filters.TEXT | filters.CAPTION


class TelegramLine:
    """The bot for one gateway: its PTB Application, built when the server starts and stopped with it."""

    def __init__(self, settings: TelegramSettings) -> None:
        assert settings.token is not None
        self.settings = settings
        self.token = settings.token.get_secret_value()
        self.application: Application[Any, Any, Any, Any, Any, Any] | None = None
        self.gateway: Sanic | None = None
        self.acks = Acknowledgements()
        self._opening: asyncio.Task[None] | None = None
        self.group = (
            None
            if settings.counsellor_group is None
            else CounsellorGroup(
                self,
                settings.counsellor_group,
                telegram_texts,
                interval_seconds=settings.counsellor_group_interval_seconds,
            )
        )

    @property
    def polling(self) -> bool:
        return self.settings.mode == "polling"

    def new_bot(self) -> Bot:
        return Bot(self.token, **self.settings.bot_urls())

    def build(self, gateway: Sanic) -> Application[Any, Any, Any, Any, Any, Any]:
        builder = ApplicationBuilder().token(self.token).concurrent_updates(OneChatInOrder(acks=self.acks))
        for option, url in self.settings.bot_urls().items():
            builder = getattr(builder, option)(url)
        if not self.polling:
            builder = builder.updater(None)  # updates come through the gateway's own route
        application = builder.build()
        application.bot_data[GATEWAY] = gateway
        application.bot_data[ACKS] = self.acks
        # The first handler that matches takes the update. Groups are never a child's conversation.
        new_private = filters.UpdateType.MESSAGE & PRIVATE
        application.add_handler(CommandHandler("start", on_start, filters=new_private))
        application.add_handler(CommandHandler("myid", on_my_id, filters=new_private))
        application.add_handler(MessageHandler(filters.UpdateType.MESSAGES & PRIVATE & WORDS, on_words))
        application.add_handler(MessageHandler(new_private & ~WORDS & ~filters.StatusUpdate.ALL, on_media))
        if self.group is not None:  # a claim button in the counsellors' group, before a child's buttons
            application.add_handler(self.group.handler())
        application.add_handler(CallbackQueryHandler(on_button))
        application.add_error_handler(on_error)
        return application

    async def start(self, gateway: Sanic) -> None:
        self.gateway = gateway
        self.application = self.build(gateway)
        if self.group is not None:
            self.group.start(gateway)
        try:
            await self._open(self.application)
        except NetworkError as failure:  # Telegram unreachable: the rest of the gateway starts regardless
            log.error("telegram: Bot API unreachable at start (%s); trying again", type(failure).__name__)
            self._opening = asyncio.create_task(self._keep_opening(self.application))

    async def _open(self, application: Application[Any, Any, Any, Any, Any, Any]) -> None:
        await application.initialize()  # getMe: a wrong token fails here, loudly
        if self.polling:
            assert application.updater is not None
            await application.updater.start_polling(allowed_updates=ALLOWED_UPDATES)
        elif self.settings.set_webhook:
            await application.bot.set_webhook(
                url=self.webhook_url(),
                secret_token=self.secret(),
                allowed_updates=ALLOWED_UPDATES,
            )
        await application.start()
        log.info("telegram: bot started (%s)", self.settings.mode)

    async def _keep_opening(self, application: Application[Any, Any, Any, Any, Any, Any]) -> None:
        while True:
            await asyncio.sleep(self.settings.start_retry_seconds)
            try:
                await self._open(application)
                return
            except NetworkError as failure:
                log.error("telegram: Bot API still unreachable (%s)", type(failure).__name__)

    async def stop(self, _: Sanic) -> None:
        if self.group is not None:
            await self.group.stop()
        if self._opening is not None:
            self._opening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._opening
            self._opening = None
        application = self.application
        if application is None:
            return
        if application.updater is not None and application.updater.running:
            await application.updater.stop()
        if application.running:
            await application.update_queue.join()  # every update already queued is handled first
            await application.stop()
        await application.shutdown()
        await application.bot.shutdown()  # closes its connections even when the start failed half-way

    def webhook_url(self) -> str:
        assert self.gateway is not None
        public_url = self.gateway.ctx.settings.public_url
        if not public_url:
            raise RuntimeError("XINQIAO_TELEGRAM_SET_WEBHOOK needs XINQIAO_PUBLIC_URL (https://…)")
        return f"{public_url.rstrip('/')}{WEBHOOK_PATH}"

    def secret(self) -> str:
        assert self.settings.webhook_secret is not None
        return self.settings.webhook_secret.get_secret_value()

    async def with_bot[T](self, call: Callable[[Bot], Awaitable[T]]) -> T:
        """Runs `call` with the running bot; outside the server's life (a test's delivery round, a tool)
        with a bot opened for this call only."""
        application = self.application
        if application is not None and application.running:
            return await call(application.bot)
        async with self.new_bot() as bot:
            return await call(bot)

    async def webhook(self, request: Request) -> HTTPResponse:
        """Telegram's POST (the app refuses an oversize body first, 413): the secret token (403), the
        update (400), then the queue, and 200 once its words are stored (503 when that fails or takes
        longer than `ack_timeout_seconds`). While the bot is not running (the Bot API was unreachable at
        start) the answer is 503, and Telegram keeps the update and sends it again."""
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self.secret().encode()):
            log.warning("telegram: webhook refused (%s secret token)", "wrong" if given else "no")
            return json_response({"error": "forbidden"}, status=403)
        application = self.application
        if application is None or not application.running:
            log.error("telegram: update refused, the bot is not running; Telegram will redeliver it")
            return json_response({"error": "unavailable"}, status=503)
        try:
            data = json.loads(request.body)
            update = Update.de_json(data, application.bot) if isinstance(data, dict) else None
        except Exception as error:  # noqa: BLE001 - anything PTB cannot read is a bad request
            log.warning("telegram: malformed update refused (%s)", type(error).__name__)
            return json_response({"error": "malformed update"}, status=400)
        if update is None or not well_formed(update):
            log.warning("telegram: malformed update refused (not an object, or ids that are no integers)")
            return json_response({"error": "malformed update"}, status=400)
        kept = self.acks.expect(update)
        await application.update_queue.put(update)
        status = await self.acks.answer(update, kept, self.settings.ack_timeout_seconds)
        if status != 200:
            log.error("telegram: update %s not kept in time; Telegram will redeliver it", update.update_id)
            return json_response({"error": "not kept yet"}, status=status)
        return empty(status=200)


def well_formed(update: Update) -> bool:
    """PTB's `de_json` does not check types: a chat or user id that is no integer would fail only in the
    handler, the webhook would answer 503 and Telegram would send it again for ever. It is refused here."""
    ids = [update.update_id]
    if update.effective_chat is not None:
        ids.append(update.effective_chat.id)
    if update.effective_user is not None:
        ids.append(update.effective_user.id)
    return all(isinstance(i, int) and not isinstance(i, bool) for i in ids)


class TelegramSender:
    """Sends a user the messages no webhook waits for (a counsellor's words) through the same bot."""

    channel = CHANNEL

    def __init__(self, line: TelegramLine) -> None:
        self._line = line

    async def send_text(self, address: str, text: str) -> None:
        await self._line.with_bot(lambda bot: send_text(bot, int(address), text))


class TelegramPager:
    """Pages a counsellor whose page_channel is "telegram" in their private chat with the bot (the chat id
    is their page address; they must have pressed Start once). Ids, level and deadline only."""

    name = CHANNEL

    def __init__(self, line: TelegramLine) -> None:
        self._line = line

    async def send(self, page: Page) -> None:
        if not page.address:
            raise ValueError(f"counsellor {page.counsellor_id} has no Telegram chat id to page")
        address = int(page.address)
        text = self.text_of(page)
        await self._line.with_bot(lambda bot: send_text(bot, address, text))

    def text_of(self, page: Page) -> str:
        texts = telegram_texts().page
        deadline = texts.no_deadline
        if claim_by := page.payload.get("claim_by"):
            when = datetime.fromisoformat(str(claim_by)).astimezone(ZoneInfo(self._line.settings.timezone))
            deadline = when.strftime(texts.deadline_format)
        text = texts.text.format(
            level=texts.levels.get(page.level, page.level),
            case_id=page.case_id,
            reason=texts.reasons.get(page.reason, texts.other_reason),
            deadline=deadline,
        )
        gateway = self._line.gateway
        public_url = gateway.ctx.settings.public_url if gateway is not None else None
        if public_url:
            text += "\n" + texts.console_link.format(url=f"{public_url.rstrip('/')}/console")
        return text


def telegram_plugin(settings: TelegramSettings) -> ChannelPlugin:
    """The channel as the gateway mounts it. The Application is built in `start`, not here."""
    line = TelegramLine(settings)
    keep_private(line.token)
    if settings.webhook_secret is not None:
        keep_private(settings.webhook_secret.get_secret_value())
    telegram_texts()  # a broken content file stops the start, not the first message
    routes = Blueprint("telegram", url_prefix="/telegram")
    if not line.polling:
        routes.add_route(line.webhook, "/webhook", methods=["POST"], name="webhook")
    return ChannelPlugin(
        CHANNEL,
        routes,
        sender=TelegramSender(line),
        page_sender=TelegramPager(line),
        start=line.start,
        stop=line.stop,
        extra={"line": line, "group": line.group},
    )


def from_environment() -> ChannelPlugin | None:
    """None without XINQIAO_TELEGRAM_TOKEN; a token without a webhook secret in webhook mode raises."""
    settings = TelegramSettings()
    if settings.token is None:
        return None
    return telegram_plugin(settings)
