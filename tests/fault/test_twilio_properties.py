"""Property tests of Twilio's webhooks, SMS inbound and the phone line's turn (`/voice/turn` with
`SpeechResult`), in-process on a migrated SQLite store with Twilio's REST API as a loopback stand-in.
Every request is signed for real (twilio-python's RequestValidator over the exact public URL and the
form as the gateway decodes it), with any words (lone surrogates go out percent-encoded, as their
UTF-8-like bytes, which no decoder can read as UTF-8), any sender, extra and missing fields. Each answer
is TwiML, a 400 or 403 in Twilio's contract, never a 5xx without the numbers; red or orange words are
stored once with their case; red ones are answered (written or spoken) with the numbers."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sanic import Sanic
from twilio.request_validator import RequestValidator

from integrations.channels import sms
from integrations.channels.base import ChannelPlugin
from integrations.channels.twilio_common import SIGNATURE_HEADER, TwilioSettings
from integrations.channels.voice import voice_plugin
from integrations.channels.voice_calls import VoiceSettings
from integrations.gateway.app import create_app
from tests.channels.standin import StandIn, running_stand_in
from tests.channels.twilio_signing import incoming_sms, message_created
from tests.fault import support
from tests.fault.conftest import Forbidden
from tests.fault.support import Runner, Store, examples
from tests.unit.apps import gateway_settings
from tests.unit.fakes import FakeEngine

Sanic.test_mode = True

PUBLIC = "https://line.example.org"
ACCOUNT = "AC" + "1" * 32
TOKEN = "fault-twilio-auth-token-" + uuid.uuid4().hex[:8]
SMS_NUMBER = "+14155550100"
VOICE_NUMBER = "+15005550006"
MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"

PHONES = st.integers(min_value=10**8, max_value=10**9 - 1).map(lambda n: f"+86138{n}")


def as_received(value: str) -> str:
    """A form value as the gateway reads it back: percent-decoded bytes, invalid UTF-8 replaced."""
    return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def encoded(form: dict[str, str]) -> bytes:
    return "&".join(
        f"{quote_plus(name)}={quote_plus(value.encode('utf-8', 'surrogatepass'))}"
        for name, value in form.items()
    ).encode()


class TwilioLine:
    def __init__(self, url: str, stand_in: StandIn, forbidden: Forbidden) -> None:
        self.runner = Runner()
        self.stand_in = stand_in
        stand_in.answer(MESSAGES, lambda request: message_created(request, ACCOUNT))
        self.store = Store(url)
        twilio = TwilioSettings(
            account_sid=ACCOUNT,
            auth_token=TOKEN,
            sms_number=SMS_NUMBER,
            voice_number=VOICE_NUMBER,
            api_base_url=stand_in.url,
        )  # type: ignore[call-arg]
        self.plugins: list[ChannelPlugin] = [sms.build_plugin(twilio), voice_plugin(twilio, VoiceSettings())]
        settings = gateway_settings(
            url,
            public_url=PUBLIC,
            rasa_token=support.RASA_TOKEN,
            session_secret=support.SESSION_SECRET,
            engine_timeout_seconds=1.0,
        )
        self.app = create_app(
            settings,
            engine=FakeEngine(),
            actions_up=lambda: True,
            channels=self.plugins,
            background=False,
            name=f"fault_twilio_{uuid.uuid4().hex[:8]}",
        )
        self.forbidden = forbidden
        forbidden.add("Twilio auth token", TOKEN)
        forbidden.add("Rasa token", support.RASA_TOKEN)
        forbidden.add("session secret", support.SESSION_SECRET)
        for text in support.RED_TEXTS:
            forbidden.add("red text", text)

    def add_phone(self, number: str) -> None:
        if number.startswith("+86138"):
            self.forbidden.add("phone number", number, number.lstrip("+"), number[3:])

    async def post(self, path: str, form: dict[str, str], *, token: str = TOKEN) -> Any:
        """`form` posted to `path` (with its query), signed as Twilio signs it."""
        self.app.ctx.channel_sender_limiter = None  # a new rate window each example
        received = {name: as_received(value) for name, value in form.items()}
        signature = RequestValidator(token).compute_signature(PUBLIC + path, received)
        self.forbidden.add("Twilio request signature", signature)
        headers = {SIGNATURE_HEADER: signature, "content-type": "application/x-www-form-urlencoded"}
        _, response = await self.app.asgi_client.post(path, content=encoded(form), headers=headers)
        support.assert_no_bare_5xx(response)
        assert response.status < 500, f"Twilio's webhook answered {response.status}: {response.text[:300]}"
        support.assert_no_secret(response, [TOKEN, signature, support.RASA_TOKEN, support.SESSION_SECRET])
        return response

    def close(self) -> None:
        async def stop() -> None:
            for plugin in self.plugins:
                if plugin.stop is not None:
                    await plugin.stop(None)  # type: ignore[arg-type]
            await self.store.close()

        self.runner.run(stop())
        self.runner.close()


@pytest.fixture
def twilio(db: str, forbidden: Forbidden) -> Iterator[TwilioLine]:
    for stand_in in running_stand_in():
        made = TwilioLine(db, stand_in, forbidden)
        yield made
        made.close()


def twiml(response: Any) -> ET.Element:
    assert response.status == 200, (response.status, response.text)
    assert response.headers["content-type"].startswith("text/xml"), response.headers
    root = ET.fromstring(response.body)
    assert root.tag == "Response"
    return root


def written(root: ET.Element) -> str:
    return "\n".join(child.text or "" for child in root.iter("Message"))


def spoken(root: ET.Element) -> str:
    return " ".join(say.text or "" for say in root.iter("Say"))


def says_the_numbers(answer: str) -> bool:
    """Spoken numbers are read digit by digit ("1 2 3 5 6")."""
    return support.has_numbers(answer) or support.has_numbers(answer.replace(" ", ""))


# --- SMS ----------------------------------------------------------------------------------------------


def sms_forms(sender: str) -> st.SearchStrategy[dict[str, str]]:
    sid = st.one_of(
        st.uuids().map(lambda u: "SM" + u.hex), st.uuids().map(lambda u: "MM" + u.hex), support.GARBAGE
    )
    return st.builds(
        lambda body, message_sid, extra, drop: {
            name: value
            for name, value in {
                **incoming_sms(body, sender=sender, to=SMS_NUMBER, account_sid=ACCOUNT, sid=message_sid),
                **extra,
            }.items()
            if name not in drop
        },
        body=support.texts(),
        message_sid=st.one_of(sid.filter(lambda s: s.startswith(("SM", "MM"))), sid),
        extra=st.dictionaries(
            st.sampled_from(["NumMedia", "OptOutType", "Extra", "MediaUrl0"]), support.GARBAGE, max_size=2
        ),
        drop=st.sets(st.sampled_from(["Body", "MessageSid", "From", "To", "NumMedia"]), max_size=1),
    )


def test_any_sms_is_kept_and_answered_or_refused(twilio: TwilioLine) -> None:
    senders = st.one_of(
        PHONES,
        PHONES,
        st.sampled_from(["", " ", "anonymous", "+", "client:abc", "+86" + "1" * 40]),
        support.GARBAGE_NO_SURROGATE,
    )

    @examples(20)
    @given(sender=senders, data=st.data())
    def check(sender: str, data: st.DataObject) -> None:
        form = data.draw(sms_forms(sender))
        twilio.add_phone(sender)
        twilio.forbidden.add_text(form.get("Body"))
        twilio.forbidden.add_text(support.cleaned(as_received(form.get("Body", ""))))
        twilio.runner.run(sms_and_check(twilio, form))

    check()


async def sms_and_check(twilio: TwilioLine, form: dict[str, str]) -> None:
    response = await twilio.post("/sms/inbound", form)
    complete = (
        all(name in form for name in sms.REQUIRED_FIELDS)
        and as_received(form["From"])
        and sms._MESSAGE_SID.match(form["MessageSid"])
    )
    if not complete:
        assert response.status == 400, (response.status, response.text)
        return
    root = twiml(response)
    words = support.cleaned(as_received(form["Body"]))
    level = support.escalating(words, "student")
    if level is None:
        return
    rows = await twilio.store.inbound("sms", form["MessageSid"])
    assert len(rows) == 1, f"{len(rows)} rows for {level} words {words!r}"
    assert await twilio.store.cases_of(rows[0].conversation_id), f"no case for {level} words {words!r}"
    if level == "red":
        assert says_the_numbers(written(root)), (
            f"red SMS {words!r} answered without the numbers: {written(root)!r}"
        )
    await twilio.post("/sms/inbound", form)  # Twilio retries the webhook
    assert len(await twilio.store.inbound("sms", form["MessageSid"])) == 1


def test_red_sms_in_garbage_is_never_lost(twilio: TwilioLine) -> None:
    @examples(12)
    @given(sender=PHONES, text=support.red_mixed())
    def check(sender: str, text: str) -> None:
        twilio.add_phone(sender)
        twilio.forbidden.add_text(support.cleaned(as_received(text)))
        form = incoming_sms(text, sender=sender, to=SMS_NUMBER, account_sid=ACCOUNT)
        twilio.runner.run(sms_and_check(twilio, form))

    check()


def test_a_forged_sms_is_refused_before_anything_is_kept(twilio: TwilioLine) -> None:
    @examples(6)
    @given(token=support.GARBAGE_NO_SURROGATE, text=support.red_mixed())
    def check(token: str, text: str) -> None:
        if token == TOKEN:
            return

        async def go() -> None:
            before = await twilio.store.count_inbound()
            form = incoming_sms(text, sender="+8613800138000", to=SMS_NUMBER, account_sid=ACCOUNT)
            response = await twilio.post("/sms/inbound", form, token=token)
            assert response.status == 403, response.text
            assert await twilio.store.count_inbound() == before

        twilio.runner.run(go())

    check()


# --- the phone line's turn ------------------------------------------------------------------------------


def call_form(sid: str, caller: str, **fields: str) -> dict[str, str]:
    return {
        "AccountSid": ACCOUNT,
        "CallSid": sid,
        "From": caller,
        "To": VOICE_NUMBER,
        "CallStatus": "in-progress",
        "Direction": "inbound",
        **fields,
    }


def action(root: ET.Element) -> str:
    gather = root.find("Gather")
    assert gather is not None, ET.tostring(root, encoding="unicode")
    return gather.get("action", "").removeprefix(PUBLIC)


def test_any_spoken_turn_is_kept_and_answered(twilio: TwilioLine) -> None:
    turn_words = st.one_of(support.texts(), support.red_mixed())

    @examples(10)
    @given(
        caller=PHONES,
        words=turn_words,
        confidence=st.one_of(st.just("0.9"), support.GARBAGE_NO_SURROGATE),
        at_menu=st.booleans(),
    )
    def check(caller: str, words: str, confidence: str, at_menu: bool) -> None:
        twilio.add_phone(caller)
        twilio.forbidden.add_text(support.cleaned(as_received(words)))
        twilio.runner.run(turn_and_check(twilio, caller, words, confidence, at_menu=at_menu))

    check()


async def turn_and_check(
    twilio: TwilioLine, caller: str, words: str, confidence: str = "0.9", *, at_menu: bool = False
) -> None:
    """A call: the greeting, then `words` said at the menu (`at_menu`: what is more than a menu answer is
    heard as a message) or, after pressing 1, as the first turn."""
    sid = "CA" + uuid.uuid4().hex
    greeting = twiml(await twilio.post("/voice/incoming", call_form(sid, caller)))
    if at_menu:
        turn_url = action(greeting)
    else:
        menu = twiml(await twilio.post(action(greeting), call_form(sid, caller, Digits="1")))
        turn_url = action(menu)
    form = call_form(sid, caller, SpeechResult=words, Confidence=confidence)
    response = await twilio.post(turn_url, form)
    root = twiml(response)
    cleaned = support.cleaned(as_received(words))
    level = support.escalating(cleaned, "student")
    if at_menu and level is not None and support.level_of(cleaned, "parent") not in ("orange", "red"):
        level = None  # a menu word (家长) may make the caller a parent, for whom these words are lower
    if level is None:
        return
    rows = await twilio.store.inbound_like("voice", f"{sid}:")
    assert len(rows) == 1, f"{len(rows)} rows for {level} words {cleaned!r}"
    assert await twilio.store.cases_of(rows[0].conversation_id), f"no case for {level} words {cleaned!r}"
    if level == "red":
        assert says_the_numbers(spoken(root)), (
            f"red turn {cleaned!r} not answered with the numbers: {spoken(root)!r}"
        )
    twiml(await twilio.post(turn_url, form))  # Twilio retries the turn
    assert len(await twilio.store.inbound_like("voice", f"{sid}:")) == 1


def test_any_turn_request_is_answered_or_refused(twilio: TwilioLine) -> None:
    """The turn with any query (turn and tries of any size, garbage) and any form, signed."""
    numbers = st.one_of(
        st.integers(min_value=-(2**70), max_value=2**70).map(str), support.GARBAGE_NO_SURROGATE
    )

    @examples(15)
    @given(
        turn=numbers,
        tries=numbers,
        speech=st.one_of(st.none(), support.texts()),
        drop=st.sets(st.sampled_from(["CallSid", "From", "AccountSid", "To"]), max_size=2),
    )
    def check(turn: str, tries: str, speech: str | None, drop: set[str]) -> None:
        form = call_form("CA" + uuid.uuid4().hex, "+8613800138000")
        if speech is not None:
            form["SpeechResult"] = speech
            twilio.forbidden.add_text(support.cleaned(as_received(speech)))
        form = {k: v for k, v in form.items() if k not in drop}
        path = f"/voice/turn?turn={quote_plus(turn.encode())}&tries={quote_plus(tries.encode())}"
        response = twilio.runner.run(twilio.post(path, form))
        assert response.status in (200, 400, 403, 413), (response.status, response.text)

    twilio.add_phone("+8613800138000")
    check()


def test_the_phone_lines_other_webhooks_with_any_query_and_form(twilio: TwilioLine) -> None:
    """Status callbacks, the dial's end and the counsellor's screen, signed, with any query and fields."""
    values = st.one_of(
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
        support.GARBAGE_NO_SURROGATE,
        st.sampled_from(["red", "person", "silence", "completed", "no-answer", "busy", "failed", "1", ""]),
    )
    names = st.sampled_from(["why", "c", "at", "turn", "tries", "leg", "case"])
    fields = st.sampled_from(
        [
            "CallStatus",
            "DialCallStatus",
            "DialCallSid",
            "Digits",
            "SpeechResult",
            "CallDuration",
            "AnsweredBy",
        ]
    )

    @examples(15)
    @given(
        path=st.sampled_from(
            ["/voice/status", "/voice/dial", "/voice/screen", "/voice/menu", "/voice/incoming"]
        ),
        query=st.dictionaries(names, values, max_size=4),
        extra=st.dictionaries(fields, values, max_size=4),
    )
    def check(path: str, query: dict[str, str], extra: dict[str, str]) -> None:
        form = {**call_form("CA" + uuid.uuid4().hex, "+8613800138001"), **extra}
        encoded_query = "&".join(f"{quote_plus(k)}={quote_plus(v.encode())}" for k, v in query.items())
        url = f"{path}?{encoded_query}" if encoded_query else path
        response = twilio.runner.run(twilio.post(url, form))
        assert response.status in (200, 204, 400, 403, 404), (response.status, url, response.text)

    twilio.add_phone("+8613800138001")
    check()
