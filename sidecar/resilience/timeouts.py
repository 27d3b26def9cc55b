"""Timeout arithmetic (pure): the route deadline, each attempt's deadline, and whether a retry still fits.

Envoy's rules: the route ``timeout`` spans the whole exchange, retries included, counted from the
moment the request (head and body) has been received; ``per_try_timeout`` bounds each attempt
and never extends the route's. A retry is made only if its backoff ends before the route
deadline. Deadlines are monotonic-clock seconds; ``NO_DEADLINE`` (infinity) means no limit.

What the client gets: a passed route deadline is 504 ``upstream request timeout`` (no retry); a
passed per-try deadline ends that attempt as a ``per_try_timeout`` failure, which the retry policy
may retry, and which becomes 504 when it is the last word.
"""

from __future__ import annotations

import math

NO_DEADLINE = math.inf
TIMEOUT_STATUS = 504
TIMEOUT_MESSAGE = "upstream request timeout"  # Envoy's body for both timeouts


def route_deadline(start: float, timeout_s: float | None) -> float:
    """When the whole exchange must be over (``timeout_s`` None or 0: never)."""
    return start + timeout_s if timeout_s else NO_DEADLINE


def attempt_deadline(now: float, route_deadline_at: float, per_try_timeout_s: float | None) -> float:
    """When the attempt starting ``now`` must be over: its own limit, never past the route's."""
    if not per_try_timeout_s:
        return route_deadline_at
    return min(now + per_try_timeout_s, route_deadline_at)


def retry_fits(now: float, delay_s: float, route_deadline_at: float) -> bool:
    """Whether a retry after ``delay_s`` would still start before the route deadline."""
    return now + delay_s < route_deadline_at


def remaining(now: float, deadline: float) -> float:
    """Seconds left until ``deadline`` (never negative; infinity for none)."""
    return max(0.0, deadline - now)


__all__ = [
    "NO_DEADLINE",
    "TIMEOUT_MESSAGE",
    "TIMEOUT_STATUS",
    "attempt_deadline",
    "remaining",
    "retry_fits",
    "route_deadline",
]
