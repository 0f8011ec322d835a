"""The phone line through the real app and store, with webhooks signed as Twilio signs them and the TwiML
answers parsed as XML: the Mandarin greeting and menu, transcripts through the switchboard, a retried
turn processed once, silence, a red call put through to the on-call counsellors in turn (then the
supervisor, then the numbers), the counsellor's screen, status callbacks, no recording, the fail-safe,
a counsellor's console message spoken into the live call (Twilio's REST API is a loopback stand-in),
pages by phone, and logs without a number or a word of what was said."""

from __future__ import annotations

import logging
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, update

from integrations.channels import voice
from integrations.channels.twilio_common import TwilioSettings
from integrations.channels.voice import voice_plugin
from integrations.channels.voice_calls import VoiceSettings, speakable, voice_texts
from integrations.content import failsafe_text
from integrations.engine_client import BotReply
from records.models import (
    AuditEntry,
    Case,
    CaseStatus,
    Contact,
    Conversation,
    Counsellor,
    Message,
    OutboxItem,
)
from tests.channels.line import Line, Sessions, line_for
from tests.channels.standin import Recorded, StandIn, running_stand_in
from tests.channels.twilio_signing import signed_headers
from tests.unit.fakes import FakeEngine

PUBLIC = "https://line.example.org"
ACCOUNT = "AC" + "1" * 32
TOKEN = "test-twilio-auth-token"
LINE_NUMBER = "+15005550006"
CALLER = "+8613812345678"
RED = "药已经准备好了，今晚我就吃下去"
CALLS = f"/2010-04-01/Accounts/{ACCOUNT}/Calls"
PHONES = {"v1": "+8613900000001", "v2": "+8613900000002", "v3": "+8613900000003", "v4": "+8613900000004"}
SUPERVISOR_PHONE = "+8613900000009"


def new_sid() -> str:
    return "CA" + uuid.uuid4().hex


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    yield from running_stand_in()


def _twilio(stand_in: StandIn) -> TwilioSettings:
    return TwilioSettings(
        account_sid=ACCOUNT, auth_token=TOKEN, voice_number=LINE_NUMBER, api_base_url=stand_in.url
    )


def _line(database_url: str, sessions: Sessions, stand_in: StandIn, **options: Any) -> Line:
    engine = options.pop("engine", None)
    plugin = voice_plugin(_twilio(stand_in), VoiceSettings(**options))
    return line_for(database_url, sessions, plugin, engine=engine, public_url=PUBLIC)


@pytest.fixture
def line(database_url: str, sessions: Sessions, stand_in: StandIn) -> Line:
    return _line(database_url, sessions, stand_in)


class Phone:
    """One caller's call: posts signed webhooks and follows the TwiML's action URLs, as Twilio does."""

    def __init__(self, line: Line, caller: str = CALLER) -> None:
        self.line, self.caller, self.sid = line, caller, new_sid()
        self.seen: list[ET.Element] = []

    def form(self, **fields: str) -> dict[str, str]:
        base = {
            "AccountSid": ACCOUNT,
            "CallSid": self.sid,
            "From": self.caller,
            "To": LINE_NUMBER,
            "CallStatus": "in-progress",
            "Direction": "inbound",
        }
        return {**base, **fields}

    async def post(self, url: str, form: dict[str, str], *, token: str = TOKEN, expect: int = 200) -> Any:
        path = url.removeprefix(PUBLIC)
        headers = signed_headers(url if url.startswith(PUBLIC) else PUBLIC + url, form, token)
        _, response = await self.line.app.asgi_client.post(path, data=form, headers=headers)
        assert response.status == expect, response.text
        return response

    async def twiml(self, url: str, **fields: str) -> ET.Element:
        response = await self.post(url, self.form(**fields))
        assert response.headers["content-type"].startswith("text/xml")
        root = ET.fromstring(response.text)
        assert root.tag == "Response"
        assert_no_recording(root)
        self.seen.append(root)
        return root

    async def call(self) -> ET.Element:
        return await self.twiml("/voice/incoming")

    async def choose(self, digits: str) -> ET.Element:
        menu = await self.call()
        return await self.twiml(action(menu), Digits=digits)

    async def say(self, root: ET.Element, words: str) -> ET.Element:
        return await self.twiml(action(root), SpeechResult=words, Confidence="0.92")

    async def silence(self, root: ET.Element) -> ET.Element:
        """Nothing heard: the gather times out and Twilio follows the <Redirect>."""
        redirect = root.find("Redirect")
        assert redirect is not None and redirect.text == action(root)
        return await self.twiml(redirect.text)

    async def dial_ended(self, root: ET.Element, status: str, **fields: str) -> ET.Element:
        dial = root.find("Dial")
        assert dial is not None
        return await self.twiml(
            dial.get("action", ""), DialCallStatus=status, DialCallSid=new_sid(), **fields
        )


def assert_no_recording(root: ET.Element) -> None:
    for element in root.iter():
        assert element.tag != "Record"
        assert not [name for name in element.attrib if name.lower().startswith("record")], element.attrib


def action(root: ET.Element) -> str:
    gather = root.find("Gather")
    assert gather is not None, ET.tostring(root, encoding="unicode")
    return gather.get("action", "")


def spoken(root: ET.Element) -> str:
    return " ".join(say.text or "" for say in root.iter("Say"))


def assert_mandarin(root: ET.Element) -> None:
    says = list(root.iter("Say"))
    assert says
    for say in says:
        assert (say.get("language"), say.get("voice")) == ("cmn-CN", "Polly.Zhiyu")


async def staff_phones(line: Line, phones: dict[str, str]) -> None:
    """Counsellors v1…v4 and supervisor s1 on call; those in `phones` reachable by phone."""
    await line.staff()
    async with line.sessions() as session:
        for handle, number in phones.items():
            await session.execute(
                update(Counsellor)
                .where(Counsellor.handle == handle)
                .values(page_channel="sms", page_address=number)
                .execution_options(synchronize_session=False)
            )
        await session.commit()


ALL_PHONES = {**PHONES, "s1": SUPERVISOR_PHONE}


async def conversation_of(line: Line, caller: str = CALLER) -> Conversation:
    async with line.sessions() as session:
        found = list(await session.scalars(select(Conversation).where(Conversation.channel == "voice")))
        for conversation in found:
            contact = await session.get(Contact, conversation.contact_id)
            if contact is not None and contact.address == caller:
                return conversation
    raise AssertionError("no conversation for the caller")


async def audits(line: Line, action_name: str) -> list[AuditEntry]:
    async with line.sessions() as session:
        return list(await session.scalars(select(AuditEntry).where(AuditEntry.action == action_name)))


# --- the greeting and the menu ---------------------------------------------------------------------


async def test_the_greeting_speaks_mandarin_and_listens_for_mandarin_speech_and_keys(line: Line) -> None:
    root = await Phone(line).call()
    gather = root.find("Gather")
    assert gather is not None
    assert gather.attrib["input"] == "speech dtmf"
    assert gather.attrib["language"] == "cmn-Hans-CN"
    assert gather.attrib["speechTimeout"] == "auto"
    assert gather.attrib["numDigits"] == "1"
    assert gather.attrib["action"].startswith(f"{PUBLIC}/voice/menu?")
    assert_mandarin(root)
    said = spoken(gather)
    assert "心桥" in said and "学生" in said and "家长" in said and "老师" in said
    assert "按1" in said and "按2" in said and "按0" in said


async def test_forged_or_unsigned_webhooks_are_refused(line: Line) -> None:
    phone = Phone(line)
    await phone.post("/voice/incoming", phone.form(), token="not-the-token", expect=403)
    _, unsigned = await line.app.asgi_client.post("/voice/incoming", data=phone.form())
    assert unsigned.status == 403
    # Signed for another step of the call: the query is part of what Twilio signs.
    headers = signed_headers(f"{PUBLIC}/voice/turn?turn=2&tries=0", phone.form(SpeechResult="你好"), TOKEN)
    _, moved = await line.app.asgi_client.post(
        "/voice/turn?turn=3&tries=0", data=phone.form(SpeechResult="你好"), headers=headers
    )
    assert moved.status == 403
    # The words changed after signing.
    headers = signed_headers(f"{PUBLIC}/voice/turn?turn=2&tries=0", phone.form(SpeechResult="你好"), TOKEN)
    _, changed = await line.app.asgi_client.post(
        "/voice/turn?turn=2&tries=0", data=phone.form(SpeechResult="再见"), headers=headers
    )
    assert changed.status == 403
    for path in (
        "/voice/menu",
        "/voice/dial?why=red&c=x&at=0&turn=2",
        "/voice/screen?why=red",
        "/voice/status",
    ):
        await phone.post(path, phone.form(), token="forged", expect=403)
    assert line.engine.calls == [] and line.engine.triggered == []


async def test_a_signed_webhook_without_a_call_is_a_bad_request_and_a_huge_one_too_large(line: Line) -> None:
    phone = Phone(line)
    await phone.post("/voice/incoming", {"From": CALLER, "To": LINE_NUMBER}, expect=400)
    await phone.post("/voice/turn?turn=x", phone.form(SpeechResult="你好"), expect=400)
    huge = phone.form(SpeechResult="字" * 40_000)
    _, response = await line.app.asgi_client.post(
        "/voice/turn?turn=2&tries=0",
        data=huge,
        headers=signed_headers(f"{PUBLIC}/voice/turn?turn=2&tries=0", huge, TOKEN),
    )
    assert response.status == 413
    assert line.engine.calls == []


@pytest.mark.parametrize(
    ("answer", "audience"),
    [
        ({"Digits": "1"}, "student"),
        ({"Digits": "2"}, "parent"),
        ({"SpeechResult": "我是家长。"}, "parent"),
        ({"SpeechResult": "学生"}, "student"),
    ],
)
async def test_a_menu_answer_records_who_is_calling_and_invites_them_to_talk(
    line: Line, answer: dict[str, str], audience: str
) -> None:
    phone = Phone(line)
    menu = await phone.call()
    root = await phone.twiml(action(menu), **answer)
    assert action(root).startswith(f"{PUBLIC}/voice/turn?turn=2")
    assert spoken(root) == speakable(voice_texts().listen[audience])  # type: ignore[index]
    assert (await conversation_of(line)).audience == audience
    assert line.engine.calls == []  # a menu answer is not a message
    heard = await phone.say(root, "最近睡不好")
    assert "你好，我在。" in spoken(heard)
    assert line.engine.calls[-1][2]["audience"] == audience


async def test_zero_or_asking_for_a_teacher_at_the_menu_puts_the_caller_through(line: Line) -> None:
    await staff_phones(line, ALL_PHONES)
    for answer in ({"Digits": "0"}, {"SpeechResult": "我想找老师"}):
        phone = Phone(line, caller=f"+86139{uuid.uuid4().int % 10**8:08d}")
        menu = await phone.call()
        root = await phone.twiml(action(menu), **answer)
        assert spoken(root) == speakable(voice_texts().connecting["person"])
        dial = root.find("Dial")
        assert dial is not None and dial.find("Number") is not None
    async with line.sessions() as session:
        cases = list(await session.scalars(select(Case)))
    assert [(c.level, c.opened_reason) for c in cases] == [("yellow", "voice:person")] * 2
    assert len(await audits(line, "handoff_requested")) == 2


async def test_menu_words_that_are_more_than_a_menu_answer_are_heard_as_what_the_caller_says(
    line: Line,
) -> None:
    await staff_phones(line, ALL_PHONES)
    phone = Phone(line)
    menu = await phone.call()
    root = await phone.say(menu, "我是学生，" + RED)
    assert root.find("Dial") is not None  # red: put through, never taken as "student"
    assert line.engine.triggered, "the words reached the crisis path"
    async with line.sessions() as session:
        message = await session.scalar(select(Message).where(Message.direction == "in"))
    assert message is not None and message.external_id == f"{phone.sid}:1" and message.risk_level == "red"
    # Short, with a menu word, but not green: heard, not taken as a menu answer.
    other = Phone(line, caller="+8613800000055")
    heard = await other.say(await other.call(), "学生，我想死")
    assert len(line.engine.triggered) == 2 and heard.find("Dial") is None
    assert line.engine.triggered[-1][0] == (await conversation_of(line, "+8613800000055")).id


# --- turns --------------------------------------------------------------------------------------------


async def test_a_transcript_goes_through_the_switchboard_and_the_answer_is_spoken(line: Line) -> None:
    line.engine.replies = [
        BotReply(
            "谢谢你愿意说出来😊 可以看看 https://example.org/help",
            buttons=[{"title": "好的", "payload": "/ok"}],
        ),
        BotReply("你想多说一点吗？"),
    ]
    phone = Phone(line)
    root = await phone.choose("1")
    answered = await phone.say(root, "这次考试考砸了，我很难过")
    assert_mandarin(answered)
    gather = answered.find("Gather")
    assert gather is not None  # spoken while listening, so the caller may talk over it
    assert [say.text for say in gather.iter("Say")] == ["谢谢你愿意说出来 可以看看。", "你想多说一点吗？"]
    assert "好的" not in spoken(answered) and "http" not in spoken(answered)
    assert action(answered) == f"{PUBLIC}/voice/turn?turn=3&tries=0"
    sender_id, heard, metadata = line.engine.calls[0]
    assert heard == "这次考试考砸了，我很难过" and metadata["channel"] == "voice"
    assert sender_id == (await conversation_of(line)).id
    async with line.sessions() as session:
        message = await session.scalar(select(Message).where(Message.direction == "in"))
    assert message is not None and message.external_id == f"{phone.sid}:2"


def test_only_speakable_words_are_spoken() -> None:
    said = speakable("谢谢你😊 看看 https://example.org/help **这里**\n☎ 12356 热线（24小时）")
    assert said == "谢谢你 看看 这里。 1 2 3 5 6 热线（24小时）。"


async def test_a_retried_turn_is_processed_once(line: Line) -> None:
    phone = Phone(line)
    root = await phone.choose("1")
    first = await phone.say(root, "我和同学吵架了")
    again = await phone.say(root, "我和同学吵架了")  # Twilio retries the same turn
    assert ET.tostring(first) == ET.tostring(again)
    assert len(line.engine.calls) == 1
    async with line.sessions() as session:
        stored = list(await session.scalars(select(Message).where(Message.direction == "in")))
    assert len(stored) == 1


async def test_silence_is_asked_about_once_then_the_caller_is_put_through(line: Line) -> None:
    await staff_phones(line, ALL_PHONES)
    phone = Phone(line)
    menu = await phone.call()
    again = await phone.silence(menu)
    assert spoken(again).startswith(speakable(voice_texts().menu_again))
    assert again.find("Dial") is None and action(again) != action(menu)
    through = await phone.silence(again)
    assert spoken(through) == speakable(voice_texts().connecting["silence"])
    assert through.find("Dial") is not None
    # In the conversation too: one reprompt, then a counsellor.
    other = Phone(line, caller="+8613800000077")
    talk = await other.choose("1")
    reprompt = await other.silence(talk)
    assert spoken(reprompt) == speakable(voice_texts().reprompt) and reprompt.find("Dial") is None
    assert (await other.silence(reprompt)).find("Dial") is not None
    async with line.sessions() as session:
        reasons = [c.opened_reason for c in await session.scalars(select(Case))]
    assert reasons == ["voice:silence", "voice:silence"]
    assert line.engine.calls == []


async def test_asking_for_a_person_mid_call_opens_a_case_and_rings_the_counsellors(line: Line) -> None:
    await staff_phones(line, ALL_PHONES)
    phone = Phone(line)
    root = await phone.choose("1")
    through = await phone.say(root, "我想找个人说话")
    assert spoken(through) == speakable(voice_texts().connecting["person"])
    assert through.find("Dial") is not None
    case = await line.case_of((await conversation_of(line)).id)
    assert (case.level, case.opened_reason, case.status) == ("yellow", "voice:person", CaseStatus.OPEN)
    assert len(line.engine.calls) == 1  # the words were stored and screened like any message
    [requested] = await audits(line, "handoff_requested")
    assert requested.detail["reason"] == "voice:person" and requested.detail["channel"] == "voice"
    pressed = await phone.twiml(action(root), Digits="0")  # the key works mid-call too
    assert pressed.find("Dial") is not None


async def test_when_the_engine_is_down_the_caller_hears_the_fail_safe_and_is_offered_a_counsellor(
    database_url: str, sessions: Sessions, stand_in: StandIn
) -> None:
    line = _line(database_url, sessions, stand_in, engine=FakeEngine(down=True))
    phone = Phone(line)
    root = await phone.choose("2")
    answered = await phone.say(root, "孩子这几天不肯去上学")
    gather = answered.find("Gather")
    assert gather is not None
    assert [say.text for say in gather.iter("Say")] == [
        speakable(failsafe_text()),
        speakable(voice_texts().failsafe_offer),
    ]
    assert "1 2 3 5 6" in spoken(answered)
    async with line.sessions() as session:
        message = await session.scalar(select(Message).where(Message.direction == "in"))
    assert message is not None and message.status == "retry_pending"  # kept for the retry worker


# --- red: the numbers, then a person ------------------------------------------------------------------


async def test_a_red_transcript_says_the_numbers_then_rings_the_lead(line: Line, stand_in: StandIn) -> None:
    await staff_phones(line, ALL_PHONES)
    phone = Phone(line)
    root = await phone.choose("1")
    red = await phone.say(root, RED)
    assert [child.tag for child in red] == ["Say", "Dial"]  # the numbers first, then the phones ring
    assert spoken(red) == speakable(voice_texts().connecting["red"])
    assert all(number in spoken(red) for number in ("1 1 0", "1 2 0", "1 2 3 5 6"))  # at once, before ringing
    dial = red.find("Dial")
    assert dial is not None
    assert dial.attrib["timeout"] == "20"
    assert dial.attrib["callerId"] == LINE_NUMBER  # the volunteer never sees the caller's number
    assert dial.attrib["action"].startswith(f"{PUBLIC}/voice/dial?")
    case = await line.case_of((await conversation_of(line)).id)
    assert case.level == "red"
    number = dial.find("Number")
    assert number is not None and number.text == PHONES[await line.lead_of(case.id)]
    assert number.attrib["url"] == f"{PUBLIC}/voice/screen?why=red"  # the counsellor presses 1 to take it
    assert [page for page in await line.pages() if page.case_id == case.id], "the case paged its staff"


async def test_nobody_answering_goes_down_the_chain_to_the_supervisor_then_the_numbers(
    database_url: str, sessions: Sessions, stand_in: StandIn
) -> None:
    line = _line(database_url, sessions, stand_in, dial_counsellors=2, dial_timeout_seconds=15)
    await staff_phones(line, ALL_PHONES)
    phone = Phone(line)
    step = await phone.say(await phone.choose("1"), RED)
    conversation = (await conversation_of(line)).id
    lead = await line.lead_of((await line.case_of(conversation)).id)
    rung = []
    for status, extra in (("no-answer", {}), ("busy", {}), ("completed", {"DialBridged": "false"})):
        dial = step.find("Dial")
        assert dial is not None and dial.attrib["timeout"] == "15"
        rung.append(dial.findtext("Number"))
        step = await phone.dial_ended(step, status, **extra)
        if step.find("Dial") is not None:
            assert spoken(step) == speakable(voice_texts().trying_next)
    assert rung[0] == PHONES[lead]
    assert rung[1] in PHONES.values() and rung[1] != PHONES[lead]  # the next counsellor on shift
    assert rung[2] == SUPERVISOR_PHONE
    assert step.find("Dial") is None
    assert spoken(step) == speakable(voice_texts().nobody_answered)
    assert all(n in spoken(step) for n in ("1 2 3 5 6", "1 1 0", "1 2 0"))
    assert action(step) == f"{PUBLIC}/voice/turn?turn=3&tries=0"  # the caller can go on talking
    case = await line.case_of(conversation)
    assert (case.level, case.status) == ("red", CaseStatus.OPEN)
    [no_answer] = await audits(line, "voice_no_answer")
    assert no_answer.subject == conversation
    assert (no_answer.detail["case_id"], no_answer.detail["call_sid"]) == (case.id, phone.sid)
    results = await audits(line, "voice_dial_result")
    assert [(r.detail["status"], r.detail["connected"]) for r in results] == [
        ("no-answer", False),
        ("busy", False),
        ("completed", False),  # a voicemail, or nobody pressed 1
    ]


async def test_nobody_reachable_by_phone_the_numbers_at_once_and_a_red_case_open(line: Line) -> None:
    await line.staff()  # nobody has a phone number
    phone = Phone(line)
    red = await phone.say(await phone.choose("1"), RED)
    assert red.find("Dial") is None
    assert speakable(voice_texts().connecting["red"]) in spoken(red)
    assert "1 2 3 5 6" in spoken(red)
    case = await line.case_of((await conversation_of(line)).id)
    assert (case.level, case.status) == ("red", CaseStatus.OPEN)
    assert len(await audits(line, "voice_no_answer")) == 1


async def test_a_person_asked_for_and_nobody_answering_opens_a_red_case(line: Line) -> None:
    await staff_phones(line, {"v1": PHONES["v1"]})
    phone = Phone(line)
    through = await phone.choose("0")
    after = await phone.dial_ended(through, "no-answer")
    assert after.find("Dial") is None and "1 2 3 5 6" in spoken(after)
    case = await line.case_of((await conversation_of(line)).id)
    # nobody has heard the caller, so their risk is unknown: followed as red (the rule)
    assert (case.level, case.opened_reason) == ("red", "voice:person")


async def test_a_counsellor_who_takes_the_call_ends_the_chain(line: Line) -> None:
    await staff_phones(line, ALL_PHONES)
    phone = Phone(line)
    red = await phone.say(await phone.choose("1"), RED)
    done = await phone.dial_ended(red, "completed", DialBridged="true", DialCallDuration="600")
    assert [child.tag for child in done] == ["Say", "Hangup"]
    assert spoken(done) == speakable(voice_texts().after_counsellor)
    [result] = await audits(line, "voice_dial_result")
    assert result.detail["connected"] is True and result.detail["step"] == 0


async def test_the_counsellor_hears_why_and_only_a_key_press_puts_the_caller_through(line: Line) -> None:
    leg = Phone(line, caller=PHONES["v1"])  # the counsellor's leg, as Twilio posts it
    screen = await leg.twiml("/voice/screen?why=red")
    gather = screen.find("Gather")
    assert gather is not None and gather.attrib["input"] == "dtmf" and gather.attrib["numDigits"] == "1"
    assert speakable(voice_texts().whisper["red"]) in spoken(gather)
    assert_mandarin(screen)
    assert [child.tag for child in screen] == ["Gather", "Hangup"]  # a voicemail hears it and is hung up
    accepted = await leg.twiml(gather.attrib["action"], Digits="1")
    assert list(accepted) == []  # an empty answer: the caller is put through
    declined = await leg.twiml(gather.attrib["action"], Digits="9")
    assert [child.tag for child in declined] == ["Hangup"]


# --- records, recording, logs -------------------------------------------------------------------------


async def test_a_status_callback_is_recorded_with_codes_only(line: Line) -> None:
    phone = Phone(line)
    await phone.say(await phone.choose("1"), "你好")
    response = await phone.post(
        "/voice/status", phone.form(CallStatus="completed", CallDuration="73"), expect=204
    )
    assert response.text == ""
    [entry] = await audits(line, "voice_call_status")
    assert entry.subject == (await conversation_of(line)).id and entry.actor == "twilio"
    assert entry.detail == {"call_sid": phone.sid, "status": "completed", "duration_seconds": 73}
    assert CALLER not in str(entry.detail)


async def test_no_twiml_ever_records_unless_a_deployment_turns_it_on(
    database_url: str, sessions: Sessions, stand_in: StandIn
) -> None:
    line = _line(database_url, sessions, stand_in)
    await staff_phones(line, ALL_PHONES)
    phone = Phone(line)  # every TwiML a Phone reads is checked by `assert_no_recording`
    talk = await phone.choose("1")
    await phone.silence(talk)
    answered = await phone.say(talk, "我有点难过")
    red = await phone.say(answered, RED)
    await phone.dial_ended(red, "no-answer")
    await phone.twiml("/voice/screen?why=red")
    assert [root.tag for root in phone.seen] == ["Response"] * 7
    # The check can fail: a deployment that turns recording on records the counsellor's call, and says so.
    recording = _line(database_url, sessions, stand_in, record_calls=True)
    caller = Phone(recording, caller="+8613800000098")
    greeting = ET.fromstring((await caller.post("/voice/incoming", caller.form())).text)
    assert speakable(voice_texts().recording_notice) in spoken(greeting)
    menu = action(greeting)  # the same store: v1 … s1 are on call with their phones
    talk = ET.fromstring((await caller.post(menu, caller.form(Digits="1"))).text)
    red = ET.fromstring((await caller.post(action(talk), caller.form(SpeechResult=RED))).text)
    with pytest.raises(AssertionError):
        assert_no_recording(red)


async def test_logs_hold_no_phone_number_and_no_words(
    line: Line, stand_in: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    # Everything the gateway, Sanic, Twilio's library and the HTTP clients log; the database driver's
    # debug lines (SQL parameters) are an operator's choice and left out.
    caplog.set_level(logging.INFO)
    for name in ("integrations", "records", "sanic", "twilio", "httpx", "aiohttp"):
        caplog.set_level(logging.DEBUG, logger=name)
    _live_call(stand_in, new_sid())
    await staff_phones(line, ALL_PHONES)
    phone = Phone(line)
    red = await phone.say(await phone.choose("1"), RED)
    await phone.dial_ended(red, "no-answer")
    await phone.post("/voice/status", phone.form(CallStatus="completed", CallDuration="9"), expect=204)
    await phone.post("/voice/incoming", phone.form(), token="forged", expect=403)
    await line.pages()
    await line.counsellor_writes((await conversation_of(line)).id, "我是心理老师，我在。")
    assert stand_in.sent_to(f"{CALLS}/"), "the counsellor's words went out"
    logged = caplog.text
    for secret in (CALLER, CALLER.removeprefix("+"), RED, "我是心理老师", *PHONES.values(), SUPERVISOR_PHONE):
        assert secret not in logged


# --- what no webhook waits for: the counsellor's words, pages -------------------------------------------


def _live_call(stand_in: StandIn, sid: str | None, ringing: bool = False) -> None:
    """Twilio's Calls resource: the caller's call in progress (or none), nobody bridged to it (or, with
    `ringing`, a counsellor's phone ringing for it)."""

    def calls(request: Recorded) -> tuple[int, Any]:
        if request.method == "POST":  # a new call (a page)
            return 201, {"sid": new_sid(), "status": "queued"}
        if ringing and request.query.get("Status") == ["ringing"] and "ParentCallSid" in request.query:
            return 200, {"calls": [{"sid": new_sid(), "status": "ringing"}], "next_page_uri": None, "page": 0}
        if "ParentCallSid" in request.query or sid is None:
            return 200, {"calls": [], "next_page_uri": None, "page": 0, "page_size": 1}
        return 200, {"calls": [{"sid": sid, "status": "in-progress"}], "next_page_uri": None, "page": 0}

    stand_in.answer(f"{CALLS}.json", calls)
    stand_in.answer(f"{CALLS}/", lambda request: (200, {"sid": request.path.rsplit("/", 1)[-1][:-5]}))


async def test_a_counsellors_console_message_is_spoken_into_the_live_call(
    line: Line, stand_in: StandIn
) -> None:
    await staff_phones(line, {})
    phone = Phone(line)
    _live_call(stand_in, phone.sid)
    await phone.say(await phone.choose("1"), RED)
    await line.counsellor_writes((await conversation_of(line)).id, "我是心理老师，我在。")
    lookup = stand_in.sent_to(f"{CALLS}.json")
    assert lookup[0].method == "GET"
    assert lookup[0].query["From"] == [CALLER] and lookup[0].query["To"] == [LINE_NUMBER]
    assert lookup[0].query["Status"] == ["in-progress"]
    assert lookup[1].query["ParentCallSid"] == [phone.sid]  # not spoken over a counsellor on the phone
    [updated] = stand_in.sent_to(f"{CALLS}/")
    assert updated.path == f"{CALLS}/{phone.sid}.json" and updated.method == "POST"
    twiml = ET.fromstring(updated.form()["Twiml"][0])
    assert_no_recording(twiml)
    assert_mandarin(twiml)
    assert spoken(twiml) == "老师说：我是心理老师，我在。"
    assert action(twiml).startswith(f"{PUBLIC}/voice/turn?turn=")  # then the call listens again
    assert updated.headers["authorization"].startswith("Basic ")
    # The caller's answer is for the counsellor who holds the conversation.
    answer = await phone.twiml(action(twiml), SpeechResult="我现在在家里")
    assert spoken(answer) == speakable(voice_texts().with_counsellor)
    assert len(line.engine.calls) == 0 and len(line.engine.triggered) == 1
    assert await line.deliver() == 0  # spoken once


@pytest.mark.parametrize(
    ("call", "error"),
    [
        ("hung_up", "voice:CallNotLive"),
        # speaking now would replace the call's <Dial> and stop the ringing
        ("ringing_for_a_counsellor", "voice:CallBeingConnected"),
    ],
)
async def test_a_message_that_cannot_be_spoken_now_is_not_delivered_and_is_retried(
    line: Line, stand_in: StandIn, call: str, error: str
) -> None:
    await staff_phones(line, {})
    phone = Phone(line)
    if call == "hung_up":
        _live_call(stand_in, None)
    else:
        _live_call(stand_in, phone.sid, ringing=True)
    await phone.say(await phone.choose("1"), RED)
    await line.counsellor_writes((await conversation_of(line)).id, "我在。")
    assert stand_in.sent_to(f"{CALLS}/") == []
    async with line.sessions() as session:
        item = await session.scalar(select(OutboxItem).where(OutboxItem.kind == "deliver"))
    assert item is not None and (item.status, item.attempts) == ("pending", 1)
    assert item.last_error == error


async def test_a_counsellor_paged_by_phone_gets_a_call_that_says_the_case(
    line: Line, stand_in: StandIn
) -> None:
    _live_call(stand_in, None)
    await line.staff()
    async with line.sessions() as session:
        await session.execute(
            update(Counsellor)
            .values(page_channel="voice", page_address=PHONES["v1"])
            .where(Counsellor.handle == "v1")
        )
        await session.commit()
    phone = Phone(line)
    await phone.say(await phone.choose("1"), RED)
    case = await line.case_of((await conversation_of(line)).id)
    await line.pages()
    [created] = [r for r in stand_in.sent_to(f"{CALLS}.json") if r.method == "POST"]
    form = created.form()
    assert form["To"] == [PHONES["v1"]] and form["From"] == [LINE_NUMBER]
    twiml = ET.fromstring(form["Twiml"][0])
    assert_no_recording(twiml)
    assert_mandarin(twiml)
    assert "红色" in spoken(twiml) and str(case.id) in spoken(twiml).replace(" ", "")


# --- callers and configuration ------------------------------------------------------------------------


async def test_callers_who_withhold_their_number_are_told_apart_by_call(line: Line) -> None:
    first, second = Phone(line, caller="+266696687"), Phone(line, caller="+266696687")
    await first.say(await first.choose("1"), "你好")
    await second.say(await second.choose("1"), "你好")
    conversations = {sender for sender, _, _ in line.engine.calls}
    assert len(conversations) == 2


def test_the_line_is_on_only_when_its_number_and_secrets_are_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ACCOUNT_SID", "AUTH_TOKEN", "VOICE_NUMBER", "SMS_NUMBER", "API_BASE_URL"):
        monkeypatch.delenv(f"XINQIAO_TWILIO_{name}", raising=False)
    assert voice.from_environment() is None
    monkeypatch.setenv("XINQIAO_TWILIO_VOICE_NUMBER", LINE_NUMBER)
    with pytest.raises(RuntimeError, match="AUTH_TOKEN"):
        voice.from_environment()
    monkeypatch.setenv("XINQIAO_TWILIO_ACCOUNT_SID", ACCOUNT)
    monkeypatch.setenv("XINQIAO_TWILIO_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("XINQIAO_VOICE_TTS_VOICE", "Google.cmn-CN-Standard-A")
    plugin = voice.from_environment()
    assert plugin is not None and plugin.name == "voice" and plugin.sender is not None
    assert plugin.sender.channel == "voice" and plugin.page_sender is not None
