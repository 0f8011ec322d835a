"""Typed SQLAlchemy models. The schema itself is built by the Alembic migrations, never by create_all."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, MetaData, String, Text, UniqueConstraint, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Direction(enum.StrEnum):
    INBOUND = "in"
    OUTBOUND = "out"


class Author(enum.StrEnum):
    USER = "user"
    BOT = "bot"
    COUNSELLOR = "counsellor"
    SYSTEM = "system"  # fail-safe script and other replies the gateway writes itself


class InboundStatus(enum.StrEnum):
    """Where an inbound message is in its life. Only `answered` is final for the engine path."""

    RECEIVED = "received"
    ANSWERED = "answered"
    RETRY_PENDING = "retry_pending"  # the engine did not answer; the user got the fail-safe script
    GAVE_UP = "gave_up"  # retried until the limit; a human must read it


def new_id() -> str:
    return uuid.uuid4().hex


class Conversation(Base):
    """One thread with one person on one channel. Its id is pseudonymous and is the engine's sender id."""

    __tablename__ = "conversation"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    channel: Mapped[str] = mapped_column(String(32))
    audience: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    messages: Mapped[list[Message]] = relationship(back_populates="conversation", order_by="Message.id")


class Message(Base):
    """Every message in either direction, stored before it is processed."""

    __tablename__ = "message"
    __table_args__ = (
        UniqueConstraint("channel", "external_id"),
        Index("ix_message_status_created", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversation.id"), index=True)
    direction: Mapped[str] = mapped_column(String(3))
    author: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str | None] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # buttons and other rich parts of a reply
    status: Mapped[str | None] = mapped_column(String(16))  # inbound only, see InboundStatus
    attempts: Mapped[int] = mapped_column(default=0)
    reply_to_id: Mapped[int | None] = mapped_column(ForeignKey("message.id"), index=True)
    # Inbound only: the triage assessment made before the engine saw the message (level, rule, signal
    # ids and spans, protocol version; never a copy of the words), so every decision can be traced.
    risk_level: Mapped[str | None] = mapped_column(String(8), index=True)
    assessment: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    conversation: Mapped[Conversation] = relationship(back_populates="messages")


class AuditEntry(Base):
    """Append-only: who did what to which record, and when. Holds ids and codes, never message text."""

    __tablename__ = "audit_entry"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(64), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
