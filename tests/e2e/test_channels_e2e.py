"""End to end on the four outside channels: the real engine with the trained model, the action server and
the gateway, started on loopback ports by the launcher `make run` uses, with Telegram (webhook mode), SMS
and the phone line (Twilio) and WeChat (plain mode) all on. The providers' APIs are loopback stand-ins
(tests/channels/standin.py) that the gateway's own libraries call; the webhooks are posted over real HTTP,
signed as each provider signs them.

On every channel: a red message gets the real crisis response on that channel, opens a red case staffed
三包一 and pages the lead (by SMS) and the supervisor (by Telegram); the lead signs in to the console,
takes the conversation over and writes, and the words reach the child on that channel. A forged
signature is refused with 403 on each, and nothing of it is stored."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from integrations.channels.voice_calls import speakable, voice_texts
from integrations.launcher import Stack, StackConfig, running
from records import crypto
from records.accounts import set_password
from records.db import with_session
from records.migrate import upgrade
from records.models import Assignment, Case, Counsellor, Message, OutboxItem
from records.roster import put_on_call, set_paging
from tests.channels import telegram_payloads as tg
from tests.channels import wechat_payloads as wx
from tests.channels.standin import Recorded, StandIn
from tests.channels.twilio_signing import incoming_sms, message_created, signed_headers
from tests.support import require_trained_model, variations
from triage_protocols.directory import hotline_list

pytestmark = pytest.mark.engine

RED = "药我已经准备好了，今晚就全吃下去"
FORGED = "这是一条伪造签名的消息"
PASSWORD = "a long enough password"
VOLUNTEERS = ["v1", "v2", "v3"]
SUPERVISOR = "s1"
# Where each counsellor is paged besides the console: the volunteers by SMS (which also makes them
# reachable by the phone line's dial chain), the supervisor in a private chat with the Telegram bot.
PHONES = {"v1": "+8613900000001", "v2": "+8613900000002", "v3": "+8613900000003"}
SUPERVISOR_CHAT = 5550009999

TWILIO_ACCOUNT = "AC" + "1" * 32
TWILIO_TOKEN = "f3c1e2d4a5b6978800112233445566aa"
SMS_NUMBER = "+14155550100"
VOICE_NUMBER = "+15005550006"
TEXTER = "+8613800138000"
CALLER = "+8613812345678"
TWILIO_API = f"/2010-04-01/Accounts/{TWILIO_ACCOUNT}"
MESSAGES = f"{TWILIO_API}/Messages.json"
CALLS = f"{TWILIO_API}/Calls"
WECHAT_SEND = "/cgi-bin/message/custom/send"

WAIT = 20.0  # seconds any one thing may take to happen in the running stack


# --- the providers ------------------------------------------------------------------------------------


@dataclass
class Twilio:
    """Twilio's REST API as the gateway uses it: messages sent, and calls (listed, updated, created).
    `live` is the calls in progress, by the caller's number."""

    stand_in: StandIn
    live: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stand_in.answer(MESSAGES, self._message)
        self.stand_in.answer(f"{CALLS}.json", self._calls)
        self.stand_in.answer(f"{CALLS}/", self._update)

    def _message(self, request: Recorded) -> tuple[int, dict[str, str]]:
        return message_created(request, TWILIO_ACCOUNT)

    def _calls(self, request: Recorded) -> tuple[int, dict[str, Any]]:
        if request.method == "POST":  # a new call: a page by phone
            return 201, {"sid": new_call_sid(), "status": "queued"}
        found = [] if "ParentCallSid" in request.query else self._live_from(request.query.get("From", []))
        calls = [{"sid": sid, "status": "in-progress"} for sid in found]
        return 200, {"calls": calls, "next_page_uri": None, "page": 0, "page_size": 1}

    def _live_from(self, callers: list[str]) -> list[str]:
        return [self.live[caller] for caller in callers if caller in self.live]

    def _update(self, request: Recorded) -> tuple[int, dict[str, str]]:
        return 200, {"sid": request.path.rsplit("/", 1)[-1].removesuffix(".json"), "status": "in-progress"}

    def texts_to(self, number: str) -> list[str]:
        """Every message body sent to `number` through the Messages API."""
        sent = [r.form() for r in self.stand_in.sent_to(MESSAGES) if r.method == "POST"]
        return [form["Body"][0] for form in sent if form.get("To") == [number]]

    def call_updates(self, sid: str) -> list[Recorded]:
        return [r for r in self.stand_in.sent_to(f"{CALLS}/{sid}.json") if r.method == "POST"]


@dataclass
class Providers:
    telegram: StandIn
    twilio: Twilio
    wechat: StandIn


@pytest.fixture(scope="module")
def providers() -> Iterator[Providers]:
    telegram, twilio, wechat = StandIn(), StandIn(), StandIn()
    tg.bot_api(telegram)
    wechat.answer("/cgi-bin/token", (200, {"access_token": wx.ACCESS_TOKEN, "expires_in": 7200}))
    wechat.answer(WECHAT_SEND, (200, {"errcode": 0, "errmsg": "ok"}))
    started: list[StandIn] = []
    try:
        for stand_in in (telegram, twilio, wechat):
            stand_in.start()
            started.append(stand_in)
        yield Providers(telegram, Twilio(twilio), wechat)
    finally:
        for stand_in in started:
            stand_in.stop()


def channel_env(providers: Providers) -> dict[str, str]:
    return {
        "XINQIAO_TELEGRAM_TOKEN": tg.TOKEN,
        "XINQIAO_TELEGRAM_MODE": "webhook",
        "XINQIAO_TELEGRAM_WEBHOOK_SECRET": tg.SECRET,
        "XINQIAO_TELEGRAM_API_BASE_URL": providers.telegram.url,
        "XINQIAO_TWILIO_ACCOUNT_SID": TWILIO_ACCOUNT,
        "XINQIAO_TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "XINQIAO_TWILIO_SMS_NUMBER": SMS_NUMBER,
        "XINQIAO_TWILIO_VOICE_NUMBER": VOICE_NUMBER,
        "XINQIAO_TWILIO_API_BASE_URL": providers.twilio.stand_in.url,
        "XINQIAO_WECHAT_TOKEN": wx.TOKEN,
        "XINQIAO_WECHAT_APP_ID": wx.APP_ID,
        "XINQIAO_WECHAT_APP_SECRET": wx.APP_SECRET,
        "XINQIAO_WECHAT_API_BASE_URL": providers.wechat.url,
    }


@pytest.fixture(scope="module")
def stack(providers: Providers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_trained_model()
    config = StackConfig.isolated(
        tmp_path_factory.mktemp("channels-stack"),
        {
            "XINQIAO_ENGINE_TIMEOUT_SECONDS": "10",
            "XINQIAO_PROBE_INTERVAL_SECONDS": "0.5",
            "XINQIAO_RETRY_INTERVAL_SECONDS": "3600",
            **channel_env(providers),
        },
    )
    config.extra_env["XINQIAO_PUBLIC_URL"] = config.gateway_url  # what Twilio signs, where webhooks go
    # The counsellors' page addresses are encrypted here and read by the gateway: one set of keys.
    config.encryption_keys = os.environ[crypto.KEYS_VARIABLE]
    config.lookup_key = os.environ[crypto.LOOKUP_VARIABLE]
    upgrade(config.database_url)

    async def staff(session: Any) -> None:
        await put_on_call(
            session, volunteers=VOLUNTEERS, supervisors=[SUPERVISOR], supervisors_on_shift=False
        )
        for handle, number in PHONES.items():
            await set_paging(session, handle, "sms", number)
        await set_paging(session, SUPERVISOR, "telegram", str(SUPERVISOR_CHAT))
        for handle in [*VOLUNTEERS, SUPERVISOR]:
            await set_password(session, handle, PASSWORD)

    asyncio.run(with_session(config.database_url, staff))
    with running(config, timeout=300) as started:
        # One web chat message first: the engine's first prediction is the slow one, and WeChat's passive
        # answer has only 4 s.
        http = httpx.Client(base_url=started.config.gateway_url, timeout=60)
        session = http.post("/api/sessions", json={}).json()["session"]
        http.post("/api/messages", json={"session": session, "message_id": uuid.uuid4().hex, "text": "你好"})
        http.close()
        yield started


# --- helpers ------------------------------------------------------------------------------------------


def read(stack: Stack, work: Callable[[Any], Any]) -> Any:
    """Runs `work(session)` against the stack's store of record."""
    return asyncio.run(with_session(stack.config.database_url, work))


def until[T](probe: Callable[[], T | None], what: str, seconds: float = WAIT) -> T:
    """Polls `probe` until it gives something truthy; fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        found = probe()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def red_replies() -> list[str]:
    """The engine's red response, as the web chat shows it (tests/e2e/test_webchat_e2e.py)."""
    return [
        next(iter(variations("utter_crisis_red"))),
        next(iter(variations("utter_crisis_hotlines", hotline_list=hotline_list()))),
        next(iter(variations("utter_counsellor_being_called"))),
        next(iter(variations("utter_ask_safe_now"))),
    ]


def in_order(text: str, parts: list[str]) -> bool:
    """Every one of `parts` appears in `text`, in order, whatever whitespace a channel put between or
    inside them (an SMS splits long texts into messages; WeChat joins replies into one)."""
    squeezed = re.sub(r"\s+", "", text)
    at = 0
    for part in parts:
        found = squeezed.find(re.sub(r"\s+", "", part), at)
        if found < 0:
            return False
        at = found + len(re.sub(r"\s+", "", part))
    return True


@dataclass(frozen=True)
class RedCase:
    id: int
    conversation_id: str
    lead: str  # the lead's handle


def red_case(stack: Stack, channel: str) -> RedCase:
    """The red case the channel's red message opened, once the store has it: red, opened by the screen,
    staffed 三包一 from the volunteers on shift."""

    async def find(session: Any) -> tuple[Case, dict[str, str]] | None:
        message = await session.scalar(
            select(Message)
            .where(Message.channel == channel, Message.direction == "in", Message.text == RED)
            .order_by(Message.id)
        )
        if message is None:
            return None
        case = await session.scalar(select(Case).where(Case.conversation_id == message.conversation_id))
        if case is None or message.risk_level != "red":
            return None
        handles = {c.id: c.handle for c in (await session.scalars(select(Counsellor))).all()}
        staff = (await session.scalars(select(Assignment).where(Assignment.case_id == case.id))).all()
        return case, {a.role: handles[a.counsellor_id] for a in staff}

    case, staff = until(lambda: read(stack, find), f"a red case from {channel}")
    assert (case.level, case.status) == ("red", "open")
    assert case.opened_reason == f"screen:{case.rule}" and case.signals
    assert sorted(staff) == ["lead", "second", "third"] and set(staff.values()) == set(VOLUNTEERS)
    return RedCase(case.id, case.conversation_id, staff["lead"])


def assert_paged(stack: Stack, providers: Providers, case: RedCase) -> None:
    """The lead and the supervisor were paged for the case, and the gateway's dispatcher sent both pages:
    to the console, and on each one's page channel (the lead by SMS, the supervisor on Telegram)."""

    async def pages(session: Any) -> list[tuple[str, str, str, list[str]]]:
        handles = {c.id: c.handle for c in (await session.scalars(select(Counsellor))).all()}
        items = await session.scalars(
            select(OutboxItem).where(OutboxItem.case_id == case.id, OutboxItem.kind == "page")
        )
        return sorted(
            (handles[i.counsellor_id], i.payload["reason"], i.status, sorted(i.delivered_via)) for i in items
        )

    def all_sent() -> list[tuple[str, str, str, list[str]]] | None:
        found = read(stack, pages)
        return found if found and all(status == "sent" for _, _, status, _ in found) else None

    sent = until(all_sent, f"the pages of case {case.id} sent")
    assert sent == sorted(
        [
            (case.lead, "case_opened", "sent", ["console", "sms"]),
            (SUPERVISOR, "case_opened", "sent", ["console", "telegram"]),
        ]
    )
    # What reached their phones names the case and never what the child wrote.
    sms_pages = [t for t in providers.twilio.texts_to(PHONES[case.lead]) if f"#{case.id}" in t]
    telegram_pages = [t for chat, t in tg.sent(providers.telegram) if chat == SUPERVISOR_CHAT]
    assert sms_pages and [t for t in telegram_pages if f"#{case.id}" in t]
    assert all("药" not in t for t in [*sms_pages, *telegram_pages])


class Console:
    """A counsellor signed in to the console over HTTP, as the page does: the session cookie, and the
    CSRF token on every POST."""

    def __init__(self, stack: Stack, handle: str) -> None:
        self.http = httpx.Client(base_url=stack.config.gateway_url, timeout=30)
        signed_in = self.http.post("/console/api/login", json={"handle": handle, "password": PASSWORD})
        assert signed_in.status_code == 200, signed_in.text
        self.csrf = signed_in.json()["csrf"]

    def post(self, path: str, body: dict[str, Any] | None = None, *, csrf: bool = True) -> httpx.Response:
        headers = {"X-CSRF-Token": self.csrf} if csrf else {}
        return self.http.post(path, json=body or {}, headers=headers)

    def take_over_and_write(self, case: RedCase, text: str) -> None:
        assert self.post(f"/console/api/cases/{case.id}/claim", csrf=False).status_code == 403
        claimed = self.post(f"/console/api/cases/{case.id}/claim")
        assert claimed.status_code == 200, claimed.text
        written = self.post(f"/console/api/cases/{case.id}/messages", {"text": text})
        assert written.status_code == 201, written.text


def counsellor_writes(stack: Stack, case: RedCase, text: str) -> None:
    console = Console(stack, case.lead)
    try:
        console.take_over_and_write(case, text)
    finally:
        console.http.close()


def assert_nothing_stored(stack: Stack, text: str) -> None:
    async def count(session: Any) -> int:
        return len((await session.scalars(select(Message).where(Message.text == text))).all())

    assert read(stack, count) == 0


# --- Telegram -----------------------------------------------------------------------------------------


def telegram_post(stack: Stack, update: dict[str, Any], secret: str | None = tg.SECRET) -> httpx.Response:
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
    return httpx.post(
        f"{stack.config.gateway_url}/telegram/webhook", json=update, headers=headers, timeout=30
    )


def test_telegram_red_message_gets_the_crisis_reply_a_case_pages_and_the_counsellors_words(
    stack: Stack, providers: Providers
) -> None:
    assert telegram_post(stack, tg.text_update(RED)).status_code == 200

    def to_child() -> list[str]:
        return [text for chat, text in tg.sent(providers.telegram) if chat == tg.CHAT_ID]

    replies = until(lambda: len(to_child()) >= 4 and to_child(), "the crisis reply on Telegram")
    assert replies == red_replies()
    assert "12356" in replies[1] and "110" in replies[1]
    case = red_case(stack, "telegram")
    assert_paged(stack, providers, case)

    words = "我是心桥的值班老师，我看到你的消息了，现在就在这里陪着你。"
    counsellor_writes(stack, case, words)
    assert until(lambda: words in to_child(), "the counsellor's words on Telegram")
    assert to_child()[-1] == words


# --- SMS ----------------------------------------------------------------------------------------------


def sms_form(body: str, sender: str = TEXTER) -> dict[str, str]:
    return incoming_sms(body, sender=sender, to=SMS_NUMBER, account_sid=TWILIO_ACCOUNT)


def twilio_post(stack: Stack, url: str, form: dict[str, str], token: str = TWILIO_TOKEN) -> httpx.Response:
    """A webhook as Twilio posts it: to the absolute URL it was given, signed over that URL and the form."""
    assert url.startswith(stack.config.gateway_url)
    return httpx.post(url, data=form, headers=signed_headers(url, form, token), timeout=30)


def test_sms_red_text_gets_the_crisis_reply_a_case_pages_and_the_counsellors_words(
    stack: Stack, providers: Providers
) -> None:
    answer = twilio_post(stack, f"{stack.config.gateway_url}/sms/inbound", sms_form(RED))
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/xml")
    messages = [m.text or "" for m in ET.fromstring(answer.text).iter("Message")]
    assert messages, answer.text
    assert in_order("\n".join(messages), red_replies())  # the whole red response, in order
    assert any("12356" in m and "110" in m for m in messages)  # the numbers arrive whole in one SMS
    case = red_case(stack, "sms")
    assert_paged(stack, providers, case)

    words = "我是心桥的值班老师，收到你的短信了。你现在身边有大人吗？"
    counsellor_writes(stack, case, words)
    assert until(lambda: words in providers.twilio.texts_to(TEXTER), "the counsellor's words by SMS")
    [sent] = [r for r in providers.twilio.stand_in.sent_to(MESSAGES) if r.form().get("To") == [TEXTER]]
    assert sent.form()["From"] == [SMS_NUMBER]
    assert sent.headers["authorization"].startswith("Basic ")


# --- WeChat -------------------------------------------------------------------------------------------


def wechat_post(stack: Stack, xml: str, query: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{stack.config.gateway_url}/wechat/webhook",
        params=query,
        content=xml.encode(),
        headers={"Content-Type": "text/xml"},
        timeout=30,
    )


def wechat_sends(providers: Providers) -> list[str]:
    """The customer-service messages sent to the test's user."""
    bodies = [json.loads(r.body) for r in providers.wechat.sent_to(WECHAT_SEND)]
    return [b["text"]["content"] for b in bodies if b.get("touser") == wx.OPENID and b["msgtype"] == "text"]


def test_wechat_red_message_gets_the_crisis_reply_a_case_pages_and_the_counsellors_words(
    stack: Stack, providers: Providers
) -> None:
    answer = wechat_post(stack, wx.text_xml(RED, wx.new_msg_id()), wx.signed_query())
    assert answer.status_code == 200
    if answer.text == "success":  # slower than WeChat's 4 s: the answer goes out through the API
        reply = "\n\n".join(
            until(lambda: len(wechat_sends(providers)) >= 4 and wechat_sends(providers), "API")
        )
    else:  # the passive reply, in the response
        root = ET.fromstring(answer.text)
        assert (root.findtext("MsgType"), root.findtext("ToUserName")) == ("text", wx.OPENID)
        reply = root.findtext("Content") or ""
    assert in_order(reply, red_replies())
    assert "12356" in reply and "110" in reply
    case = red_case(stack, "wechat")
    assert_paged(stack, providers, case)

    words = "我是心桥的值班老师，我在这里。你愿意告诉我你现在在哪里吗？"
    counsellor_writes(stack, case, words)
    assert until(lambda: words in wechat_sends(providers), "the counsellor's words on WeChat")
    [token_request] = providers.wechat.sent_to("/cgi-bin/token")[:1]
    assert token_request.query["appid"] == [wx.APP_ID]


# --- the phone line -----------------------------------------------------------------------------------


def new_call_sid() -> str:
    return "CA" + uuid.uuid4().hex


@dataclass
class Call:
    """One caller's call: signed webhooks to the absolute URLs the TwiML names, as Twilio posts them."""

    stack: Stack
    sid: str = field(default_factory=new_call_sid)

    def form(self, **fields: str) -> dict[str, str]:
        return {
            "AccountSid": TWILIO_ACCOUNT,
            "ApiVersion": "2010-04-01",
            "CallSid": self.sid,
            "From": CALLER,
            "To": VOICE_NUMBER,
            "CallStatus": "in-progress",
            "Direction": "inbound",
            **fields,
        }

    def post(self, url: str, token: str = TWILIO_TOKEN, **fields: str) -> httpx.Response:
        return twilio_post(self.stack, url, self.form(**fields), token)

    def twiml(self, url: str, **fields: str) -> ET.Element:
        response = self.post(url, **fields)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/xml")
        return ET.fromstring(response.text)


def gather_action(root: ET.Element) -> str:
    gather = root.find("Gather")
    assert gather is not None, ET.tostring(root, encoding="unicode")
    return gather.get("action", "")


def spoken(root: ET.Element) -> str:
    return " ".join(say.text or "" for say in root.iter("Say"))


def test_phone_call_red_words_get_the_numbers_a_case_pages_and_the_counsellors_words(
    stack: Stack, providers: Providers
) -> None:
    call = Call(stack)
    providers.twilio.live[CALLER] = call.sid
    menu = call.twiml(f"{stack.config.gateway_url}/voice/incoming")
    listening = call.twiml(gather_action(menu), Digits="1")  # 1: a student
    red = call.twiml(gather_action(listening), SpeechResult=RED, Confidence="0.91")
    # The numbers first (digit by digit), then the counsellors' phones ring, the lead's first.
    assert [child.tag for child in red] == ["Say", "Dial"]
    assert spoken(red) == speakable(voice_texts().connecting["red"])
    assert all(number in spoken(red) for number in ("1 1 0", "1 2 0", "1 2 3 5 6"))
    case = red_case(stack, "voice")
    dial = red.find("Dial")
    assert dial is not None and dial.get("callerId") == VOICE_NUMBER  # the caller's number stays hidden
    assert dial.findtext("Number") == PHONES[case.lead]
    assert_paged(stack, providers, case)

    # The lead answers from the console instead: the words are spoken into the live call, which then
    # listens again.
    words = "我是心桥的值班老师，我在电话这边陪着你，请先把药交给身边的大人。"
    counsellor_writes(stack, case, words)
    [update] = until(lambda: providers.twilio.call_updates(call.sid), "the counsellor's words in the call")
    twiml = ET.fromstring(update.form()["Twiml"][0])
    assert spoken(twiml) == speakable(voice_texts().counsellor_says.format(text=words))
    assert gather_action(twiml).startswith(f"{stack.config.gateway_url}/voice/turn?turn=")


# --- forgeries ----------------------------------------------------------------------------------------


def test_a_forged_signature_is_refused_on_every_channel_and_nothing_is_stored(stack: Stack) -> None:
    gateway = stack.config.gateway_url
    update = tg.text_update(FORGED, chat_id=tg.CHAT_ID + 1)
    assert telegram_post(stack, update, secret="F" * 44).status_code == 403
    assert telegram_post(stack, update, secret=None).status_code == 403

    assert twilio_post(stack, f"{gateway}/sms/inbound", sms_form(FORGED), token="0" * 32).status_code == 403
    unsigned = httpx.post(f"{gateway}/sms/inbound", data=sms_form(FORGED), timeout=30)
    assert unsigned.status_code == 403

    call = Call(stack)
    assert call.post(f"{gateway}/voice/incoming", token="0" * 32).status_code == 403
    assert (
        call.post(f"{gateway}/voice/turn?turn=2&tries=0", token="0" * 32, SpeechResult=FORGED).status_code
        == 403
    )

    forged = wechat_post(stack, wx.text_xml(FORGED, wx.new_msg_id()), wx.signed_query("not-the-token"))
    assert forged.status_code == 403

    assert_nothing_stored(stack, FORGED)
