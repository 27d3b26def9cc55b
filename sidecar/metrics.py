"""Sidecar metrics: plain counters on the hot path, Prometheus exposition at scrape time.

prometheus-client's labelled ``Counter.inc`` / ``Histogram.observe`` take a lock and walk a few
objects per call (about 1-2 µs each, measured in bench/sidecar_bench.py's notes); per request
that is a large share of the proxy's budget. So requests update small slotted objects that the
active config hands out ready-made (one per listener/route/cluster), and a custom collector
registered with prometheus-client turns them into metric families when ``/metrics`` is read.
Nothing per request allocates beyond an int.

Series (all ``mesh_sidecar_*``):
- ``requests_total{listener,route,cluster,code}`` and ``request_duration_seconds{listener,route,cluster}``
  (histogram, from the request's first byte to the response's last);
- ``downstream_connections_active{listener}``, ``downstream_connections_total{listener}``,
  ``downstream_protocol_errors_total{listener,code}``;
- ``upstream_errors_total{cluster,kind}`` (connect_failure, connect_timeout, reset, protocol, timeout);
- ``upstream_pool_connections{endpoint,state}`` (active/idle), ``upstream_pool_connections_created_total{endpoint}``,
  ``upstream_pool_reused_total{endpoint}``, ``upstream_pool_connect_failures_total{endpoint}``,
  ``upstream_pool_waiting{endpoint}``;
- ``tcp_connections_total{listener}``, ``tcp_connections_active{listener}``, ``tcp_bytes_total{listener,direction}``,
  ``tcp_connect_failures_total{listener}``;
- ``config_updates_total{result}`` (applied/rejected), ``config_info{version}``, ``draining``;
- ``access_log_entries_total``, ``access_log_dropped_total`` (when an access log is configured).

Istio's standard request metrics come from the same objects (docs/observability.md):
``istio_requests_total`` and ``istio_request_duration_milliseconds`` with ``reporter``,
``source_*``, ``destination_*``, ``request_protocol``, ``response_code``, ``response_flags`` and
``connection_security_policy``. Their label values are ``IstioLabels`` resolved from config when
the active config is built (``sidecar.active``) and kept on each ``RequestStats``; requests only
count. Requests with Envoy response flags (rare: local failures) are also counted by (code, flags).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from sidecar.http1.upstream_pool import UpstreamPools

# Seconds; dense below 25 ms where a sidecar hop lives.
LATENCY_BOUNDS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


# Label names of Istio's standard request metrics, in the order ``IstioLabels`` holds their values.
ISTIO_LABELS: tuple[str, ...] = (
    "reporter",
    "source_workload",
    "source_canonical_service",
    "destination_service",
    "destination_workload",
    "destination_canonical_service",
    "destination_version",
    "request_protocol",
    "connection_security_policy",
)
IstioLabels = tuple[str, str, str, str, str, str, str, str, str]
UNKNOWN = "unknown"
NO_ISTIO_LABELS: IstioLabels = ("destination", UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, "http", "none")


class RequestStats:
    """Counts by status code and a latency histogram for one (listener, route, cluster).

    ``flagged`` counts the requests that ended with Envoy response flags, by (code, flags); they
    are in ``codes`` too. ``istio`` is the Istio label values for this (listener, route, cluster),
    set at each config build.
    """

    __slots__ = ("buckets", "codes", "flagged", "istio", "sum")

    def __init__(self) -> None:
        self.codes: dict[int, int] = {}
        self.buckets = [0] * (len(LATENCY_BOUNDS) + 1)
        self.sum = 0.0
        self.flagged: dict[tuple[int, str], int] = {}
        self.istio: IstioLabels = NO_ISTIO_LABELS

    def record(self, status: int, seconds: float) -> None:
        codes = self.codes
        codes[status] = codes.get(status, 0) + 1
        self.buckets[bisect_left(LATENCY_BOUNDS, seconds)] += 1
        self.sum += seconds

    def record_flagged(self, status: int, flags: str, seconds: float) -> None:
        """A request that ended with response flags (a local failure: no route, overflow, timeout ...)."""
        self.record(status, seconds)
        key = (status, flags)
        self.flagged[key] = self.flagged.get(key, 0) + 1


class ListenerStats:
    __slots__ = ("active", "errors", "total")

    def __init__(self) -> None:
        self.active = 0
        self.total = 0
        self.errors: dict[int, int] = {}

    def protocol_error(self, status: int) -> None:
        self.errors[status] = self.errors.get(status, 0) + 1


class TcpStats:
    __slots__ = ("active", "bytes_rx", "bytes_tx", "connect_failures", "total")

    def __init__(self) -> None:
        self.active = 0
        self.total = 0
        self.bytes_rx = 0  # client → upstream
        self.bytes_tx = 0  # upstream → client
        self.connect_failures = 0


class UpstreamErrors:
    """Upstream failures of one cluster by kind."""

    __slots__ = ("kinds",)

    def __init__(self) -> None:
        self.kinds: dict[str, int] = {}

    def add(self, kind: str) -> None:
        self.kinds[kind] = self.kinds.get(kind, 0) + 1


class SidecarMetrics(Collector):
    """Holds every counter object (they outlive config swaps) and exposes them to Prometheus."""

    def __init__(self, workload: str = "") -> None:
        self.workload = workload  # this sidecar's own service (Istio's source/destination workload labels)
        self._requests: dict[tuple[str, str, str], RequestStats] = {}
        self._listeners: dict[str, ListenerStats] = {}
        self._tcp: dict[str, TcpStats] = {}
        self._upstream_errors: dict[str, UpstreamErrors] = {}
        self.config_applied = 0
        self.config_rejected = 0
        self.config_version = ""
        self.draining = False
        self._pools: UpstreamPools | None = None
        self._extra: list[Callable[[], Iterator[Metric]]] = []

    def add_collector(self, collect: Callable[[], Iterator[Metric]]) -> None:
        """More families exposed with these (the access log's counters)."""
        self._extra.append(collect)

    # --- handed out once per config swap / listener start ---

    def request_stats(self, listener: str, route: str, cluster: str) -> RequestStats:
        key = (listener, route, cluster)
        stats = self._requests.get(key)
        if stats is None:
            stats = self._requests[key] = RequestStats()
        return stats

    def listener_stats(self, listener: str) -> ListenerStats:
        stats = self._listeners.get(listener)
        if stats is None:
            stats = self._listeners[listener] = ListenerStats()
        return stats

    def tcp_stats(self, listener: str) -> TcpStats:
        stats = self._tcp.get(listener)
        if stats is None:
            stats = self._tcp[listener] = TcpStats()
        return stats

    def upstream_errors(self, cluster: str) -> UpstreamErrors:
        errors = self._upstream_errors.get(cluster)
        if errors is None:
            errors = self._upstream_errors[cluster] = UpstreamErrors()
        return errors

    def attach_pools(self, pools: UpstreamPools) -> None:
        self._pools = pools

    def total_requests(self) -> int:
        return sum(sum(s.codes.values()) for s in self._requests.values())

    # --- exposition ---

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "mesh_sidecar_requests",
            "HTTP requests by listener, route, cluster and status code",
            labels=["listener", "route", "cluster", "code"],
        )
        durations = HistogramMetricFamily(
            "mesh_sidecar_request_duration_seconds",
            "Time from a request's first byte to its response's last byte",
            labels=["listener", "route", "cluster"],
        )
        for (listener, route, cluster), stats in list(self._requests.items()):
            for code, count in sorted(stats.codes.items()):
                requests.add_metric([listener, route, cluster, str(code)], count)
            running = 0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip(LATENCY_BOUNDS, stats.buckets, strict=False):
                running += count
                buckets.append((repr(bound), running))
            running += stats.buckets[-1]
            buckets.append(("+Inf", running))
            durations.add_metric([listener, route, cluster], buckets, stats.sum)
        yield requests
        yield durations
        yield from self._collect_istio()

        active = GaugeMetricFamily(
            "mesh_sidecar_downstream_connections_active", "Open client connections", labels=["listener"]
        )
        total = CounterMetricFamily(
            "mesh_sidecar_downstream_connections", "Accepted client connections", labels=["listener"]
        )
        errors = CounterMetricFamily(
            "mesh_sidecar_downstream_protocol_errors",
            "Requests refused by the proxy itself (400, 414, 431, 505 ...)",
            labels=["listener", "code"],
        )
        for name, ls in list(self._listeners.items()):
            active.add_metric([name], ls.active)
            total.add_metric([name], ls.total)
            for code, count in sorted(ls.errors.items()):
                errors.add_metric([name, str(code)], count)
        yield active
        yield total
        yield errors

        upstream = CounterMetricFamily(
            "mesh_sidecar_upstream_errors", "Upstream failures by cluster and kind", labels=["cluster", "kind"]
        )
        for cluster, ue in list(self._upstream_errors.items()):
            for kind, count in sorted(ue.kinds.items()):
                upstream.add_metric([cluster, kind], count)
        yield upstream

        yield from self._collect_pools()
        yield from self._collect_tcp()

        updates = CounterMetricFamily(
            "mesh_sidecar_config_updates", "Config snapshots applied or rejected", labels=["result"]
        )
        updates.add_metric(["applied"], self.config_applied)
        updates.add_metric(["rejected"], self.config_rejected)
        yield updates
        info = GaugeMetricFamily("mesh_sidecar_config_info", "The config version in use", labels=["version"])
        info.add_metric([self.config_version], 1)
        yield info
        yield GaugeMetricFamily("mesh_sidecar_draining", "1 while draining", value=1 if self.draining else 0)
        for extra in self._extra:
            yield from extra()

    def _collect_istio(self) -> Iterator[Metric]:
        """Istio's standard series: the per-(listener, route, cluster) objects summed by Istio labels."""
        counts: dict[tuple[str, ...], int] = {}
        histograms: dict[IstioLabels, tuple[list[int], float]] = {}
        for stats in list(self._requests.values()):
            labels = stats.istio
            plain = dict(stats.codes)
            for (code, flags), count in list(stats.flagged.items()):
                plain[code] = plain.get(code, 0) - count
                key = (*labels, str(code), flags)
                counts[key] = counts.get(key, 0) + count
            for code, count in plain.items():
                if count > 0:
                    plain_key = (*labels, str(code), "-")
                    counts[plain_key] = counts.get(plain_key, 0) + count
            if not stats.codes:
                continue
            seen = histograms.get(labels)
            if seen is None:
                histograms[labels] = (list(stats.buckets), stats.sum)
            else:
                merged = [a + b for a, b in zip(seen[0], stats.buckets, strict=True)]
                histograms[labels] = (merged, seen[1] + stats.sum)
        requests = CounterMetricFamily(
            "istio_requests",
            "Requests (Istio standard metric), by source, destination, response code and flags",
            labels=[*ISTIO_LABELS, "response_code", "response_flags"],
        )
        for series, count in sorted(counts.items()):
            requests.add_metric(list(series), count)
        yield requests
        durations = HistogramMetricFamily(
            "istio_request_duration_milliseconds",
            "Request duration in milliseconds (Istio standard metric), by source and destination",
            labels=list(ISTIO_LABELS),
        )
        for labels, (counts_by_bucket, total) in sorted(histograms.items()):
            running = 0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip(LATENCY_BOUNDS, counts_by_bucket, strict=False):
                running += count
                buckets.append((_ms(bound), running))
            running += counts_by_bucket[-1]
            buckets.append(("+Inf", running))
            durations.add_metric(list(labels), buckets, total * 1000.0)
        yield durations

    def _collect_pools(self) -> Iterator[Metric]:
        conns = GaugeMetricFamily(
            "mesh_sidecar_upstream_pool_connections",
            "Upstream connections by endpoint and state",
            labels=["endpoint", "state"],
        )
        created = CounterMetricFamily(
            "mesh_sidecar_upstream_pool_connections_created", "Upstream connections opened", labels=["endpoint"]
        )
        reused = CounterMetricFamily(
            "mesh_sidecar_upstream_pool_reused", "Requests sent on a kept-alive connection", labels=["endpoint"]
        )
        failures = CounterMetricFamily(
            "mesh_sidecar_upstream_pool_connect_failures", "Failed upstream connects", labels=["endpoint"]
        )
        waiting = GaugeMetricFamily(
            "mesh_sidecar_upstream_pool_waiting", "Requests waiting for a connection slot", labels=["endpoint"]
        )
        if self._pools is not None:
            for pool in list(self._pools.pools.values()):
                address = pool.address
                conns.add_metric([address, "active"], pool.active)
                conns.add_metric([address, "idle"], len(pool.idle))
                created.add_metric([address], pool.created)
                reused.add_metric([address], pool.reused)
                failures.add_metric([address], pool.connect_failures)
                waiting.add_metric([address], len(pool.waiters))
        yield conns
        yield created
        yield reused
        yield failures
        yield waiting

    def _collect_tcp(self) -> Iterator[Metric]:
        total = CounterMetricFamily("mesh_sidecar_tcp_connections", "Accepted L4 connections", labels=["listener"])
        active = GaugeMetricFamily("mesh_sidecar_tcp_connections_active", "Open L4 connections", labels=["listener"])
        moved = CounterMetricFamily(
            "mesh_sidecar_tcp_bytes", "Bytes relayed by L4 listeners", labels=["listener", "direction"]
        )
        failures = CounterMetricFamily(
            "mesh_sidecar_tcp_connect_failures", "L4 upstream connects that failed", labels=["listener"]
        )
        for name, ts in list(self._tcp.items()):
            total.add_metric([name], ts.total)
            active.add_metric([name], ts.active)
            moved.add_metric([name, "rx"], ts.bytes_rx)
            moved.add_metric([name, "tx"], ts.bytes_tx)
            failures.add_metric([name], ts.connect_failures)
        yield total
        yield active
        yield moved
        yield failures


def _ms(seconds: float) -> str:
    """A bucket bound in milliseconds as Prometheus prints it (``0.5``, ``1.0``, ``2.5`` ...)."""
    return repr(round(seconds * 1000.0, 6))
