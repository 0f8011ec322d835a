"""Messages to a user that no webhook is waiting for: a counsellor's words, the hand-back to the bot, an
answer the engine gave on a retry. They go to the outbox in the same transaction as the message, and the
gateway's delivery dispatcher sends them on the user's channel (Telegram, SMS, WeChat) with retries.

Only conversations with a contact are pushed to: the web chat has no address and fetches its later
replies itself. The outbox item holds ids only; the address is read, and decrypted, when it is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from records import outbox
from records.models import Contact, Conversation, Message, OutboxItem, utcnow

DELIVER = "deliver"


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
        dedupe_key=f"{DELIVER}:{message.id}",
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
