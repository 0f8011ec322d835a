"""Per-key limits kept in the gateway's memory: rate limits (`AttemptLimiter`: console sign-ins per client
address, channel messages per sender, keyed by the sender's digest, never the address itself) and lockouts
after repeated failures (`FailureLockout`: the console's sign-in throttle)."""

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


class FailureLockout:
    """Locks a key out for `lockout_seconds` once `limit` failures fell on it within `window_seconds` (a
    sliding window), in this process's memory: a gateway with several workers counts per worker.

    Unlike AttemptLimiter it counts only failures, and the caller asks `locked` before trying: what is
    refused while locked is not a failure, so nobody can stretch a lock past its time by hammering it. A
    lock clears the count, so once it has passed the count starts again. At most `max_keys` keys are
    kept; past that, keys with nothing left to remember go first, then the oldest unlocked ones, and a
    locked key only when every key is locked: a flood of made-up keys cannot push a real lock out."""

    def __init__(
        self,
        limit: int,
        window_seconds: float,
        lockout_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self._limit = limit
        self._window = window_seconds
        self._lockout = lockout_seconds
        self._clock = clock
        self._max_keys = max_keys
        self._keys: dict[str, _Failures] = {}

    def locked(self, key: str) -> bool:
        entry = self._keys.get(key)
        return entry is not None and entry.locked_until > self._clock()

    def fail(self, key: str) -> bool:
        """Counts a failure on `key`; True when it is the one that locks the key. A failure on a key that
        is locked already (a concurrent attempt locked it meanwhile) does not count."""
        now = self._clock()
        entry = self._keys.get(key)
        if entry is None:
            self._make_room(now)
            entry = self._keys[key] = _Failures()
        if entry.locked_until > now:
            return False
        entry.forget_before(now - self._window)
        entry.times.append(now)
        if len(entry.times) < self._limit:
            return False
        entry.times.clear()
        entry.locked_until = now + self._lockout
        return True

    def forget(self, key: str) -> None:
        """Forgets the failures on `key` (a lock too): for a source that has just proved itself."""
        self._keys.pop(key, None)

    def _make_room(self, now: float) -> None:
        if len(self._keys) < self._max_keys:
            return
        cutoff = now - self._window
        for key in [k for k, entry in self._keys.items() if entry.idle(now, cutoff)]:
            del self._keys[key]
        unlocked = (k for k, entry in self._keys.items() if entry.locked_until <= now)
        for key in list(unlocked)[: max(0, len(self._keys) - self._max_keys + 1)]:
            del self._keys[key]
        while len(self._keys) >= self._max_keys:
            del self._keys[min(self._keys, key=lambda k: self._keys[k].locked_until)]


class _Failures:
    """One key's recent failures and the end of its lock (-inf: none)."""

    __slots__ = ("locked_until", "times")

    def __init__(self) -> None:
        self.times: deque[float] = deque()
        self.locked_until = float("-inf")

    def forget_before(self, cutoff: float) -> None:
        while self.times and self.times[0] <= cutoff:
            self.times.popleft()

    def idle(self, now: float, cutoff: float) -> bool:
        """Nothing to remember: no lock, and no failure within the window."""
        return self.locked_until <= now and (not self.times or self.times[-1] <= cutoff)
