"""Counsellors and their on-call shifts: who can be paged, and when."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from records.crypto import EncryptedText
from records.models.base import Base, UTCDateTime


class CounsellorRole(enum.StrEnum):
    VOLUNTEER = "volunteer"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


class Counsellor(Base):
    """A member of staff. `handle` is the sign-in name; the address pages go to is encrypted at rest.

    `page_channel` names the sender that reaches them besides the console (`log` until SMS and Telegram
    senders are configured)."""

    __tablename__ = "counsellor"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    handle: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16), default=CounsellorRole.VOLUNTEER)
    active: Mapped[bool] = mapped_column(default=True)
    page_channel: Mapped[str] = mapped_column(String(16), default="log")
    page_address: Mapped[str | None] = mapped_column(EncryptedText)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # failures since the last success (kept for the record). `locked_until` is no longer set: lockouts are
    # by device and by source, in the gateway's memory (integrations/limits.py, FailureLockout), so that
    # nobody can lock a counsellor out and a made-up handle is answered like a real one
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())


class Shift(Base):
    """A counsellor on call from `starts_at` until `ends_at`. Supervisors have shifts too."""

    __tablename__ = "shift"
    __table_args__ = (Index("ix_shift_window", "starts_at", "ends_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    counsellor_id: Mapped[int] = mapped_column(ForeignKey("counsellor.id", ondelete="CASCADE"), index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
