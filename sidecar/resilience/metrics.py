"""Prometheus series of the resilience layers: plain counters per request, families at scrape time.

Same approach as ``sidecar.metrics`` (the proxy's): requests bump ints on small slotted objects
handed out once per config swap; ``ResilienceMetrics.collect`` turns them, and the layers' own
counters (breakers, outlier detectors, health checkers, mirror limiter), into metric families
when ``/metrics`` is read. To merge with the proxy's series, register it in the sidecar's
registry next to ``SidecarMetrics`` (``registry.register(resilience_metrics)``) or append its
``collect`` to ``SidecarMetrics._extra``; the names do not overlap.

Series (all ``mesh_sidecar_*``; ``cluster`` is the upstream cluster, ``route`` the route name):

| series | type | labels | meaning |
|---|---|---|---|
| ``retries_total`` | counter | cluster | retry attempts made (Envoy ``upstream_rq_retry``) |
| ``retry_success_total`` | counter | cluster | retries whose answer was not retriable again |
| ``retry_overflows_total`` | counter | cluster | retries refused by max_retries / the retry budget |
| ``retry_limit_exceeded_total`` | counter | cluster | retriable failures with no retry left (num_retries) |
| ``timeouts_total`` | counter | cluster, kind | ``route`` (504 to the client) or ``per_try`` |
| ``overflows_total`` | counter | cluster, limit | breaker refusals (fast 503s; connection-limit waits) |
| ``circuit_breaker_active`` | gauge | cluster, resource | requests / pending / connections / retries now |
| ``circuit_breaker_open`` | gauge | cluster, resource | 1 while the resource is at its limit (Envoy ``rq_open`` ...) |
| ``outlier_ejections_total`` | counter | cluster, reason | ejections enforced (reason: the detector) |
| ``outlier_detections_total`` | counter | cluster, reason | outliers detected (enforced or not) |
| ``outlier_ejections_overflow_total`` | counter | cluster | detections not enforced because of max_ejection_percent |
| ``outlier_ejections_active`` | gauge | cluster | endpoints ejected now |
| ``health_checks_total`` | counter | cluster, result | probes by result (success / failure) |
| ``health_check_transitions_total`` | counter | cluster, state | endpoints turning healthy / unhealthy |
| ``health_check_unavailable`` | gauge | cluster | endpoints not (yet) passing their checks |
| ``faults_injected_total`` | counter | route, kind | injected ``delay`` / ``abort`` |
| ``mirrors_total`` | counter | cluster, result | mirrored copies ``sent`` / ``failed`` / ``dropped`` |
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from sidecar.resilience.mirror import MirrorLimiter
    from sidecar.resilience.policy import ClusterResilience


class RetryStats:
    """Retry and timeout counters of one cluster."""

    __slots__ = ("limit_exceeded", "overflows", "retries", "success", "timeouts_per_try", "timeouts_route")

    def __init__(self) -> None:
        self.retries = 0
        self.success = 0
        self.overflows = 0
        self.limit_exceeded = 0
        self.timeouts_route = 0
        self.timeouts_per_try = 0


class FaultStats:
    """Injected faults of one route."""

    __slots__ = ("aborts", "delays")

    def __init__(self) -> None:
        self.delays = 0
        self.aborts = 0


class ResilienceMetrics(Collector):
    """Counter objects (they outlive config swaps) and the exposition of every resilience series."""

    def __init__(self) -> None:
        self._retries: dict[str, RetryStats] = {}
        self._faults: dict[str, FaultStats] = {}
        self._clusters: Callable[[], Mapping[str, ClusterResilience]] = dict
        self._mirrors: MirrorLimiter | None = None

    def retry_stats(self, cluster: str) -> RetryStats:
        stats = self._retries.get(cluster)
        if stats is None:
            stats = self._retries[cluster] = RetryStats()
        return stats

    def fault_stats(self, route: str) -> FaultStats:
        stats = self._faults.get(route)
        if stats is None:
            stats = self._faults[route] = FaultStats()
        return stats

    def attach(self, clusters: Callable[[], Mapping[str, ClusterResilience]], mirrors: MirrorLimiter) -> None:
        """Where the long-lived layer objects are (``Resilience`` calls this once)."""
        self._clusters = clusters
        self._mirrors = mirrors

    def collect(self) -> Iterator[Metric]:
        yield from self._collect_retries()
        yield from self._collect_breakers()
        yield from self._collect_outliers()
        yield from self._collect_health()
        faults = CounterMetricFamily(
            "mesh_sidecar_faults_injected", "Faults injected by route and kind", labels=["route", "kind"]
        )
        for route, fs in sorted(self._faults.items()):
            faults.add_metric([route, "delay"], fs.delays)
            faults.add_metric([route, "abort"], fs.aborts)
        yield faults
        mirrors = CounterMetricFamily(
            "mesh_sidecar_mirrors", "Mirrored request copies by shadow cluster and result", labels=["cluster", "result"]
        )
        limiter = self._mirrors
        if limiter is not None:
            for result, counts in (("sent", limiter.sent), ("failed", limiter.failed), ("dropped", limiter.dropped)):
                for cluster, count in sorted(counts.items()):
                    mirrors.add_metric([cluster, result], count)
        yield mirrors

    def _collect_retries(self) -> Iterator[Metric]:
        retries = CounterMetricFamily("mesh_sidecar_retries", "Retry attempts made", labels=["cluster"])
        success = CounterMetricFamily(
            "mesh_sidecar_retry_success", "Retries whose answer was final", labels=["cluster"]
        )
        overflows = CounterMetricFamily(
            "mesh_sidecar_retry_overflows", "Retries refused by max_retries or the retry budget", labels=["cluster"]
        )
        exceeded = CounterMetricFamily(
            "mesh_sidecar_retry_limit_exceeded", "Retriable failures with no retry left", labels=["cluster"]
        )
        timeouts = CounterMetricFamily(
            "mesh_sidecar_timeouts", "Upstream timeouts by kind (route, per_try)", labels=["cluster", "kind"]
        )
        for cluster, rs in sorted(self._retries.items()):
            retries.add_metric([cluster], rs.retries)
            success.add_metric([cluster], rs.success)
            overflows.add_metric([cluster], rs.overflows)
            exceeded.add_metric([cluster], rs.limit_exceeded)
            timeouts.add_metric([cluster, "route"], rs.timeouts_route)
            timeouts.add_metric([cluster, "per_try"], rs.timeouts_per_try)
        yield from (retries, success, overflows, exceeded, timeouts)

    def _collect_breakers(self) -> Iterator[Metric]:
        overflows = CounterMetricFamily(
            "mesh_sidecar_overflows", "Requests refused by a circuit breaker, by limit", labels=["cluster", "limit"]
        )
        active = GaugeMetricFamily(
            "mesh_sidecar_circuit_breaker_active", "Breaker resources in use", labels=["cluster", "resource"]
        )
        open_ = GaugeMetricFamily(
            "mesh_sidecar_circuit_breaker_open",
            "1 while a breaker resource is at its limit",
            labels=["cluster", "resource"],
        )
        for name, cluster in sorted(self._clusters().items()):
            breaker = cluster.breaker
            for limit, count in sorted(breaker.overflows.items()):
                overflows.add_metric([name, limit], count)
            limits = breaker.limits
            for resource, used, limit_value in (
                ("requests", breaker.requests, limits.max_requests),
                ("pending", breaker.pending, limits.max_pending_requests),
                ("connections", breaker.connections, limits.max_connections),
                ("retries", breaker.retries, breaker.retry_limit()),
            ):
                active.add_metric([name, resource], used)
                open_.add_metric([name, resource], 1 if used >= limit_value else 0)
        yield from (overflows, active, open_)

    def _collect_outliers(self) -> Iterator[Metric]:
        ejections = CounterMetricFamily(
            "mesh_sidecar_outlier_ejections", "Outlier ejections enforced", labels=["cluster", "reason"]
        )
        detections = CounterMetricFamily(
            "mesh_sidecar_outlier_detections", "Outliers detected, enforced or not", labels=["cluster", "reason"]
        )
        overflow = CounterMetricFamily(
            "mesh_sidecar_outlier_ejections_overflow",
            "Detections not enforced because max_ejection_percent was reached",
            labels=["cluster"],
        )
        ejected = GaugeMetricFamily(
            "mesh_sidecar_outlier_ejections_active", "Endpoints ejected now", labels=["cluster"]
        )
        for name, cluster in sorted(self._clusters().items()):
            detector = cluster.outlier
            if detector is None:
                continue
            for reason, count in sorted(detector.ejections_enforced.items()):
                ejections.add_metric([name, reason], count)
            for reason, count in sorted(detector.ejections_detected.items()):
                detections.add_metric([name, reason], count)
            overflow.add_metric([name], detector.ejections_overflow)
            ejected.add_metric([name], len(detector.ejected))
        yield from (ejections, detections, overflow, ejected)

    def _collect_health(self) -> Iterator[Metric]:
        checks = CounterMetricFamily(
            "mesh_sidecar_health_checks", "Active health-check probes by result", labels=["cluster", "result"]
        )
        transitions = CounterMetricFamily(
            "mesh_sidecar_health_check_transitions", "Endpoints changing health state", labels=["cluster", "state"]
        )
        unavailable = GaugeMetricFamily(
            "mesh_sidecar_health_check_unavailable", "Endpoints not passing their checks", labels=["cluster"]
        )
        for name, cluster in sorted(self._clusters().items()):
            checker = cluster.health
            if checker is None:
                continue
            checks.add_metric([name, "success"], checker.passes)
            checks.add_metric([name, "failure"], checker.failures)
            for state, count in sorted(checker.transitions.items()):
                transitions.add_metric([name, state], count)
            unavailable.add_metric([name], len(checker.unavailable))
        yield from (checks, transitions, unavailable)


__all__ = ["FaultStats", "ResilienceMetrics", "RetryStats"]
