"""Once-only nonces for WeChat's signed requests, kept in the store so every gateway, and a restarted one,
agrees on what was seen.

WeChat signs a request's query string (token, timestamp, nonce) but not its body, so a captured query
string would carry any message, from any openid, until its timestamp is stale. Here a (timestamp, nonce)
is bound to the first message it carried: the same message again is WeChat's own retry (answered from the
store, as any redelivery), another message is a replay. The unique digest decides when two gateways meet
the same nonce at once. Only keyed digests (HMAC-SHA256 under XINQIAO_LOOKUP_KEY) are stored, so a row
says nothing about a child, and rows are purged once their timestamp is past the window.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from records.crypto import keyring
from records.models import WeChatNonce, utcnow


class Seen(enum.StrEnum):
    FIRST = "first"  # never seen before: recorded now
    AGAIN = "again"  # seen with this very message: the provider's retry, a redelivery
    REPLAYED = "replayed"  # seen with another message: a captured signature, refused


def _digest(purpose: str, value: str) -> str:
    """Keyed, and separated by purpose, so no digest here equals a contact's address digest."""
    message = f"wechat-{purpose}\x00{value}".encode()
    return hmac.new(keyring().lookup_key, message, hashlib.sha256).hexdigest()


async def seen(
    session: AsyncSession, *, timestamp: str, nonce: str, message: str, expires_at: datetime
) -> Seen:
    """Whether this signed (timestamp, nonce) was seen before, and with `message` (the request's content
    in a canonical form). Records it when it is new, until `expires_at`. Commits."""
    key = _digest("nonce", f"{timestamp}\x00{nonce}")
    body = _digest("message", message)
    query = select(WeChatNonce.body_digest).where(WeChatNonce.nonce_digest == key)
    found = await session.scalar(query)
    if found is None:
        session.add(WeChatNonce(nonce_digest=key, body_digest=body, expires_at=expires_at))
        try:
            await session.commit()
            return Seen.FIRST
        except IntegrityError:  # another gateway (or a concurrent retry) recorded it first
            await session.rollback()
            found = await session.scalar(query)
    # A row gone meanwhile was purged: its timestamp is past the window, so the request is refused too.
    return Seen.AGAIN if found is not None and hmac.compare_digest(found, body) else Seen.REPLAYED


async def purge(session: AsyncSession, *, now: datetime | None = None) -> int:
    """Forgets the nonces whose timestamps are past the window (they are refused as stale anyway).
    Commits; returns how many were removed."""
    removed = await session.execute(
        delete(WeChatNonce)
        .where(WeChatNonce.expires_at < (now or utcnow()))
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    return int(removed.rowcount or 0)
