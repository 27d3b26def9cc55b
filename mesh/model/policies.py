"""Resilience policies of routes and clusters: retries, faults, mirrors, redirects, circuit
breakers, outlier detection, active health checks (pure, frozen values).

Names and semantics follow Envoy (and Istio where it only renames Envoy): a route's
``RetryPolicy`` is Envoy's ``route.RetryPolicy`` / Istio's ``HTTPRetry``; ``FaultPolicy`` is
Istio's ``HTTPFaultInjection``; ``MirrorPolicy`` is Envoy's ``request_mirror_policies`` / Istio's
``mirrors``; ``Redirect`` is Envoy's ``RedirectAction`` / Istio's ``HTTPRedirect``. On a cluster,
``CircuitBreakers`` is Envoy's ``circuit_breakers.thresholds`` (with ``RetryBudget``),
``OutlierDetection`` Envoy's ``outlier_detection`` and ``HealthCheck`` one Envoy
``health_checks`` entry (HTTP or TCP). The sidecar enforces them in ``sidecar/resilience/``.

Every constructor validates its own values (``ValueError`` naming the field), so a hand-built
policy is as safe as a parsed one; ``mesh.model.parse`` reports the same problems with the full
field path. Durations are seconds, percentages are 0-100 floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

# === shared checks ===


def _int_in(value: object, name: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}: must be an integer in {low}..{high}, got {value!r}")


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name}: must be a finite number, got {value!r}")
    return float(value)


def _positive(value: object, name: str) -> None:
    if _number(value, name) <= 0:
        raise ValueError(f"{name}: must be > 0, got {value!r}")


def _non_negative(value: object, name: str) -> None:
    if _number(value, name) < 0:
        raise ValueError(f"{name}: must be >= 0, got {value!r}")


def _percent(value: object, name: str) -> None:
    if not 0 <= _number(value, name) <= 100:
        raise ValueError(f"{name}: must be a percentage in 0..100, got {value!r}")


# === retries ===

RETRY_ON_CONDITIONS = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "refused-stream",
        "retriable-4xx",
        "retriable-status-codes",
        # gRPC conditions: the response's grpc-status header (gRPC itself needs HTTP/2 upstreams)
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    }
)
"""Envoy's ``x-envoy-retry-on`` / ``x-envoy-retry-grpc-on`` conditions the sidecar implements."""

ISTIO_DEFAULT_RETRY_ON = frozenset(
    {"connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes"}
)
"""Istio's retry conditions when a route's retries name none (with 503 as the retriable status)."""

DEFAULT_BACKOFF_BASE_S = 0.025  # Envoy: base_interval 25 ms
DEFAULT_RETRY_BUFFER_LIMIT = 64 * 1024
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how a failed upstream attempt is tried again.

    ``retry_on``: Envoy conditions (``RETRY_ON_CONDITIONS``). ``num_retries``: retries after the
    first attempt (Istio ``attempts``). ``per_try_timeout_s``: limit of each attempt (``None``:
    only the route timeout applies; a retry never outlives the route timeout).
    ``retriable_status_codes``: statuses retried under ``retriable-status-codes``.
    Backoff between attempts: full jitter over ``base_interval_s x 2^(n-1)``, capped at
    ``max_interval_s`` (``None``: 10 x base, as Envoy). ``retry_previous_hosts``: a retry avoids
    the endpoints this request already tried (Envoy's ``previous_hosts`` predicate, Istio's
    default). ``retry_non_idempotent``: also retry POST/PATCH/... on conditions where the upstream
    may have seen the request (5xx, reset, timeouts); without it only idempotent methods are,
    while failures before the request left (connect-failure, reset-before-request,
    refused-stream) are retried for every method. ``buffer_limit_bytes``: a request body is kept
    for replay up to this size; a longer body makes the request non-retriable.
    """

    retry_on: frozenset[str] = ISTIO_DEFAULT_RETRY_ON
    num_retries: int = 1
    per_try_timeout_s: float | None = None
    retriable_status_codes: frozenset[int] = frozenset({503})
    base_interval_s: float = DEFAULT_BACKOFF_BASE_S
    max_interval_s: float | None = None
    retry_previous_hosts: bool = True
    retry_non_idempotent: bool = False
    buffer_limit_bytes: int = DEFAULT_RETRY_BUFFER_LIMIT

    def __post_init__(self) -> None:
        unknown = sorted(self.retry_on - RETRY_ON_CONDITIONS)
        if unknown:
            raise ValueError(f"retry_on: unknown condition {unknown[0]!r}")
        _int_in(self.num_retries, "num_retries", 0, 1000)
        if self.per_try_timeout_s is not None:
            _positive(self.per_try_timeout_s, "per_try_timeout")
        for code in self.retriable_status_codes:
            _int_in(code, "retriable_status_codes", 100, 599)
        _positive(self.base_interval_s, "retry_back_off.base_interval")
        if self.max_interval_s is not None:
            _positive(self.max_interval_s, "retry_back_off.max_interval")
            if self.max_interval_s < self.base_interval_s:
                raise ValueError("retry_back_off.max_interval: must be >= base_interval")
        _int_in(self.buffer_limit_bytes, "buffer_limit_bytes", 0, 1 << 30)

    @property
    def backoff_max_s(self) -> float:
        """The backoff cap in effect: ``max_interval_s`` or 10 x base (Envoy)."""
        return self.max_interval_s if self.max_interval_s is not None else 10 * self.base_interval_s


# === fault injection ===


@dataclass(frozen=True, slots=True)
class FaultDelay:
    """Hold ``percentage`` % of requests for ``fixed_delay_s`` before forwarding them."""

    fixed_delay_s: float
    percentage: float = 100.0

    def __post_init__(self) -> None:
        _non_negative(self.fixed_delay_s, "fault.delay.fixed_delay")
        _percent(self.percentage, "fault.delay.percentage")


@dataclass(frozen=True, slots=True)
class FaultAbort:
    """Answer ``percentage`` % of requests with ``http_status`` instead of forwarding them."""

    http_status: int
    percentage: float = 100.0

    def __post_init__(self) -> None:
        _int_in(self.http_status, "fault.abort.http_status", 200, 599)
        _percent(self.percentage, "fault.abort.percentage")


@dataclass(frozen=True, slots=True)
class FaultPolicy:
    """Istio's ``fault``: a delay, an abort, or both (the delay comes first, as Envoy's filter)."""

    delay: FaultDelay | None = None
    abort: FaultAbort | None = None

    def __post_init__(self) -> None:
        if self.delay is None and self.abort is None:
            raise ValueError("fault: needs delay or abort")


# === mirroring, redirects ===


@dataclass(frozen=True, slots=True)
class MirrorPolicy:
    """Copy ``percentage`` % of the route's requests to ``cluster``; the copies' answers are dropped."""

    cluster: str
    percentage: float = 100.0

    def __post_init__(self) -> None:
        if not self.cluster:
            raise ValueError("mirror.cluster: must not be empty")
        _percent(self.percentage, "mirror.percentage")


@dataclass(frozen=True, slots=True)
class Redirect:
    """Answer with a redirect instead of forwarding (Envoy ``RedirectAction``, Istio ``HTTPRedirect``).

    Each part of the ``Location`` that is not given keeps the request's: ``scheme`` (``http`` /
    ``https``), ``host`` (Istio ``authority``), ``port``, and the path: ``path`` replaces it
    whole (Istio ``uri``), ``prefix_rewrite`` replaces the route's matched prefix. The query
    string is kept unless ``strip_query``. ``response_code``: 301 (default), 302, 303, 307, 308.
    """

    scheme: str | None = None
    host: str | None = None
    port: int | None = None
    path: str | None = None
    prefix_rewrite: str | None = None
    response_code: int = 301
    strip_query: bool = False

    def __post_init__(self) -> None:
        if self.scheme is not None and self.scheme not in ("http", "https"):
            raise ValueError(f"redirect.scheme: must be http or https, got {self.scheme!r}")
        if self.host is not None and (not self.host or any(c in self.host for c in " /\r\n\t")):
            raise ValueError(f"redirect.host: must be a host name, got {self.host!r}")
        if self.port is not None:
            _int_in(self.port, "redirect.port", 1, 65535)
        if self.path is not None and self.prefix_rewrite is not None:
            raise ValueError("redirect.prefix_rewrite: give path or prefix_rewrite, not both")
        for name, value in (("path", self.path), ("prefix_rewrite", self.prefix_rewrite)):
            if value is not None and not value.startswith("/"):
                raise ValueError(f"redirect.{name}: must start with '/', got {value!r}")
        if self.response_code not in REDIRECT_CODES:
            raise ValueError(
                f"redirect.response_code: must be one of 301, 302, 303, 307, 308, got {self.response_code!r}"
            )


# === clusters: circuit breakers, outlier detection, health checks ===


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """Envoy's ``retry_budget``: concurrent retries ≤ max(``min_retry_concurrency``,
    ``budget_percent`` % of the cluster's active plus pending requests). Replaces ``max_retries``."""

    budget_percent: float = 20.0
    min_retry_concurrency: int = 3

    def __post_init__(self) -> None:
        _percent(self.budget_percent, "retry_budget.budget_percent")
        _int_in(self.min_retry_concurrency, "retry_budget.min_retry_concurrency", 0, 1_000_000)


_LIMIT = 2**32 - 1  # Envoy's thresholds are uint32


@dataclass(frozen=True, slots=True)
class CircuitBreakers:
    """Per-cluster limits (Envoy's defaults): open connections to all endpoints together, requests
    waiting for a connection, requests in flight, and retries in flight (or a ``retry_budget``).
    A request over a limit gets a fast 503 with ``x-mesh-overflow: <limit>``; a retry over its
    limit is not made (the last attempt's answer goes back)."""

    max_connections: int = 1024
    max_pending_requests: int = 1024
    max_requests: int = 1024
    max_retries: int = 3
    retry_budget: RetryBudget | None = None

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_pending_requests", "max_requests", "max_retries"):
            _int_in(getattr(self, name), f"circuit_breakers.{name}", 0, _LIMIT)


DEFAULT_CIRCUIT_BREAKERS = CircuitBreakers()


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    """Passive health: eject endpoints whose answers say they are failing (Envoy semantics).

    ``consecutive_5xx``: eject after this many 5xx in a row (0: off); connect failures, resets
    and timeouts count as 5xx (and as gateway errors). ``consecutive_gateway_errors``: the same
    for 502/503/504 (0: off, Istio's default). Success rate: every ``interval_s``, among endpoints
    with at least ``success_rate_request_volume`` requests in the interval, and only if there are
    at least ``success_rate_minimum_hosts`` of them, eject those whose success rate is below
    mean - ``success_rate_stdev_factor`` x stdev. ``enforcing_*`` are the % chance a detection
    ejects (Envoy; ``enforcing_success_rate`` defaults to 0 here as in Istio, so success-rate
    ejection is opt-in). An ejection lasts ``base_ejection_time_s`` x the endpoint's ejection
    count (capped at ``max_ejection_time_s``); the count drops by one for every interval the
    endpoint spends un-ejected. At most ``max_ejection_percent`` % of a cluster's endpoints are
    ejected at once, though one endpoint may always be (Envoy).
    """

    consecutive_5xx: int = 5
    consecutive_gateway_errors: int = 0
    interval_s: float = 10.0
    base_ejection_time_s: float = 30.0
    max_ejection_time_s: float = 300.0
    max_ejection_percent: float = 10.0
    enforcing_consecutive_5xx: float = 100.0
    enforcing_consecutive_gateway_errors: float = 100.0
    enforcing_success_rate: float = 0.0
    success_rate_minimum_hosts: int = 5
    success_rate_request_volume: int = 100
    success_rate_stdev_factor: float = 1.9

    def __post_init__(self) -> None:
        _int_in(self.consecutive_5xx, "outlier_detection.consecutive_5xx", 0, _LIMIT)
        _int_in(self.consecutive_gateway_errors, "outlier_detection.consecutive_gateway_errors", 0, _LIMIT)
        _positive(self.interval_s, "outlier_detection.interval")
        _positive(self.base_ejection_time_s, "outlier_detection.base_ejection_time")
        _positive(self.max_ejection_time_s, "outlier_detection.max_ejection_time")
        if self.max_ejection_time_s < self.base_ejection_time_s:
            raise ValueError("outlier_detection.max_ejection_time: must be >= base_ejection_time")
        for name in (
            "max_ejection_percent",
            "enforcing_consecutive_5xx",
            "enforcing_consecutive_gateway_errors",
            "enforcing_success_rate",
        ):
            _percent(getattr(self, name), f"outlier_detection.{name}")
        _int_in(self.success_rate_minimum_hosts, "outlier_detection.success_rate_minimum_hosts", 1, _LIMIT)
        _int_in(self.success_rate_request_volume, "outlier_detection.success_rate_request_volume", 1, _LIMIT)
        _non_negative(self.success_rate_stdev_factor, "outlier_detection.success_rate_stdev_factor")


HealthCheckKind = Literal["http", "tcp"]


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """Active health checking of every endpoint of a cluster, by the sidecar itself.

    ``kind`` ``http``: ``GET path`` with ``Host: host`` (default: the cluster's name), healthy when
    the status is in one of ``expected_statuses`` (half-open ``[start, end)`` ranges, default
    200-399); ``tcp``: healthy when a connection opens. A probe fails after ``timeout_s``. Probes
    run every ``interval_s`` plus a random 0..``interval_jitter_s``. An endpoint turns unhealthy
    after ``unhealthy_threshold`` failed probes in a row and healthy again after
    ``healthy_threshold`` passing ones; a new endpoint is unchecked until its first probe, which
    decides at once (as Envoy). Only endpoints the registry *and* the checks call healthy get
    traffic (the balancer's panic threshold still applies).
    """

    kind: HealthCheckKind = "http"
    interval_s: float = 5.0
    timeout_s: float = 1.0
    interval_jitter_s: float = 0.0
    healthy_threshold: int = 2
    unhealthy_threshold: int = 3
    path: str = "/"
    host: str = ""
    expected_statuses: tuple[tuple[int, int], ...] = ((200, 400),)

    def __post_init__(self) -> None:
        if self.kind not in ("http", "tcp"):
            raise ValueError(f"health_check: kind must be http or tcp, got {self.kind!r}")
        _positive(self.interval_s, "health_check.interval")
        _positive(self.timeout_s, "health_check.timeout")
        _non_negative(self.interval_jitter_s, "health_check.interval_jitter")
        _int_in(self.healthy_threshold, "health_check.healthy_threshold", 1, 1000)
        _int_in(self.unhealthy_threshold, "health_check.unhealthy_threshold", 1, 1000)
        if not self.path.startswith("/") or any(c in self.path for c in " \r\n\t"):
            raise ValueError(f"health_check.http.path: must start with '/' and hold no spaces, got {self.path!r}")
        if any(c in self.host for c in " /\r\n\t"):
            raise ValueError(f"health_check.http.host: must be a host name, got {self.host!r}")
        if not self.expected_statuses:
            raise ValueError("health_check.http.expected_statuses: needs at least one range")
        for start, end in self.expected_statuses:
            if not (100 <= start < end <= 600):
                raise ValueError(
                    f"health_check.http.expected_statuses: [{start}, {end}) is not a range within 100..600"
                )

    def expects(self, status: int) -> bool:
        """Whether an HTTP probe's status counts as passing."""
        return any(start <= status < end for start, end in self.expected_statuses)


__all__ = [
    "DEFAULT_BACKOFF_BASE_S",
    "DEFAULT_CIRCUIT_BREAKERS",
    "DEFAULT_RETRY_BUFFER_LIMIT",
    "ISTIO_DEFAULT_RETRY_ON",
    "REDIRECT_CODES",
    "RETRY_ON_CONDITIONS",
    "CircuitBreakers",
    "FaultAbort",
    "FaultDelay",
    "FaultPolicy",
    "HealthCheck",
    "HealthCheckKind",
    "MirrorPolicy",
    "OutlierDetection",
    "Redirect",
    "RetryBudget",
    "RetryPolicy",
]
