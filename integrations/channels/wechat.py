"""The WeChat Official Account (公众号) channel, with wechatpy.

WeChat posts every message to one URL, signed with the account's token (`signature` over token,
`timestamp` and `nonce`); the `GET` handshake that WeChat's console makes when the URL is saved is signed
the same way. A request whose signature does not match, or whose timestamp is more than
`max_clock_skew_seconds` away from our clock, is refused with 403 before its body is read. In the
encrypted ("safe") mode, chosen by setting XINQIAO_WECHAT_ENCODING_AES_KEY, the body is decrypted with
`WeChatCrypto` (which checks `msg_signature`) and the reply is encrypted back.

The signature covers the query string, not the body, so a signed (timestamp, nonce) is good for the one
message it first came with (records/nonces.py, in the store, so on every gateway and after a restart):
the same message again under it is WeChat's own retry, taken as a redelivery below; another message, or
another sender, under it is a replay and refused with 403 before anything is stored. The handshake's
query string is bound to its `echostr` the same way, so it cannot carry a message either. Both modes take
this path; in the encrypted mode the message is compared decrypted, as a retry may be encrypted anew.

A text message goes through the one switchboard (`base.receive`). WeChat waits 5 seconds for the answer
and then tries again, three times in all, so the answer is given in the response (a passive `TextReply`)
when the switchboard has it within `passive_wait_seconds` (4 s); otherwise the response is `success`
(WeChat then shows nothing and does not retry) and the answer goes out later through the customer-service
API, put in the outbox when the switchboard is done (records/deliveries.py). A red message is never left
without the numbers meanwhile: once it is stored and screened red, the response that cannot wait carries
the hotline numbers (`red_first`) instead of `success`, and the full answer follows through the API. A retry of a message is never
processed twice: while it is still being answered here, the retry gets `success` and the answer goes out
through the API (the first response no longer reaches anyone, or WeChat would not have retried); once it
was answered, the store's unique key finds it and its stored replies are put in the outbox, once however
many retries come (outbox items are unique per reply).

Pictures, voice, video, places and links get the "only words" text; following the account gets a welcome
with the hotline numbers; unfollowing, and every other event, gets `success` and nothing is kept.

The customer-service API only reaches a user within 48 hours of their last message to the account
(errcode 45015 after that; 43004 when they unfollowed): such a failure is raised as `OutsideServiceWindow`
or `NotFollowing`, so the outbox records it under that name and, once its attempts are used up, audits it
for a supervisor. Nothing here logs an openid, a message's text or a request's query (WeChat puts the
openid there): message ids and error codes only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sanic import Blueprint, Request, Sanic
from sanic.response import HTTPResponse, text
from sqlalchemy.exc import SQLAlchemyError
from wechatpy import parse_message
from wechatpy.client import WeChatClient
from wechatpy.crypto import WeChatCrypto
from wechatpy.events import BaseEvent, SubscribeEvent, SubscribeScanEvent
from wechatpy.exceptions import InvalidSignatureException, WeChatClientException
from wechatpy.messages import BaseMessage, TextMessage, UnknownMessage
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

from integrations.channels import base
from integrations.channels.base import (
    ChannelMessage,
    ChannelPlugin,
    PermanentDeliveryError,
    channel_texts,
    common_texts,
)
from integrations.content import failsafe_text
from integrations.switchboard import Reply
from records import deliveries, nonces
from records.models import Message
from triage_protocols import screen

log = logging.getLogger(__name__)

CHANNEL = "wechat"
# WeChat's "received, nothing to show": it neither displays an error nor retries.
SUCCESS = "success"
# A passive reply is one message; the switchboard's replies to one message are joined into it.
REPLY_SEPARATOR = "\n\n"
DEFAULT_API_BASE_URL = "https://api.weixin.qq.com"
API_TIMEOUT_SECONDS = 10.0
OUTSIDE_WINDOW_ERRCODE = 45015  # the user's last message is more than 48 hours old
NOT_FOLLOWING_ERRCODE = 43004  # the user no longer follows the account
# How often a gateway forgets the nonces past the window: often enough to keep the table small, seldom
# enough that the requests of a busy minute do not all delete.
NONCE_PURGE_EVERY_SECONDS = 60.0


class WeChatSettings(BaseSettings):
    """XINQIAO_WECHAT_*. The channel is on when `token` and `app_id` are set; it then needs `app_secret`
    too (answers slower than the passive window and counsellors' words go through the API)."""

    model_config = SettingsConfigDict(env_prefix="XINQIAO_WECHAT_", extra="ignore")

    token: SecretStr | None = None  # 令牌 (Token) in the account's server configuration
    app_id: str | None = None  # AppID
    app_secret: SecretStr | None = None  # AppSecret
    # EncodingAESKey (43 characters): set it for the encrypted ("safe") mode, leave it out for plain mode.
    encoding_aes_key: SecretStr | None = None
    # How long a message's answer may take and still be given in the response; WeChat gives up at 5 s.
    passive_wait_seconds: float = Field(default=4.0, gt=0, le=4.5)
    # WeChat's documentation names no window; it retries within about 15 s of the first try, so this only
    # has to cover clock differences. Five minutes, as WeChat Pay's API v3 uses for signed responses.
    max_clock_skew_seconds: int = Field(default=300, gt=0)
    # Only tests change it: the API's address (a loopback stand-in).
    api_base_url: str = DEFAULT_API_BASE_URL


class WeChatTexts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    welcome: str
    red_first: str


def wechat_texts() -> WeChatTexts:
    return channel_texts(CHANNEL, WeChatTexts)


class OutsideServiceWindow(PermanentDeliveryError):
    """WeChat refused a customer-service message (errcode 45015): the user last wrote more than 48 hours
    ago. It cannot succeed until they write again."""


class NotFollowing(PermanentDeliveryError):
    """WeChat refused a customer-service message (errcode 43004): the user no longer follows the account."""


_REFUSALS: Mapping[int, type[Exception]] = {
    OUTSIDE_WINDOW_ERRCODE: OutsideServiceWindow,
    NOT_FOLLOWING_ERRCODE: NotFollowing,
}


# Characters XML 1.0 cannot hold (control characters but tab and line ends, U+FFFE, U+FFFF, surrogates):
# one of them in a child's message would make the whole body unparsable, and its words lost.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def xml_safe(xml: bytes | str) -> str:
    """The body with what XML cannot hold removed, and bytes that are not UTF-8 replaced, so its words
    are parsed, screened and answered. The signature covers the query (and, encrypted, the envelope),
    never these characters, so this changes nothing that was verified."""
    text = xml.decode("utf-8", errors="replace") if isinstance(xml, bytes) else xml
    return _NOT_XML.sub("", text)


class _RedactCredentials(logging.Filter):
    """WeChat's API takes the AppSecret (token requests) and the access token in the query string, which
    urllib3 writes to its debug log: they are blanked there."""

    _pattern = re.compile(r"\b(secret|access_token)=[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = self._redact(record.msg)
        return True

    def _redact(self, value: str) -> str:
        return self._pattern.sub(r"\1=***", value)


def _redact_api_logs() -> None:
    logger = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _RedactCredentials) for f in logger.filters):
        logger.addFilter(_RedactCredentials())


class _TimedSession(requests.Session):
    """wechatpy fetches the access token without a timeout; every call here has one."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().request(method, url, *args, **kwargs)


class _Client(WeChatClient):
    """wechatpy's client pointed at a configurable API address, the access-token request included
    (wechatpy writes that one's URL out in full)."""

    def __init__(self, app_id: str, secret: str, api_base_url: str, timeout: float) -> None:
        super().__init__(app_id, secret, timeout=timeout)
        self.API_BASE_URL = f"{api_base_url.rstrip('/')}/cgi-bin/"
        self._http = _TimedSession(timeout)

    def fetch_access_token(self) -> dict[str, Any]:
        return self._fetch_access_token(
            url=f"{self.API_BASE_URL}token",
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
        )


class WeChatSender:
    """Customer-service text messages (客服消息) through wechatpy's client. The client is synchronous
    (requests), so each call runs in a thread; the access token is fetched by one thread at a time."""

    channel = CHANNEL

    def __init__(self, app_id: str, app_secret: SecretStr, api_base_url: str) -> None:
        self._app_id = app_id
        self._app_secret = app_secret
        self._api_base_url = api_base_url
        self._lock = threading.Lock()
        self._client: _Client | None = None
        _redact_api_logs()

    async def send_text(self, address: str, text: str) -> None:
        await asyncio.to_thread(self._send, address, text)

    def _send(self, address: str, text: str) -> None:
        with self._lock:
            if self._client is None:
                self._client = _Client(
                    self._app_id, self._app_secret.get_secret_value(), self._api_base_url, API_TIMEOUT_SECONDS
                )
            client = self._client
            _ = client.access_token  # fetched here, under the lock, when it is missing or about to expire
        try:
            client.message.send_text(address, text)
        except WeChatClientException as error:
            refusal = _REFUSALS.get(error.errcode) if isinstance(error.errcode, int) else None
            if refusal is None:
                raise
            log.warning("wechat: customer-service message refused (errcode %s)", error.errcode)
            raise refusal(f"errcode {error.errcode}") from None

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client._http.close()
                self._client = None


class _Refused(Exception):
    """A request that is answered with `status` and not processed. The reason is a code, for the log."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class _Flight:
    """A text message being answered on this gateway. `superseded`: WeChat retried it, so the first
    response reaches nobody and the answer must go out through the API."""

    superseded: bool = False
    level: str | None = None  # the risk level, once the message is stored

    def stored(self, level: str | None) -> None:
        self.level = level


@dataclass
class WeChatChannel:
    settings: WeChatSettings
    sender: WeChatSender
    crypto: WeChatCrypto | None = None
    flights: dict[str, _Flight] = field(default_factory=dict)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    purged_at: float | None = None  # time.monotonic() of this gateway's last purge of old nonces

    # -- checks ------------------------------------------------------------------------------------------

    def verify(self, args: Mapping[str, Any]) -> tuple[str, str]:
        """The request's timestamp and nonce when WeChat signed it recently; `_Refused` (403) otherwise."""
        signature, timestamp, nonce = (args.get(name) for name in ("signature", "timestamp", "nonce"))
        if not (signature and timestamp and nonce):
            raise _Refused(403, "unsigned")
        try:
            check_signature(self._token(), signature, timestamp, nonce)
        except InvalidSignatureException:
            raise _Refused(403, "bad_signature") from None
        try:
            skew = abs(time.time() - int(timestamp))
        except ValueError:
            raise _Refused(403, "bad_timestamp") from None
        if skew > self.settings.max_clock_skew_seconds:
            raise _Refused(403, "stale_timestamp")
        return timestamp, nonce

    async def once(self, app: Sanic, timestamp: str, nonce: str, content: str) -> None:
        """Refuses (`_Refused`, 403) a verified query string already used with other `content`; the same
        content again is WeChat's retry and passes. A store that cannot be asked lets the request through:
        the message cannot be stored then either, and the switchboard's store-down answer (the numbers)
        is what the child must get, not a 403 that leaves them with nothing."""
        expires_at = datetime.fromtimestamp(int(timestamp), UTC) + timedelta(
            seconds=self.settings.max_clock_skew_seconds
        )
        try:
            async with app.ctx.sessions() as session:
                seen = await nonces.seen(
                    session, timestamp=timestamp, nonce=nonce, message=content, expires_at=expires_at
                )
        except (SQLAlchemyError, OSError) as error:
            log.error("wechat: nonce store unavailable (%s); request let through", type(error).__name__)
            return
        if seen is nonces.Seen.REPLAYED:
            raise _Refused(403, "replayed_nonce")
        if seen is nonces.Seen.AGAIN:
            log.info("wechat: a signed request seen before, with the same content: WeChat's retry")
        await self._purge_now_and_then(app)

    async def _purge_now_and_then(self, app: Sanic) -> None:
        now = time.monotonic()
        if self.purged_at is not None and now - self.purged_at < NONCE_PURGE_EVERY_SECONDS:
            return
        self.purged_at = now
        try:
            async with app.ctx.sessions() as session:
                await nonces.purge(session)
        except (SQLAlchemyError, OSError) as error:  # the next purge takes them; nothing is refused for it
            log.warning("wechat: old nonces not purged (%s)", type(error).__name__)

    def parse(self, body: bytes, args: Mapping[str, Any], timestamp: str, nonce: str) -> BaseMessage:
        """The message in a verified request's body, decrypted in the encrypted mode."""
        encrypted = args.get("encrypt_type") == "aes"
        if self.crypto is None:
            if encrypted:  # the account is in the encrypted mode, this gateway has no key for it
                raise _Refused(400, "encrypted_without_key")
            xml = body
        else:
            if not encrypted:  # plain text where this gateway expects the encrypted mode: refused
                raise _Refused(400, "plain_in_encrypted_mode")
            msg_signature = args.get("msg_signature")
            if not msg_signature:
                raise _Refused(403, "unsigned")
            try:
                xml = self.crypto.decrypt_message(body, msg_signature, timestamp, nonce)
            except InvalidSignatureException:
                raise _Refused(403, "bad_msg_signature") from None
            except Exception as error:  # noqa: BLE001 - any fault of the envelope is the sender's
                raise _Refused(400, f"undecryptable:{type(error).__name__}") from None
        try:
            message = parse_message(xml_safe(xml))
            if message is None:
                raise ValueError("empty body")
            if not message.source or not message.target:
                raise ValueError("no FromUserName or ToUserName")
            if isinstance(message, TextMessage) and message.id <= 0:
                raise ValueError("no MsgId")
        except Exception as error:  # noqa: BLE001 - whatever the XML holds, it is the sender's fault
            raise _Refused(400, f"malformed:{type(error).__name__}") from None
        return message

    def _token(self) -> str:
        assert self.settings.token is not None
        return self.settings.token.get_secret_value()

    # -- answers -----------------------------------------------------------------------------------------

    async def answer(self, app: Sanic, message: BaseMessage) -> list[str]:
        """What to reply in the response; [] for `success`."""
        if isinstance(message, TextMessage):
            return await self._text(app, message)
        if isinstance(message, SubscribeEvent | SubscribeScanEvent):
            return [wechat_texts().welcome]
        if isinstance(message, BaseEvent) or _raw_type(message) == "event":
            return []  # unfollowing, menus, scans: nothing to say and nothing kept
        return [common_texts().only_text]  # a picture, voice, video, place or link

    async def _text(self, app: Sanic, message: TextMessage) -> list[str]:
        key = str(message.id)
        flight = self.flights.get(key)
        if flight is not None:  # WeChat's retry of a message still being answered here
            flight.superseded = True
            log.info("wechat: retry of message %s while it is answered; the answer goes out later", key)
            return self._while_answering(flight, message.content or "")
        flight = self.flights[key] = _Flight()
        task = self._keep(
            asyncio.create_task(
                base.receive(
                    app,
                    ChannelMessage(CHANNEL, message.source, key, message.content or ""),
                    on_stored=flight.stored,
                )
            )
        )
        try:
            answer = await asyncio.wait_for(asyncio.shield(task), self.settings.passive_wait_seconds)
        except TimeoutError:
            answer = None
        except asyncio.CancelledError:  # WeChat dropped the request: the answer goes out through the API
            self._hand_over(app, key, message.source, task)
            raise
        except Exception as error:  # noqa: BLE001 - a child never meets silence
            log.error("wechat: message %s failed (%s); fail-safe answered", key, type(error).__name__)
            self.flights.pop(key, None)
            return [failsafe_text()]
        # No await from here to the response, so a retry cannot slip in between the decision and it.
        if answer is None or flight.superseded:
            log.info("wechat: message %s is answered later through the API", key)
            self._hand_over(app, key, message.source, task)
            return self._while_answering(flight, message.content or "")
        self.flights.pop(key, None)
        if answer.outcome is not None and answer.outcome.duplicate:
            # A redelivery of a message answered before: WeChat retries only when it did not get the first
            # response, so the stored replies go out through the API (once: outbox items are unique).
            log.info("wechat: redelivered message %s; its stored replies are queued", key)
            await self._queue(app, answer.outcome.replies)
            return []
        return answer.texts

    @staticmethod
    def _while_answering(flight: _Flight, words: str) -> list[str]:
        """What the response says while the answer is still being made: nothing (`success`), except for
        a red message, whose writer reads the numbers now; the full answer follows through the API. The
        level is the stored one (screened for the conversation's audience); a store too slow to have
        kept the message yet is no reason to wait, so the words are screened here meanwhile."""
        level = flight.level or screen(words).level.value
        return [wechat_texts().red_first] if level == "red" else []

    def _hand_over(self, app: Sanic, key: str, address: str, task: asyncio.Task[base.ChannelAnswer]) -> None:
        self._keep(asyncio.create_task(self._later(app, key, address, task)))

    async def _later(
        self, app: Sanic, key: str, address: str, task: asyncio.Task[base.ChannelAnswer]
    ) -> None:
        """Queues the answer of a message whose response said `success`, when the switchboard is done."""
        try:
            answer = await task
            if answer.outcome is not None:
                await self._queue(app, answer.outcome.replies)
            elif answer.texts:  # refused before it was stored (the store was down): nothing to queue
                for part in answer.texts:
                    await self.sender.send_text(address, part)
        except Exception as error:  # noqa: BLE001 - a child never meets silence: the numbers, at least
            log.error("wechat: the later answer to message %s failed (%s)", key, type(error).__name__)
            await self._send_failsafe(key, address)
        finally:
            self.flights.pop(key, None)

    async def _send_failsafe(self, key: str, address: str) -> None:
        try:
            await self.sender.send_text(address, failsafe_text())
        except Exception as error:  # noqa: BLE001 - nothing more can be done here; logged by code
            log.error("wechat: fail-safe for message %s not sent (%s)", key, type(error).__name__)

    @staticmethod
    async def _queue(app: Sanic, replies: list[Reply]) -> None:
        if not replies:
            return
        async with app.ctx.sessions() as session:
            for reply in replies:
                stored = await session.get(Message, reply.id)
                if stored is not None:
                    await deliveries.push(session, stored)
            await session.commit()
        app.ctx.deliveries.wake()

    def _keep[T](self, task: asyncio.Task[T]) -> asyncio.Task[T]:
        """Holds a background task until it is done (the event loop keeps only weak references)."""
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # -- responses ---------------------------------------------------------------------------------------

    def respond(self, message: BaseMessage, texts: list[str], nonce: str) -> HTTPResponse:
        if not texts:
            return text(SUCCESS)
        content = REPLY_SEPARATOR.join(texts).replace("]]>", "]]]]><![CDATA[>")  # kept inside CDATA
        xml = TextReply(message=message, content=content).render()
        if self.crypto is not None:
            xml = self.crypto.encrypt_message(xml, nonce, str(int(time.time())))
        return text(xml, content_type="application/xml; charset=utf-8")

    async def stop(self, app: Sanic) -> None:
        """Lets the answers under way finish and be queued (their responses already said `success`): the
        engine's own time limit, and a little more to store and queue them. An answer that finishes while
        this waits may be handed over to a new task (`_later`, queueing it): that one is waited for too,
        or the store would be closed under it and the answer lost."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + app.ctx.settings.engine_timeout_seconds + 5.0
        while self.tasks and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self.tasks), timeout=left)
            await asyncio.sleep(0)  # a request woken by the finished answer hands it over now
        self.sender.close()


def _content(message: BaseMessage) -> str:
    """A message as WeChat wrote it, in one canonical form (every field, sorted): equal for WeChat's
    retry, even one encrypted anew, different for another message, text or sender. Only its keyed digest
    is stored."""
    return json.dumps(getattr(message, "_data", {}), sort_keys=True, ensure_ascii=False, default=str)


def _handshake_content(echostr: str) -> str:
    """What a handshake's query string is bound to: its `echostr`, never equal to a message's content."""
    return f"handshake\x00{echostr}"


def _raw_type(message: BaseMessage) -> str:
    """The MsgType of a message wechatpy does not know (an event it has no class for, say)."""
    if isinstance(message, UnknownMessage):
        return str(getattr(message, "_data", {}).get("MsgType") or "").lower()
    return message.type


def _blueprint(channel: WeChatChannel) -> Blueprint:
    routes = Blueprint(CHANNEL, url_prefix="/wechat")

    @routes.get("/webhook")
    async def handshake(request: Request) -> HTTPResponse:
        """WeChat's server check when the URL is saved: echo `echostr`, only when the signature is ours."""
        echostr = request.args.get("echostr") or ""
        try:
            timestamp, nonce = channel.verify(request.args)
            await channel.once(request.app, timestamp, nonce, _handshake_content(echostr))
        except _Refused as refused:
            log.warning("wechat: handshake refused (%s)", refused.reason)
            return text("", status=refused.status)
        return text(echostr)

    @routes.post("/webhook")
    async def inbound(request: Request) -> HTTPResponse:
        try:
            timestamp, nonce = channel.verify(request.args)
            message = channel.parse(request.body, request.args, timestamp, nonce)
            await channel.once(request.app, timestamp, nonce, _content(message))
        except _Refused as refused:
            log.warning("wechat: request refused with %s (%s)", refused.status, refused.reason)
            return text("", status=refused.status)
        texts = await channel.answer(request.app, message)
        return channel.respond(message, texts, nonce)

    return routes


def plugin_for(settings: WeChatSettings) -> ChannelPlugin:
    """The channel with these settings (tests give theirs; the gateway reads the environment)."""
    if settings.token is None or settings.app_id is None:
        raise ValueError("XINQIAO_WECHAT_TOKEN and XINQIAO_WECHAT_APP_ID are required")
    if settings.app_secret is None:
        raise ValueError(
            "XINQIAO_WECHAT_APP_SECRET is required: answers that take longer than the passive window and "
            "counsellors' messages go out through WeChat's customer-service API"
        )
    crypto = None
    if settings.encoding_aes_key is not None:
        key = settings.encoding_aes_key.get_secret_value()
        if len(key) != 43:
            raise ValueError("XINQIAO_WECHAT_ENCODING_AES_KEY must be the 43 characters WeChat shows")
        crypto = WeChatCrypto(settings.token.get_secret_value(), key, settings.app_id)
    sender = WeChatSender(settings.app_id, settings.app_secret, settings.api_base_url)
    channel = WeChatChannel(settings, sender, crypto)
    return ChannelPlugin(
        CHANNEL, _blueprint(channel), sender=sender, stop=channel.stop, extra={"channel": channel}
    )


def from_environment() -> ChannelPlugin | None:
    settings = WeChatSettings()
    if settings.token is None or settings.app_id is None:
        return None
    return plugin_for(settings)
