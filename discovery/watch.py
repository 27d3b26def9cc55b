"""A blocking-query loop as an async iterator, following Consul's client rules.

- The first request uses index 0 and returns at once; later ones block on the last index.
- A result is yielded when its index moved forward, or when its value differs from the last
  one yielded: wake-ups prove nothing, and a reset index can carry new data.
- An index of 0 or below is replaced by 1, so a buggy server cannot keep us on non-blocking
  reads; otherwise, if the index went backwards (a snapshot restore, the max KV key deleted),
  the next request uses 0 to re-read the current state at once.
- Every request takes a token from a bucket (burst 2), so a server that answers instantly
  forever costs at most one request per ``min_interval``.
- Retryable errors back off exponentially with full jitter, capped; a success resets it.

All state changes happen between awaits, so cancelling the consuming task at any point leaves
the watch consistent, and iteration may simply resume later.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Generic, TypeVar

from discovery.client_models import QueryResult, RegistryError

T = TypeVar("T")

log = logging.getLogger(__name__)

_MAX_BACKOFF_EXPONENT = 32  # keeps 2**n finite after days of outage


class TokenBucket:
    """Rate limiter that reserves a token and says how long to wait for it."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def reserve(self) -> float:
        """Take one token now; return the seconds to sleep before using it (0 if it was there).

        Tokens may go negative: a reservation counts even if the caller is cancelled while
        sleeping, which errs on the side of fewer requests.
        """
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate


class Watch(Generic[T]):
    """Async iterator of ``QueryResult``s from ``fetch(index)``; see the module rules.

    ``fetch`` must perform one read with the given index (the client's blocking-read methods
    bound to their arguments). Exceptions in ``retry_on`` are retried forever with backoff;
    ``failures`` and ``last_error`` expose the streak, e.g. for a readiness probe. Others
    propagate to the consumer. With ``changes_only`` a result is yielded only when its value
    differs from the last one, which filters the wake-ups a single global index causes.
    """

    def __init__(
        self,
        fetch: Callable[[int], Awaitable[QueryResult[T]]],
        *,
        name: str = "watch",
        min_interval: float = 0.25,
        burst: int = 2,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        retry_on: tuple[type[Exception], ...] = (RegistryError,),
        changes_only: bool = False,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if min_interval <= 0:
            raise ValueError("min_interval must be > 0, or a fast server would make the watch spin")
        self._fetch = fetch
        self._name = name
        self._bucket = TokenBucket(1.0 / min_interval, burst, clock)
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._retry_on = retry_on
        self._changes_only = changes_only
        self._sleep = sleep
        self._rand = rand
        self._index = 0
        self._seen_index = 0
        self._last: QueryResult[T] | None = None
        self._failures = 0
        self._last_error: Exception | None = None
        self._closed = False

    @property
    def index(self) -> int:
        """The index the next request will block on (0: return at once)."""
        return self._index

    @property
    def failures(self) -> int:
        """Consecutive failed requests; 0 after any success."""
        return self._failures

    @property
    def last_error(self) -> Exception | None:
        """The most recent retried error, kept after recovery for diagnostics."""
        return self._last_error

    def __aiter__(self) -> Watch[T]:
        return self

    async def __anext__(self) -> QueryResult[T]:
        while not self._closed:
            delay = self._bucket.reserve()
            if delay > 0:
                await self._sleep(delay)
                if self._closed:
                    break
            sent = self._index
            try:
                result = await self._fetch(sent)
            except self._retry_on as exc:
                await self._back_off(exc)
                continue
            if self._closed:
                break
            self._recovered()
            if self._accept(sent, result):
                return result
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop: later iterations end. A consumer blocked in a long poll stops when it returns;
        cancel its task to stop it at once."""
        self._closed = True

    async def __aenter__(self) -> Watch[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _accept(self, sent: int, result: QueryResult[T]) -> bool:
        """Advance the index per Consul's rules and say whether ``result`` is worth yielding."""
        previous = self._last
        if previous is None:
            wanted = True
        elif self._changes_only:
            wanted = result.value != previous.value
        else:
            wanted = result.index > self._seen_index or result.value != previous.value
        if result.index <= 0:
            self._index = 1
        elif result.index < sent:
            self._index = 0
        else:
            self._index = result.index
        self._seen_index = result.index
        if wanted:
            self._last = result
        return wanted

    async def _back_off(self, exc: Exception) -> None:
        self._failures += 1
        self._last_error = exc
        exponent = min(self._failures - 1, _MAX_BACKOFF_EXPONENT)
        delay = self._rand() * min(self._backoff_cap, self._backoff_base * 2.0**exponent)
        level = logging.WARNING if self._failures == 1 else logging.DEBUG
        log.log(level, "%s: %s (failure %d, retrying in %.2fs)", self._name, exc, self._failures, delay)
        await self._sleep(delay)

    def _recovered(self) -> None:
        if self._failures:
            log.info("%s: recovered after %d failures", self._name, self._failures)
            self._failures = 0


__all__ = ["TokenBucket", "Watch"]
