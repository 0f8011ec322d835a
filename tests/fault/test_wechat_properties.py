"""Property tests of the WeChat webhook, plain and encrypted mode, in-process on a migrated SQLite store
with WeChat's API as a loopback stand-in. Requests are signed as WeChat signs them (wechatpy's signer; the
encrypted mode's envelope made by wechatpy's WeChatCrypto), each with a fresh nonce, from a new openid;
the words are any text XML can carry (in CDATA, "]]>" split as WeChat's own SDKs do), and raw bodies of
any shape. Each answer is 200 (a reply or `success`), 400 for a body that is not a message, 403 for a
bad signature, never a 5xx; red or orange words are stored once with their case, and the writer of red
words reads the numbers in the response."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import xmltodict
from hypothesis import given
from hypothesis import strategies as st
from sanic import Sanic
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto

from integrations.channels import wechat
from tests.channels import wechat_payloads as wx
from tests.channels.line import Line, line_for
from tests.channels.standin import StandIn, running_stand_in
from tests.fault import support
from tests.fault.conftest import Forbidden
from tests.fault.support import Runner, Store, examples
from tests.unit.fakes import FakeEngine

Sanic.test_mode = True

WEBHOOK = "/wechat/webhook"
# What XML 1.0 cannot hold at all, even in CDATA: WeChat never sends it (see test_wechat_xml_limits below).
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
OPENIDS = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=27, max_size=27
).map(lambda s: "o" + s)


def cdata(text: str) -> str:
    return text.replace("]]>", "]]]]><![CDATA[>")


class WeChatLine:
    def __init__(self, url: str, stand_in: StandIn, forbidden: Forbidden) -> None:
        self.runner = Runner()
        self.store = Store(url)
        self.lines: dict[str, Line] = {}
        for mode, key in (("plain", None), ("aes", wx.AES_KEY)):
            settings = wechat.WeChatSettings(
                token=wx.TOKEN,
                app_id=wx.APP_ID,
                app_secret=wx.APP_SECRET,
                api_base_url=stand_in.url,
                encoding_aes_key=key,
            )  # type: ignore[arg-type]
            self.lines[mode] = line_for(
                url,
                self.store.sessions,
                wechat.plugin_for(settings),
                engine=FakeEngine(),
                rasa_token=support.RASA_TOKEN,
                session_secret=support.SESSION_SECRET,
                engine_timeout_seconds=1.0,
            )
        self.forbidden = forbidden
        forbidden.add("WeChat token", wx.TOKEN)
        forbidden.add("WeChat AppSecret", wx.APP_SECRET)
        forbidden.add("WeChat access token", wx.ACCESS_TOKEN)
        forbidden.add("WeChat EncodingAESKey", wx.AES_KEY)
        forbidden.add("WeChat openid", wx.OPENID)
        forbidden.add("Rasa token", support.RASA_TOKEN)
        forbidden.add("session secret", support.SESSION_SECRET)
        for text in support.RED_TEXTS:
            forbidden.add("red text", text)

    def secrets(self, query: dict[str, str]) -> list[str]:
        return [
            wx.TOKEN,
            wx.APP_SECRET,
            wx.ACCESS_TOKEN,
            wx.AES_KEY,
            support.RASA_TOKEN,
            support.SESSION_SECRET,
            query.get("signature", ""),
            query.get("msg_signature", ""),
        ]

    async def post(self, mode: str, body: bytes, query: dict[str, str]) -> Any:
        self.forbidden.add("WeChat signature", query.get("signature", ""), query.get("msg_signature", ""))
        app = self.lines[mode].app
        app.ctx.channel_sender_limiter = None  # a new rate window each example
        _, response = await app.asgi_client.post(WEBHOOK, params=query, content=body)
        support.assert_no_bare_5xx(response)
        assert response.status < 500, f"WeChat's webhook answered {response.status}: {response.text[:300]}"
        support.assert_no_secret(response, self.secrets(query))
        return response

    def close(self) -> None:
        self.runner.run(self.store.close())
        self.runner.close()


@pytest.fixture
def chat(db: str, forbidden: Forbidden) -> Iterator[WeChatLine]:
    for stand_in in running_stand_in():
        stand_in.answer("/cgi-bin/token", (200, {"access_token": wx.ACCESS_TOKEN, "expires_in": 7200}))
        stand_in.answer("/cgi-bin/message/custom/send", (200, {"errcode": 0, "errmsg": "ok"}))
        made = WeChatLine(db, stand_in, forbidden)
        yield made
        made.close()


def signed(
    mode: str, xml: str, *, nonce: str | None = None, timestamp: int | None = None
) -> tuple[dict[str, str], bytes]:
    """The query and body WeChat posts for `xml` in the mode: plain (signed query) or encrypted."""
    if mode == "aes":
        query, body = wx.encrypted(xml, nonce=nonce, timestamp=timestamp)
        return query, body.encode()
    return wx.signed_query(nonce=nonce, timestamp=timestamp), xml.encode("utf-8", "surrogatepass")


def reply_text(mode: str, response: Any) -> str:
    """The passive reply's words ("" for `success`)."""
    assert response.status == 200, (response.status, response.text)
    if response.body.strip() in (b"success", b""):
        return ""
    xml = response.body
    if mode == "aes":
        envelope = xmltodict.parse(xml)["xml"]
        xml = WeChatCrypto(wx.TOKEN, wx.AES_KEY, wx.APP_ID).decrypt_message(
            xml, envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"]
        )
    return parse_message(xml).content or ""


def xml_text() -> st.SearchStrategy[str]:
    """Any text, but for what XML cannot carry."""
    return support.texts().map(lambda text: NOT_XML.sub("", text))


def test_any_text_message_is_kept_and_answered(chat: WeChatLine) -> None:
    @examples(14)
    @given(
        mode=st.sampled_from(["plain", "aes"]),
        openid=OPENIDS,
        content=st.one_of(xml_text(), support.red_mixed().map(lambda t: NOT_XML.sub("", t))),
    )
    def check(mode: str, openid: str, content: str) -> None:
        chat.forbidden.add("WeChat openid", openid)
        chat.forbidden.add_text(content)
        chat.forbidden.add_text(support.cleaned(content))
        chat.runner.run(send_and_check(chat, mode, openid, content))

    check()


async def send_and_check(chat: WeChatLine, mode: str, openid: str, content: str) -> None:
    msg_id = wx.new_msg_id()
    xml = wx.text_xml(cdata(content), msg_id, openid)
    query, body = signed(mode, xml)
    answer = reply_text(mode, await chat.post(mode, body, query))
    words = support.cleaned(content)
    level = support.escalating(words, "student")
    if level is None:
        return
    rows = await chat.store.inbound("wechat", str(msg_id))
    assert len(rows) == 1, f"{len(rows)} rows for {level} words {words!r}"
    assert await chat.store.cases_of(rows[0].conversation_id), f"no case for {level} words {words!r}"
    if level == "red":
        assert support.has_numbers(answer), f"red words {words!r} answered without the numbers: {answer!r}"
    # WeChat retries with the same query and body (encrypted anew in the encrypted mode): one row
    again = await chat.post(mode, body, query)
    assert again.status == 200, again.text
    assert len(await chat.store.inbound("wechat", str(msg_id))) == 1


def test_red_words_in_garbage_are_never_lost(chat: WeChatLine) -> None:
    @examples(8)
    @given(mode=st.sampled_from(["plain", "aes"]), openid=OPENIDS, content=support.red_mixed())
    def check(mode: str, openid: str, content: str) -> None:
        content = NOT_XML.sub("", content)
        chat.forbidden.add("WeChat openid", openid)
        chat.forbidden.add_text(support.cleaned(content))
        chat.runner.run(send_and_check(chat, mode, openid, content))

    check()


def raw_bodies() -> st.SearchStrategy[bytes]:
    fields = st.fixed_dictionaries(
        {
            "ToUserName": support.field(support.GARBAGE),
            "FromUserName": support.field(st.one_of(OPENIDS, support.GARBAGE)),
            "CreateTime": support.field(st.integers(-(2**70), 2**70).map(str)),
            "MsgType": support.field(st.sampled_from(["text", "image", "event", "voice", "", "x" * 300])),
            "Content": support.field(support.texts()),
            "MsgId": support.field(st.one_of(st.integers(-(2**70), 2**70).map(str), support.GARBAGE)),
            "Event": support.field(st.sampled_from(["subscribe", "unsubscribe", "CLICK", "SCAN"])),
        }
    ).map(support.without_missing)

    def to_xml(values: dict[str, Any]) -> bytes:
        inner = "".join(f"<{k}><![CDATA[{cdata(str(v))}]]></{k}>" for k, v in values.items())
        return f"<xml>{inner}</xml>".encode("utf-8", "surrogatepass")

    return st.one_of(
        support.MALFORMED_BODIES,
        fields.map(to_xml),
        st.sampled_from(
            [
                b"<xml></xml>",
                b"<xml>",
                b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'aaaa'>]><xml>&a;</xml>",
                b"<xml><Encrypt><![CDATA[AAAA]]></Encrypt></xml>",
                b"<xml><Encrypt>not base64!</Encrypt></xml>",
            ]
        ),
    )


def test_any_body_with_a_good_signature_is_answered_or_refused(chat: WeChatLine) -> None:
    @examples(20)
    @given(mode=st.sampled_from(["plain", "aes"]), body=raw_bodies(), msg_signature=st.booleans())
    def check(mode: str, body: bytes, msg_signature: bool) -> None:
        query = wx.signed_query()
        if mode == "aes":
            query["encrypt_type"] = "aes"
            if msg_signature:
                query["msg_signature"] = uuid.uuid4().hex
        response = chat.runner.run(chat.post(mode, body, query))
        assert response.status in (200, 400, 403, 413), (response.status, response.text)

    check()


def test_a_bad_signature_is_refused_before_anything_is_kept(chat: WeChatLine) -> None:
    @examples(8)
    @given(
        mode=st.sampled_from(["plain", "aes"]),
        query=st.dictionaries(
            st.sampled_from(["signature", "timestamp", "nonce", "openid", "encrypt_type", "msg_signature"]),
            support.GARBAGE_NO_SURROGATE,
            max_size=6,
        ),
    )
    def check(mode: str, query: dict[str, str]) -> None:
        async def go() -> None:
            before = await chat.store.count_inbound()
            xml = wx.text_xml(support.RED_TEXTS[0], wx.new_msg_id())
            response = await chat.post(mode, xml.encode(), query)
            assert response.status in (400, 403), response.text
            assert await chat.store.count_inbound() == before

        chat.runner.run(go())

    check()


def test_any_text_xml_cannot_carry_is_refused_or_kept_never_a_5xx(chat: WeChatLine) -> None:
    """Control characters and lone surrogates written into the XML itself (bytes no XML parser accepts)."""

    @examples(10)
    @given(openid=OPENIDS, content=support.texts())
    def check(openid: str, content: str) -> None:
        chat.forbidden.add("WeChat openid", openid)
        chat.forbidden.add_text(support.cleaned(content))
        xml = wx.text_xml(cdata(content), wx.new_msg_id(), openid)
        query, body = signed("plain", xml)
        response = chat.runner.run(chat.post("plain", body, query))
        assert response.status in (200, 400, 413), (response.status, response.text)

    check()


@pytest.mark.parametrize("odd", ["\x0b", "\x08", "\ud83d", "\ufffe"])
def test_wechat_xml_limits_red_words_with_a_character_xml_cannot_hold(chat: WeChatLine, odd: str) -> None:
    """Red words followed by a character that XML 1.0 forbids, written raw into the body."""
    openid = "o" + uuid.uuid4().hex[:27]
    chat.forbidden.add("WeChat openid", openid)

    async def go() -> None:
        msg_id = wx.new_msg_id()
        xml = wx.text_xml(support.RED_TEXTS[0] + odd, msg_id, openid)
        query, body = signed("plain", xml)
        response = await chat.post("plain", body, query)
        assert response.status == 200, (response.status, response.text)
        assert len(await chat.store.inbound("wechat", str(msg_id))) == 1

    chat.runner.run(go())


def test_the_handshake_echoes_only_when_signed(chat: WeChatLine) -> None:
    @examples(10)
    @given(
        mode=st.sampled_from(["plain", "aes"]),
        echostr=support.GARBAGE_NO_SURROGATE,
        good=st.booleans(),
    )
    def check(mode: str, echostr: str, good: bool) -> None:
        async def go() -> None:
            query = wx.signed_query(echostr=echostr)
            if not good:
                query["signature"] = uuid.uuid4().hex
            app = chat.lines[mode].app
            _, response = await app.asgi_client.get(WEBHOOK, params=query)
            support.assert_no_bare_5xx(response)
            support.assert_no_secret(response, chat.secrets(query))
            if good:
                assert response.status == 200, response.text
            else:
                assert response.status == 403 and response.body == b"", response.text

        chat.runner.run(go())

    check()
