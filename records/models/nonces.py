"""The nonces of signed webhook requests seen lately (WeChat's), so a captured query string is good once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from records.models.base import Base, UTCDateTime


class WeChatNonce(Base):
    """One signed (timestamp, nonce) pair WeChat used, and a digest of the message it carried.

    `nonce_digest` is unique, so two gateways that meet the same query string at once are decided by the
    database, not by timing. `body_digest` tells WeChat's own retry (the same message again) from another
    message under a captured signature. Both are keyed digests: no nonce, openid or text is kept. A row is
    purged once `expires_at` has passed, when its timestamp is too old to be accepted anyway.
    """

    __tablename__ = "wechat_nonce"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    nonce_digest: Mapped[str] = mapped_column(String(64), unique=True)
    body_digest: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
