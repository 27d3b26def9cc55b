"""Snapshots from the registry alone (``CONSUL_HTTP_ADDR``): one cluster per service the app calls.

No control plane and no config file: the sidecar learns services lazily. The proxy calls
``demand(host)`` for a Host its snapshot has no virtual host for; if the Host names a service
(``<svc>``, ``<svc>.service[.<dc>].consul``, ``<svc>.<ns>[.svc[.cluster.local]]``), a blocking
watch of ``/v1/health/service/<svc>`` starts, ``demand`` waits (at most ``demand_timeout``, 2 s)
for its first answer to be applied, and says whether the Host is now routed.

Per watched service, from its instances:
- none at all: the service is *unknown* — no virtual host (the proxy's 404). It stays watched so
  it appears when registered, but unknown names are bounded (``max_unknown``, 1,000, least
  recently asked dropped first), so a client spraying Host headers cannot grow anything;
- some, none passing: a virtual host and a cluster with no endpoints (the proxy's 503);
- otherwise: virtual host ``<svc>`` with the domains of ``mesh.model.hosts.service_domains``
  (namespace from Meta ``k8s-namespace``, default ``default``; datacenter from the node) and
  cluster ``<svc>`` (round robin) of the passing instances: address ``Service.Address`` else
  ``Node.Address``, weight ``Weights.Passing``.

Why the watch is not ``?passing``-filtered: one answer then tells "unknown" (no instance) from
"known, nothing healthy" (instances, none passing), which the 404/503 split needs; passing is
decided here exactly as Consul's filter does (every check of the instance and its node passing).

``--upstream NAME=PORT`` services are watched from the start (and never dropped); the first
snapshot waits up to ``demand_timeout`` for their first answers. Changes arriving within
``coalesce`` (5 ms) of each other become one snapshot. Each watch holds one pooled connection
while parked, so the client's pool must cover the watched services: the source's own client has
no connection limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from discovery.client import RegistryClient
from discovery.client_models import HealthServiceEntry
from lb import Endpoint
from mesh.model.hosts import (
    DEFAULT_CLUSTER_DOMAIN,
    DEFAULT_CONSUL_DOMAIN,
    DEFAULT_NAMESPACE,
    endpoint_key,
    service_domains,
    service_from_host,
)
from mesh.model.routing import select_virtual_host
from mesh.model.snapshot import DEFAULT_POLICY, Cluster, Route, RouteMatch, Snapshot, VirtualHost, WeightedCluster
from sidecar.sources.base import Apply, SourceStats, offer
from sidecar.sources.defaults import OUTBOUND, SidecarSettings, standard_snapshot

log = logging.getLogger(__name__)

NAMESPACE_META = "k8s-namespace"


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """What one known service contributes to the snapshot."""

    virtual_host: VirtualHost
    cluster: Cluster


def service_config(name: str, entries: Iterable[HealthServiceEntry]) -> ServiceConfig | None:
    """The virtual host and cluster for a service's instances; ``None`` when it has none (unknown)."""
    instances = sorted(entries, key=lambda e: (e.node.name, e.service.id))
    if not instances:
        return None
    endpoints: dict[str, Endpoint] = {}
    for entry in instances:
        address, port = entry.effective_address, entry.service.port
        if entry.status != "passing" or not address or not 0 < port < 65536:
            continue
        key = endpoint_key(address, port)
        if key in endpoints:  # two registrations of one address: one endpoint
            continue
        metadata = (("consul.node", entry.node.name), ("consul.service_id", entry.service.id))
        endpoints[key] = Endpoint(
            key=key,
            host=address,
            port=port,
            weight=max(1, entry.service.weights.passing),
            metadata=metadata + tuple(sorted(entry.service.meta.items())),
        )
    domains: dict[str, None] = {}
    for entry in instances:
        namespace = entry.service.meta.get(NAMESPACE_META) or DEFAULT_NAMESPACE
        for domain in service_domains(name, namespace, entry.node.datacenter or None):
            domains[domain] = None
    route = Route("default", RouteMatch(), (WeightedCluster(name),))
    return ServiceConfig(
        VirtualHost(name, tuple(domains), (route,)),
        Cluster(name, DEFAULT_POLICY, tuple(endpoints.values()), service=name),
    )


class _Watched:
    """One followed service: its watch task and what its last answer made of it."""

    __slots__ = ("answered", "config", "generation", "name", "task")

    def __init__(self, name: str) -> None:
        self.name = name
        self.task: asyncio.Task[None] | None = None
        self.answered = asyncio.Event()
        self.config: ServiceConfig | None = None
        self.generation = 0  # the change counter when this service last changed the snapshot


class RegistrySource:
    """See the module doc. ``client`` (not owned) defaults to one from the ``CONSUL_*`` environment."""

    name = "registry"

    def __init__(
        self,
        settings: SidecarSettings,
        client: RegistryClient | None = None,
        *,
        demand_timeout: float = 2.0,
        coalesce: float = 0.005,
        max_unknown: int = 1000,
        cluster_domain: str = DEFAULT_CLUSTER_DOMAIN,
        consul_domain: str = DEFAULT_CONSUL_DOMAIN,
        wait: float | None = None,
    ) -> None:
        if max_unknown < 1:
            raise ValueError("max_unknown must be >= 1")
        self.settings = settings.validate()
        self._own_client = client is None
        self._client = client if client is not None else RegistryClient(max_connections=0)
        self._demand_timeout = demand_timeout
        self._coalesce = coalesce
        self._max_unknown = max_unknown
        self._cluster_domain = cluster_domain
        self._consul_domain = consul_domain
        self._wait = wait
        self.stats = SourceStats()
        self._eager = frozenset(name for name, _ in settings.upstreams)
        self._watched: dict[str, _Watched] = {}
        self._unknown: OrderedDict[str, None] = OrderedDict()  # least recently asked first
        self._apply: Apply | None = None
        self._changed = asyncio.Event()
        self._generation = 0  # bumped by every change to what the snapshot would hold
        self._published_generation = -1
        self._published = asyncio.Event()  # replaced after each publish
        self._accepted: Snapshot | None = None
        self._offered: tuple[tuple[str, ServiceConfig], ...] = ()
        self._counter = 0

    @property
    def watched(self) -> frozenset[str]:
        """Names currently watched (known, unknown and upstreams)."""
        return frozenset(self._watched)

    @property
    def unknown(self) -> tuple[str, ...]:
        """Watched names with no instances, least recently asked first."""
        return tuple(self._unknown)

    async def run(self, apply: Apply) -> None:
        """Watch the upstreams, publish the first snapshot, then one per (coalesced) change."""
        self._apply = apply
        try:
            for name in sorted(self._eager):
                self._watch(name)
            first = [w.answered.wait() for w in self._watched.values()]
            if first:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.gather(*first), self._demand_timeout)
            self._publish()
            while True:
                await self._changed.wait()
                await asyncio.sleep(self._coalesce)
                self._changed.clear()
                self._publish()
        finally:
            self._apply = None
            await self._stop_watches()
            if self._own_client:
                await self._client.close()

    async def demand(self, host: str) -> bool:
        """Start following the service ``host`` names, if any; True when the applied snapshot routes it."""
        if self._routes(host):
            return True
        ref = service_from_host(host, self._cluster_domain, self._consul_domain)
        if ref is None:
            return False
        watched = self._watched.get(ref.service)
        if watched is None:
            watched = self._watch(ref.service)
        elif ref.service in self._unknown:
            self._unknown.move_to_end(ref.service)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._applied(watched), self._demand_timeout)
        return self._routes(host)

    # === watches ===

    def _watch(self, name: str) -> _Watched:
        watched = _Watched(name)
        self._watched[name] = watched
        if name not in self._eager:
            self._mark_unknown(name)  # unknown until an answer shows instances
        watched.task = asyncio.create_task(self._follow(watched), name=f"registry-source:{name}")
        return watched

    async def _follow(self, watched: _Watched) -> None:
        watch = self._client.watch_health_service(watched.name, passing=False, wait=self._wait)
        try:
            async for result in watch:
                self._on_instances(watched, result.value)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("watch of service %s failed", watched.name)
        finally:
            watched.answered.set()  # never leave a demand waiting on a dead watch

    def _on_instances(self, watched: _Watched, entries: list[HealthServiceEntry]) -> None:
        if self._watched.get(watched.name) is not watched:
            return  # dropped while the answer was in flight
        config = service_config(watched.name, entries)
        if config is None and watched.name not in self._eager:
            self._mark_unknown(watched.name)
        else:
            self._unknown.pop(watched.name, None)
        if config != watched.config:
            watched.config = config
            self._generation += 1
            watched.generation = self._generation
            self._changed.set()
        watched.answered.set()

    def _mark_unknown(self, name: str) -> None:
        self._unknown[name] = None
        self._unknown.move_to_end(name)
        while len(self._unknown) > self._max_unknown:
            oldest, _ = self._unknown.popitem(last=False)
            self._drop(oldest)

    def _drop(self, name: str) -> None:
        watched = self._watched.pop(name, None)
        if watched is None:
            return
        log.debug("no longer watching unknown service %s", name)
        if watched.task is not None:
            watched.task.cancel()
        watched.answered.set()
        if watched.config is not None:  # cannot happen for an unknown name, but stay consistent
            self._generation += 1
            self._changed.set()

    async def _stop_watches(self) -> None:
        tasks = [w.task for w in self._watched.values() if w.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._watched.clear()
        self._unknown.clear()

    # === snapshots ===

    def _publish(self) -> None:
        apply = self._apply
        if apply is None:
            return
        generation = self._generation
        configs = self._configs()
        # A burst that ends where it started (a flap inside the coalescing window) changes nothing:
        # offer nothing. Tuple equality checks identity first, so this costs one pass.
        if configs != self._offered or self.stats.attempts == 0:
            self._offered = configs
            snapshot = self.build_snapshot(configs)
            if offer(apply, snapshot, self.stats, log):
                self._accepted = snapshot
        self._published_generation = generation
        event, self._published = self._published, asyncio.Event()
        event.set()

    def _configs(self) -> tuple[tuple[str, ServiceConfig], ...]:
        return tuple((name, w.config) for name, w in sorted(self._watched.items()) if w.config is not None)

    def build_snapshot(self, configs: tuple[tuple[str, ServiceConfig], ...] | None = None) -> Snapshot:
        """The snapshot for what is known now (or for ``configs``); a new version each call."""
        self._counter += 1
        known = dict(self._configs() if configs is None else configs)
        upstream_endpoints = {name: known[name].cluster.endpoints for name in self._eager if name in known}
        return standard_snapshot(
            self.settings,
            f"registry:{self._counter}",
            (config.virtual_host for config in known.values()),
            {config.cluster.name: config.cluster for config in known.values()},
            upstream_endpoints,
        )

    async def _applied(self, watched: _Watched) -> None:
        """Wait for the first answer about ``watched`` and for the snapshot that carries it."""
        await watched.answered.wait()
        while self._published_generation < watched.generation and self._apply is not None:
            await self._published.wait()

    def _routes(self, host: str) -> bool:
        snapshot = self._accepted
        if snapshot is None:
            return False
        table = snapshot.route_tables.get(OUTBOUND)
        return table is not None and select_virtual_host(table, host) is not None


__all__ = ["NAMESPACE_META", "RegistrySource", "ServiceConfig", "service_config"]
