"""The SMS line, through Twilio: students and parents text a number; on-call counsellors can be paged on
their phones.

Inbound: Twilio POSTs each text to `/sms/inbound`, signed with the account's auth token over the exact
public URL (XINQIAO_PUBLIC_URL + the path) and the form. A forgery gets 403 and nothing is stored. The
message goes through `base.receive` with Twilio's `MessageSid` as its external id, so a redelivery is
answered from the store and never processed twice.

The answer is TwiML in the webhook's own response, not a REST call. The switchboard answers within the
engine's timeout (8 s, then the fail-safe script), well inside the 15 s Twilio waits, so the reply is
always ready in time; it leaves with the request that asked for it (no second request that can fail on
its own, no background task that a restart can lose, no credentials needed to answer); and Twilio sends
the messages of one answer in order. Messages no webhook waits for (a counsellor's words, an answer
given on retry) go by the async REST client through the delivery dispatcher (`SmsSender`).

Long texts are split into SMS messages by sms_segments.py. Keywords (STOP, 退订, HELP…) and opt-outs
are read and recorded by sms_opt_outs.py: a keyword never reaches the assistant, and the sender refuses
a counsellor's message to a number that opted out (`OptedOut`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sanic import Blueprint, Request, Sanic
from sanic.response import HTTPResponse
from sanic.response import text as plain
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client
from twilio.twiml.messaging_response import MessagingResponse

from integrations.channels.base import (
    ChannelAnswer,
    ChannelMessage,
    ChannelPlugin,
    PermanentDeliveryError,
    common_texts,
)
from integrations.channels.base import receive as receive_message
from integrations.channels.sms_opt_outs import (
    Keyword,
    OptedOut,
    Scope,
    contact_id_for,
    keyword_of,
    opt_out_scope,
    record_opt_in,
    record_opt_out,
    wrote_again,
)
from integrations.channels.sms_segments import sms_parts
from integrations.channels.sms_texts import CHANNEL, PageTexts, sms_texts
from integrations.channels.twilio_common import TwilioSettings, rest_client, verified_form
from integrations.content import gateway_texts
from integrations.paging.senders import Page
from triage_protocols.directory import hotline_list

log = logging.getLogger(__name__)

INBOUND_PATH = "/inbound"  # under /sms: the webhook to configure is XINQIAO_PUBLIC_URL + /sms/inbound

# How long Twilio waits for the webhook's answer before it gives up on it (error 11200).
TWILIO_WEBHOOK_WAIT_SECONDS = 15.0
# A REST call that takes longer fails (and the dispatcher retries): Twilio's async client has no
# timeout of its own, and a hung call would hold up the delivery round.
SEND_TIMEOUT_SECONDS = 10.0

_MESSAGE_SID = re.compile(r"^(SM|MM)[0-9a-fA-F]{32}$")
REQUIRED_FIELDS = ("MessageSid", "AccountSid", "From", "Body")


# --- sending -----------------------------------------------------------------------------------------


class TwilioLine:
    """The number and the REST client, made on first use inside the event loop (it opens an aiohttp
    session) and closed by the plugin's `stop`. Sending never blocks the loop."""

    def __init__(self, settings: TwilioSettings) -> None:
        assert settings.sms_number and settings.account_sid and settings.auth_token
        self.settings = settings
        self.number = settings.sms_number
        self.sessions: async_sessionmaker[AsyncSession] | None = None
        self._client: Client | None = None
        # Parts of a split text already sent, so a retry after a failure halfway sends only the rest.
        # Keyed by a digest of recipient and text; in memory only, never logged.
        self._progress: OrderedDict[str, int] = OrderedDict()

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = rest_client(self.settings)
        return self._client

    async def send(self, to: str, text: str) -> int:
        """Sends `text` to `to` as one message or several; raises on failure. Returns the parts sent."""
        parts = sms_parts(text)
        key = hashlib.sha256(f"{to}\x00{text}".encode()).hexdigest()
        done = self._progress.pop(key, 0)
        for index in range(done, len(parts)):
            try:
                async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                    await self.client.messages.create_async(to=to, from_=self.number, body=parts[index])
            except BaseException:
                if index:
                    self._progress[key] = index
                    while len(self._progress) > 1000:
                        self._progress.popitem(last=False)
                raise
        return len(parts) - done

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.http_client.close()  # type: ignore[attr-defined]


# Twilio error codes that no retry changes: the number is not a valid one (21211), cannot take texts
# (21614), is blocked for the line's country settings (21408, 21612), or unsubscribed at Twilio (21610).
# https://www.twilio.com/docs/api/errors
PERMANENT_TWILIO_CODES = frozenset({21211, 21408, 21610, 21612, 21614})


class TwilioRefused(PermanentDeliveryError):
    """Twilio refused the number for good: the counsellor must reach the person another way."""

    def __init__(self, code: int) -> None:
        super().__init__(f"twilio {code}")
        self.code = code


class SmsSender:
    """Texts users what no webhook waits for (a counsellor's words, an answer given on retry). Refuses a
    number that opted out, without calling Twilio."""

    channel = CHANNEL

    def __init__(self, line: TwilioLine) -> None:
        self.line = line

    async def send_text(self, address: str, text: str) -> None:
        if self.line.sessions is None:
            raise RuntimeError("the SMS line is not started: opt-outs cannot be checked")
        async with self.line.sessions() as session:
            contact_id = await contact_id_for(session, address)
            scope = await opt_out_scope(session, contact_id) if contact_id else None
        if scope is not None:
            log.warning("sms: not sent to contact %s, who opted out (%s)", contact_id, scope)
            raise OptedOut(scope)
        try:
            parts = await self.line.send(address, text)
        except TwilioRestException as error:
            if error.code in PERMANENT_TWILIO_CODES:
                log.warning("sms: Twilio refused contact %s for good (code %s)", contact_id, error.code)
                raise TwilioRefused(int(error.code)) from None
            raise
        log.info("sms: sent %s message(s) to contact %s", parts, contact_id)


def page_text(page: Page, texts: PageTexts) -> str:
    """A page as the counsellor's phone shows it: the case, its level, its deadline; no student's words."""
    zone = ZoneInfo(texts.time_zone)

    def when(value: object) -> str | None:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            return None
        if moment.tzinfo is None:  # the store keeps UTC
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(zone).strftime(texts.time_format)

    deadline = ""
    if page.payload.get("claim_by") and (time := when(page.payload["claim_by"])):
        deadline = texts.claim_by.format(time=time)
    elif page.payload.get("due_at") and (time := when(page.payload["due_at"])):
        deadline = texts.due_at.format(time=time)
    return texts.text.format(
        reason=texts.reasons.get(page.reason, texts.other_reason),
        case_id=page.case_id if page.case_id is not None else "",
        level=texts.levels.get(page.level, page.level),
        deadline=deadline,
    )


class MissingPageAddress(ValueError):
    """The counsellor pages by SMS but has no phone number on record."""


class SmsPageSender:
    """Pages on-call counsellors whose `page_channel` is "sms" on their phone (`page.address`)."""

    name = CHANNEL

    def __init__(self, line: TwilioLine) -> None:
        self.line = line

    async def send(self, page: Page) -> None:
        if not page.address:
            log.error(
                "sms: counsellor %s pages by SMS but has no number (outbox %s)",
                page.counsellor_id,
                page.outbox_id,
            )
            raise MissingPageAddress(f"counsellor {page.counsellor_id}")
        await self.line.send(page.address, page_text(page, sms_texts().page))
        log.info("sms: page for case %s sent to counsellor %s", page.case_id, page.counsellor_id)


# --- the webhook -------------------------------------------------------------------------------------


def twiml(texts: Sequence[str]) -> HTTPResponse:
    """The answer as TwiML: one <Message> per part, in order; an empty <Response/> sends nothing."""
    response = MessagingResponse()
    for part in sms_parts("\n".join(t for t in texts if t.strip())) if texts else []:
        response.message(part)
    return HTTPResponse(str(response), content_type="text/xml; charset=utf-8")


def reply_texts(answer: ChannelAnswer) -> list[str]:
    """What the user reads, with an assistant's choices written out (SMS has no buttons)."""
    if answer.outcome is None:
        return list(answer.texts)
    hint = sms_texts().buttons_hint
    return [
        f"{reply.text}\n{hint.format(choices=' / '.join(b['title'] for b in reply.buttons))}"
        if reply.buttons
        else reply.text
        for reply in answer.outcome.replies
    ]


def _store_down() -> list[str]:
    return [gateway_texts().errors.store_down.format(hotline_list=hotline_list())]


async def _keyword(app: Sanic, keyword: Keyword, address: str, sid: str) -> HTTPResponse | None:
    """The answer to a keyword; None when the word is to be read as an ordinary message (START, YES or
    UNSTOP from a number that had not opted out: most likely "yes" to a question)."""
    texts = sms_texts()
    if keyword == "help":
        log.info("sms %s: help keyword answered", sid)
        return twiml([texts.help])
    if keyword == "twilio_help":  # Twilio answered with the deployment's Advanced Opt-Out help text
        return twiml([])
    try:
        async with app.ctx.sessions() as session:
            if keyword == "start":
                contact_id = await record_opt_in(session, address, sid, reason="start")
                if contact_id is None:
                    return None
                log.info("sms %s: opt-out lifted for contact %s", sid, contact_id)
                return twiml([])  # Twilio confirms it itself
            scope: Scope = "carrier" if keyword == "stop_carrier" else "line"
            contact_id = await record_opt_out(session, address, scope, sid)
    except (SQLAlchemyError, OSError) as error:
        log.error("sms %s: opt-out or opt-in not recorded, store unavailable (%s)", sid, type(error).__name__)
        if keyword == "start":
            return None  # answered like any message (the store-down text, with the numbers)
        return twiml(_store_down() if keyword == "stop_line" else [])
    log.info("sms %s: opt-out (%s) recorded for contact %s", sid, scope, contact_id)
    # Twilio answers its own STOP (and blocks our answer anyway); ours is confirmed here.
    return twiml([texts.opted_out] if scope == "line" else [])


def _media_count(form: dict[str, str]) -> int:
    try:
        return int(form.get("NumMedia") or 0)
    except ValueError:
        return 0


def routes(line: TwilioLine) -> Blueprint:
    blueprint = Blueprint(CHANNEL, url_prefix=f"/{CHANNEL}")
    auth_token = line.settings.auth_token.get_secret_value()  # type: ignore[union-attr]

    @blueprint.post(INBOUND_PATH)
    async def inbound(request: Request) -> HTTPResponse:
        public_url = request.app.ctx.settings.public_url
        if not public_url:
            log.error("sms: XINQIAO_PUBLIC_URL is not set, so no webhook can be verified")
            return plain("not configured", status=503)
        form = verified_form(request, auth_token, public_url)
        if form is None or form.get("AccountSid") != line.settings.account_sid:
            log.warning("sms: webhook refused: missing or invalid signature")
            return plain("forbidden", status=403)
        missing = [name for name in REQUIRED_FIELDS if name not in form]
        if missing or not form["From"] or not _MESSAGE_SID.match(form["MessageSid"]):
            log.warning("sms: webhook refused: malformed (missing %s)", ",".join(missing) or "none")
            return plain("bad request", status=400)
        sid, address, body = form["MessageSid"], form["From"], form["Body"]
        keyword = keyword_of(body, form.get("OptOutType"))
        if keyword is not None and (answered := await _keyword(request.app, keyword, address, sid)):
            return answered
        if not body.strip() and _media_count(form):
            log.info("sms %s: media without text", sid)
            return twiml([common_texts().only_text])
        answer = await receive_message(request.app, ChannelMessage(CHANNEL, address, sid, body))
        if answer.error is None:
            try:
                async with request.app.ctx.sessions() as session:
                    await wrote_again(session, address, sid)
            except (SQLAlchemyError, OSError) as error:
                log.error("sms %s: opt-out not checked, store unavailable (%s)", sid, type(error).__name__)
        log.info(
            "sms %s: %s (conversation %s)",
            sid,
            answer.error or (answer.outcome.status if answer.outcome else ""),
            answer.conversation_id,
        )
        return twiml(reply_texts(answer))

    return blueprint


# --- the plugin --------------------------------------------------------------------------------------


def build_plugin(settings: TwilioSettings) -> ChannelPlugin:
    line = TwilioLine(settings)

    async def start(app: Sanic) -> None:
        gateway = app.ctx.settings
        if not gateway.public_url:
            raise RuntimeError(
                "the SMS line needs XINQIAO_PUBLIC_URL (the https address Twilio posts to), "
                "or Twilio's signatures cannot be checked"
            )
        line.sessions = app.ctx.background
        if gateway.engine_timeout_seconds >= TWILIO_WEBHOOK_WAIT_SECONDS - 3:
            log.warning(
                "sms: engine timeout %ss leaves too little of Twilio's %ss for the answer",
                gateway.engine_timeout_seconds,
                TWILIO_WEBHOOK_WAIT_SECONDS,
            )

    async def stop(_: Sanic) -> None:
        await line.close()

    return ChannelPlugin(
        CHANNEL,
        routes(line),
        sender=SmsSender(line),
        page_sender=SmsPageSender(line),
        start=start,
        stop=stop,
        extra={"line": line},
    )


def from_environment() -> ChannelPlugin | None:
    """The SMS line when XINQIAO_TWILIO_SMS_NUMBER, _ACCOUNT_SID and _AUTH_TOKEN are set; else None."""
    settings = TwilioSettings()
    if not (settings.sms_number and settings.account_sid and settings.auth_token):
        return None
    return build_plugin(settings)
