"""The SMS line through the real app and store, with Twilio's REST API as a loopback stand-in: webhooks
signed for real by twilio-python's `RequestValidator` over the exact public URL and a form shaped like
Twilio's documented one, answers read back as TwiML, messages sent through Twilio's own async client.
Also the pure parts: splitting into SMS segments, keywords, the counsellor's page text."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from xml.etree import ElementTree

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from integrations.channels import base, sms
from integrations.channels.base import ChannelPlugin
from integrations.channels.sms_opt_outs import OPTED_IN, OPTED_OUT, keyword_of
from integrations.channels.sms_segments import (
    MAX_MESSAGES,
    SEGMENTS_PER_MESSAGE,
    hotline_numbers,
    sms_parts,
    sms_segments,
    split_for_sms,
)
from integrations.channels.sms_texts import sms_texts
from integrations.channels.twilio_common import TwilioSettings
from integrations.content import failsafe_text, gateway_texts
from integrations.engine_client import BotReply
from integrations.paging.senders import Page
from records.crypto import lookup_digest
from records.models import AuditEntry, Contact, Counsellor, Message, OutboxItem
from tests.channels.line import Line, Sessions, line_for
from tests.channels.standin import Recorded, StandIn, running_stand_in
from tests.channels.twilio_signing import incoming_sms, message_created, signed_headers
from tests.unit.fakes import FakeEngine

TOKEN = "f3c1e2d4a5b6978800112233445566aa"
ACCOUNT = "AC" + "1" * 32
LINE_NUMBER = "+14155550100"
STUDENT = "+8613800138000"
PUBLIC_URL = "https://line.example.org"
WEBHOOK = f"{PUBLIC_URL}/sms/inbound"
MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
RED = "药已经准备好了，今晚我就吃下去"
COUNSELLOR_PHONES = {"v1": "+8613900000001", "v2": "+8613900000002", "v3": "+8613900000003",
                     "v4": "+8613900000004", "s1": "+8613900000009"}  # fmt: skip


def _twilio_message(request: Recorded) -> tuple[int, dict[str, str]]:
    return message_created(request, ACCOUNT)


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    yield from running_stand_in()


@pytest.fixture
async def plugin(stand_in: StandIn) -> AsyncIterator[ChannelPlugin]:
    stand_in.answer(MESSAGES, _twilio_message)
    settings = TwilioSettings(
        account_sid=ACCOUNT, auth_token=TOKEN, sms_number=LINE_NUMBER, api_base_url=stand_in.url
    )  # type: ignore[call-arg]
    plugin = sms.build_plugin(settings)
    yield plugin
    assert plugin.stop is not None
    await plugin.stop(None)  # type: ignore[arg-type]  # closes the REST client's session


def _line(database_url: str, sessions: Sessions, plugin: ChannelPlugin, **kwargs: object) -> Line:
    return line_for(database_url, sessions, plugin, public_url=PUBLIC_URL, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def line(database_url: str, sessions: Sessions, plugin: ChannelPlugin) -> Line:
    return _line(database_url, sessions, plugin)


def _form(body: str, *, sid: str | None = None, sender: str = STUDENT, **extra: str) -> dict[str, str]:
    return incoming_sms(body, sender=sender, to=LINE_NUMBER, account_sid=ACCOUNT, sid=sid, **extra)


async def _post(line: Line, form: dict[str, str], *, headers: dict[str, str] | None = None) -> object:
    headers = signed_headers(WEBHOOK, form, TOKEN) if headers is None else headers
    _, response = await line.app.asgi_client.post("/sms/inbound", data=form, headers=headers)
    return response


def _messages(response: object) -> list[str]:
    """The texts of a TwiML answer, read as XML."""
    assert response.status == 200, response.body  # type: ignore[attr-defined]
    assert response.headers["content-type"].startswith("text/xml")  # type: ignore[attr-defined]
    root = ElementTree.fromstring(response.body)  # type: ignore[attr-defined]
    assert root.tag == "Response"
    assert all(child.tag == "Message" for child in root)
    return [child.text or "" for child in root]


async def _text(line: Line, body: str, **kwargs: str) -> list[str]:
    return _messages(await _post(line, _form(body, **kwargs)))


def _sent(stand_in: StandIn, to: str | None = None) -> list[dict[str, str]]:
    """The messages sent through the REST API (to one number, or all)."""
    found = [{k: v[0] for k, v in r.form().items()} for r in stand_in.sent_to(MESSAGES)]
    return [f for f in found if to is None or f["To"] == to]


async def _count(line: Line, model: type, *where: object) -> int:
    async with line.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def _staff_paged_by_sms(line: Line) -> None:
    await line.staff()
    async with line.sessions() as session:
        for handle, phone in COUNSELLOR_PHONES.items():
            counsellor = await session.scalar(select(Counsellor).where(Counsellor.handle == handle))
            assert counsellor is not None
            counsellor.page_channel, counsellor.page_address = "sms", phone
        await session.commit()


async def _conversation(line: Line, address: str = STUDENT) -> str:
    async with line.sessions() as session:
        contact = await session.scalar(
            select(Contact).where(
                Contact.channel == "sms", Contact.address_digest == lookup_digest("sms", address)
            )
        )
    assert contact is not None
    return contact.id


async def _due_now(line: Line) -> None:
    """Makes waiting deliveries due at once, instead of after their back-off."""
    async with line.sessions() as session:
        await session.execute(update(OutboxItem).values(available_at=OutboxItem.created_at))
        await session.commit()


# --- the webhook -------------------------------------------------------------------------------------


async def test_a_signed_text_is_stored_and_answered_with_twiml(line: Line) -> None:
    form = _form("你好")
    assert _messages(await _post(line, form)) == ["你好，我在。"]
    async with line.sessions() as session:
        stored = await session.scalar(select(Message).where(Message.direction == "in"))
    assert stored is not None and stored.external_id == form["MessageSid"] and stored.channel == "sms"
    assert line.engine.calls[0][1] == "你好"


def _forgeries() -> list[tuple[str, dict[str, str], dict[str, str]]]:
    form = _form("你好")
    good = signed_headers(WEBHOOK, form, TOKEN)
    other_account = _form("你好", AccountSid="AC" + "2" * 32)
    return [
        ("no signature", form, {}),
        ("another token", form, signed_headers(WEBHOOK, form, "0" * 32)),
        ("http instead of https", form, signed_headers(WEBHOOK.replace("https", "http"), form, TOKEN)),
        ("another host", form, signed_headers("https://evil.example.org/sms/inbound", form, TOKEN)),
        ("another path", form, signed_headers(f"{PUBLIC_URL}/sms/other", form, TOKEN)),
        ("tampered body", {**form, "Body": RED}, good),
        ("tampered sender", {**form, "From": "+8613700137000"}, good),
        ("added field", {**form, "OptOutType": "STOP"}, good),
        ("another account", other_account, signed_headers(WEBHOOK, other_account, TOKEN)),
    ]


@pytest.mark.parametrize(("case", "form", "headers"), _forgeries(), ids=[f[0] for f in _forgeries()])
async def test_a_forged_or_altered_webhook_is_refused_and_nothing_is_stored(
    line: Line, case: str, form: dict[str, str], headers: dict[str, str]
) -> None:
    response = await _post(line, form, headers=headers)
    assert response.status == 403, case  # type: ignore[attr-defined]
    assert await _count(line, Message) == 0 and await _count(line, Contact) == 0
    assert line.engine.calls == [] and line.engine.triggered == []


@pytest.mark.parametrize("missing", ["MessageSid", "From", "Body", "AccountSid"])
async def test_a_signed_webhook_without_a_field_is_a_bad_request(line: Line, missing: str) -> None:
    form = _form("你好")
    del form[missing]
    response = await _post(line, form)
    expected = 403 if missing == "AccountSid" else 400  # no account: not ours
    assert response.status == expected  # type: ignore[attr-defined]
    assert await _count(line, Message) == 0


async def test_a_malformed_message_sid_is_a_bad_request(line: Line) -> None:
    response = await _post(line, _form("你好", sid="not-a-sid"))
    assert response.status == 400 and await _count(line, Message) == 0  # type: ignore[attr-defined]


async def test_an_oversize_body_is_refused_with_413(line: Line) -> None:
    form = _form("字" * 30_000)
    response = await _post(line, form)
    assert response.status == 413 and await _count(line, Message) == 0  # type: ignore[attr-defined]


async def test_a_text_over_the_length_limit_gets_a_clear_answer_and_is_not_processed(line: Line) -> None:
    answer = await _text(line, "字" * 2001)
    assert "2000" in answer[0] and line.engine.calls == []


async def test_a_redelivered_message_sid_is_processed_once(line: Line) -> None:
    form = _form("你好")
    first = _messages(await _post(line, form))
    again = _messages(await _post(line, form))
    assert first == again == ["你好，我在。"]
    assert len(line.engine.calls) == 1
    assert await _count(line, Message, Message.direction == "in") == 1


async def test_with_the_engine_down_the_text_gets_the_fail_safe_script(
    database_url: str, sessions: Sessions, plugin: ChannelPlugin
) -> None:
    line = _line(database_url, sessions, plugin, engine=FakeEngine(down=True))
    answer = "\n".join(await _text(line, "你好"))
    assert answer == failsafe_text() and "12356" in answer


async def test_an_answer_given_on_retry_is_texted(line: Line, stand_in: StandIn) -> None:
    line.engine.down = True
    await _text(line, "你好")
    line.engine.down = False
    assert await line.app.ctx.switchboard.retry_pending() == 1
    await line.deliver()
    assert [(m["To"], m["From"], m["Body"]) for m in _sent(stand_in)] == [
        (STUDENT, LINE_NUMBER, "你好，我在。")
    ]


async def test_a_photo_without_words_gets_the_only_text_answer(line: Line) -> None:
    answer = await _text(line, "", NumMedia="1", MediaUrl0="https://api.twilio.com/media/ME1")
    assert answer == [base.common_texts().only_text] and line.engine.calls == []


async def test_an_assistants_choices_are_written_out(line: Line) -> None:
    line.engine.replies = [
        BotReply(
            "请问你是学生还是家长？",
            [{"title": "我是学生", "payload": "我是学生"}, {"title": "我是家长", "payload": "我是家长"}],
        )
    ]
    answer = await _text(line, "你好")
    assert answer == ["请问你是学生还是家长？\n（可以直接回复：我是学生 / 我是家长）"]


async def test_over_the_sender_limit_a_text_is_slowed_but_red_is_answered(line: Line) -> None:
    for _ in range(base.SENDER_LIMIT):
        await _text(line, "你好")
    slowed = await _text(line, "再说一句")
    assert "\n".join(slowed) == gateway_texts().slow_down.format(hotline_list=base.hotline_list())
    red = await _text(line, RED)
    assert line.engine.triggered and red != slowed
    assert len(line.engine.calls) == base.SENDER_LIMIT  # the slowed text never reached the engine
    other = await _text(line, "你好", sender="+8613700137000")  # another sender is not slowed
    assert other == ["你好，我在。"]


# --- the crisis path and the counsellor --------------------------------------------------------------


async def test_a_red_text_opens_a_case_pages_counsellors_by_sms_and_the_counsellor_reaches_the_phone(
    line: Line, stand_in: StandIn
) -> None:
    await _staff_paged_by_sms(line)
    answer = await _text(line, RED)
    assert answer == ["你好，我在。"]  # the engine's crisis answer (triggered, not predicted)
    assert line.engine.triggered and line.engine.calls == []
    conversation = await _conversation(line)
    case = await line.case_of(conversation)
    assert case.level == "red"

    pages = [p for p in await line.pages() if p.case_id == case.id]
    assert pages, "a page was written for the case"
    lead = await line.lead_of(case.id)
    texts = {m["To"]: m["Body"] for m in _sent(stand_in)}
    assert COUNSELLOR_PHONES[lead] in texts and COUNSELLOR_PHONES["s1"] in texts  # red: lead and supervisor
    page = texts[COUNSELLOR_PHONES[lead]]
    assert f"#{case.id}" in page and "红色" in page and "认领" in page
    assert RED not in page and "药" not in page and STUDENT not in page
    assert all(m["From"] == LINE_NUMBER for m in _sent(stand_in))

    await line.counsellor_writes(conversation, "我是心理老师，我在。", "你现在安全吗？")
    assert [m["Body"] for m in _sent(stand_in, STUDENT)] == ["我是心理老师，我在。", "你现在安全吗？"]
    assert await line.deliver() == 0  # sent once


async def test_a_long_counsellor_message_is_split_in_order(line: Line, stand_in: StandIn) -> None:
    await line.staff()
    await _text(line, RED)
    long = "".join(f"第{i}句，我想认真地回应你说的话，也想让你知道你并不孤单。" for i in range(1, 13))
    await line.counsellor_writes(await _conversation(line), long)
    parts = [m["Body"] for m in _sent(stand_in, STUDENT)]
    assert len(parts) > 1 and "".join(parts) == long
    assert all(sms_segments(p) <= SEGMENTS_PER_MESSAGE for p in parts)
    assert all(p.endswith("。") for p in parts)  # cut at sentence ends


# --- keywords ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("word", ["HELP", "help", "Info", "帮助", " 帮助。", "ｈｅｌｐ"])
async def test_help_is_answered_with_the_numbers_and_never_reaches_the_assistant(
    line: Line, word: str
) -> None:
    answer = "\n".join(await _text(line, word))
    assert answer == sms_texts().help and "12356" in answer and "110" in answer
    assert line.engine.calls == [] and await _count(line, Message) == 0


async def test_yes_from_a_number_that_never_opted_out_is_an_ordinary_answer(line: Line) -> None:
    assert await _text(line, "yes") == ["你好，我在。"] and line.engine.calls[0][1] == "yes"
    assert await _opt_outs(line) == []


async def test_help_after_twilios_own_help_answer_is_not_answered_twice(line: Line) -> None:
    assert await _text(line, "帮助", OptOutType="HELP") == []


async def _opt_outs(line: Line) -> list[tuple[str, str | None]]:
    async with line.sessions() as session:
        entries = await session.scalars(
            select(AuditEntry).where(AuditEntry.action.in_((OPTED_OUT, OPTED_IN))).order_by(AuditEntry.id)
        )
        return [(e.action, e.detail.get("scope") or e.detail.get("reason")) for e in entries]


async def test_stop_is_recorded_unanswered_and_counsellor_texts_are_refused_until_start(
    line: Line, stand_in: StandIn
) -> None:
    await line.staff()
    await _text(line, RED)
    conversation = await _conversation(line)
    stop = _form("STOP")
    assert _messages(await _post(line, stop)) == []  # Twilio answers STOP itself
    assert _messages(await _post(line, stop)) == []  # a redelivered STOP records nothing more
    assert await _opt_outs(line) == [(OPTED_OUT, "carrier")]

    await line.counsellor_writes(conversation, "我在。")
    assert _sent(stand_in, STUDENT) == []  # refused without calling Twilio
    async with line.sessions() as session:
        item = await session.scalar(select(OutboxItem).where(OutboxItem.kind == "deliver"))
    assert item is not None and item.status == "pending" and item.last_error == "sms:OptedOut"

    assert await _text(line, "start") == []  # Twilio confirms START itself
    assert await _opt_outs(line) == [(OPTED_OUT, "carrier"), (OPTED_IN, "start")]
    await _due_now(line)
    await line.deliver()
    assert [m["Body"] for m in _sent(stand_in, STUDENT)] == ["我在。"]


async def test_a_delivery_to_a_number_that_stays_opted_out_is_audited(
    database_url: str, sessions: Sessions, plugin: ChannelPlugin, stand_in: StandIn
) -> None:
    line = _line(database_url, sessions, plugin, page_max_attempts=1)
    await line.staff()
    await _text(line, RED)
    await _text(line, "STOP")
    await line.counsellor_writes(await _conversation(line), "我在。")
    async with line.sessions() as session:
        failed = await session.scalar(select(AuditEntry).where(AuditEntry.action == "delivery_failed"))
    assert failed is not None and failed.detail["error"] == "sms:OptedOut"
    assert _sent(stand_in, STUDENT) == []


async def test_a_number_twilio_refuses_for_good_fails_at_once_and_is_audited(
    line: Line, stand_in: StandIn
) -> None:
    """Twilio's 21610 (unsubscribed at Twilio) is not retried eight times over an hour: the delivery
    fails at once, so the console and the audit say so while the counsellor can still act."""
    await line.staff()
    await _text(line, RED)
    stand_in.answer(
        MESSAGES,
        (400, {"code": 21610, "message": "Attempt to send to unsubscribed recipient", "status": 400}),
    )
    await line.counsellor_writes(await _conversation(line), "我在。")
    await line.deliver()
    async with line.sessions() as session:
        failed = await session.scalar(select(AuditEntry).where(AuditEntry.action == "delivery_failed"))
    assert failed is not None and failed.detail["error"] == "sms:TwilioRefused"


async def test_a_passing_twilio_fault_is_retried_not_failed(line: Line, stand_in: StandIn) -> None:
    await line.staff()
    await _text(line, RED)
    stand_in.answer(MESSAGES, (503, {"code": 20500, "message": "test: unavailable", "status": 503}))
    await line.counsellor_writes(await _conversation(line), "我在。")
    await line.deliver()
    async with line.sessions() as session:
        assert await session.scalar(select(AuditEntry).where(AuditEntry.action == "delivery_failed")) is None


async def test_a_red_text_after_stop_is_never_silenced(line: Line) -> None:
    await _staff_paged_by_sms(line)
    await _text(line, "STOP")
    answer = await _text(line, RED)
    assert answer == ["你好，我在。"] and line.engine.triggered  # answered (Twilio decides delivery)
    case = await line.case_of(await _conversation(line))
    assert case.level == "red" and [p for p in await line.pages() if p.case_id == case.id]


async def test_tuiding_is_confirmed_and_lifted_when_the_student_writes_again(
    line: Line, stand_in: StandIn
) -> None:
    await line.staff()
    await _text(line, RED)
    conversation = await _conversation(line)
    confirmation = "\n".join(await _text(line, "退订"))
    assert confirmation == sms_texts().opted_out and "12356" in confirmation
    assert await _text(line, "td") == sms_parts_of(sms_texts().opted_out)  # TD too; recorded once
    assert await _opt_outs(line) == [(OPTED_OUT, "line")]

    await line.counsellor_writes(conversation, "我在。")
    assert _sent(stand_in, STUDENT) == []

    await _text(line, "我还是想找人说说")  # writing again is asking to be answered
    assert await _opt_outs(line) == [(OPTED_OUT, "line"), (OPTED_IN, "wrote_again")]
    await _due_now(line)
    await line.deliver()
    assert [m["Body"] for m in _sent(stand_in, STUDENT)] == ["我在。"]


def sms_parts_of(text: str) -> list[str]:
    return sms_parts(text)


async def test_a_keyword_twilio_reports_as_an_opt_out_is_twilios_to_answer(line: Line) -> None:
    # With Advanced Opt-Out a deployment can add 退订 in Twilio's console; Twilio then answers and blocks.
    assert await _text(line, "退订", OptOutType="STOP") == []
    assert await _opt_outs(line) == [(OPTED_OUT, "carrier")]
    await _text(line, "你好")  # only START lifts Twilio's block
    assert await _opt_outs(line) == [(OPTED_OUT, "carrier")]


def test_keywords_are_whole_messages_only() -> None:
    assert keyword_of("STOP") == keyword_of(" stop ") == keyword_of("Revoke") == "stop_carrier"
    assert keyword_of("stop.") is None  # Twilio would not block on it, so neither do we
    assert keyword_of("退订") == keyword_of(" TD ") == "stop_line"
    assert keyword_of("UNSTOP") == keyword_of("yes") == "start"
    assert keyword_of("帮助") == keyword_of("HELP") == "help"
    for sentence in ("stop please", "我想退订", "帮助我", "请帮帮我", "别停 stop", RED):
        assert keyword_of(sentence) is None


# --- logs --------------------------------------------------------------------------------------------


async def test_the_logs_hold_no_phone_number_and_no_words(
    line: Line, stand_in: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    # What a deployment logs: INFO and above everywhere (a database driver's DEBUG echo of its
    # parameters is off), and everything from the gateway, the store and Twilio's client.
    caplog.set_level(logging.INFO)
    for name in ("integrations", "records", "twilio", "sanic"):
        caplog.set_level(logging.DEBUG, logger=name)
    await _staff_paged_by_sms(line)
    await _text(line, RED)
    await _text(line, "帮助")
    await line.pages()
    await line.counsellor_writes(await _conversation(line), "老师在这里陪你")
    await _text(line, "退订")
    await line.counsellor_writes(await _conversation(line), "还在吗")
    await _post(line, _form("伪造的消息"), headers={"X-Twilio-Signature": "forged"})
    assert len(_sent(stand_in)) >= 3, "pages and the counsellor's message went out"
    logged = caplog.text
    for secret in (
        STUDENT,
        STUDENT[3:],
        *COUNSELLOR_PHONES.values(),
        RED,
        "老师在这里陪你",
        "还在吗",
        "伪造",
        TOKEN,
    ):
        assert secret not in logged


# --- the plugin --------------------------------------------------------------------------------------


def test_the_line_is_off_unless_its_number_and_account_are_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SMS_NUMBER", "ACCOUNT_SID", "AUTH_TOKEN", "VOICE_NUMBER", "API_BASE_URL"):
        monkeypatch.delenv(f"XINQIAO_TWILIO_{name}", raising=False)
    assert sms.from_environment() is None
    monkeypatch.setenv("XINQIAO_TWILIO_ACCOUNT_SID", ACCOUNT)
    monkeypatch.setenv("XINQIAO_TWILIO_AUTH_TOKEN", TOKEN)
    assert sms.from_environment() is None  # a voice-only deployment
    monkeypatch.setenv("XINQIAO_TWILIO_SMS_NUMBER", LINE_NUMBER)
    plugin = sms.from_environment()
    assert plugin is not None and plugin.name == "sms"
    assert plugin.sender is not None and plugin.sender.channel == "sms"
    assert plugin.page_sender is not None and plugin.page_sender.name == "sms"


async def test_the_line_will_not_start_without_a_public_url(
    database_url: str, sessions: Sessions, plugin: ChannelPlugin
) -> None:
    line = line_for(database_url, sessions, plugin)  # no XINQIAO_PUBLIC_URL
    assert plugin.start is not None
    with pytest.raises(RuntimeError, match="XINQIAO_PUBLIC_URL"):
        await plugin.start(line.app)


async def test_a_part_that_failed_is_sent_again_without_the_parts_before_it(
    plugin: ChannelPlugin, stand_in: StandIn
) -> None:
    failures = iter([False, True])

    def flaky(request: Recorded) -> tuple[int, object]:
        if next(failures, False):
            return 503, {"code": 20500, "message": "test: unavailable", "status": 503}
        return _twilio_message(request)

    stand_in.answer(MESSAGES, flaky)
    line: sms.TwilioLine = plugin.extra["line"]
    text = "我在这里。" * 60  # two messages
    with pytest.raises(Exception):  # noqa: B017 - whatever Twilio's client raises for a 503
        await line.send(STUDENT, text)
    assert await line.send(STUDENT, text) == 1
    bodies = [m["Body"] for m in _sent(stand_in)]
    assert len(bodies) == 3 and bodies[1] == bodies[2] and bodies[0] + bodies[2] == text


async def test_a_page_to_a_counsellor_without_a_number_fails_to_be_retried(plugin: ChannelPlugin) -> None:
    assert plugin.page_sender is not None
    with pytest.raises(sms.MissingPageAddress):
        await plugin.page_sender.send(Page(1, 7, 3, "red", "case_opened", {}, address=None))


def test_a_page_names_the_case_its_level_and_its_deadline_in_china_time() -> None:
    claim_by = datetime(2026, 3, 1, 6, 5, tzinfo=UTC).isoformat()
    page = Page(1, 7, 42, "red", "case_opened", {"claim_by": claim_by, "as_role": "lead"}, address=STUDENT)
    text = sms.page_text(page, sms_texts().page)
    assert (
        text == "【心桥】新个案：个案 #42，红色（紧急）。请在 03月01日 14:05 前认领。请尽快登录咨询台查看。"
    )
    overdue = Page(2, 7, 42, "orange", "follow_up_overdue", {"due_at": claim_by}, address=STUDENT)
    assert "回访应在 03月01日 14:05 前完成" in sms.page_text(overdue, sms_texts().page)
    unknown = Page(3, 7, 42, "purple", "something_new", {}, address=STUDENT)
    assert (
        sms.page_text(unknown, sms_texts().page)
        == "【心桥】个案需要你处理：个案 #42，purple。请尽快登录咨询台查看。"
    )


# --- splitting ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("", 0),
        ("字" * 70, 1),
        ("字" * 71, 2),
        ("字" * 134, 2),
        ("字" * 135, 3),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("[" * 80, 1),  # an extended GSM character takes two units
        ("[" * 81, 2),
        ("a" * 69 + "字", 1),  # one Chinese character makes the whole text UCS-2
        ("a" * 70 + "字", 2),
        ("😀" * 35, 1),  # outside the BMP: two UTF-16 units each
        ("😀" * 36, 2),
    ],
)
def test_segments_are_counted_as_phones_count_them(text: str, segments: int) -> None:
    assert sms_segments(text) == segments


def test_a_short_text_is_one_message() -> None:
    assert split_for_sms("你好，我在。") == ["你好，我在。"]
    assert split_for_sms("  \n ") == []


def test_a_long_text_is_cut_at_sentence_ends() -> None:
    sentences = [f"这是第{i}句话，说得比较长一点，好让它占满几段短信！" for i in range(20)]
    parts = split_for_sms("".join(sentences))
    assert len(parts) > 1 and "".join(parts) == "".join(sentences)
    assert all(p.endswith("！") for p in parts)
    assert all(sms_segments(p) <= SEGMENTS_PER_MESSAGE for p in parts)


def test_line_breaks_are_sentence_ends_and_closing_quotes_stay_with_their_sentence() -> None:
    text = "他说：“别怕。”" + "字" * 262 + "\n下一行"
    parts = split_for_sms(text)
    assert parts == ["他说：“别怕。”", "字" * 262 + "\n下一行"]


def test_a_sentence_too_long_for_one_message_is_cut_at_a_comma_and_never_inside_a_number() -> None:
    text = "一" * 200 + "，" + "二" * 58 + "请打4001619995找我们" + "三" * 100
    parts = split_for_sms(text)
    assert parts[0] == "一" * 200 + "，"
    no_comma = "一" * 262 + "请打4001619995" + "三" * 100  # the 268th character is inside the number
    parts = split_for_sms(no_comma)
    assert parts[0] == "一" * 262 + "请打" and parts[1].startswith("4001619995")
    spaced = "一" * 262 + "请打400 161 9995" + "三" * 100
    assert split_for_sms(spaced)[1].startswith("400 161 9995")


def test_past_the_most_messages_the_end_is_left_out_but_never_the_hotline_numbers() -> None:
    hotlines = base.hotline_list()
    long = "".join(f"第{i}句，我想认真地回应你说的话，也想让你知道你并不孤单。" for i in range(60))
    parts = split_for_sms(long + "\n" + hotlines, omitted="……", keep=hotline_numbers())
    assert len(parts) == MAX_MESSAGES
    sent = "\n".join(parts)
    assert hotlines in sent and "……" in sent and sent.startswith("第0句")
    assert all(sms_segments(p) <= SEGMENTS_PER_MESSAGE for p in parts)
    front = split_for_sms(hotlines + "\n" + long, omitted="……", keep=hotline_numbers())
    assert len(front) == MAX_MESSAGES and front[0].startswith(hotlines)


_ALPHABET = st.sampled_from(list("心桥你好我在。！？，\n 0123456789-abcXYZ😀“”"))


@settings(max_examples=150, deadline=None)
@given(st.text(_ALPHABET, max_size=2200))
def test_split_keeps_every_word_in_order_in_messages_that_fit(text: str) -> None:
    parts = split_for_sms(text, keep=())
    assert all(sms_segments(p) <= SEGMENTS_PER_MESSAGE for p in parts)
    assert len(parts) <= MAX_MESSAGES
    if "……" not in "".join(parts):  # nothing left out
        assert re.sub(r"\s", "", "".join(parts)) == re.sub(r"\s", "", text)
        # no number is broken in two: the digit runs of the parts are those of the text
        runs = [run for part in parts for run in re.findall(r"\d+", part)]
        assert runs == re.findall(r"\d+", text) or any(len(r) > 200 for r in re.findall(r"\d+", text))
