"""Records the outcome of a screening instrument in the audit log, through the action server's store.

Codes only (instrument, outcome, level, total, protocol version), never an answer or a word of the chat:
enough for a counsellor to see that a student screened yellow or orange and follow up.
"""

from __future__ import annotations

from actions import store
from triage_protocols import Result


async def record_screening(conversation_id: str, result: Result) -> bool:
    """False when the store could not be reached: the user is answered all the same."""
    return await store.record(
        conversation_id,
        "screening_completed",
        instrument=result.instrument,
        outcome=result.outcome,
        level=result.level.value,
        total=result.total,
        next=result.next,
        protocol_version=result.protocol_version,
    )
