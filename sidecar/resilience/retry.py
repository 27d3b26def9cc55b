"""Retry decisions (pure): may this attempt's outcome be retried, after how long, and may the body be replayed.

Envoy's semantics (``router/retry_state_impl.cc``), written as small functions the request plan
(``sidecar.resilience.policy``) calls once per finished attempt:

- ``condition_matches``: the route's ``retry_on`` against how the attempt ended. A local failure
  (connect failure, reset, per-try timeout) is retried under ``5xx``, ``gateway-error`` and
  ``reset``, and under its own name (``connect-failure``, ``reset-before-request``,
  ``refused-stream``). A response is retried by its status (``5xx``; ``gateway-error``: 502-504;
  ``retriable-4xx``: 409; ``retriable-status-codes``) or its ``grpc-status``. A response the
  next hop marked as an overflow (``x-mesh-overflow`` / ``x-envoy-overloaded``) is never retried:
  retrying into a tripped breaker only adds load.
- ``method_allows``: idempotent methods (RFC 9110 section 9.2.2) are retried on any condition; others only on
  failures that prove the upstream never saw the request, unless ``retry_non_idempotent``.
- ``backoff_delay``: Envoy's jittered exponential backoff, full jitter:
  uniform in [0, min(max, base x 2^(n-1))) before retry n.
- ``retry_budget_limit``: Envoy's ``retry_budget``: concurrent retries allowed for a cluster.
- ``ReplayBuffer``: the copy of the request body kept for a retry, up to the policy's limit.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final, Literal

from mesh.model.policies import RetryBudget, RetryPolicy

Failure = Literal["connect_failure", "reset_before_request", "reset", "per_try_timeout", "refused_stream"]
"""How an attempt failed without a response head:
``connect_failure`` (no connection), ``reset_before_request`` (connection lost before the whole
request was written), ``reset`` (lost after the request, before the response head),
``per_try_timeout`` (the attempt's own deadline passed), ``refused_stream`` (HTTP/2 REFUSED_STREAM)."""

CONNECT_FAILURE: Final = "connect_failure"
RESET_BEFORE_REQUEST: Final = "reset_before_request"
RESET: Final = "reset"
PER_TRY_TIMEOUT: Final = "per_try_timeout"
REFUSED_STREAM: Final = "refused_stream"

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
"""RFC 9110 section 9.2.2."""

UNSEEN_FAILURES: frozenset[str] = frozenset({CONNECT_FAILURE, RESET_BEFORE_REQUEST, REFUSED_STREAM})
"""Failures after which the upstream cannot have acted on the request: safe to retry any method."""

# Which retry_on conditions cover each local failure (Envoy: every reset is a "5xx" and a
# "gateway-error"; the named ones cover only their own kind).
_FAILURE_CONDITIONS: dict[str, frozenset[str]] = {
    CONNECT_FAILURE: frozenset({"5xx", "gateway-error", "reset", "connect-failure", "reset-before-request"}),
    RESET_BEFORE_REQUEST: frozenset({"5xx", "gateway-error", "reset", "reset-before-request"}),
    RESET: frozenset({"5xx", "gateway-error", "reset"}),
    PER_TRY_TIMEOUT: frozenset({"5xx", "gateway-error", "reset"}),
    REFUSED_STREAM: frozenset({"5xx", "refused-stream"}),
}
_GATEWAY_STATUSES = frozenset({502, 503, 504})
_GRPC_CONDITIONS = {1: "cancelled", 4: "deadline-exceeded", 8: "resource-exhausted", 13: "internal", 14: "unavailable"}


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """How one upstream attempt ended: a response head (``status``), or a local ``failure``.

    ``grpc_status``: the response's ``grpc-status`` header when it has one. ``overloaded``: the
    response carries ``x-mesh-overflow`` or ``x-envoy-overloaded`` (the next hop shed it).
    """

    status: int = 0
    failure: Failure | None = None
    grpc_status: int | None = None
    overloaded: bool = False

    @property
    def is_5xx_like(self) -> bool:
        """A 5xx, or a local failure (Envoy maps those to 503/504 for outlier detection)."""
        return self.failure is not None or self.status >= 500

    @property
    def is_gateway_error(self) -> bool:
        """502/503/504, or a local failure."""
        return self.failure is not None or self.status in _GATEWAY_STATUSES

    @property
    def local_status(self) -> int:
        """The status the client gets when this outcome is final: the response's, 504 for a per-try
        timeout, 502 for the other local failures (as the proxy answers them)."""
        if self.failure is None:
            return self.status
        return 504 if self.failure == PER_TRY_TIMEOUT else 502


def condition_matches(policy: RetryPolicy, result: AttemptResult) -> bool:
    """Whether ``policy.retry_on`` covers this outcome (status codes and gRPC status included)."""
    retry_on = policy.retry_on
    failure = result.failure
    if failure is not None:
        if not retry_on.isdisjoint(_FAILURE_CONDITIONS[failure]):
            return True
        # A per-try timeout is a 504 from the retry policy's point of view (Envoy).
        return (
            failure == PER_TRY_TIMEOUT and "retriable-status-codes" in retry_on and 504 in policy.retriable_status_codes
        )
    if result.overloaded:
        return False
    status = result.status
    if status >= 500 and "5xx" in retry_on:
        return True
    if status in _GATEWAY_STATUSES and "gateway-error" in retry_on:
        return True
    if status == 409 and "retriable-4xx" in retry_on:
        return True
    if "retriable-status-codes" in retry_on and status in policy.retriable_status_codes:
        return True
    if result.grpc_status is not None:
        condition = _GRPC_CONDITIONS.get(result.grpc_status)
        if condition is not None and condition in retry_on:
            return True
    return False


def method_allows(policy: RetryPolicy, method: str, result: AttemptResult) -> bool:
    """Idempotent methods always; others only after failures the upstream never saw (or when configured)."""
    return (
        method in IDEMPOTENT_METHODS
        or policy.retry_non_idempotent
        or (result.failure is not None and result.failure in UNSEEN_FAILURES)
    )


def backoff_delay(policy: RetryPolicy, retry_number: int, rng: random.Random) -> float:
    """Seconds to wait before retry ``retry_number`` (1 for the first retry): full jitter, capped."""
    exponent = min(max(retry_number - 1, 0), 62)
    ceiling = min(policy.backoff_max_s, policy.base_interval_s * (1 << exponent))
    return rng.random() * ceiling


def retry_budget_limit(budget: RetryBudget, active_requests: int, pending_requests: int) -> int:
    """Concurrent retries a cluster may have: max(min concurrency, budget % of active + pending)."""
    allowed = math.floor(budget.budget_percent * (active_requests + pending_requests) / 100.0)
    return max(budget.min_retry_concurrency, allowed)


class ReplayBuffer:
    """The request body kept for a retry. Once more than ``limit`` bytes have gone by it lets go of
    them and the request can no longer be retried (``replayable`` turns False for good)."""

    __slots__ = ("limit", "parts", "replayable", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self.replayable = True

    def add(self, data: bytes) -> bool:
        """Keep ``data`` (a piece of the body as sent upstream); returns ``replayable``."""
        if not self.replayable:
            return False
        self.size += len(data)
        if self.size > self.limit:
            self.parts = []
            self.replayable = False
            return False
        self.parts.append(data)
        return True

    def body(self) -> bytes:
        """The body so far, to send again to the next attempt's endpoint."""
        return b"".join(self.parts)


__all__ = [
    "CONNECT_FAILURE",
    "IDEMPOTENT_METHODS",
    "PER_TRY_TIMEOUT",
    "REFUSED_STREAM",
    "RESET",
    "RESET_BEFORE_REQUEST",
    "UNSEEN_FAILURES",
    "AttemptResult",
    "Failure",
    "ReplayBuffer",
    "backoff_delay",
    "condition_matches",
    "method_allows",
    "retry_budget_limit",
]
