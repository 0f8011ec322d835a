"""Per-key rate limits kept in the gateway's memory: console sign-ins per client address, channel messages
per sender (keyed by the sender's digest, never the address itself)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class AttemptLimiter:
    """At most `limit` attempts per key in any `window_seconds` (a sliding window), in this process's
    memory: a gateway with several workers allows that many per worker. Refused attempts do not count.
    At most `max_keys` keys are kept; past that, keys whose window has passed go first, then the oldest."""

    def __init__(
        self,
        limit: int,
        window_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self._limit = limit
        self._window = window_seconds
        self._clock = clock
        self._max_keys = max_keys
        self._attempts: dict[str, deque[float]] = {}

    def allow(self, key: str) -> bool:
        now = self._clock()
        cutoff = now - self._window
        attempts = self._attempts.get(key)
        if attempts is None:
            if len(self._attempts) >= self._max_keys:
                self._forget(cutoff)
            attempts = self._attempts[key] = deque()
        while attempts and attempts[0] <= cutoff:
            attempts.popleft()
        if len(attempts) >= self._limit:
            return False
        attempts.append(now)
        return True

    def _forget(self, cutoff: float) -> None:
        for key in [k for k, times in self._attempts.items() if not times or times[-1] <= cutoff]:
            del self._attempts[key]
        while len(self._attempts) >= self._max_keys:
            del self._attempts[next(iter(self._attempts))]
