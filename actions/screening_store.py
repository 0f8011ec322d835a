"""Records the outcome of a screening instrument in the audit log, through the action server's store.

Codes only (instrument, outcome, level, total, protocol version), never an answer or a word of the chat:
enough for a counsellor to see that a student screened yellow or orange and follow up.
"""

from __future__ import annotations

import logging

from actions import store
from records import audit
from triage_protocols import Result

log = logging.getLogger(__name__)


async def record_screening(conversation_id: str, result: Result) -> bool:
    """False when the store could not be reached: the user is answered all the same."""
    try:
        async with store.sessions()() as session:
            audit.append(
                session,
                actor="action_server",
                action="screening_completed",
                subject=conversation_id,
                instrument=result.instrument,
                outcome=result.outcome,
                level=result.level.value,
                total=result.total,
                next=result.next,
                protocol_version=result.protocol_version,
            )
            await session.commit()
    except Exception:  # noqa: BLE001 - the reply to the user must not depend on the store
        log.exception("could not record a screening result (%s, %s)", result.instrument, result.outcome)
        return False
    return True
