"""What WeChat posts to an Official Account's server, as its documentation shows it (消息管理: 接收普通消息,
接收事件推送), signed as WeChat signs it (sha1 over the sorted token, timestamp and nonce, with wechatpy's
own signer), and the encrypted ("safe") mode's envelope made with wechatpy's `WeChatCrypto`."""

from __future__ import annotations

import base64
import time
import uuid

import xmltodict
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import WeChatSigner

TOKEN = "xinqiao-test-token"
APP_ID = "wx0123456789abcdef"
APP_SECRET = "test-app-secret"
ACCOUNT = "gh_0123456789ab"  # the account's original id: ToUserName of what users send
OPENID = "oXQ1n5test0penidABCDEFGHIJK"  # the user, as the account sees them
AES_KEY = base64.b64encode(bytes(range(32))).decode().rstrip("=")  # 43 characters, as WeChat shows it
ACCESS_TOKEN = "test-access-token"


def _xml(msg_type: str, fields: str, openid: str = OPENID, created: int | None = None) -> str:
    return (
        "<xml>"
        f"<ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{created or int(time.time())}</CreateTime>"
        f"<MsgType><![CDATA[{msg_type}]]></MsgType>"
        f"{fields}"
        "</xml>"
    )


def new_msg_id() -> int:
    return uuid.uuid4().int >> 65  # a 63-bit number, like WeChat's MsgId


def text_xml(content: str, msg_id: int, openid: str = OPENID) -> str:
    return _xml("text", f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId>", openid)


OTHER_OPENID = "oXQ1n5someone0elseZYXWVUTSRQ"  # another user, as an attacker would name one


# The other kinds of message a user can send, with the fields the documentation lists.
OTHER_MESSAGES = {
    "image": "<PicUrl><![CDATA[http://mmbiz.qpic.cn/test]]></PicUrl><MediaId><![CDATA[media_id]]></MediaId>",
    "voice": "<MediaId><![CDATA[media_id]]></MediaId><Format><![CDATA[amr]]></Format>",
    "video": "<MediaId><![CDATA[media_id]]></MediaId><ThumbMediaId><![CDATA[thumb]]></ThumbMediaId>",
    "shortvideo": "<MediaId><![CDATA[media_id]]></MediaId><ThumbMediaId><![CDATA[thumb]]></ThumbMediaId>",
    "location": (
        "<Location_X>39.915</Location_X><Location_Y>116.404</Location_Y><Scale>15</Scale>"
        "<Label><![CDATA[位置信息]]></Label>"
    ),
    "link": (
        "<Title><![CDATA[公众平台官网链接]]></Title><Description><![CDATA[公众平台官网链接]]></Description>"
        "<Url><![CDATA[https://mp.weixin.qq.com]]></Url>"
    ),
}


def other_xml(msg_type: str) -> str:
    return _xml(msg_type, f"{OTHER_MESSAGES[msg_type]}<MsgId>{new_msg_id()}</MsgId>")


def event_xml(event: str, event_key: str | None = None) -> str:
    key = f"<EventKey><![CDATA[{event_key}]]></EventKey>" if event_key is not None else ""
    return _xml("event", f"<Event><![CDATA[{event}]]></Event>{key}")


def signature(token: str, timestamp: str, nonce: str) -> str:
    signer = WeChatSigner()
    signer.add_data(token, timestamp, nonce)
    return signer.signature


def signed_query(
    token: str = TOKEN, *, timestamp: int | None = None, nonce: str | None = None, **extra: str
) -> dict[str, str]:
    """The query WeChat puts on its POST (and on the handshake, with `echostr`). It names the openid too."""
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    once = nonce or uuid.uuid4().hex[:10]
    return {
        "signature": signature(token, stamp, once),
        "timestamp": stamp,
        "nonce": once,
        "openid": OPENID,
        **extra,
    }


def encrypted(
    xml: str,
    *,
    token: str = TOKEN,
    key: str = AES_KEY,
    app_id: str = APP_ID,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> tuple[dict[str, str], str]:
    """The query and body of the encrypted mode: the message encrypted and signed (`msg_signature`) by
    wechatpy's WeChatCrypto, in the envelope WeChat posts (ToUserName and Encrypt). Each call encrypts
    afresh (a random prefix), so the same message under the same timestamp and nonce gives another
    envelope, as a retry encrypted again would."""
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    once = nonce or uuid.uuid4().hex[:10]
    envelope = xmltodict.parse(WeChatCrypto(token, key, app_id).encrypt_message(xml, once, stamp))["xml"]
    body = (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
        f"<Encrypt><![CDATA[{envelope['Encrypt']}]]></Encrypt></xml>"
    )
    query = signed_query(token, timestamp=int(stamp), nonce=once, encrypt_type="aes")
    return {**query, "msg_signature": envelope["MsgSignature"]}, body
