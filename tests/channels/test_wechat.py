"""The WeChat Official Account channel through the real app, the real store and wechatpy, with WeChat's
API played by a loopback stand-in: the signed handshake, plain and encrypted messages answered in the
response, a slow engine answered through the customer-service API, WeChat's retries processed and
answered once, the crisis path with its page, a counsellor's words from the console, and refusals."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import xmltodict
from sqlalchemy import func, select, text
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.messages import TextMessage

from integrations.channels import wechat
from integrations.channels.base import common_texts
from integrations.content import failsafe_text, gateway_texts
from integrations.engine_client import BotReply
from records.models import AuditEntry, Contact, Message, OutboxItem, OutboxStatus
from tests.channels import wechat_payloads as wx
from tests.channels.line import Line, Sessions, line_for
from tests.channels.standin import Recorded, StandIn, running_stand_in
from tests.unit.fakes import FakeEngine
from triage_protocols.directory import hotline_list

RED = "药已经准备好了，今晚我就吃下去"
HELLO = "最近考试压力好大，睡不着"
ENGINE_REPLY = "你好，我在。"
CUSTOM_SEND = "/cgi-bin/message/custom/send"
WEBHOOK = "/wechat/webhook"


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    for server in running_stand_in():
        server.answer("/cgi-bin/token", (200, {"access_token": wx.ACCESS_TOKEN, "expires_in": 7200}))
        server.answer(CUSTOM_SEND, (200, {"errcode": 0, "errmsg": "ok"}))
        yield server


MakeLine = Callable[..., Line]


@pytest.fixture
def make_line(database_url: str, sessions: Sessions, stand_in: StandIn) -> MakeLine:
    def make(
        engine: FakeEngine | None = None, gateway: dict[str, Any] | None = None, **settings: Any
    ) -> Line:
        values: dict[str, Any] = {
            "token": wx.TOKEN,
            "app_id": wx.APP_ID,
            "app_secret": wx.APP_SECRET,
            "api_base_url": stand_in.url,
            **settings,
        }
        plugin = wechat.plugin_for(wechat.WeChatSettings(**values))
        return line_for(database_url, sessions, plugin, engine=engine, **(gateway or {}))

    return make


@pytest.fixture
def line(make_line: MakeLine) -> Line:
    return make_line()


async def post(line: Line, body: str | bytes, query: dict[str, str]) -> Any:
    content = body.encode() if isinstance(body, str) else body
    _, response = await line.app.asgi_client.post(WEBHOOK, params=query, content=content)
    return response


async def send_text(line: Line, content: str, msg_id: int | None = None) -> Any:
    return await post(line, wx.text_xml(content, msg_id or wx.new_msg_id()), wx.signed_query())


def reply_of(response: Any) -> TextMessage:
    """The passive reply, read by wechatpy's own parser (FromUserName is the account, ToUserName the user)."""
    assert response.status == 200, response.body
    reply = parse_message(response.body)
    assert isinstance(reply, TextMessage), response.body
    return reply


async def count(line: Line, model: Any) -> int:
    async with line.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def stored_inbound(line: Line, msg_id: int) -> Message:
    async with line.sessions() as session:
        found = await session.scalar(
            select(Message).where(Message.channel == "wechat", Message.external_id == str(msg_id))
        )
    assert found is not None, "the message was not stored"
    return found


# The database driver's debug lines show every SQL parameter, message texts included: the store's concern
# (a deployment never logs it at DEBUG), not the channel's, so they are left out here.
STORE_LOGGERS = ("aiosqlite", "asyncpg", "sqlalchemy")


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Everything logged down to DEBUG, with its arguments, but for the store's driver and the test
    client's own lines (httpx names the URL it posts to, and WeChat puts the openid in that query; in
    production WeChat is the client)."""
    records = [
        r
        for r in caplog.records
        if not r.name.startswith(STORE_LOGGERS)
        and not (r.name == "httpx" and "//mockserver:" in r.getMessage())
    ]
    return "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in records)


def custom_sends(stand_in: StandIn) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in stand_in.sent_to(CUSTOM_SEND)]


# -- the server check and the signature -------------------------------------------------------------------


async def test_the_handshake_echoes_echostr_only_when_the_signature_is_valid(line: Line) -> None:
    _, valid = await line.app.asgi_client.get(WEBHOOK, params=wx.signed_query(echostr="4821937465"))
    assert valid.status == 200 and valid.text == "4821937465"

    forged = wx.signed_query("not-our-token", echostr="4821937465")
    _, refused = await line.app.asgi_client.get(WEBHOOK, params=forged)
    assert refused.status == 403 and "4821937465" not in refused.text

    _, unsigned = await line.app.asgi_client.get(WEBHOOK, params={"echostr": "4821937465"})
    assert unsigned.status == 403

    stale = wx.signed_query(timestamp=1_600_000_000, echostr="4821937465")  # signed, but from 2020
    _, old = await line.app.asgi_client.get(WEBHOOK, params=stale)
    assert old.status == 403


async def test_a_forged_or_stale_request_is_refused_and_nothing_is_stored(line: Line) -> None:
    body = wx.text_xml(HELLO, wx.new_msg_id())
    assert (await post(line, body, wx.signed_query("not-our-token"))).status == 403
    tampered = {**wx.signed_query(), "nonce": "changed"}  # a valid signature over other values
    assert (await post(line, body, tampered)).status == 403
    assert (await post(line, body, {"openid": wx.OPENID})).status == 403
    assert (await post(line, body, wx.signed_query(timestamp=1_600_000_000))).status == 403
    assert line.engine.calls == [] and await count(line, Message) == 0 and await count(line, Contact) == 0


# -- plain and encrypted messages answered in the response -----------------------------------------------


async def test_a_text_message_is_answered_in_the_response(line: Line) -> None:
    msg_id = wx.new_msg_id()
    reply = reply_of(await send_text(line, HELLO, msg_id))
    assert (reply.source, reply.target, reply.content) == (wx.ACCOUNT, wx.OPENID, ENGINE_REPLY)

    stored = await stored_inbound(line, msg_id)
    assert stored.text == HELLO and line.engine.calls[0][:2] == (stored.conversation_id, HELLO)
    async with line.sessions() as session:
        contact = await session.scalar(select(Contact).where(Contact.channel == "wechat"))
    assert contact is not None and contact.address == wx.OPENID  # stored encrypted, read back by the column
    assert line.engine.calls[0][2]["channel"] == "wechat"


async def test_several_replies_are_one_passive_message(make_line: MakeLine) -> None:
    line = make_line(FakeEngine(replies=[BotReply("第一句"), BotReply("第二句")]))
    reply = reply_of(await send_text(line, HELLO))
    assert reply.content == "第一句\n\n第二句"


async def test_the_encrypted_mode_decrypts_the_message_and_encrypts_the_reply(make_line: MakeLine) -> None:
    line = make_line(encoding_aes_key=wx.AES_KEY)
    msg_id = wx.new_msg_id()
    query, body = wx.encrypted(wx.text_xml(HELLO, msg_id))
    response = await post(line, body, query)
    assert response.status == 200
    envelope = xmltodict.parse(response.body)["xml"]
    assert set(envelope) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
    assert HELLO not in response.text and ENGINE_REPLY not in response.text
    crypto = WeChatCrypto(wx.TOKEN, wx.AES_KEY, wx.APP_ID)
    reply = parse_message(
        crypto.decrypt_message(
            response.body, envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"]
        )
    )
    assert isinstance(reply, TextMessage)
    assert (reply.source, reply.target, reply.content) == (wx.ACCOUNT, wx.OPENID, ENGINE_REPLY)
    assert (await stored_inbound(line, msg_id)).text == HELLO


async def test_the_encrypted_mode_refuses_a_forged_msg_signature_and_plain_messages(
    make_line: MakeLine,
) -> None:
    line = make_line(encoding_aes_key=wx.AES_KEY)
    query, body = wx.encrypted(wx.text_xml(HELLO, wx.new_msg_id()))
    assert (await post(line, body, {**query, "msg_signature": "0" * 40})).status == 403
    # Encrypted with another account's key: signed with our token, but not ours to read.
    other_key = "b" * 43
    query, body = wx.encrypted(wx.text_xml(HELLO, wx.new_msg_id()), key=other_key)
    assert (await post(line, body, query)).status == 400
    # A plain message while this gateway expects the encrypted mode (a configuration mismatch).
    assert (await post(line, wx.text_xml(HELLO, wx.new_msg_id()), wx.signed_query())).status == 400
    assert line.engine.calls == [] and await count(line, Message) == 0


async def test_an_encrypted_message_to_a_gateway_without_the_key_is_refused(line: Line) -> None:
    query, body = wx.encrypted(wx.text_xml(HELLO, wx.new_msg_id()))
    assert (await post(line, body, query)).status == 400
    assert line.engine.calls == []


# -- slower than WeChat's five seconds, and WeChat's retries ---------------------------------------------


async def test_a_slow_answer_is_success_now_and_the_reply_later_through_the_api(
    make_line: MakeLine, stand_in: StandIn
) -> None:
    line = make_line(FakeEngine(delay=0.6), passive_wait_seconds=0.1)
    msg_id = wx.new_msg_id()
    response = await send_text(line, HELLO, msg_id)
    assert response.status == 200 and response.text == "success"
    assert (await stored_inbound(line, msg_id)).status == "answered"

    await line.deliver()
    assert custom_sends(stand_in) == [
        {"touser": wx.OPENID, "msgtype": "text", "text": {"content": ENGINE_REPLY}}
    ]
    sent = stand_in.sent_to(CUSTOM_SEND)[0]
    assert sent.query["access_token"] == [wx.ACCESS_TOKEN]
    token = stand_in.sent_to("/cgi-bin/token")[0]
    assert token.query["appid"] == [wx.APP_ID] and token.query["secret"] == [wx.APP_SECRET]
    assert await line.deliver() == 0  # sent once


async def test_a_retry_while_the_message_is_answered_is_processed_once_and_answered_once(
    make_line: MakeLine, stand_in: StandIn
) -> None:
    line = make_line(FakeEngine(delay=0.8), passive_wait_seconds=0.2)
    msg_id = wx.new_msg_id()
    body = wx.text_xml(HELLO, msg_id)

    async def retry() -> Any:
        await asyncio.sleep(0.4)  # WeChat's retry, while the engine is still at it
        return await post(line, body, wx.signed_query())

    first, second = await asyncio.gather(post(line, body, wx.signed_query()), retry())
    assert (first.text, second.text) == ("success", "success")
    third = await post(line, body, wx.signed_query())  # a last retry, after the answer is stored
    assert third.text == "success"

    await line.deliver()
    assert len(line.engine.calls) == 1 and await count(line, Message) == 2  # one in, one reply
    assert custom_sends(stand_in) == [
        {"touser": wx.OPENID, "msgtype": "text", "text": {"content": ENGINE_REPLY}}
    ]


async def test_an_answer_ready_in_time_after_a_retry_goes_through_the_api(
    make_line: MakeLine, stand_in: StandIn
) -> None:
    """WeChat retried while the answer was worked out, so the first request's response reaches nobody
    (WeChat has dropped it), even though the answer came within the passive window."""
    line = make_line(FakeEngine(delay=0.6), passive_wait_seconds=2.0)
    body = wx.text_xml(HELLO, wx.new_msg_id())

    async def retry() -> Any:
        await asyncio.sleep(0.2)
        return await post(line, body, wx.signed_query())

    first, second = await asyncio.gather(post(line, body, wx.signed_query()), retry())
    assert (first.text, second.text) == ("success", "success")
    await line.deliver()
    assert len(line.engine.calls) == 1
    assert [m["text"]["content"] for m in custom_sends(stand_in)] == [ENGINE_REPLY]


async def test_a_slow_red_answer_gives_the_numbers_now_and_the_answer_later(
    make_line: MakeLine, stand_in: StandIn
) -> None:
    """The crisis path may take longer than WeChat's five seconds: the child reads the numbers in the
    response that cannot wait, never `success` and silence."""
    line = make_line(FakeEngine(trigger_delay=0.6), passive_wait_seconds=0.1)
    await line.staff()
    msg_id = wx.new_msg_id()
    reply = reply_of(await send_text(line, RED, msg_id))
    assert reply.content == wechat.wechat_texts().red_first
    assert hotline_list() in reply.content and "12356" in reply.content
    assert (await stored_inbound(line, msg_id)).risk_level == "red"

    await line.deliver()
    assert [m["text"]["content"] for m in custom_sends(stand_in)] == [ENGINE_REPLY]


async def test_a_retry_of_a_red_message_still_being_answered_gets_the_numbers(
    make_line: MakeLine, stand_in: StandIn
) -> None:
    """WeChat retried because the first response did not reach it: the retry's response carries them."""
    line = make_line(FakeEngine(trigger_delay=0.8), passive_wait_seconds=2.0)
    await line.staff()
    body = wx.text_xml(RED, wx.new_msg_id())

    async def retry() -> Any:
        await asyncio.sleep(0.3)
        return await post(line, body, wx.signed_query())

    first, second = await asyncio.gather(post(line, body, wx.signed_query()), retry())
    assert reply_of(second).content == wechat.wechat_texts().red_first
    assert reply_of(first).content == wechat.wechat_texts().red_first  # superseded: the answer goes by API
    await line.deliver()
    assert len(line.engine.triggered) == 1
    assert [m["text"]["content"] for m in custom_sends(stand_in)] == [ENGINE_REPLY]


async def test_an_empty_text_gets_the_empty_text_answer(line: Line) -> None:
    reply = reply_of(await send_text(line, ""))
    assert reply.content == gateway_texts().errors.empty.format(limit=2000, hotline_list=hotline_list())
    assert line.engine.calls == []


async def test_a_retry_after_an_answer_in_the_response_gets_the_stored_reply_once(
    line: Line, stand_in: StandIn
) -> None:
    """WeChat retries only when it did not get the response in time, so the answer did not reach the
    user: it goes out through the API, once, however many retries come, and is not worked out again."""
    msg_id = wx.new_msg_id()
    assert reply_of(await send_text(line, HELLO, msg_id)).content == ENGINE_REPLY
    for _ in range(2):
        assert (await send_text(line, HELLO, msg_id)).text == "success"
    await line.deliver()
    assert len(line.engine.calls) == 1
    assert [m["text"]["content"] for m in custom_sends(stand_in)] == [ENGINE_REPLY]


# -- a captured query string used again ------------------------------------------------------------------
#
# WeChat's signature covers the token, the timestamp and the nonce, not the body: whoever sees one signed
# query string (a proxy's or a tunnel's log) could post any message, as anyone, until the timestamp is
# stale. A nonce is good for the one message it was first seen with, on every gateway of the store; WeChat's
# own retries (the same query string and the same message) are still redeliveries.

CAPTURED = {
    "another_text": lambda msg_id: wx.text_xml(RED, msg_id),
    "another_openid": lambda msg_id: wx.text_xml(HELLO, msg_id, openid=wx.OTHER_OPENID),
    "another_message": lambda _: wx.text_xml(RED, wx.new_msg_id(), openid=wx.OTHER_OPENID),
    "an_event": lambda _: wx.event_xml("subscribe"),
}


async def nonce_rows(line: Line) -> list[tuple[str, ...]]:
    async with line.sessions() as session:
        rows = await session.execute(text("SELECT * FROM wechat_nonce"))
        return [tuple(str(value) for value in row) for row in rows]


@pytest.mark.parametrize("kind", sorted(CAPTURED))
async def test_a_captured_query_string_with_another_body_is_refused_and_nothing_is_stored(
    line: Line, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    msg_id = wx.new_msg_id()
    query = wx.signed_query()
    assert reply_of(await post(line, wx.text_xml(HELLO, msg_id), query)).content == ENGINE_REPLY

    response = await post(line, CAPTURED[kind](msg_id), query)
    assert response.status == 403 and response.text == ""
    assert len(line.engine.calls) == 1 and await count(line, Message) == 2 and await count(line, Contact) == 1
    assert (await stored_inbound(line, msg_id)).text == HELLO
    assert "request refused with 403 (replayed_nonce)" in logged(caplog)
    # Only digests are kept, and nothing of the request reaches a log.
    kept = " ".join(" ".join(row) for row in await nonce_rows(line))
    for secret in (wx.OPENID, wx.OTHER_OPENID, query["nonce"], query["signature"], query["timestamp"]):
        assert secret not in kept and secret not in logged(caplog)


async def test_a_captured_query_string_is_refused_by_another_gateway_and_after_a_restart(
    make_line: MakeLine,
) -> None:
    first, second = make_line(), make_line()  # two gateways on one store; a restart is a new one too
    query = wx.signed_query()
    assert reply_of(await post(first, wx.text_xml(HELLO, wx.new_msg_id()), query)).content == ENGINE_REPLY
    forged = wx.text_xml(RED, wx.new_msg_id(), openid=wx.OTHER_OPENID)
    assert (await post(second, forged, query)).status == 403
    assert second.engine.calls == [] and await count(second, Message) == 2


async def test_wechats_own_retries_with_the_same_query_string_are_answered_once(
    line: Line, stand_in: StandIn
) -> None:
    """WeChat retries with the same signature, timestamp and nonce and the same message: a redelivery."""
    msg_id = wx.new_msg_id()
    query, body = wx.signed_query(), wx.text_xml(HELLO, msg_id)
    assert reply_of(await post(line, body, query)).content == ENGINE_REPLY
    for _ in range(2):
        retry = await post(line, body, query)
        assert retry.status == 200 and retry.text == "success"
    await line.deliver()
    assert len(line.engine.calls) == 1 and len(await nonce_rows(line)) == 1
    assert [m["text"]["content"] for m in custom_sends(stand_in)] == [ENGINE_REPLY]


async def test_a_retry_with_the_same_query_string_while_it_is_answered_is_answered_once(
    make_line: MakeLine, stand_in: StandIn
) -> None:
    line = make_line(FakeEngine(delay=0.6), passive_wait_seconds=0.1)
    query, body = wx.signed_query(), wx.text_xml(HELLO, wx.new_msg_id())
    responses = await asyncio.gather(*(post(line, body, query) for _ in range(3)))
    assert [r.text for r in responses] == ["success"] * 3
    await line.deliver()
    assert len(line.engine.calls) == 1 and await count(line, Message) == 2
    assert [m["text"]["content"] for m in custom_sends(stand_in)] == [ENGINE_REPLY]


async def test_the_handshakes_query_string_cannot_carry_a_message(line: Line) -> None:
    query = wx.signed_query(echostr="4821937465")
    for _ in range(2):  # WeChat's console may check the URL again with the same request
        _, echoed = await line.app.asgi_client.get(WEBHOOK, params=query)
        assert echoed.status == 200 and echoed.text == "4821937465"
    assert (await post(line, wx.text_xml(RED, wx.new_msg_id()), query)).status == 403
    assert line.engine.calls == [] and await count(line, Message) == 0 and await count(line, Contact) == 0


async def test_the_encrypted_mode_takes_a_nonce_once_and_its_retries_as_redeliveries(
    make_line: MakeLine, stand_in: StandIn
) -> None:
    line = make_line(encoding_aes_key=wx.AES_KEY)
    stamp, once, xml = int(time.time()), "a1b2c3d4e5", wx.text_xml(HELLO, wx.new_msg_id())
    query, body = wx.encrypted(xml, timestamp=stamp, nonce=once)
    assert (await post(line, body, query)).status == 200
    assert (await post(line, body, query)).text == "success"  # the very same request again
    # The same message encrypted again under the same timestamp and nonce: still WeChat's retry.
    again = wx.encrypted(xml, timestamp=stamp, nonce=once)
    assert again[1] != body and (await post(line, again[1], again[0])).text == "success"
    # Another message under that nonce, signed with the token (which a mere eavesdropper lacks).
    other = wx.encrypted(wx.text_xml(RED, wx.new_msg_id()), timestamp=stamp, nonce=once)
    assert (await post(line, other[1], other[0])).status == 403
    await line.deliver()
    assert len(line.engine.calls) == 1 and await count(line, Message) == 2
    assert [m["text"]["content"] for m in custom_sends(stand_in)] == [ENGINE_REPLY]


# -- other messages and events -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(wx.OTHER_MESSAGES))
async def test_pictures_voice_places_and_links_get_the_only_text_reply(line: Line, kind: str) -> None:
    reply = reply_of(await post(line, wx.other_xml(kind), wx.signed_query()))
    assert reply.target == wx.OPENID and reply.content == common_texts().only_text
    assert line.engine.calls == [] and await count(line, Message) == 0


async def test_following_gets_a_welcome_with_the_numbers_and_unfollowing_keeps_nothing(line: Line) -> None:
    welcome = reply_of(await post(line, wx.event_xml("subscribe"), wx.signed_query()))
    assert welcome.target == wx.OPENID and welcome.content == wechat.wechat_texts().welcome
    assert (
        "心桥" in welcome.content and "12356" in welcome.content and "{hotline_list}" not in welcome.content
    )
    by_code = reply_of(await post(line, wx.event_xml("subscribe", "qrscene_school42"), wx.signed_query()))
    assert by_code.content == welcome.content

    for event in (
        wx.event_xml("unsubscribe"),
        wx.event_xml("CLICK", "MENU_1"),
        wx.event_xml("some_new_event"),
    ):
        response = await post(line, event, wx.signed_query())
        assert response.status == 200 and response.text == "success"
    assert await count(line, Contact) == 0 and await count(line, Message) == 0 and line.engine.calls == []


# -- safety: the engine down, a red message, a counsellor ------------------------------------------------


async def test_with_the_engine_down_the_fail_safe_script_is_the_answer(make_line: MakeLine) -> None:
    line = make_line(FakeEngine(down=True))
    reply = reply_of(await send_text(line, HELLO))
    assert reply.target == wx.OPENID and failsafe_text() in reply.content and "12356" in reply.content


async def test_a_red_message_takes_the_crisis_path_and_pages_a_counsellor(line: Line) -> None:
    await line.staff()
    msg_id = wx.new_msg_id()
    reply = reply_of(await send_text(line, RED, msg_id))
    assert reply.target == wx.OPENID and reply.content == ENGINE_REPLY
    stored = await stored_inbound(line, msg_id)
    assert stored.risk_level == "red"
    assert line.engine.triggered and line.engine.triggered[0][0] == stored.conversation_id
    case = await line.case_of(stored.conversation_id)
    assert case.level == "red"
    assert [p for p in await line.pages() if p.case_id == case.id]


async def test_a_counsellors_reply_in_the_console_reaches_the_openid(line: Line, stand_in: StandIn) -> None:
    await line.staff()
    msg_id = wx.new_msg_id()
    await send_text(line, RED, msg_id)
    conversation = (await stored_inbound(line, msg_id)).conversation_id
    await line.counsellor_writes(conversation, "我是心理老师，我在。", "你现在安全吗？")
    assert custom_sends(stand_in) == [
        {"touser": wx.OPENID, "msgtype": "text", "text": {"content": "我是心理老师，我在。"}},
        {"touser": wx.OPENID, "msgtype": "text", "text": {"content": "你现在安全吗？"}},
    ]


async def test_outside_the_48_hour_window_the_failure_is_named_and_audited(
    make_line: MakeLine, stand_in: StandIn
) -> None:
    stand_in.answer(CUSTOM_SEND, (200, {"errcode": 45015, "errmsg": "response out of time limit"}))
    line = make_line()  # no retry can help: failed at the first attempt, whatever the retry limit
    await line.staff()
    msg_id = wx.new_msg_id()
    await send_text(line, RED, msg_id)
    await line.counsellor_writes((await stored_inbound(line, msg_id)).conversation_id, "我在。")
    async with line.sessions() as session:
        item = await session.scalar(select(OutboxItem).where(OutboxItem.kind == "deliver"))
        failed = await session.scalar(select(AuditEntry).where(AuditEntry.action == "delivery_failed"))
    assert item is not None and item.status == OutboxStatus.FAILED and item.attempts == 1
    assert item.last_error == "wechat:OutsideServiceWindow"
    assert failed is not None and failed.detail["error"] == "wechat:OutsideServiceWindow"
    assert wx.OPENID not in json.dumps(failed.detail, ensure_ascii=False)


async def test_an_api_fault_is_retried(line: Line, stand_in: StandIn) -> None:
    faults = iter([(200, {"errcode": -1, "errmsg": "system error"})])

    def flaky(_: Recorded) -> tuple[int, Any]:
        return next(faults, (200, {"errcode": 0, "errmsg": "ok"}))

    stand_in.answer(CUSTOM_SEND, flaky)
    await line.staff()
    msg_id = wx.new_msg_id()
    await send_text(line, RED, msg_id)
    await line.counsellor_writes((await stored_inbound(line, msg_id)).conversation_id, "我在。")
    async with line.sessions() as session:
        item = await session.scalar(select(OutboxItem).where(OutboxItem.kind == "deliver"))
        assert item is not None and item.status == OutboxStatus.PENDING and item.attempts == 1
        item.available_at = item.created_at  # due now instead of after the back-off
        await session.commit()
    await line.deliver()
    assert [m["text"]["content"] for m in custom_sends(stand_in)] == ["我在。", "我在。"]  # failed, then sent


# -- refusals and what is logged ---------------------------------------------------------------------------


MALFORMED = {
    "not_xml": b"this is not xml",
    "unclosed": b"<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName>",
    "empty": b"",
    "no_msgtype": wx.text_xml(HELLO, 1).replace("<MsgType><![CDATA[text]]></MsgType>", "").encode(),
    "no_sender": wx.text_xml(HELLO, 1)
    .replace(f"<FromUserName><![CDATA[{wx.OPENID}]]></FromUserName>", "")
    .encode(),
    "no_msgid": wx.text_xml(HELLO, 1).replace("<MsgId>1</MsgId>", "").encode(),
    "entity": b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><xml><MsgType>&e;</MsgType></xml>',
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
async def test_a_malformed_message_is_refused_with_400_and_logged_without_content(
    line: Line, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = await post(line, MALFORMED[kind], wx.signed_query())
    assert response.status == 400
    assert "request refused with 400 (malformed:" in logged(caplog)
    assert wx.OPENID not in logged(caplog) and HELLO not in logged(caplog)
    assert line.engine.calls == [] and await count(line, Message) == 0


async def test_an_oversize_request_is_refused_with_413(line: Line) -> None:
    response = await post(line, wx.text_xml("字" * 30_000, wx.new_msg_id()), wx.signed_query())
    assert response.status == 413
    assert line.engine.calls == []


async def test_no_openid_and_no_text_is_logged(
    make_line: MakeLine, stand_in: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    line = make_line(FakeEngine(delay=0.3), passive_wait_seconds=0.1)
    await line.staff()
    msg_id = wx.new_msg_id()
    await send_text(line, HELLO)  # answered later, through the API
    await send_text(line, RED, msg_id)
    await line.pages()
    await line.counsellor_writes((await stored_inbound(line, msg_id)).conversation_id, "我是心理老师，我在。")
    await post(line, wx.event_xml("subscribe"), wx.signed_query())
    await post(line, b"not xml", wx.signed_query())
    assert len(stand_in.sent_to(CUSTOM_SEND)) >= 2
    text = logged(caplog)
    assert "wechat: message" in text  # the channel did log, by message id
    assert "/cgi-bin/token" in text  # urllib3's debug lines are in, with the credentials blanked
    for secret in (
        wx.OPENID,
        HELLO,
        RED,
        "我是心理老师",
        ENGINE_REPLY,
        wx.APP_SECRET,
        wx.TOKEN,
        wx.ACCESS_TOKEN,
    ):
        assert secret not in text


# -- configuration -----------------------------------------------------------------------------------------


def test_the_channel_is_off_without_its_token_and_app_id(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TOKEN", "APP_ID", "APP_SECRET", "ENCODING_AES_KEY"):
        monkeypatch.delenv(f"XINQIAO_WECHAT_{name}", raising=False)
    assert wechat.from_environment() is None
    monkeypatch.setenv("XINQIAO_WECHAT_TOKEN", wx.TOKEN)
    assert wechat.from_environment() is None
    monkeypatch.setenv("XINQIAO_WECHAT_APP_ID", wx.APP_ID)
    with pytest.raises(ValueError, match="APP_SECRET"):
        wechat.from_environment()
    monkeypatch.setenv("XINQIAO_WECHAT_APP_SECRET", wx.APP_SECRET)
    plugin = wechat.from_environment()
    assert plugin is not None and plugin.name == "wechat" and plugin.sender is not None
    assert plugin.sender.channel == "wechat" and plugin.extra["channel"].crypto is None
    monkeypatch.setenv("XINQIAO_WECHAT_ENCODING_AES_KEY", "too-short")
    with pytest.raises(ValueError, match="ENCODING_AES_KEY"):
        wechat.from_environment()
    monkeypatch.setenv("XINQIAO_WECHAT_ENCODING_AES_KEY", wx.AES_KEY)
    assert wechat.from_environment().extra["channel"].crypto is not None  # type: ignore[union-attr]
