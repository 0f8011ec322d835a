"""Contacts: a channel address becomes a random id once, and is found again by its keyed digest."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from records.crypto import lookup_digest
from records.models import Contact


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
