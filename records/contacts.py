"""Contacts: a channel address becomes a random id once, and is found again by its keyed digest."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from records.crypto import lookup_digest
from records.models import Contact, Conversation


async def contact_for(session: AsyncSession, channel: str, address: str) -> Contact:
    """The contact behind an address, created on first contact. Two first messages racing each other
    still make one contact (the unique channel + digest decides). Commits a new contact."""
    digest = lookup_digest(channel, address)
    query = select(Contact).where(Contact.channel == channel, Contact.address_digest == digest)
    found = await session.scalar(query)
    if found is not None:
        return found
    contact = Contact(channel=channel, address_digest=digest, address=address)
    session.add(contact)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        return await session.scalar(query)  # type: ignore[return-value]
    return contact


async def conversation_for(
    session: AsyncSession, channel: str, address: str, audience: str | None = None
) -> Conversation:
    """The conversation of the person behind a channel address, made on first contact. Its id is the
    contact's random id, so two first messages racing each other make one conversation. Commits."""
    contact = await contact_for(session, channel, address)
    found = await session.get(Conversation, contact.id)
    if found is not None:
        return found
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    await session.execute(
        dialect.insert(Conversation)
        .values(id=contact.id, channel=channel, contact_id=contact.id, audience=audience)
        .on_conflict_do_nothing(index_elements=["id"])
    )
    await session.commit()
    return await session.get_one(Conversation, contact.id)


async def set_audience(session: AsyncSession, conversation_id: str, audience: str) -> None:
    """Records who is writing (student or parent) once a channel learns it, e.g. from the phone menu."""
    conversation = await session.get_one(Conversation, conversation_id)
    conversation.audience = audience
    await session.commit()
