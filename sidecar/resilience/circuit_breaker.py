"""Per-cluster circuit breakers (Envoy's thresholds): counters with try-acquire / release (pure).

One ``CircuitBreaker`` per cluster name lives across config swaps (limits are replaced, counts
kept), so requests in flight when a snapshot changes release what they took. Four resources:

- ``requests``: taken once per request about to go upstream (retries included), released at its
  end; over the limit: fast 503 ``max_requests``.
- ``pending``: held while a request waits for a connection; over the limit: fast 503
  ``max_pending_requests``.
- ``connections``: held by each open upstream connection; over the limit the request waits as
  pending instead of opening one (counted as a ``max_connections`` overflow).
- ``retries``: taken when a retry is scheduled, released when that attempt ends; over the
  limit the retry is not made.

The retries limit is ``max_retries`` or, when the cluster has a ``retry_budget``, the budget's
share of active plus pending requests (never below its ``min_retry_concurrency``).

The overflow answer, built by ``overflow_response`` (Envoy sends ``x-envoy-overloaded: true``)::

    HTTP/1.1 503 Service Unavailable
    x-mesh-overflow: max_requests
    content-type: text/plain

    upstream overflow: cluster 'api' is at max_requests (512)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Final

from mesh.model.policies import CircuitBreakers
from sidecar.resilience.retry import retry_budget_limit

OVERFLOW_HEADER: Final = "x-mesh-overflow"
OVERFLOW_STATUS: Final = 503
MAX_REQUESTS: Final = "max_requests"
MAX_PENDING: Final = "max_pending_requests"
MAX_CONNECTIONS: Final = "max_connections"
MAX_RETRIES: Final = "max_retries"
RETRY_BUDGET: Final = "retry_budget"


class CircuitBreaker:
    """Counters of one cluster and their limits. ``overflows`` counts refusals by limit name."""

    __slots__ = ("connections", "limits", "name", "overflows", "pending", "requests", "retries")

    def __init__(self, name: str, limits: CircuitBreakers) -> None:
        self.name = name
        self.limits = limits
        self.requests = 0
        self.pending = 0
        self.connections = 0
        self.retries = 0
        self.overflows: dict[str, int] = {}

    def _refuse(self, limit: str) -> bool:
        self.overflows[limit] = self.overflows.get(limit, 0) + 1
        return False

    # --- requests ---

    def try_acquire_request(self) -> bool:
        if self.requests >= self.limits.max_requests:
            return self._refuse(MAX_REQUESTS)
        self.requests += 1
        return True

    def release_request(self) -> None:
        if self.requests > 0:
            self.requests -= 1

    # --- pending (waiting for a connection) ---

    def try_acquire_pending(self) -> bool:
        if self.pending >= self.limits.max_pending_requests:
            return self._refuse(MAX_PENDING)
        self.pending += 1
        return True

    def release_pending(self) -> None:
        if self.pending > 0:
            self.pending -= 1

    # --- connections ---

    def try_acquire_connection(self) -> bool:
        if self.connections >= self.limits.max_connections:
            return self._refuse(MAX_CONNECTIONS)
        self.connections += 1
        return True

    def release_connection(self) -> None:
        if self.connections > 0:
            self.connections -= 1

    # --- retries ---

    def retry_limit(self) -> int:
        """Concurrent retries allowed now (the budget moves with the load)."""
        budget = self.limits.retry_budget
        if budget is None:
            return self.limits.max_retries
        return retry_budget_limit(budget, self.requests, self.pending)

    def try_acquire_retry(self) -> bool:
        if self.retries >= self.retry_limit():
            return self._refuse(MAX_RETRIES if self.limits.retry_budget is None else RETRY_BUDGET)
        self.retries += 1
        return True

    def release_retry(self) -> None:
        if self.retries > 0:
            self.retries -= 1

    # --- views ---

    def state(self) -> dict[str, Any]:
        """Plain data for admin ``/clusters``: each resource's count and limit, and the refusals."""
        limits = self.limits
        return {
            "requests": {"active": self.requests, "max": limits.max_requests},
            "pending": {"active": self.pending, "max": limits.max_pending_requests},
            "connections": {"active": self.connections, "max": limits.max_connections},
            "retries": {"active": self.retries, "max": self.retry_limit(), "budget": limits.retry_budget is not None},
            "overflows": dict(sorted(self.overflows.items())),
        }


def share(limit: int, workers: int) -> int:
    """One worker's part of a cluster-wide ``limit``: ceil(limit / workers), at least 1 (0 stays 0)."""
    if limit <= 0 or workers <= 1:
        return limit
    return max(1, -(-limit // workers))


def worker_share(limits: CircuitBreakers, workers: int) -> CircuitBreakers:
    """The limits one of ``workers`` processes enforces so that all of them together keep about
    the cluster's (``--workers``: each process has its own counters). Every count limit is
    ``share``d (the sum may pass the limit by up to ``workers - 1``); a retry budget keeps its
    percentage (of each worker's own requests) and shares its ``min_retry_concurrency``."""
    if workers <= 1:
        return limits
    budget = limits.retry_budget
    if budget is not None:
        budget = replace(budget, min_retry_concurrency=share(budget.min_retry_concurrency, workers))
    return replace(
        limits,
        max_connections=share(limits.max_connections, workers),
        max_pending_requests=share(limits.max_pending_requests, workers),
        max_requests=share(limits.max_requests, workers),
        max_retries=share(limits.max_retries, workers),
        retry_budget=budget,
    )


def overflow_message(cluster: str, limit: str, value: int) -> str:
    """The body of the 503 sent when ``limit`` (e.g. ``max_requests``) is reached."""
    return f"upstream overflow: cluster {cluster!r} is at {limit} ({value})"


def overflow_response(breaker: CircuitBreaker, limit: str) -> tuple[int, tuple[tuple[str, str], ...], str]:
    """(status, extra headers, body) of the fast answer for an overflow of ``limit``."""
    value = getattr(breaker.limits, limit, 0) if limit != RETRY_BUDGET else breaker.retry_limit()
    return OVERFLOW_STATUS, ((OVERFLOW_HEADER, limit),), overflow_message(breaker.name, limit, value)


__all__ = [
    "MAX_CONNECTIONS",
    "MAX_PENDING",
    "MAX_REQUESTS",
    "MAX_RETRIES",
    "OVERFLOW_HEADER",
    "OVERFLOW_STATUS",
    "RETRY_BUDGET",
    "CircuitBreaker",
    "overflow_message",
    "overflow_response",
    "share",
    "worker_share",
]
