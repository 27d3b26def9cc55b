"""The active configuration: a snapshot plus everything requests need, built once per swap.

A new ``Snapshot`` is turned into an ``ActiveConfig`` — balancers built over each cluster's
endpoints, header edits encoded to bytes, metric objects looked up — before anything sees it.
``ConfigHolder.swap`` then replaces one reference. A request reads ``holder.current`` once, when
it starts, and keeps that object to its end, so a swap never changes the route, cluster or
balancer of a request in flight, and there is no lock anywhere.

What survives a swap: each cluster's ``LoadTracker`` (in-flight counts and latency estimates,
keyed by cluster name; pruned to the new endpoint set), the metric objects (cumulative), and the
upstream connection pools (keyed by endpoint address, owned by the server), and the resilience
state (``sidecar.resilience.policy.Resilience``: breaker counts, outlier and health-check history,
carried over by cluster name). Balancers see each cluster's *effective* endpoints: the ejected and
actively-unhealthy ones marked unhealthy.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from lb import Affinity, Balancer, LoadTracker, build_balancer
from mesh.model.snapshot import PASSTHROUGH_ROUTE, Cluster, HeaderToAdd, Listener, Route, RouteTable, Snapshot
from sidecar.metrics import UNKNOWN, IstioLabels, RequestStats, SidecarMetrics, UpstreamErrors
from sidecar.resilience.metrics import ResilienceMetrics
from sidecar.resilience.policy import ClusterResilience, Resilience, ResilienceConfig, RouteResilience

if TYPE_CHECKING:
    from sidecar.access_log import AccessLog

ROUTE_CACHE_SIZE = 4096


class ClusterRuntime:
    """A cluster with its balancer (built for this snapshot) and its long-lived load tracker."""

    __slots__ = (
        "affinity",
        "balancer",
        "cluster",
        "connect_timeout_s",
        "errors",
        "idle_timeout_s",
        "load",
        "max_connections",
        "max_requests_per_connection",
        "name",
        "resilience",
    )

    def __init__(
        self,
        cluster: Cluster,
        balancer: Balancer,
        load: LoadTracker,
        errors: UpstreamErrors,
        resilience: ClusterResilience,
    ) -> None:
        self.cluster = cluster
        self.resilience = resilience
        self.name = cluster.name
        self.balancer = balancer
        self.load = load
        self.errors = errors
        self.affinity: Affinity | None = cluster.lb.affinity
        self.connect_timeout_s = cluster.connect_timeout_s
        self.idle_timeout_s = cluster.idle_timeout_s
        self.max_connections = cluster.max_connections_per_endpoint
        self.max_requests_per_connection = cluster.max_requests_per_connection  # 0: unlimited


def encode_adds(adds: tuple[HeaderToAdd, ...]) -> tuple[tuple[tuple[bytes, bytes], ...], frozenset[bytes]]:
    """Header additions as wire pairs, plus the names whose client values they replace (append=False)."""
    pairs = tuple((h.name.encode("latin-1"), h.value.encode("latin-1")) for h in adds)
    replaced = frozenset(h.name.lower().encode("latin-1") for h in adds if not h.append)
    return pairs, replaced


class RouteRuntime:
    """A route as one listener uses it: targets resolved, header edits as bytes, stats per cluster."""

    __slots__ = (
        "host",
        "mirrors",
        "name",
        "request_add",
        "request_remove",
        "resilience",
        "response_add",
        "response_remove",
        "route",
        "single",
        "stats",
        "targets",
        "timeout_s",
    )

    def __init__(
        self,
        route: Route,
        clusters: Mapping[str, ClusterRuntime],
        stats: Callable[[str], RequestStats],
        resilience: RouteResilience,
    ) -> None:
        self.route = route
        self.resilience = resilience
        self.host = None if route.host_rewrite is None else route.host_rewrite.encode("latin-1")  # Host upstream
        self.mirrors = bool(route.mirrors)
        self.name = route.name
        self.timeout_s = route.timeout_s or 0.0
        self.targets = {t.name: clusters.get(t.name) for t in route.clusters}
        self.single: ClusterRuntime | None = None
        if len(route.clusters) == 1:
            self.single = self.targets[route.clusters[0].name]
        self.stats = {t.name: stats(t.name) for t in route.clusters}
        if not route.clusters:
            self.stats[""] = stats("")  # a redirect route's own answers
        add, replaced = encode_adds(route.request_headers_add)
        self.request_add = add
        self.request_remove = frozenset(n.encode("latin-1") for n in route.request_headers_remove) | replaced
        add, replaced = encode_adds(route.response_headers_add)
        self.response_add = add
        self.response_remove = frozenset(n.encode("latin-1") for n in route.response_headers_remove) | replaced


class ListenerRuntime:
    """What one listener needs per request under this snapshot.

    HTTP: the route table with a ``RouteRuntime`` per route (by identity) and a small cache of
    (host, method, path) → route, used only when no route looks at headers or the query string
    (then those three decide the route alone); ``passthrough``, on outbound listeners of an
    ``ALLOW_ANY`` snapshot, the route for Hosts no route knows. TCP: the cluster.
    """

    __slots__ = (
        "annotate",
        "cache",
        "cacheable",
        "cluster",
        "listener",
        "needs_headers",
        "no_route",
        "passthrough",
        "routes",
        "sni",
        "start_traces",
        "table",
    )

    def __init__(
        self,
        listener: Listener,
        table: RouteTable | None,
        cluster: ClusterRuntime | None,
        clusters: Mapping[str, ClusterRuntime],
        metrics: SidecarMetrics,
        resilience: ResilienceConfig,
        access_log: AccessLog | None = None,
        passthrough: RouteResilience | None = None,
    ) -> None:
        self.listener = listener
        self.table = table
        self.cluster = cluster
        # TCP by SNI (a gateway's PASSTHROUGH server): (server names, cluster) in configured order
        self.sni = tuple((r.server_names, clusters[r.cluster]) for r in listener.sni_routes if r.cluster in clusters)
        self.passthrough: RouteRuntime | None = None
        if passthrough is not None and table is not None and listener.direction == "outbound":
            route = passthrough.route
            self.passthrough = RouteRuntime(
                route, clusters, _stats_for(metrics, listener, route.name, clusters), passthrough
            )
        self.routes: dict[int, RouteRuntime] = {}
        self.needs_headers = False
        self.cacheable = True
        self.cache: dict[tuple[bytes, bytes, str], RouteRuntime | None] = {}
        # Outbound HTTP listeners start a W3C trace for requests that carry none (docs/observability.md).
        self.start_traces = listener.protocol == "http" and listener.direction == "outbound"
        # One test per request decides whether ``Exchange._annotate`` runs (traces, access-log request ids).
        self.annotate = self.start_traces or access_log is not None
        self.no_route = metrics.request_stats(listener.name, "", "")
        self.no_route.istio = istio_labels(listener, None, metrics.workload)
        if table is not None:
            for vhost in table.virtual_hosts:
                for route in vhost.routes:
                    self.routes[id(route)] = RouteRuntime(
                        route,
                        clusters,
                        _stats_for(metrics, listener, route.name, clusters),
                        resilience.routes[id(route)],
                    )
                    if route.match.headers:
                        self.needs_headers = True
                        self.cacheable = False
                    if route.match.query:
                        self.cacheable = False
        for cluster_rt in clusters.values():
            affinity = cluster_rt.affinity
            if affinity is not None and affinity.kind != "source_ip":
                self.needs_headers = True


def _stats_for(
    metrics: SidecarMetrics, listener: Listener, route: str, clusters: Mapping[str, ClusterRuntime]
) -> Callable[[str], RequestStats]:
    """Stats for (listener, route, cluster), their Istio labels resolved now, once per build."""

    def stats(cluster: str) -> RequestStats:
        found = metrics.request_stats(listener.name, route, cluster)
        runtime = clusters.get(cluster)
        found.istio = istio_labels(listener, None if runtime is None else runtime.cluster, metrics.workload)
        return found

    return stats


def istio_labels(listener: Listener, cluster: Cluster | None, workload: str) -> IstioLabels:
    """Istio's standard-metric label values for requests on ``listener`` to ``cluster`` (None: no route).

    Everything comes from config (the cluster's name and service, the sidecar's own service),
    never from a request, so the series are bounded by the config's clusters. Outbound (reporter
    ``source``): the source is this workload, the destination the cluster's service (its FQDN for
    control-plane clusters ``outbound|port|subset|fqdn``, whose subset is the version). Inbound
    (reporter ``destination``): the destination is this workload; the caller is not known yet
    (no peer identity before mTLS), so the source is ``unknown``.
    """
    own = workload or UNKNOWN
    if listener.direction == "inbound":
        return ("destination", UNKNOWN, UNKNOWN, own, own, own, UNKNOWN, "http", "none")
    service, subset, canonical = UNKNOWN, UNKNOWN, UNKNOWN
    if cluster is not None:
        parts = cluster.name.split("|")
        if len(parts) == 4 and parts[0] == "outbound" and parts[3]:
            service = parts[3]
            subset = parts[2] or UNKNOWN
            canonical = cluster.service or parts[3].split(".")[0]
        else:
            service = cluster.service or cluster.name
            canonical = service.split(".")[0]
    return ("source", own, own, service, canonical, canonical, subset, "http", "none")


class ActiveConfig:
    """A snapshot ready to serve: clusters, per-listener runtimes, resilience objects, the build's time."""

    __slots__ = ("access_log", "built_at", "clusters", "listeners", "resilience", "snapshot", "version")

    def __init__(
        self,
        snapshot: Snapshot,
        clusters: Mapping[str, ClusterRuntime],
        listeners: Mapping[str, ListenerRuntime],
        built_at: float,
        resilience: ResilienceConfig,
        access_log: AccessLog | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.access_log = access_log  # None: access logging off
        self.resilience = resilience
        self.version = snapshot.version
        self.clusters = clusters
        self.listeners = listeners
        self.built_at = built_at


def build_active(
    snapshot: Snapshot,
    previous: ActiveConfig | None,
    metrics: SidecarMetrics,
    *,
    rng: random.Random,
    clock: Callable[[], float] = time.monotonic,
    resilience: Resilience | None = None,
    access_log: AccessLog | None = None,
) -> ActiveConfig:
    """Everything requests read, built from ``snapshot``; load trackers carried over by cluster name.

    ``resilience``: the sidecar's long-lived resilience state (a private one when None, for tools
    and tests that build configs alone). The caller calls ``resilience.activate`` after the swap.
    Raises ``ValueError`` when a balancer cannot be built (the source NACKs and the old config stays).
    """
    if resilience is None:
        resilience = Resilience(ResilienceMetrics(), _ignore_change, clock=clock, rng=rng)
    res_config = resilience.build(snapshot)
    clusters: dict[str, ClusterRuntime] = {}
    for name, cluster in snapshot.clusters.items():
        load = previous.clusters[name].load if previous is not None and name in previous.clusters else None
        if load is None:
            load = LoadTracker(clock)
        cluster_res = res_config.clusters[name]
        endpoints = cluster_res.effective_endpoints(cluster.endpoints)
        balancer = build_balancer(cluster.lb, endpoints, load=load, rng=rng, clock=clock)
        load.prune({e.key for e in cluster.endpoints})
        clusters[name] = ClusterRuntime(cluster, balancer, load, metrics.upstream_errors(name), cluster_res)
    frozen_clusters = MappingProxyType(clusters)
    passthrough = None
    if snapshot.outbound_traffic_policy == "ALLOW_ANY":
        passthrough = RouteResilience(
            PASSTHROUGH_ROUTE, resilience, resilience.metrics.fault_stats(PASSTHROUGH_ROUTE.name)
        )
    listeners: dict[str, ListenerRuntime] = {}
    for listener in snapshot.listeners:
        table = snapshot.route_tables.get(listener.route_table) if listener.protocol == "http" else None
        cluster_rt = clusters.get(listener.cluster) if listener.protocol == "tcp" else None
        listeners[listener.name] = ListenerRuntime(
            listener, table, cluster_rt, frozen_clusters, metrics, res_config, access_log, passthrough
        )
    return ActiveConfig(snapshot, frozen_clusters, MappingProxyType(listeners), clock(), res_config, access_log)


def rebuild_balancer(runtime: ClusterRuntime, *, rng: random.Random, clock: Callable[[], float]) -> None:
    """After an ejection or health change: a new balancer over the cluster's effective endpoints,
    with the same load tracker, swapped in by one reference assignment (a request in flight keeps
    the balancer it already read; neither balancer is ever mutated)."""
    cluster = runtime.cluster
    endpoints = runtime.resilience.effective_endpoints(cluster.endpoints)
    runtime.balancer = build_balancer(cluster.lb, endpoints, load=runtime.load, rng=rng, clock=clock)


def _ignore_change(name: str) -> None:
    """A private ``Resilience`` (no server behind it) has no balancers to rebuild."""


class ConfigHolder:
    """The one reference requests read, and a way to wait for the next swap (registry on-demand)."""

    def __init__(self, initial: ActiveConfig) -> None:
        self.current = initial
        self._swapped = asyncio.Event()

    def swap(self, active: ActiveConfig) -> ActiveConfig:
        """Replace the active config; returns the previous one."""
        previous = self.current
        self.current = active
        event = self._swapped
        self._swapped = asyncio.Event()
        event.set()
        return previous

    async def next_swap(self) -> ActiveConfig:
        """Wait for the next swap (callers bound the wait)."""
        await self._swapped.wait()
        return self.current


def empty_snapshot(version: str = "") -> Snapshot:
    return Snapshot(version=version)
