"""The phone line's building blocks: its settings and spoken texts, TwiML in Mandarin, and the dial chain
that puts a caller through to a person.

The dial chain rings one counsellor at a time (the case's lead first, then the others on shift, then
the supervisors), each for `dial_timeout_seconds`, with the line's own number as caller ID so a
volunteer never sees the caller's number. `<Dial action=…>` tells us how each attempt ended; only a
counsellor who pressed 1 is a connection (a voicemail that picks up is not). When nobody answers the
caller hears the numbers to call now, the case stays open (red for a red call) and the supervisor is
paged by the case as usual; every step is audited with ids and codes only.

Where a call is in the flow lives in the signed URLs Twilio posts back to (`turn`, `tries`, the chain
of counsellor ids), so any gateway can answer any step and nothing about a call is kept in memory.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass, field
from functools import cache
from typing import Literal
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sanic import Sanic
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from twilio.twiml.voice_response import Gather, VoiceResponse

from integrations.channels.base import channel_texts
from records import audit, staffing
from records.escalation import Escalation, EscalationResult, escalate
from records.models import Assignment, AssignmentRole, Case, CaseStatus, Counsellor, CounsellorRole, utcnow
from triage_protocols import Level

log = logging.getLogger(__name__)

CHANNEL = "voice"
# A counsellor reachable by phone: their page address is a phone number on these page channels.
PHONE_CHANNELS = frozenset({"sms", "voice"})
Why = Literal["red", "person", "silence"]
WHYS: frozenset[str] = frozenset({"red", "person", "silence"})
CONNECTED = frozenset({"completed", "answered"})


class VoiceSettings(BaseSettings):
    """XINQIAO_VOICE_*: how the line sounds and how it rings counsellors. Twilio's account, token and
    number are XINQIAO_TWILIO_* (integrations/channels/twilio_common.py)."""

    model_config = SettingsConfigDict(env_prefix="XINQIAO_VOICE_", extra="ignore")

    # A Twilio voice that speaks Mandarin: Amazon Polly's Zhiyu ("Polly.Zhiyu", or "Polly.Zhiyu-Neural"),
    # or Google's ("Google.cmn-CN-Standard-A" … "-D", "Google.cmn-CN-Wavenet-A" …).
    tts_voice: str = "Polly.Zhiyu"
    tts_language: str = "cmn-CN"
    # What callers speak, for Twilio's speech recognition (Mandarin, simplified script).
    speech_language: str = "cmn-Hans-CN"
    gather_timeout_seconds: int = Field(default=6, ge=1, le=30)
    # How long each counsellor's phone rings before the next one is tried.
    dial_timeout_seconds: int = Field(default=20, ge=5, le=120)
    # How many counsellors on shift are rung (lead first) before the supervisors.
    dial_counsellors: int = Field(default=3, ge=1, le=10)
    # The counsellor presses 1 to take the call, so a voicemail cannot take a caller.
    confirm_answer: bool = True
    # Off unless a deployment turns it on (with its own consent notice, `recording_notice`).
    record_calls: bool = False


class MenuWords(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    person: list[str]
    parent: list[str]
    student: list[str]
    ask_for_person: list[str]


class VoiceTexts(BaseModel):
    """data/content/channels/voice.yml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    greeting: str
    menu: str
    menu_again: str
    recording_notice: str
    listen: dict[Literal["student", "parent"], str]
    reprompt: str
    connecting: dict[Why, str]
    trying_next: str
    nobody_answered: str
    after_counsellor: str
    failsafe_offer: str
    with_counsellor: str
    counsellor_says: str
    whisper: dict[Why, str]
    page_call: str
    level_names: dict[str, str]
    words: MenuWords


@cache
def voice_texts() -> VoiceTexts:
    return channel_texts(CHANNEL, VoiceTexts)


_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MARKUP = frozenset("*_#`>|~[]<>{}")
_INVISIBLE = frozenset("\ufe0f\ufe0e\u20e3")  # emoji presentation selectors, the keycap mark
_LONG_NUMBER = re.compile(r"\d{3,}")
_SPACES = re.compile(r"[ \t\u3000]+")
_PAUSE_AFTER = "。！？!?，,；;：:、…"


def speakable(text: str) -> str:
    """What text-to-speech can say: no links, emoji, symbols or markup; a phone number read digit by digit
    (12356, not 一万两千…); each line ends with a pause."""
    text = _URL.sub("", text)
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if char in _MARKUP or char in _INVISIBLE or category in ("So", "Sk", "Cs", "Co", "Cn", "Cf"):
            continue
        kept.append(char)
    text = _LONG_NUMBER.sub(lambda number: " ".join(number.group()), "".join(kept))
    lines = [_SPACES.sub(" ", line).strip() for line in text.splitlines()]
    return " ".join(line if line[-1] in _PAUSE_AFTER else f"{line}。" for line in lines if line)


@dataclass(frozen=True, slots=True)
class Speech:
    """TwiML for one request: Mandarin speech in the configured voice, gathers that listen for Mandarin
    and keys, and absolute action URLs under the gateway's public address (which Twilio signs)."""

    settings: VoiceSettings
    public_url: str
    caller_id: str = field(repr=False)  # the line's own number, shown to counsellors
    texts: VoiceTexts = field(default_factory=voice_texts)

    def url(self, path: str, **params: object) -> str:
        query = urlencode({key: value for key, value in params.items() if value is not None})
        return f"{self.public_url.rstrip('/')}{path}{'?' + query if query else ''}"

    def say(self, verb: VoiceResponse | Gather, text: str) -> None:
        spoken = speakable(text)
        if spoken:
            verb.say(spoken, voice=self.settings.tts_voice, language=self.settings.tts_language)

    def listen(
        self, response: VoiceResponse, action: str, *texts: str, hints: list[str] | None = None
    ) -> None:
        """Speaks `texts` while listening (the caller may talk over them), then posts what was heard to
        `action`. When nothing is heard the same action is posted without a result."""
        gather = response.gather(
            input="speech dtmf",
            language=self.settings.speech_language,
            speech_timeout="auto",
            timeout=self.settings.gather_timeout_seconds,
            num_digits=1,
            action=action,
            method="POST",
            profanity_filter=False,  # the triage screen must see the words as said
            hints=",".join(hints) if hints else None,
        )
        for text in texts:
            self.say(gather, text)
        response.redirect(action, method="POST")

    def next_turn(self, response: VoiceResponse, turn: int, *texts: str, tries: int = 0) -> None:
        self.listen(response, self.url("/voice/turn", turn=turn, tries=tries), *texts)


@dataclass(frozen=True, slots=True)
class Leg:
    """Where the dial chain is: who is rung, in order, and which attempt this is."""

    conversation_id: str
    why: Why
    chain: tuple[int, ...]
    at: int
    turn: int  # the caller's next gather, when the chain ends without a connection

    def params(self, at: int) -> dict[str, object]:
        return {
            "c": self.conversation_id,
            "why": self.why,
            "chain": ".".join(map(str, self.chain)) or None,
            "at": at,
            "turn": self.turn,
        }


def _reachable(counsellor: Counsellor | None) -> bool:
    return bool(
        counsellor is not None
        and counsellor.active
        and counsellor.page_channel in PHONE_CHANNELS
        and counsellor.page_address
    )


async def _lead_of(app: Sanic, conversation_id: str) -> int | None:
    """Whoever holds the conversation's open case, else its lead."""
    async with app.ctx.sessions() as session:
        case = await session.scalar(
            select(Case).where(Case.conversation_id == conversation_id, Case.status != CaseStatus.CLOSED)
        )
        if case is None:
            return None
        if case.claimed_by is not None:
            return case.claimed_by
        return await session.scalar(
            select(Assignment.counsellor_id).where(
                Assignment.case_id == case.id, Assignment.role == AssignmentRole.LEAD
            )
        )


async def dial_chain(app: Sanic, conversation_id: str, counsellors: int) -> tuple[int, ...]:
    """Counsellor ids to ring in turn: the case's lead, others on shift (least loaded first), then the
    supervisors. Only those with a phone number; nobody twice."""
    lead = await _lead_of(app, conversation_id)
    now = utcnow()
    async with app.ctx.sessions() as session:
        on_call = [c for c in await staffing.on_call(session, now) if c.role != CounsellorRole.SUPERVISOR]
        supervisors = list(await staffing.supervisors(session, now))
        first = await session.get(Counsellor, lead) if lead is not None else None
    chain: list[int] = []
    for counsellor in [first, *on_call]:
        if counsellor is not None and _reachable(counsellor) and counsellor.id not in chain:
            chain.append(counsellor.id)
    chain = chain[:counsellors]
    chain += [s.id for s in supervisors if _reachable(s) and s.id not in chain]
    return tuple(chain)


def _notify(app: Sanic, result: EscalationResult) -> None:
    """Consoles hear of a case at once and the page dispatcher sends its pages now, as the switchboard
    does for a screened message."""
    if result.paged:
        app.ctx.alerts.announce(result)
        app.ctx.dispatcher.wake()


async def request_person(app: Sanic, conversation_id: str, why: Why, call_sid: str) -> None:
    """A caller asked for a person (or stayed silent and is put through): the request opens the case a
    handoff opens (yellow at least, never lowering a higher one), as the actions' handoff does."""
    reason = f"voice:{why}"
    try:
        async with app.ctx.sessions() as session:
            audit.append(
                session,
                actor="gateway",
                action="handoff_requested",
                subject=conversation_id,
                channel=CHANNEL,
                reason=reason,
                call_sid=call_sid,
            )
            result = await escalate(
                session,
                Escalation(
                    conversation_id,
                    Level.YELLOW,
                    origin="handoff",
                    reason=reason,
                    channel=CHANNEL,
                    actor="gateway",
                ),
            )
            await session.commit()
    except (SQLAlchemyError, OSError) as error:
        log.error("voice: handoff for call %s not recorded (%s)", call_sid, type(error).__name__)
        return
    _notify(app, result)


async def _record(app: Sanic, conversation_id: str, action: str, **detail: object) -> None:
    try:
        async with app.ctx.sessions() as session:
            audit.append(session, actor="gateway", action=action, subject=conversation_id, **detail)
            await session.commit()
    except (SQLAlchemyError, OSError) as error:
        log.error("voice: %s not recorded (%s)", action, type(error).__name__)


async def connect(app: Sanic, speech: Speech, leg: Leg, call_sid: str) -> VoiceResponse:
    """The numbers briefly, then the first counsellor's phone rings (or, with nobody to ring, the
    numbers in full)."""
    response = VoiceResponse()
    speech.say(response, speech.texts.connecting[leg.why])
    if leg.why != "red":  # a red message has opened its case already, in the switchboard
        await request_person(app, leg.conversation_id, leg.why, call_sid)
    try:
        chain = await dial_chain(app, leg.conversation_id, speech.settings.dial_counsellors)
    except (SQLAlchemyError, OSError) as error:
        log.error("voice: no dial chain for call %s (%s)", call_sid, type(error).__name__)
        chain = ()
    leg = Leg(leg.conversation_id, leg.why, chain, 0, leg.turn)
    await _record(
        app, leg.conversation_id, "voice_connect", why=leg.why, chain=list(chain), call_sid=call_sid
    )
    await ring(app, speech, response, leg, call_sid)
    return response


async def ring(app: Sanic, speech: Speech, response: VoiceResponse, leg: Leg, call_sid: str) -> None:
    """Rings the chain's counsellor at `leg.at`, skipping anyone no longer reachable; past the end of
    the chain, nobody answered."""
    at = leg.at
    while at < len(leg.chain):
        try:
            async with app.ctx.sessions() as session:
                counsellor = await session.get(Counsellor, leg.chain[at])
        except (SQLAlchemyError, OSError) as error:
            log.error("voice: counsellor lookup failed for call %s (%s)", call_sid, type(error).__name__)
            break
        if _reachable(counsellor):
            assert counsellor is not None and counsellor.page_address
            settings = speech.settings
            dial = response.dial(
                action=speech.url("/voice/dial", **leg.params(at)),
                method="POST",
                timeout=settings.dial_timeout_seconds,
                caller_id=speech.caller_id,
                **({"record": "record-from-answer-dual"} if settings.record_calls else {}),
            )
            screen = speech.url("/voice/screen", why=leg.why) if settings.confirm_answer else None
            dial.number(counsellor.page_address, url=screen, method="POST" if screen else None)
            return
        at += 1
    await nobody_answered(app, speech, response, leg, call_sid)


async def dial_result(app: Sanic, speech: Speech, leg: Leg, form: dict[str, str]) -> VoiceResponse:
    """How one attempt ended: connected (the call is over, goodbye) or not (the next in the chain)."""
    status = form.get("DialCallStatus", "")
    # A counsellor who was not put through (a voicemail, or no key pressed) shows as not bridged.
    connected = status in CONNECTED and form.get("DialBridged", "true").lower() != "false"
    call_sid = form.get("CallSid", "")
    counsellor_id = leg.chain[leg.at] if leg.at < len(leg.chain) else None
    await _record(
        app,
        leg.conversation_id,
        "voice_dial_result",
        why=leg.why,
        step=leg.at,
        counsellor_id=counsellor_id,
        status=status if re.fullmatch(r"[a-z-]{1,16}", status) else "other",
        connected=connected,
        call_sid=call_sid,
    )
    response = VoiceResponse()
    if connected:
        speech.say(response, speech.texts.after_counsellor)
        response.hangup()
        return response
    following = Leg(leg.conversation_id, leg.why, leg.chain, leg.at + 1, leg.turn)
    if following.at < len(following.chain):
        speech.say(response, speech.texts.trying_next)
    await ring(app, speech, response, following, call_sid)
    return response


async def nobody_answered(
    app: Sanic, speech: Speech, response: VoiceResponse, leg: Leg, call_sid: str
) -> None:
    """The numbers to call now, and a red case with the call's details, whatever started the chain: a
    caller nobody could answer has not been heard by a person, so their risk is unknown and they are
    followed as the most urgent (the supervisor is paged, the watchdog's shortest ladder runs)."""
    level = Level.RED
    try:
        async with app.ctx.sessions() as session:
            result = await escalate(
                session,
                Escalation(
                    leg.conversation_id,
                    level,
                    origin="handoff",
                    reason="voice:no_answer",
                    channel=CHANNEL,
                    actor="gateway",
                ),
            )
            audit.append(
                session,
                actor="gateway",
                action="voice_no_answer",
                subject=leg.conversation_id,
                case_id=result.case_id,
                level=result.level,
                why=leg.why,
                tried=list(leg.chain),
                call_sid=call_sid,
            )
            await session.commit()
        _notify(app, result)
    except (SQLAlchemyError, OSError) as error:
        log.error("voice: no-answer for call %s not recorded (%s)", call_sid, type(error).__name__)
    log.warning("voice: nobody answered call %s (%s, %d tried)", call_sid, leg.why, len(leg.chain))
    speech.next_turn(response, leg.turn, speech.texts.nobody_answered)


def whisper(speech: Speech, why: Why) -> VoiceResponse:
    """What the counsellor who picks up hears; pressing 1 puts the caller through, anything else (or a
    voicemail) hangs up their leg and the chain goes on."""
    response = VoiceResponse()
    gather = response.gather(
        input="dtmf", num_digits=1, timeout=8, action=speech.url("/voice/screen/answer"), method="POST"
    )
    speech.say(gather, speech.texts.whisper[why])
    speech.say(gather, speech.texts.whisper[why])
    response.hangup()
    return response
