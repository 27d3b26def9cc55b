"""Envoy's local rate limit token bucket, one bucket per client key (pure, injected clock).

A bucket starts full (``max_tokens``); every ``fill_interval`` adds ``tokens_per_fill`` up to
``max_tokens``; a request takes one token or is refused with the time until the next fill. Fills
are computed when a key is used (no timers). Memory is bounded: past ``max_keys`` buckets, the
ones that are full again (idle clients) go first, then the least recently created.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mesh.rules.ratelimit import TokenBucket

MAX_KEYS = 10_000


class TokenBuckets:
    __slots__ = ("_clock", "_interval", "_max", "_max_keys", "_per_fill", "_state")

    def __init__(
        self, bucket: TokenBucket, clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_KEYS
    ) -> None:
        self._max = float(bucket.max_tokens)
        self._per_fill = float(bucket.tokens_per_fill)
        self._interval = bucket.fill_interval_s
        self._clock = clock
        self._max_keys = max_keys
        self._state: dict[str, list[float]] = {}  # key → [tokens, time of the last fill]

    def take(self, key: str) -> float:
        """0.0 when a token was taken; otherwise the seconds until the next fill."""
        now = self._clock()
        state = self._state.get(key)
        if state is None:
            if len(self._state) >= self._max_keys:
                self._evict(now)
            state = self._state[key] = [self._max, now]
        else:
            fills = int((now - state[1]) / self._interval)
            if fills:
                state[0] = min(self._max, state[0] + fills * self._per_fill)
                state[1] += fills * self._interval
        if state[0] >= 1.0:
            state[0] -= 1.0
            return 0.0
        return max(state[1] + self._interval - now, 0.0)

    def remaining(self, key: str) -> int:
        state = self._state.get(key)
        return int(self._max) if state is None else int(state[0])

    def __len__(self) -> int:
        return len(self._state)

    def _evict(self, now: float) -> None:
        refilled = [
            key
            for key, (tokens, last) in self._state.items()
            if tokens + int((now - last) / self._interval) * self._per_fill >= self._max
        ]
        for key in refilled:
            del self._state[key]
        if len(self._state) >= self._max_keys:
            for key in list(self._state)[: len(self._state) // 2 + 1]:
                del self._state[key]


__all__ = ["MAX_KEYS", "TokenBuckets"]
