"""Typed SQLAlchemy models, one module per part of the record. The schema itself is built by the Alembic
migrations, never by create_all; this package re-exports every model so callers import from one place."""

from records.models.audit_log import AuditEntry
from records.models.base import Base, UTCDateTime, new_id, utcnow
from records.models.cases import (
    Assignment,
    AssignmentRole,
    Case,
    CaseStatus,
    FamilyContact,
    FamilyContactStatus,
    FollowUp,
    Note,
    Referral,
    ReferralStatus,
)
from records.models.conversations import Author, Contact, Conversation, Direction, InboundStatus, Message
from records.models.nonces import WeChatNonce
from records.models.outbox import OutboxItem, OutboxStatus
from records.models.staff import Counsellor, CounsellorRole, Shift

__all__ = [
    "Assignment",
    "AssignmentRole",
    "AuditEntry",
    "Author",
    "Base",
    "Case",
    "CaseStatus",
    "Contact",
    "Conversation",
    "Counsellor",
    "CounsellorRole",
    "Direction",
    "FamilyContact",
    "FamilyContactStatus",
    "FollowUp",
    "InboundStatus",
    "Message",
    "Note",
    "OutboxItem",
    "OutboxStatus",
    "Referral",
    "ReferralStatus",
    "Shift",
    "UTCDateTime",
    "WeChatNonce",
    "new_id",
    "utcnow",
]
