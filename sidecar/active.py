"""The active configuration: a snapshot plus everything requests need, built once per swap.

A new ``Snapshot`` is turned into an ``ActiveConfig`` — balancers built over each cluster's
endpoints, header edits encoded to bytes, metric objects looked up — before anything sees it.
``ConfigHolder.swap`` then replaces one reference. A request reads ``holder.current`` once, when
it starts, and keeps that object to its end, so a swap never changes the route, cluster or
balancer of a request in flight, and there is no lock anywhere.

What survives a swap: each cluster's ``LoadTracker`` (in-flight counts and latency estimates,
keyed by cluster name; pruned to the new endpoint set), the metric objects (cumulative), and the
upstream connection pools (keyed by endpoint address, owned by the server).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType

from lb import Affinity, Balancer, LoadTracker, build_balancer
from mesh.model.snapshot import Cluster, HeaderToAdd, Listener, Route, RouteTable, Snapshot
from sidecar.metrics import RequestStats, SidecarMetrics, UpstreamErrors

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
        "name",
    )

    def __init__(self, cluster: Cluster, balancer: Balancer, load: LoadTracker, errors: UpstreamErrors) -> None:
        self.cluster = cluster
        self.name = cluster.name
        self.balancer = balancer
        self.load = load
        self.errors = errors
        self.affinity: Affinity | None = cluster.lb.affinity
        self.connect_timeout_s = cluster.connect_timeout_s
        self.idle_timeout_s = cluster.idle_timeout_s
        self.max_connections = cluster.max_connections_per_endpoint


def encode_adds(adds: tuple[HeaderToAdd, ...]) -> tuple[tuple[tuple[bytes, bytes], ...], frozenset[bytes]]:
    """Header additions as wire pairs, plus the names whose client values they replace (append=False)."""
    pairs = tuple((h.name.encode("latin-1"), h.value.encode("latin-1")) for h in adds)
    replaced = frozenset(h.name.lower().encode("latin-1") for h in adds if not h.append)
    return pairs, replaced


class RouteRuntime:
    """A route as one listener uses it: targets resolved, header edits as bytes, stats per cluster."""

    __slots__ = (
        "name",
        "request_add",
        "request_remove",
        "response_add",
        "response_remove",
        "route",
        "single",
        "stats",
        "targets",
        "timeout_s",
    )

    def __init__(
        self, route: Route, clusters: Mapping[str, ClusterRuntime], stats: Callable[[str], RequestStats]
    ) -> None:
        self.route = route
        self.name = route.name
        self.timeout_s = route.timeout_s or 0.0
        self.targets = {t.name: clusters.get(t.name) for t in route.clusters}
        self.single: ClusterRuntime | None = None
        if len(route.clusters) == 1:
            self.single = self.targets[route.clusters[0].name]
        self.stats = {t.name: stats(t.name) for t in route.clusters}
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
    (then those three decide the route alone). TCP: the cluster.
    """

    __slots__ = ("cache", "cacheable", "cluster", "listener", "needs_headers", "no_route", "routes", "table")

    def __init__(
        self,
        listener: Listener,
        table: RouteTable | None,
        cluster: ClusterRuntime | None,
        clusters: Mapping[str, ClusterRuntime],
        metrics: SidecarMetrics,
    ) -> None:
        self.listener = listener
        self.table = table
        self.cluster = cluster
        self.routes: dict[int, RouteRuntime] = {}
        self.needs_headers = False
        self.cacheable = True
        self.cache: dict[tuple[bytes, bytes, str], RouteRuntime | None] = {}
        self.no_route = metrics.request_stats(listener.name, "", "")
        if table is not None:
            for vhost in table.virtual_hosts:
                for route in vhost.routes:
                    self.routes[id(route)] = RouteRuntime(
                        route, clusters, _stats_for(metrics, listener.name, route.name)
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


def _stats_for(metrics: SidecarMetrics, listener: str, route: str) -> Callable[[str], RequestStats]:
    def stats(cluster: str) -> RequestStats:
        return metrics.request_stats(listener, route, cluster)

    return stats


class ActiveConfig:
    """A snapshot ready to serve: clusters, per-listener runtimes, and the build's time."""

    __slots__ = ("built_at", "clusters", "listeners", "snapshot", "version")

    def __init__(
        self,
        snapshot: Snapshot,
        clusters: Mapping[str, ClusterRuntime],
        listeners: Mapping[str, ListenerRuntime],
        built_at: float,
    ) -> None:
        self.snapshot = snapshot
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
) -> ActiveConfig:
    """Everything requests read, built from ``snapshot``; load trackers carried over by cluster name.

    Raises ``ValueError`` when a balancer cannot be built (the source NACKs and the old config stays).
    """
    clusters: dict[str, ClusterRuntime] = {}
    for name, cluster in snapshot.clusters.items():
        load = previous.clusters[name].load if previous is not None and name in previous.clusters else None
        if load is None:
            load = LoadTracker(clock)
        balancer = build_balancer(cluster.lb, cluster.endpoints, load=load, rng=rng, clock=clock)
        load.prune({e.key for e in cluster.endpoints})
        clusters[name] = ClusterRuntime(cluster, balancer, load, metrics.upstream_errors(name))
    frozen_clusters = MappingProxyType(clusters)
    listeners: dict[str, ListenerRuntime] = {}
    for listener in snapshot.listeners:
        table = snapshot.route_tables.get(listener.route_table) if listener.protocol == "http" else None
        cluster_rt = clusters.get(listener.cluster) if listener.protocol == "tcp" else None
        listeners[listener.name] = ListenerRuntime(listener, table, cluster_rt, frozen_clusters, metrics)
    return ActiveConfig(snapshot, frozen_clusters, MappingProxyType(listeners), clock())


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
