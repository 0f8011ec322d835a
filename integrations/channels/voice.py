"""The phone line: students and parents call a Twilio number and talk, in Mandarin, with the same
switchboard as every other channel.

A call: a greeting and a menu (student 1 / 学生, parent 2 / 家长, a counsellor now 0 / 老师), then turns.
Every turn's transcript (`SpeechResult`, recognised by Twilio in Mandarin) goes through `base.receive`
with the caller's number as the address and `CallSid:turn` as the message id, so Twilio retrying a turn
is answered from the store, never processed twice; the answer is spoken. A red message, or a caller who
asks for a person, hears the urgent numbers and is put through to the counsellors on shift in turn
(integrations/channels/voice_calls.py). Silence is asked about once, then the caller is put through.
When the assistant cannot answer, the caller hears the fail-safe script and is offered a counsellor.
Every webhook checks Twilio's signature over XINQIAO_PUBLIC_URL + path + query (403 otherwise). Calls
are never recorded unless a deployment turns it on.

Messages no webhook waits for (a counsellor's words from the console, the hand-back, a late answer):
a phone call cannot be written to later, so `VoiceSender` speaks them into the caller's call while it
is live (Twilio's REST API replaces what the call is doing with the words, then listens again). When the
caller has hung up, or is talking with a counsellor on the phone right now, it raises: the delivery
dispatcher retries with back-off and, after its last attempt, records the message as not delivered for
a supervisor. A page to a counsellor whose page channel is "voice" is a short call that says the case.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field

from sanic import Blueprint, Request, Sanic
from sanic.response import HTTPResponse, empty, json, text
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from integrations.channels import base
from integrations.channels.base import ChannelMessage, ChannelPlugin
from integrations.channels.twilio_common import TwilioSettings, rest_client, verified_form
from integrations.channels.voice_calls import (
    CHANNEL,
    WHYS,
    Leg,
    Speech,
    VoiceSettings,
    VoiceTexts,
    Why,
    connect,
    dial_result,
    voice_texts,
    whisper,
)
from integrations.inbound import Audience
from integrations.paging.senders import Page
from records import audit, contacts
from records.crypto import lookup_digest
from records.models import Case, Contact, InboundStatus, Message
from triage_protocols import screen

log = logging.getLogger(__name__)

_CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")
_PHONE = re.compile(r"\+?[0-9]{5,20}")
# What Twilio puts in `From` when the caller's number is withheld: such callers are told apart by call.
_WITHHELD = frozenset({"+266696687", "+7378742833", "+2562533", "+8656696", "+86282452253"})
# A menu answer in words is short; anything longer is what the caller wants to say, and is heard as such.
_MENU_ANSWER_CHARS = 12
_MAX_TURN = 1 << 62


class CallNotLive(RuntimeError):
    """The caller is not on the line: a message for them cannot be spoken now."""


class CallWithCounsellor(RuntimeError):
    """The caller is talking with a counsellor on the phone: nothing is spoken over them."""


class CallBeingConnected(RuntimeError):
    """A counsellor's phone is ringing for the caller: speaking now would end the dial, so the message
    waits (retried) until the caller is connected or the dial has run out."""


@dataclass(frozen=True, slots=True)
class Call:
    sid: str
    address: str = field(repr=False)  # the caller's number, or `call:<sid>` when it is withheld

    @classmethod
    def of(cls, form: dict[str, str]) -> Call | None:
        sid = form.get("CallSid", "")
        if not _CALL_SID.fullmatch(sid):
            return None
        caller = form.get("From", "").strip()
        known = _PHONE.fullmatch(caller) and caller not in _WITHHELD
        return cls(sid, caller if known else f"call:{sid}")


def _twiml(response: VoiceResponse) -> HTTPResponse:
    return text(str(response), content_type="text/xml; charset=utf-8")


def _number(request: Request, name: str, default: int = 0) -> int | None:
    raw = request.args.get(name, str(default))
    return int(raw) if raw.isdigit() and int(raw) < _MAX_TURN else None


def _choice(digits: str, heard: str, texts: VoiceTexts) -> str | None:
    """The menu answer: a key, or short words that screen green ("学生，我想死" is not a menu answer)."""
    by_key = {"1": "student", "2": "parent", "0": "person"}
    if digits:
        return by_key.get(digits[:1])
    if not heard or len(heard) > _MENU_ANSWER_CHARS or screen(heard).level != "green":
        return None
    words = texts.words
    for choice, listed in (("person", words.person), ("parent", words.parent), ("student", words.student)):
        if any(word in heard for word in listed):
            return choice
    return None


def _audience_in(heard: str, texts: VoiceTexts) -> Audience | None:
    if any(word in heard for word in texts.words.parent):
        return "parent"
    if any(word in heard for word in texts.words.student):
        return "student"
    return None


async def _conversation(app: Sanic, call: Call, audience: Audience | None = None) -> str | None:
    """The caller's conversation (made on first contact), its audience recorded when the menu told it."""
    try:
        async with app.ctx.sessions() as session:
            conversation = await contacts.conversation_for(session, CHANNEL, call.address, audience)
            if audience is not None and conversation.audience != audience:
                await contacts.set_audience(session, conversation.id, audience)
            return conversation.id
    except (SQLAlchemyError, OSError) as error:
        log.error("voice: store unavailable for call %s (%s)", call.sid, type(error).__name__)
        return None


async def _is_red(app: Sanic, answer: base.ChannelAnswer) -> bool:
    """The message screened red, or the case it opened or raised is red."""
    outcome = answer.outcome
    if outcome is None:
        return False
    try:
        async with app.ctx.sessions() as session:
            level = await session.scalar(select(Message.risk_level).where(Message.id == outcome.message_id))
            if level == "red":
                return True
            if outcome.case_id is not None:
                return await session.scalar(select(Case.level).where(Case.id == outcome.case_id)) == "red"
    except (SQLAlchemyError, OSError) as error:
        log.error("voice: risk lookup failed for message %s (%s)", outcome.message_id, type(error).__name__)
    return False


def voice_plugin(twilio: TwilioSettings, settings: VoiceSettings | None = None) -> ChannelPlugin:
    """The phone line with these settings (tests pass their own; `from_environment` reads them)."""
    settings = settings or VoiceSettings()
    if twilio.auth_token is None or not twilio.voice_number:
        raise ValueError("the phone line needs XINQIAO_TWILIO_AUTH_TOKEN and XINQIAO_TWILIO_VOICE_NUMBER")
    token = twilio.auth_token.get_secret_value()
    caller_id = twilio.voice_number
    routes = Blueprint("voice", url_prefix="/voice")

    def speech_for(request: Request) -> Speech:
        return Speech(settings, request.app.ctx.settings.public_url, caller_id)

    async def verified(request: Request) -> dict[str, str] | HTTPResponse:
        public_url = request.app.ctx.settings.public_url
        if not public_url:
            log.error("voice: XINQIAO_PUBLIC_URL is not set; webhooks cannot be verified")
            return json({"error": "not_configured"}, status=503)
        form = verified_form(request, token, public_url)
        if form is None:
            log.warning("voice: webhook to %s refused: missing or wrong signature", request.path)
            return json({"error": "forbidden"}, status=403)
        return form

    async def call_of(request: Request) -> tuple[dict[str, str], Call] | HTTPResponse:
        form = await verified(request)
        if isinstance(form, HTTPResponse):
            return form
        call = Call.of(form)
        if call is None:
            log.warning("voice: webhook to %s without a valid CallSid", request.path)
            return json({"error": "bad_request"}, status=400)
        return form, call

    async def turn_of(request: Request) -> tuple[dict[str, str], Call, int, int] | HTTPResponse:
        """A gathered turn's call, with the turn and retry counters from the signed action URL."""
        checked = await call_of(request)
        if isinstance(checked, HTTPResponse):
            return checked
        turn, tries = _number(request, "turn", 1), _number(request, "tries")
        if turn is None or tries is None:
            return json({"error": "bad_request"}, status=400)
        return (*checked, turn, tries)

    async def put_through(
        request: Request, call: Call, why: Why, turn: int, conversation_id: str | None
    ) -> HTTPResponse:
        speech = speech_for(request)
        conversation_id = conversation_id or await _conversation(request.app, call)
        if conversation_id is None:  # the store is down: nobody can be looked up, so the numbers now
            response = VoiceResponse()
            speech.next_turn(response, turn, speech.texts.connecting[why], speech.texts.nobody_answered)
            return _twiml(response)
        leg = Leg(conversation_id, why, (), 0, turn)
        return _twiml(await connect(request.app, speech, leg, call.sid))

    async def hear(
        request: Request, call: Call, heard: str, turn: int, audience: Audience | None
    ) -> HTTPResponse:
        """One transcript through the switchboard; the answer spoken, or the caller put through."""
        app, speech = request.app, speech_for(request)
        message = ChannelMessage(CHANNEL, call.address, f"{call.sid}:{turn}", heard, audience)
        answer = await base.receive(app, message)
        if answer.conversation_id is not None and await _is_red(app, answer):
            return await put_through(request, call, "red", turn + 1, answer.conversation_id)
        texts = speech.texts
        if answer.conversation_id is not None and any(w in heard for w in texts.words.ask_for_person):
            return await put_through(request, call, "person", turn + 1, answer.conversation_id)
        spoken = list(answer.texts)
        outcome = answer.outcome
        if answer.error is not None or (
            outcome is not None and outcome.status == InboundStatus.RETRY_PENDING
        ):
            spoken.append(texts.failsafe_offer)
        elif outcome is not None and outcome.status == InboundStatus.TO_COUNSELLOR and not spoken:
            spoken.append(texts.with_counsellor)
        response = VoiceResponse()
        speech.next_turn(response, turn + 1, *spoken)
        return _twiml(response)

    def menu(request: Request, turn: int, tries: int, *texts: str) -> HTTPResponse:
        speech = speech_for(request)
        words = speech.texts.words
        response = VoiceResponse()
        action = speech.url("/voice/menu", turn=turn, tries=tries)
        speech.listen(
            response, action, *texts, speech.texts.menu, hints=[*words.student, *words.parent, *words.person]
        )
        return _twiml(response)

    @routes.post("/incoming")
    async def incoming(request: Request) -> HTTPResponse:
        checked = await call_of(request)
        if isinstance(checked, HTTPResponse):
            return checked
        _, call = checked
        log.info("voice: call %s answered", call.sid)
        texts = voice_texts()
        notice = [texts.recording_notice] if settings.record_calls else []
        return menu(request, 1, 0, texts.greeting, *notice)

    @routes.post("/menu")
    async def menu_answer(request: Request) -> HTTPResponse:
        checked = await turn_of(request)
        if isinstance(checked, HTTPResponse):
            return checked
        form, call, turn, tries = checked
        texts = voice_texts()
        digits, heard = form.get("Digits", "").strip(), form.get("SpeechResult", "").strip()
        choice = _choice(digits, heard, texts)
        if choice == "person":
            return await put_through(request, call, "person", turn + 1, None)
        if choice in ("student", "parent"):
            await _conversation(request.app, call, choice)  # type: ignore[arg-type]
            response = VoiceResponse()
            speech_for(request).next_turn(response, turn + 1, texts.listen[choice])  # type: ignore[index]
            return _twiml(response)
        if heard:  # not a menu answer: what the caller wants to say, heard like any turn
            return await hear(request, call, heard, turn, _audience_in(heard, texts))
        if digits:  # a key that is not on the menu
            return menu(request, turn + 1, tries, texts.menu_again)
        if tries < 1:
            return menu(request, turn + 1, tries + 1, texts.menu_again)
        return await put_through(request, call, "silence", turn + 1, None)

    @routes.post("/turn")
    async def turn_answer(request: Request) -> HTTPResponse:
        checked = await turn_of(request)
        if isinstance(checked, HTTPResponse):
            return checked
        form, call, turn, tries = checked
        digits, heard = form.get("Digits", "").strip(), form.get("SpeechResult", "").strip()
        if digits.startswith("0"):
            return await put_through(request, call, "person", turn + 1, None)
        if heard:
            return await hear(request, call, heard, turn, None)
        if tries < 1:
            response = VoiceResponse()
            speech_for(request).next_turn(response, turn + 1, voice_texts().reprompt, tries=tries + 1)
            return _twiml(response)
        return await put_through(request, call, "silence", turn + 1, None)

    @routes.post("/dial")
    async def dialled(request: Request) -> HTTPResponse:
        checked = await call_of(request)
        if isinstance(checked, HTTPResponse):
            return checked
        form, _ = checked
        why, conversation_id = request.args.get("why", ""), request.args.get("c", "")
        raw_chain = request.args.get("chain", "")
        at, turn = _number(request, "at"), _number(request, "turn", 1)
        if (
            why not in WHYS
            or not re.fullmatch(r"[0-9a-zA-Z_-]{1,32}", conversation_id)
            or not re.fullmatch(r"(\d{1,9}(\.\d{1,9}){0,31})?", raw_chain)
            or at is None
            or turn is None
        ):
            return json({"error": "bad_request"}, status=400)
        chain = tuple(int(i) for i in raw_chain.split(".")) if raw_chain else ()
        leg = Leg(conversation_id, why, chain, at, turn)  # type: ignore[arg-type]
        return _twiml(await dial_result(request.app, speech_for(request), leg, form))

    @routes.post("/screen")
    async def screened(request: Request) -> HTTPResponse:
        form = await verified(request)
        if isinstance(form, HTTPResponse):
            return form
        why = request.args.get("why", "")
        if why not in WHYS:
            return json({"error": "bad_request"}, status=400)
        return _twiml(whisper(speech_for(request), why))  # type: ignore[arg-type]

    @routes.post("/screen/answer")
    async def screen_answer(request: Request) -> HTTPResponse:
        form = await verified(request)
        if isinstance(form, HTTPResponse):
            return form
        response = VoiceResponse()
        if form.get("Digits", "").strip() != "1":  # only a person pressing 1 is put through
            response.hangup()
        return _twiml(response)

    @routes.post("/status")
    async def status(request: Request) -> HTTPResponse:
        checked = await call_of(request)
        if isinstance(checked, HTTPResponse):
            return checked
        form, call = checked
        state = form.get("CallStatus", "")
        duration = form.get("CallDuration", "")
        try:
            async with request.app.ctx.sessions() as session:
                contact = await session.scalar(
                    select(Contact.id).where(
                        Contact.channel == CHANNEL,
                        Contact.address_digest == lookup_digest(CHANNEL, call.address),
                    )
                )
                audit.append(
                    session,
                    actor="twilio",
                    action="voice_call_status",
                    subject=contact or f"call:{call.sid}",
                    call_sid=call.sid,
                    status=state if re.fullmatch(r"[a-z-]{1,16}", state) else "other",
                    duration_seconds=int(duration) if duration.isdigit() else None,
                )
                await session.commit()
        except (SQLAlchemyError, OSError) as error:
            log.error("voice: status of call %s not recorded (%s)", call.sid, type(error).__name__)
            return json({"error": "store_down"}, status=503)  # Twilio retries a failed callback
        return empty()

    sender = VoiceSender(twilio, settings)

    async def start(app: Sanic) -> None:
        sender.public_url = app.ctx.settings.public_url

    page_sender = VoicePageSender(twilio, settings)
    return ChannelPlugin(CHANNEL, routes, sender=sender, page_sender=page_sender, start=start)


def _client(twilio: TwilioSettings) -> Client:
    """A REST client for one send (its HTTP session is closed after it; it logs only warnings)."""
    return rest_client(twilio)


class VoiceSender:
    """Speaks a message into the caller's live call (see the module's docstring for when it cannot)."""

    channel = CHANNEL

    def __init__(self, twilio: TwilioSettings, settings: VoiceSettings) -> None:
        self._twilio = twilio
        self._settings = settings
        self.public_url: str | None = None  # set when the gateway starts

    async def send_text(self, address: str, text: str) -> None:
        if not self.public_url:
            raise RuntimeError("the phone line needs XINQIAO_PUBLIC_URL")
        client = _client(self._twilio)
        try:
            calls = client.api.v2010.account.calls
            if address.startswith("call:"):
                live = [address.removeprefix("call:")]
            else:
                found = await calls.list_async(
                    from_=address, to=self._twilio.voice_number, status="in-progress", limit=1
                )
                live = [c.sid for c in found if c.sid]
            if not live:
                raise CallNotLive("the caller is not on the line")
            sid = live[0]
            if await calls.list_async(parent_call_sid=sid, status="in-progress", limit=1):
                raise CallWithCounsellor("the caller is on the phone with a counsellor")
            for dialling in ("ringing", "queued"):
                if await calls.list_async(parent_call_sid=sid, status=dialling, limit=1):
                    raise CallBeingConnected("a counsellor's phone is ringing for the caller")
            speech = Speech(self._settings, self.public_url, self._twilio.voice_number or "")
            response = VoiceResponse()
            # A turn number no gather of this call has used: this moment, in milliseconds.
            speech.next_turn(
                response, time.time_ns() // 1_000_000, speech.texts.counsellor_says.format(text=text)
            )
            await calls(sid).update_async(twiml=str(response))
            log.info("voice: message spoken into call %s", sid)
        finally:
            await client.http_client.close()


class VoicePageSender:
    """A page by phone: a short call to the counsellor that says the case's level and number."""

    name = CHANNEL

    def __init__(self, twilio: TwilioSettings, settings: VoiceSettings) -> None:
        self._twilio = twilio
        self._settings = settings

    async def send(self, page: Page) -> None:
        if not page.address:
            raise ValueError(f"counsellor {page.counsellor_id} has no phone number to page")
        texts = voice_texts()
        speech = Speech(self._settings, "", self._twilio.voice_number or "")
        response = VoiceResponse()
        words = texts.page_call.format(
            level=texts.level_names.get(page.level, ""), case_id=page.case_id or ""
        )
        speech.say(response, words)
        speech.say(response, words)
        client = _client(self._twilio)
        try:
            await client.api.v2010.account.calls.create_async(
                to=page.address, from_=self._twilio.voice_number, twiml=str(response)
            )
        finally:
            await client.http_client.close()


def from_environment() -> ChannelPlugin | None:
    """The phone line when XINQIAO_TWILIO_VOICE_NUMBER is set; it then needs the account and token too."""
    twilio = TwilioSettings()
    if not twilio.voice_number:
        return None
    if not (twilio.account_sid and twilio.auth_token):
        raise RuntimeError(
            "XINQIAO_TWILIO_VOICE_NUMBER is set but XINQIAO_TWILIO_ACCOUNT_SID or _AUTH_TOKEN is not"
        )
    return voice_plugin(twilio, VoiceSettings())
