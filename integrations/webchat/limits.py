"""The web chat's rate limits: per session and per source address, as the channels limit per sender.

A calm message over a limit is refused with 429 and `Retry-After` (the page keeps it and sends it again
after the wait), so nothing is lost and nobody can flood the line with calm words. An orange or red
message is never refused: it is stored, screened, answered and opens its case whatever the count. When
it comes from a source that is over a limit, or that has sent more escalating messages than any one
place plausibly does, it carries a flood key (a keyed digest of the address, never the address), and
records/escalation.py groups that flood's cases so the on-call counsellor is paged once.
"""

from __future__ import annotations

from dataclasses import dataclass

from integrations.limits import AttemptLimiter
from records.crypto import lookup_digest

WINDOW_SECONDS = 60.0
# A person typing fast sends well under this; a school's computer room shares one address, hence more.
PER_SESSION = 20
PER_ADDRESS = 120
NEW_SESSIONS_PER_ADDRESS = 30
# Escalating messages from one address in ESCALATION_WINDOW_SECONDS past which they count as a flood.
ESCALATIONS_PER_ADDRESS = 10
ESCALATION_WINDOW_SECONDS = 600.0
# How long a refused writer waits; the page sends the message again itself after it.
RETRY_AFTER_SECONDS = 10
FLOOD_CHANNEL = "webchat-source"  # the digest's domain, apart from every channel's sender digests


@dataclass(frozen=True, slots=True)
class Verdict:
    refused: bool
    flood_key: str | None = None


class WebchatLimits:
    """The gateway's web chat limits, in its memory (several gateways allow that many each)."""

    def __init__(self) -> None:
        self._sessions = AttemptLimiter(PER_SESSION, WINDOW_SECONDS)
        self._addresses = AttemptLimiter(PER_ADDRESS, WINDOW_SECONDS)
        self._new_sessions = AttemptLimiter(NEW_SESSIONS_PER_ADDRESS, WINDOW_SECONDS)
        self._escalations = AttemptLimiter(ESCALATIONS_PER_ADDRESS, ESCALATION_WINDOW_SECONDS)

    def new_session(self, address: str) -> bool:
        """False when this address opened too many sessions within the window."""
        return self._new_sessions.allow(address)

    def message(self, conversation_id: str, address: str, *, escalating: bool) -> Verdict:
        """Counts a message. A calm one over a limit is refused; an escalating one never is, and carries
        the source's flood key when the source is over any limit."""
        # Both limits count every message; `and` would skip the address when the session is over.
        within = [self._sessions.allow(conversation_id), self._addresses.allow(address)]
        if not escalating:
            return Verdict(refused=not all(within))
        within.append(self._escalations.allow(address))
        flood_key = None if all(within) else lookup_digest(FLOOD_CHANNEL, address)[:32]
        return Verdict(refused=False, flood_key=flood_key)
