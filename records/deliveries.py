"""Messages to a user that no webhook is waiting for: a counsellor's words, the hand-back to the bot, an
answer the engine gave on a retry. They go to the outbox in the same transaction as the message, and the
gateway's delivery dispatcher sends them on the user's channel (Telegram, SMS, WeChat) with retries.

Only conversations with a contact are pushed to: the web chat has no address and fetches its later
replies itself. The outbox item holds ids only; the address is read, and decrypted, when it is sent.

What became of each pushed message is read back from its outbox item (`delivery_states`), so the console
shows a counsellor whether their words reached the child; a final failure is also told at once, to the
people who must reach the child another way (`failed_deliveries`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from records import outbox
from records.models import (
    Assignment,
    Case,
    Contact,
    Conversation,
    Message,
    OutboxItem,
    OutboxStatus,
    utcnow,
)

DELIVER = "deliver"

# What the console shows under a pushed message.
PENDING = "pending"  # waiting, being sent, or waiting for a retry (`attempts` failed so far)
SENT = "sent"  # the channel took it
FAILED = "failed"  # failed for good: someone must reach the child another way
_STATE_OF = {
    OutboxStatus.PENDING: PENDING,
    OutboxStatus.SENDING: PENDING,
    OutboxStatus.SENT: SENT,
    OutboxStatus.FAILED: FAILED,
}
# Before a channel without a sender counted as a failure, such a message was recorded as sent through
# "<channel>:unconfigured": it never went out, and is shown as failed.
UNCONFIGURED = ":unconfigured"


def dedupe_key(message_id: int) -> str:
    return f"{DELIVER}:{message_id}"


async def push(session: AsyncSession, message: Message) -> bool:
    """Queues an outbound message for its user's channel, in the caller's transaction. True when queued;
    False for a conversation without a contact, or a message already queued."""
    contact_id = await session.scalar(
        select(Conversation.contact_id).where(Conversation.id == message.conversation_id)
    )
    if contact_id is None:
        return False
    if message.id is None:
        await session.flush()
    now = utcnow()
    return await outbox.add_once(
        session,
        kind=DELIVER,
        dedupe_key=dedupe_key(message.id),
        topic=message.conversation_id,
        payload={"message_id": message.id, "conversation_id": message.conversation_id},
        available_at=now,
        created_at=now,
    )


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message ready to send. `address` is decrypted: hand it to the channel's library, never to a log."""

    outbox_id: int
    message_id: int
    conversation_id: str
    channel: str
    text: str
    address: str = field(repr=False)


async def deliveries_for(session: AsyncSession, items: list[OutboxItem]) -> dict[int, Delivery]:
    """The leased items' messages with their users' addresses, by outbox id. An item whose message or
    contact is gone (purged) is left out; the caller marks it sent with nothing to send."""
    message_ids = {int(item.payload["message_id"]): item.id for item in items}
    rows = await session.execute(
        select(Message, Contact)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .join(Contact, Contact.id == Conversation.contact_id)
        .where(Message.id.in_(message_ids))
    )
    return {
        message_ids[message.id]: Delivery(
            outbox_id=message_ids[message.id],
            message_id=message.id,
            conversation_id=message.conversation_id,
            channel=contact.channel,
            text=message.text,
            address=contact.address,
        )
        for message, contact in rows
    }


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """What became of one pushed message. `error` (failed only) is a code such as `sms:Timeout` or
    `wechat:unconfigured`: a channel and a class name, never an address or a text."""

    state: str
    attempts: int
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"state": self.state, "attempts": self.attempts, "error": self.error}


async def delivery_states(session: AsyncSession, message_ids: Iterable[int]) -> dict[int, DeliveryState]:
    """The delivery state of each message that was pushed to its user's channel, by message id, in one
    query (on the outbox's unique dedupe key). A message never pushed (the web chat, the child's own
    words) is left out."""
    wanted = {dedupe_key(message_id): message_id for message_id in message_ids}
    if not wanted:
        return {}
    rows = await session.execute(
        select(
            OutboxItem.dedupe_key,
            OutboxItem.status,
            OutboxItem.attempts,
            OutboxItem.last_error,
            OutboxItem.delivered_via,
        ).where(OutboxItem.dedupe_key.in_(wanted))
    )
    states: dict[int, DeliveryState] = {}
    for key, status, attempts, last_error, via in rows:
        state = _STATE_OF.get(status, PENDING)
        error = last_error if state == FAILED else None
        unconfigured = [channel for channel in via or [] if str(channel).endswith(UNCONFIGURED)]
        if state == SENT and unconfigured:
            state, error = FAILED, str(unconfigured[0])
        states[wanted[key]] = DeliveryState(state, attempts, error)
    return states


@dataclass(frozen=True, slots=True)
class FailedDelivery:
    """A message to a user that failed for good, ids only. `counsellor_ids` are those to tell at once:
    whoever holds the conversation, the counsellor who wrote the message, and the case's staff."""

    conversation_id: str
    message_id: int
    case_id: int | None
    counsellor_ids: frozenset[int]


async def failed_deliveries(session: AsyncSession, items: Sequence[OutboxItem]) -> list[FailedDelivery]:
    """Who must hear of these `deliver` items that failed for good, in their order. The case is the
    conversation's newest (its open one, if it has one)."""
    wanted = [(int(item.payload["message_id"]), str(item.payload["conversation_id"])) for item in items]
    if not wanted:
        return []
    conversation_ids = {conversation_id for _, conversation_id in wanted}
    holders = dict(
        (
            await session.execute(
                select(Conversation.id, Conversation.held_by).where(Conversation.id.in_(conversation_ids))
            )
        ).all()
    )
    authors = {
        message_id: (payload or {}).get("counsellor_id")
        for message_id, payload in await session.execute(
            select(Message.id, Message.payload).where(Message.id.in_([m for m, _ in wanted]))
        )
    }
    case_of = dict(
        (
            await session.execute(
                select(Case.conversation_id, func.max(Case.id))
                .where(Case.conversation_id.in_(conversation_ids))
                .group_by(Case.conversation_id)
            )
        ).all()
    )
    staff: dict[int, set[int]] = {}
    for case_id, counsellor_id in await session.execute(
        select(Assignment.case_id, Assignment.counsellor_id).where(Assignment.case_id.in_(case_of.values()))
    ):
        staff.setdefault(case_id, set()).add(counsellor_id)
    failures = []
    for message_id, conversation_id in wanted:
        case_id = case_of.get(conversation_id)
        told = set(staff.get(case_id, set())) if case_id is not None else set()
        told |= {i for i in (holders.get(conversation_id), authors.get(message_id)) if isinstance(i, int)}
        failures.append(FailedDelivery(conversation_id, message_id, case_id, frozenset(told)))
    return failures
