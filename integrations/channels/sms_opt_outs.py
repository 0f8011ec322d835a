"""Keywords and opt-outs on the SMS line: which messages are an instruction to the line rather than a
conversation message, and whether a number may still be texted. It has a module of its own because two
sides of the line need the same record: the webhook records opt-outs and opt-ins (sms.py, `routes`), the
sender refuses to text a number that opted out (sms.py, `SmsSender`); and because its rules must stay
in step with what Twilio itself does with the same words.

Keywords (a message that is exactly the word): Twilio itself answers STOP, UNSUBSCRIBE… and START,
YES, UNSTOP, and from then on blocks (or again allows) every message from our number to that phone. We
record the opt-out (and the opt-in) in the audit log and do not answer; START, YES or UNSTOP from a
number that had not opted out is read as an ordinary message ("yes" to a question). 退订 and TD
(data/content/channels/sms.yml) are ours: recorded, and answered with a confirmation; Twilio blocks
nothing for them, and the sender's next message to the line undoes them. HELP, INFO and 帮助 are answered with the help text and the numbers.
A keyword is an instruction to the line, not a conversation message: it never reaches the assistant.
Opt-outs silence nothing the person sends: every other message, red above all, is stored, screened,
escalated and answered as usual. They stop what we would push: the sender refuses a counsellor's message
to an opted-out number (`OptedOut`, retried and then audited as `delivery_failed`).
"""

from __future__ import annotations

import logging
import unicodedata
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from integrations.channels.sms_texts import CHANNEL, sms_texts
from records import audit, contacts
from records.crypto import lookup_digest
from records.models import AuditEntry, Contact

log = logging.getLogger(__name__)


# Twilio's own opt-out and opt-in keywords on long codes, which Twilio answers and acts on itself (with
# Advanced Opt-Out a deployment can add more in Twilio's console; Twilio then says so in `OptOutType`).
# HELP and INFO we answer (on US and Canadian numbers Twilio answers them too, unless Advanced Opt-Out
# sets the help text there: then `OptOutType` is HELP and we stay quiet).
TWILIO_STOP = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
TWILIO_START = frozenset({"START", "YES", "UNSTOP"})
TWILIO_HELP = frozenset({"HELP", "INFO"})

# The audit log is the record of consent: append-only, codes only, subject = the contact's id.
OPTED_OUT = "sms_opted_out"
OPTED_IN = "sms_opted_in"

Scope = Literal["carrier", "line"]  # carrier: Twilio blocks the number; line: only we hold back


# --- keywords ----------------------------------------------------------------------------------------

Keyword = Literal["help", "twilio_help", "stop_carrier", "stop_line", "start"]


def _normalised(body: str) -> str:
    return unicodedata.normalize("NFKC", body).strip().rstrip("。.!！").strip().upper()


def keyword_of(body: str, opt_out_type: str | None = None) -> Keyword | None:
    """What a message that is exactly a keyword asks for; None for any other message. Twilio's
    `OptOutType` (sent with Advanced Opt-Out) wins: Twilio has acted on it and answered already.
    Twilio's STOP and START words are matched as strictly as Twilio matches them (the word alone, in
    any case), so our record never says "blocked" when Twilio does not block, or the reverse."""

    kind = (opt_out_type or "").upper()
    if kind == "STOP":
        return "stop_carrier"
    if kind == "START":
        return "start"
    if kind == "HELP":
        return "twilio_help"
    exact = body.strip().upper()
    if exact in TWILIO_STOP:
        return "stop_carrier"
    if exact in TWILIO_START:
        return "start"
    word = _normalised(body)
    keywords = sms_texts().keywords
    if word in TWILIO_HELP or word in {_normalised(k) for k in keywords.help}:
        return "help"
    if word in {_normalised(k) for k in keywords.stop}:
        return "stop_line"
    return None


# --- opt-outs ----------------------------------------------------------------------------------------


class OptedOut(RuntimeError):
    """The number asked not to be texted: nothing was sent. Not a PermanentDeliveryError on purpose: the
    dispatcher retries while the person may still text START, then audits `delivery_failed`."""


async def contact_id_for(session: AsyncSession, address: str) -> str | None:
    return await session.scalar(
        select(Contact.id).where(
            Contact.channel == CHANNEL, Contact.address_digest == lookup_digest(CHANNEL, address)
        )
    )


async def opt_out_scope(session: AsyncSession, contact_id: str) -> Scope | None:
    """The contact's opt-out in force ("carrier" or "line"), or None: the newest opt-out or opt-in wins."""
    entry = await session.scalar(
        select(AuditEntry)
        .where(AuditEntry.subject == contact_id, AuditEntry.action.in_((OPTED_OUT, OPTED_IN)))
        .order_by(AuditEntry.id.desc())
        .limit(1)
    )
    if entry is None or entry.action == OPTED_IN:
        return None
    return "line" if (entry.detail or {}).get("scope") == "line" else "carrier"


async def _record(
    session: AsyncSession, contact_id: str, action: str, message_sid: str, **detail: Any
) -> None:
    audit.append(
        session, actor=f"channel:{CHANNEL}", action=action, subject=contact_id, message=message_sid, **detail
    )
    await session.commit()


async def record_opt_out(session: AsyncSession, address: str, scope: Scope, message_sid: str) -> str:
    """Records the number's opt-out (once: a redelivered STOP adds nothing). Returns the contact's id."""
    contact = await contacts.contact_for(session, CHANNEL, address)
    if await opt_out_scope(session, contact.id) not in (scope, "carrier"):
        await _record(session, contact.id, OPTED_OUT, message_sid, scope=scope)
    return contact.id


async def record_opt_in(session: AsyncSession, address: str, message_sid: str, reason: str) -> str | None:
    """Lifts the number's opt-out, if it has one. Returns the contact's id when something changed."""
    contact_id = await contact_id_for(session, address)
    if contact_id is None or await opt_out_scope(session, contact_id) is None:
        return None
    await _record(session, contact_id, OPTED_IN, message_sid, reason=reason)
    return contact_id


async def wrote_again(session: AsyncSession, address: str, message_sid: str) -> None:
    """A message to the line undoes our own opt-out (退订): the person is talking to us again, and a
    counsellor's answer must reach them. Twilio's STOP is only undone by START, as Twilio does."""
    contact_id = await contact_id_for(session, address)
    if contact_id is not None and await opt_out_scope(session, contact_id) == "line":
        await _record(session, contact_id, OPTED_IN, message_sid, reason="wrote_again")
        log.info("sms: contact %s wrote again; opt-out lifted", contact_id)
