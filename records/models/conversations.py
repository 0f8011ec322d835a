"""Contacts, conversations and messages: who wrote (pseudonymously), on which thread, and every message."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from records.crypto import EncryptedText
from records.models.base import Base, UTCDateTime, new_id


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
    TO_COUNSELLOR = "to_counsellor"  # the conversation was held by a counsellor: theirs to answer
    SLOWED = "slowed"  # over its sender's rate limit: kept and screened, not sent to the engine


class Contact(Base):
    """A person who writes or calls, known only by a random id.

    The channel address (a phone number, a Telegram chat id) is encrypted at rest; `address_digest` is a
    keyed HMAC of it, so a returning sender is found without decrypting anything.
    """

    __tablename__ = "contact"
    __table_args__ = (UniqueConstraint("channel", "address_digest"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    channel: Mapped[str] = mapped_column(String(32))
    address_digest: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(EncryptedText)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())


class Conversation(Base):
    """One thread with one person on one channel. Its id is pseudonymous and is the engine's sender id."""

    __tablename__ = "conversation"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    channel: Mapped[str] = mapped_column(String(32))
    contact_id: Mapped[str | None] = mapped_column(ForeignKey("contact.id"), index=True)
    audience: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())
    # Set by every escalation. Updating this row first is the lock that makes escalations of one
    # conversation take turns, on SQLite (the write lock) and on PostgreSQL (the row lock) alike.
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Live handoff: the counsellor who holds the conversation now. While set, the user's messages go to
    # that counsellor and the bot is silent (its tracker is paused in the engine).
    held_by: Mapped[int | None] = mapped_column(ForeignKey("counsellor.id"))
    held_since: Mapped[datetime | None] = mapped_column(UTCDateTime)

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
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    conversation: Mapped[Conversation] = relationship(back_populates="messages")
