"""The case record: one per escalated conversation, with its staff, notes, referrals and follow-ups."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint, func, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from records.crypto import EncryptedText
from records.models.base import Base, UTCDateTime


class CaseStatus(enum.StrEnum):
    OPEN = "open"  # nobody has claimed it yet; the SLA watchdog is counting
    CLAIMED = "claimed"  # one counsellor holds it
    CLOSED = "closed"


class AssignmentRole(enum.StrEnum):
    LEAD = "lead"
    SECOND = "second"
    THIRD = "third"


class ReferralStatus(enum.StrEnum):
    PROPOSED = "proposed"
    ACCEPTED = "accepted"
    ATTENDED = "attended"
    CLOSED = "closed"


class FamilyContactStatus(enum.StrEnum):
    DUE = "due"  # 三包一: the family must be brought in
    DONE = "done"
    NOT_SAFE = "not_safe"  # abuse at home: contacting the family could put the child at risk
    UNREACHABLE = "unreachable"


OPEN_CASE = text("status <> 'closed'")


class Case(Base):
    """An escalated conversation. At most one open case per conversation (a partial unique index): a
    higher risk raises its level, it is never opened twice. Records the protocol version, the rule and the
    signal ids that opened or last raised it; never a word of the conversation."""

    __tablename__ = "case_record"
    __table_args__ = (
        Index(
            "uq_case_record_open_conversation",
            "conversation_id",
            unique=True,
            sqlite_where=OPEN_CASE,
            postgresql_where=OPEN_CASE,
        ),
        Index("ix_case_record_status_next_escalation", "status", "next_escalation_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversation.id"), index=True)
    level: Mapped[str] = mapped_column(String(8))
    level_rank: Mapped[int] = mapped_column()  # green 0 … red 3, for atomic raises and the queue's order
    status: Mapped[str] = mapped_column(String(16), default=CaseStatus.OPEN)
    audience: Mapped[str | None] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(8), default="self")  # self | other (a friend, a child)
    opened_reason: Mapped[str] = mapped_column(String(64))
    protocol_version: Mapped[str] = mapped_column(String(32))
    rule: Mapped[str | None] = mapped_column(String(64))
    signals: Mapped[list[str]] = mapped_column(JSON, default=list)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    raised_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    respond_by: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_by: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_escalation_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    escalation_stage: Mapped[int] = mapped_column(default=0)
    claimed_by: Mapped[int | None] = mapped_column(ForeignKey("counsellor.id"))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    outcome: Mapped[str | None] = mapped_column(String(64))

    assignments: Mapped[list[Assignment]] = relationship(
        back_populates="case", order_by="Assignment.id", cascade="all, delete-orphan", passive_deletes=True
    )


class Assignment(Base):
    """A counsellor following a case: lead, second, third (二包一 is lead + second; 三包一 adds a third)."""

    __tablename__ = "assignment"
    __table_args__ = (UniqueConstraint("case_id", "counsellor_id"), UniqueConstraint("case_id", "role"))

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case_record.id", ondelete="CASCADE"), index=True)
    counsellor_id: Mapped[int] = mapped_column(ForeignKey("counsellor.id"), index=True)
    role: Mapped[str] = mapped_column(String(8))
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime)

    case: Mapped[Case] = relationship(back_populates="assignments")


class Note(Base):
    """A counsellor's note on a case, encrypted at rest."""

    __tablename__ = "note"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case_record.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("counsellor.id"))
    body: Mapped[str] = mapped_column(EncryptedText)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())


class Referral(Base):
    """A referral to a place in the directory (school counselling room, district centre, hospital)."""

    __tablename__ = "referral"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case_record.id", ondelete="CASCADE"), index=True)
    entry_id: Mapped[str] = mapped_column(String(64))  # triage_protocols/directory entry id
    entry_kind: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=ReferralStatus.PROPOSED)
    proposed_by: Mapped[int | None] = mapped_column(ForeignKey("counsellor.id"))
    proposed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class FollowUp(Base):
    """A dated task on a case: a check-in, a referral's follow-up, a step of the return-to-school plan.
    One not done by `due_at` is paged to the case's staff once (`overdue_paged_at`)."""

    __tablename__ = "follow_up"
    __table_args__ = (Index("ix_follow_up_due_open", "done_at", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case_record.id", ondelete="CASCADE"), index=True)
    referral_id: Mapped[int | None] = mapped_column(ForeignKey("referral.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))  # check_in | referral | return_to_school
    plan_step: Mapped[int | None] = mapped_column()  # index into the protocol's follow-up plan
    # the plan step's or the counsellor's words, for staff; encrypted, as they may name people
    what: Mapped[str | None] = mapped_column(EncryptedText)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    done_by: Mapped[int | None] = mapped_column(ForeignKey("counsellor.id"))
    overdue_paged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class FamilyContact(Base):
    """三包一: the task of bringing the family in, and its record. The summary is encrypted at rest."""

    __tablename__ = "family_contact"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case_record.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=FamilyContactStatus.DUE)
    due_by: Mapped[datetime | None] = mapped_column(UTCDateTime)
    relation: Mapped[str | None] = mapped_column(String(32))  # 母亲, 父亲, 祖母 …
    counsellor_id: Mapped[int | None] = mapped_column(ForeignKey("counsellor.id"))
    summary: Mapped[str | None] = mapped_column(EncryptedText)
    contacted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
