"""A DestinationRule traffic policy → the cluster settings the sidecar's model has (pure).

| Istio | cluster |
|---|---|
| ``simple: ROUND_ROBIN`` / ``UNSPECIFIED`` / none | ``round_robin`` (as in registry mode) |
| ``simple: LEAST_REQUEST`` / ``LEAST_CONN`` | ``least_request`` |
| ``simple: RANDOM`` | ``random`` |
| ``simple: PASSTHROUGH`` | ``round_robin`` (no original destination exists; the apply warns) |
| ``consistentHash`` (ring hash, or ``maglev``) | ``ring_hash`` / ``maglev`` with affinity header, cookie or source IP |
| ``connectionPool.tcp.connectTimeout`` | ``connect_timeout_s`` |
| ``connectionPool.http.idleTimeout`` (else ``tcp.idleTimeout``) | ``idle_timeout_s`` |
| ``connectionPool.http.maxRequestsPerConnection`` | ``max_requests_per_connection`` (0 or unset: unlimited) |
| ``tcp.maxConnections``, ``http.http1MaxPendingRequests`` / ``http2MaxRequests`` / ``maxRetries`` | breakers |
| ``outlierDetection`` | ``outlier_detection`` (Istio's defaults: 5 consecutive 5xx, 10 s, 30 s, 10 %) |
| ``outlierDetection.minHealthPercent`` | the balancer's ``panic_threshold`` (Istio's default 0: panic mode off) |

Circuit-breaker limits a DestinationRule does not set are 2^32-1, as Istio sets them. As Pilot
does, an ``outlierDetection`` turns the cluster's healthy-panic threshold into its
``minHealthPercent`` (0 when not given: ejected and unhealthy endpoints stay out even when few are
left); a cluster without outlier detection keeps Envoy's 50 %. ``consecutive5xxErrors: 0`` /
``consecutiveGatewayErrors: 0`` (or not given, for gateway errors) switch that detector off, as
Istio does with ``enforcing_*: 0``; success-rate ejection stays off (Istio never enables it).

Everything else in a traffic policy is listed by ``mesh.rules.warnings`` as not enforced.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lb import Affinity, PolicySpec
from mesh.model.policies import CircuitBreakers, OutlierDetection
from mesh.model.snapshot import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_IDLE_TIMEOUT_S, DEFAULT_POLICY
from mesh.rules.destination_rule import ConnectionPool, LoadBalancer, TrafficPolicy
from mesh.rules.destination_rule import OutlierDetection as IstioOutlierDetection

UNLIMITED = 2**32 - 1
ISTIO_CIRCUIT_BREAKERS = CircuitBreakers(UNLIMITED, UNLIMITED, UNLIMITED, UNLIMITED)
"""Istio sets every connection-pool limit to 2^32-1 unless a DestinationRule says otherwise."""

_SIMPLE = {
    "": "round_robin",
    "UNSPECIFIED": "round_robin",
    "ROUND_ROBIN": "round_robin",
    "PASSTHROUGH": "round_robin",
    "LEAST_REQUEST": "least_request",
    "LEAST_CONN": "least_request",
    "RANDOM": "random",
}


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    lb: PolicySpec = DEFAULT_POLICY
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    max_requests_per_connection: int = 0  # 0: unlimited
    circuit_breakers: CircuitBreakers = ISTIO_CIRCUIT_BREAKERS
    outlier_detection: OutlierDetection | None = None


DEFAULT_SETTINGS = ClusterSettings()


def cluster_settings(policy: TrafficPolicy | None) -> ClusterSettings:
    """Settings for one (already subset- and port-resolved) traffic policy."""
    if policy is None:
        return DEFAULT_SETTINGS
    lb = load_balancer_policy(policy.load_balancer)
    connect = DEFAULT_CONNECT_TIMEOUT_S
    idle = DEFAULT_IDLE_TIMEOUT_S
    max_requests = 0
    pool = policy.connection_pool
    if pool is not None:
        if pool.connect_timeout_s is not None:
            connect = pool.connect_timeout_s
        if pool.http_idle_timeout_s is not None:
            idle = pool.http_idle_timeout_s
        elif pool.tcp_idle_timeout_s is not None:
            idle = pool.tcp_idle_timeout_s
        max_requests = pool.max_requests_per_connection or 0
    detection = policy.outlier_detection
    if detection is not None:
        lb = replace(lb, panic_threshold=(detection.min_health_percent or 0) / 100)
    return ClusterSettings(lb, connect, idle, max_requests, circuit_breakers(pool), outlier_detection(detection))


def circuit_breakers(pool: ConnectionPool | None) -> CircuitBreakers:
    if pool is None:
        return ISTIO_CIRCUIT_BREAKERS

    def limit(value: int | None) -> int:
        return UNLIMITED if value is None else value

    return CircuitBreakers(
        max_connections=limit(pool.max_connections),
        max_pending_requests=limit(pool.http1_max_pending_requests),
        max_requests=limit(pool.http2_max_requests),
        max_retries=limit(pool.max_retries),
    )


def outlier_detection(detection: IstioOutlierDetection | None) -> OutlierDetection | None:
    if detection is None:
        return None
    base = detection.base_ejection_time_s if detection.base_ejection_time_s is not None else 30.0
    return OutlierDetection(
        consecutive_5xx=5 if detection.consecutive_5xx_errors is None else detection.consecutive_5xx_errors,
        consecutive_gateway_errors=detection.consecutive_gateway_errors or 0,
        interval_s=detection.interval_s if detection.interval_s is not None else 10.0,
        base_ejection_time_s=base,
        max_ejection_time_s=max(300.0, base),
        max_ejection_percent=float(
            detection.max_ejection_percent if detection.max_ejection_percent is not None else 10
        ),
    )


def load_balancer_policy(lb: LoadBalancer | None) -> PolicySpec:
    if lb is None:
        return PolicySpec()
    hashing = lb.consistent_hash
    if hashing is None:
        return PolicySpec(kind=_SIMPLE[lb.simple])
    affinity = Affinity(
        kind=hashing.source,
        name=hashing.name,
        cookie_ttl_s=hashing.cookie_ttl_s if hashing.source == "cookie" else None,
        cookie_path=hashing.cookie_path if hashing.source == "cookie" else "/",
    )
    if hashing.maglev:
        spec = PolicySpec(kind="maglev", affinity=affinity)
        if hashing.maglev_table_size is not None:
            spec = PolicySpec(kind="maglev", maglev_table_size=hashing.maglev_table_size, affinity=affinity)
        return spec.validate()
    if hashing.ring_min_size is not None:
        return PolicySpec(kind="ring_hash", ring_min_size=hashing.ring_min_size, affinity=affinity).validate()
    return PolicySpec(kind="ring_hash", affinity=affinity).validate()


__all__ = ["DEFAULT_SETTINGS", "ClusterSettings", "cluster_settings", "load_balancer_policy"]
