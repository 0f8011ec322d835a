"""What every channel shares, so that safety is the same everywhere: a channel adapter verifies the
request (its library's signature check), turns the payload into a `ChannelMessage`, and hands it to
`receive`, which finds the sender's conversation, checks the text, applies the per-sender limit and goes
through the one switchboard (store first, screen, route, fail-safe). What the user reads comes back as
plain texts for the adapter to send its own way (a TwiML reply, a Bot API call, a WeChat XML reply).

A channel plugs into the gateway as a `ChannelPlugin`: its routes, the sender the delivery dispatcher
uses for messages no webhook is waiting for (a counsellor's words), and optionally a page sender for
counsellors who are paged on that channel.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import BaseModel, ConfigDict
from sanic import Blueprint, Sanic
from sqlalchemy.exc import SQLAlchemyError

from integrations.content import gateway_texts
from integrations.inbound import Audience, InboundMessage, InvalidMessage, clean_text
from integrations.limits import AttemptLimiter
from integrations.paging.senders import PageSender
from integrations.switchboard import Outcome
from records import contacts
from records.crypto import lookup_digest
from triage_protocols.directory import hotline_list

log = logging.getLogger(__name__)

CONTENT_DIR = Path(__file__).resolve().parents[2] / "data" / "content" / "channels"
# Per sender and channel: generous for a person typing fast, tight for a script. An orange or red
# message is answered whatever the count (integrations/switchboard.py, `slowed`).
SENDER_LIMIT = 20
SENDER_WINDOW_SECONDS = 60.0


class PermanentDeliveryError(Exception):
    """A channel refused a message for a reason no retry can change (the number opted out, WeChat's
    48-hour window passed, the user unfollowed): the delivery dispatcher fails it at once, audited for a
    supervisor, who must reach the person another way."""


class ChannelSender(Protocol):
    """Sends a message to a user on one channel; raises on failure, and the delivery dispatcher retries."""

    channel: str

    async def send_text(self, address: str, text: str) -> None: ...


@dataclass(slots=True)
class ChannelPlugin:
    """One channel as the gateway mounts it. `start` and `stop` run in the server's listeners (build a
    library client there, never at import time)."""

    name: str
    blueprint: Blueprint
    sender: ChannelSender | None = None
    page_sender: PageSender | None = None
    start: Callable[[Sanic], Awaitable[None]] | None = None
    stop: Callable[[Sanic], Awaitable[None]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChannelMessage:
    """A verified inbound message. `address` is the sender on the channel (chat id, phone number, openid):
    it is stored encrypted, and never logged."""

    channel: str
    address: str = field(repr=False)
    external_id: str
    text: object
    audience: Audience | None = None


@dataclass(frozen=True, slots=True)
class ChannelAnswer:
    """What to send back. `error` is a code when the message was refused (`empty`, `too_long`,
    `store_down`); the texts are then the explanation for the user. `outcome` is None when refused."""

    texts: list[str]
    outcome: Outcome | None = None
    error: str | None = None
    conversation_id: str | None = None


class CommonTexts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    only_text: str


@cache
def _read(name: str) -> dict[str, Any]:
    return yaml.safe_load((CONTENT_DIR / f"{name}.yml").read_text(encoding="utf-8"))


def channel_texts[T: BaseModel](name: str, model: type[T]) -> T:
    """A channel's texts from data/content/channels/<name>.yml, checked by its pydantic model. Every
    `{hotline_list}` is filled in, so a text is ready to send."""
    raw = {key: _fill(value) for key, value in _read(name).items()}
    return model.model_validate(raw)


def _fill(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("{hotline_list}", hotline_list())
    if isinstance(value, dict):
        return {key: _fill(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item) for item in value]
    return value


def common_texts() -> CommonTexts:
    return channel_texts("common", CommonTexts)


def sender_limiter(app: Sanic) -> AttemptLimiter:
    """The gateway's per-sender limit, made on first use (Sanic's test client runs listeners per request)."""
    limiter = getattr(app.ctx, "channel_sender_limiter", None)
    if limiter is None:
        limiter = app.ctx.channel_sender_limiter = AttemptLimiter(SENDER_LIMIT, SENDER_WINDOW_SECONDS)
    return limiter


def _error_texts(code: str, max_length: int) -> list[str]:
    text = getattr(gateway_texts().errors, code)
    return [text.format(limit=max_length, hotline_list=hotline_list())]


async def receive(
    app: Sanic, message: ChannelMessage, *, on_stored: Callable[[str | None], None] | None = None
) -> ChannelAnswer:
    """The one way a channel's message reaches the switchboard. Never raises for a bad message or a store
    that is down: the user always gets something to read (the hotline numbers when nothing is kept).
    `on_stored` hears the risk level once the message is kept (see `Switchboard.receive`)."""
    max_length = app.ctx.settings.max_text_length
    try:
        text = clean_text(message.text, max_length)
    except InvalidMessage as invalid:
        return ChannelAnswer(_error_texts(invalid.code, max_length), error=invalid.code)
    slowed = not sender_limiter(app).allow(lookup_digest(message.channel, message.address))
    try:
        async with app.ctx.sessions() as session:
            conversation = await contacts.conversation_for(
                session, message.channel, message.address, message.audience
            )
        outcome = await app.ctx.switchboard.receive(
            InboundMessage(
                channel=message.channel,
                external_id=message.external_id,
                conversation_id=conversation.id,
                text=text,
                audience=message.audience or conversation.audience,  # type: ignore[arg-type]
            ),
            slowed=slowed,
            on_stored=on_stored,
        )
    except (SQLAlchemyError, OSError) as error:
        # Without the store the message cannot be kept, so it is not processed: the sender is asked to
        # send it again and gets the numbers at once. No text and no address is logged.
        log.error("%s: store unavailable, message refused (%s)", message.channel, type(error).__name__)
        return ChannelAnswer(_error_texts("store_down", max_length), error="store_down")
    return ChannelAnswer([r.text for r in outcome.replies], outcome, conversation_id=conversation.id)
