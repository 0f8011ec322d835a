"""The outbox: whatever must be sent because of a change is written in the same transaction as the change."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from records.models.base import Base, UTCDateTime


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"  # leased by one dispatcher until lease_until; taken back after it
    SENT = "sent"
    FAILED = "failed"  # retried up to the limit; a supervisor must look


class OutboxItem(Base):
    """One page for one counsellor, or one message for one user (records/deliveries.py).

    `dedupe_key` is unique: the same page for the same recipient is written once however many
    escalations race. The payload holds ids and codes only (case id, level, reason, deadline).
    """

    __tablename__ = "outbox_item"
    __table_args__ = (
        Index("ix_outbox_item_status_available", "status", "available_at"),
        Index("ix_outbox_item_topic_id", "topic", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    dedupe_key: Mapped[str] = mapped_column(String(160), unique=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("case_record.id", ondelete="CASCADE"), index=True)
    counsellor_id: Mapped[int | None] = mapped_column(ForeignKey("counsellor.id", ondelete="SET NULL"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Items with the same topic (the messages to one user: their conversation id) are sent strictly one
    # after another, in order; an item waits while an earlier one of its topic is pending or sending.
    topic: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_via: Mapped[list[str]] = mapped_column(JSON, default=list)
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
