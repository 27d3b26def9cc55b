"""Keeps a ``RegistryView`` current from the registry with blocking queries; DNS never waits on HTTP.

What runs, all as tasks on the server's event loop:

- one blocking watch of ``/v1/catalog/services`` (the set of service names);
- one blocking watch of ``/v1/health/service/<name>`` per service, **not** passing-filtered, so
  an endpoint's aggregated status (worst of its own and its node's checks) can tell warning
  from critical; watches start for new names and are cancelled for removed ones;
- one blocking watch of ``/v1/catalog/nodes`` (node addresses and meta, for node answers);
- a cheap liveness probe (``/v1/status/leader``) every ``probe_interval`` seconds, which catches
  a partitioned registry whose parked long polls would otherwise hang unnoticed for minutes.

Every change that alters what DNS sees publishes a brand-new, immutable ``RegistryView``
(``version + 1``) through one reference assignment; readers keep whatever view they picked up.
Bursts are coalesced: the first change after a publish schedules the next one
``coalesce_delay`` seconds later (2 ms by default), and everything arriving until then rides
along. The first view with ``synced=True`` is published only after the first full read (the
service list, each listed service's health, and the node list); until then ``view`` is the
empty version-0 view.

Cost, and how it scales. One long poll per service is how Consul's own tooling follows services
(consul-template, Consul's ``api/watch`` plans, Envoy xDS via the agent cache): the HTTP API has
no single query that returns the health of every service, and per-service queries mean a change
wakes, re-renders and re-sends only that service. The price is one parked HTTP/1.1 request, and
so one TCP connection, per service while idle; with 10k services that is 10k sockets on both
ends, a few KiB each. Consequences:

- The client's pool (``RegistryClient(max_connections=...)``) must be larger than the number of
  services plus three; a watch that cannot get a pooled connection within the client's
  ``request_timeout`` fails as ``RegistryUnavailable`` and ``ready`` turns False. Use
  ``recommended_max_connections(services)`` to size it, or ``max_connections=0`` (no limit).
  The process's open-file limit (``ulimit -n``) must cover it as well.
- A real Consul agent allows ``limits.http_max_conns_per_client`` (200 by default) connections
  per client IP; raise it above the service count when pointing this server at Consul.
- Startup is staggered: first (non-blocking, index 0) reads go through a semaphore of
  ``startup_concurrency`` requests, so a 10k-service sync does not open 10k connections at
  once; each watch parks its long poll after its first read, so connections grow gradually.
- Each change copies the services map (O(services), ~0.5 ms at 10k) to build the new view.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any, Final, TypeVar

from discovery.client import Consistency, RegistryClient
from discovery.client_models import CatalogNode, HealthServiceEntry, KVPair, QueryResult, RegistryError
from discovery.watch import Watch
from dnsserver.view import META_CLUSTER_IP, Endpoint, NodeInfo, RegistryView

T = TypeVar("T")

log = logging.getLogger(__name__)

_SERVICES_KEY: Final = "catalog/services"
_NODES_KEY: Final = "catalog/nodes"
_VIPS_KEY: Final = "kv/mesh/vips"
VIP_PREFIX: Final = "mesh/vips/"  # written by the control plane (mesh.control.vips), read here
META_HEADLESS: Final = "k8s-headless"
_SERVICE_PREFIX: Final = "health/service/"
_EMPTY_SERVICES: Final[MappingProxyType[str, tuple[Endpoint, ...]]] = MappingProxyType({})
_EMPTY_NODES: Final[MappingProxyType[str, NodeInfo]] = MappingProxyType({})
_CONNECTION_HEADROOM: Final = 16  # catalog/services, catalog/nodes, the probe, and slack

OnChange = Callable[[RegistryView], None]


def recommended_max_connections(services: int) -> int:
    """A ``RegistryClient`` pool size that lets every watch of ``services`` services park at once."""
    return max(256, services + _CONNECTION_HEADROOM)


def endpoint_from_entry(entry: HealthServiceEntry) -> Endpoint:
    """An ``Endpoint`` from one ``/v1/health/service`` entry (not passing-filtered).

    ``status`` is the worst of the instance's and its node's checks (critical > warning >
    passing; unknown counts as critical); the address is ``ServiceAddress``, else the node's.
    """
    service = entry.service
    return Endpoint(
        service=service.name,
        service_id=service.id,
        node=entry.node.name,
        address=entry.effective_address,
        own_address=bool(service.address),
        port=service.port,
        status=entry.status,
        tags=tuple(service.tags),
        meta=MappingProxyType(dict(service.meta)),
        weight_passing=service.weights.passing,
        weight_warning=service.weights.warning,
    )


def vip_map(pairs: Iterable[KVPair]) -> dict[tuple[str, str], str]:
    """The control plane's service VIPs (``mesh/vips/<namespace>/<service>`` → address) by (namespace, service)."""
    out: dict[tuple[str, str], str] = {}
    for pair in pairs:
        parts = pair.key[len(VIP_PREFIX) :].split("/")
        if len(parts) == 2 and pair.value:
            out[(parts[0], parts[1].lower())] = pair.value.decode(errors="replace").strip()
    return out


def with_vips(endpoints: tuple[Endpoint, ...], key: str, vips: Mapping[tuple[str, str], str]) -> tuple[Endpoint, ...]:
    """Endpoints of service ``key`` with their namespace's VIP as ``k8s-cluster-ip`` (a ClusterIP service),
    unless they carry their own or say ``k8s-headless: "true"``."""
    out = []
    for ep in endpoints:
        vip = vips.get((ep.namespace, key))
        if vip and not ep.cluster_ip and ep.meta.get(META_HEADLESS, "").lower() != "true":
            ep = replace(ep, meta=MappingProxyType({**ep.meta, META_CLUSTER_IP: vip}))
        out.append(ep)
    return tuple(out)


def node_from_catalog(node: CatalogNode) -> NodeInfo:
    return NodeInfo(name=node.name, address=node.address, meta=MappingProxyType(dict(node.meta)))


def _endpoint_order(endpoint: Endpoint) -> tuple[str, str]:
    return (endpoint.node, endpoint.service_id)


class ViewWatcher:
    """Follows the registry and keeps ``view`` current; see the module docstring.

    ``client`` is not owned: close it after ``close()``. ``on_change(view)`` is called (on the
    event loop, exceptions logged) after each publish. ``wait``/``consistency`` are passed to
    every blocking read; ``min_interval``/``backoff_base``/``backoff_cap`` tune each ``Watch``.
    ``probe_interval`` 0 disables the liveness probe.
    """

    def __init__(
        self,
        client: RegistryClient,
        *,
        datacenter: str = "dc1",
        on_change: OnChange | None = None,
        wait: float | None = None,
        consistency: Consistency | None = None,
        min_interval: float = 0.25,
        backoff_base: float = 0.5,
        backoff_cap: float = 5.0,
        startup_concurrency: int = 32,
        coalesce_delay: float = 0.002,
        probe_interval: float = 5.0,
    ) -> None:
        if startup_concurrency < 1:
            raise ValueError("startup_concurrency must be >= 1")
        if coalesce_delay < 0 or probe_interval < 0:
            raise ValueError("coalesce_delay and probe_interval must be >= 0")
        self._client = client
        self._datacenter = datacenter
        self._on_change = on_change
        self._wait = wait
        self._consistency: Consistency | None = consistency
        self._watch_options: dict[str, Any] = {
            "min_interval": min_interval,
            "backoff_base": backoff_base,
            "backoff_cap": backoff_cap,
            "changes_only": True,
        }
        self._startup = asyncio.Semaphore(startup_concurrency)
        self._coalesce_delay = coalesce_delay
        self._probe_interval = probe_interval
        self._restart_delay = max(backoff_cap, 0.1)

        self._view = RegistryView(datacenter=datacenter)
        self._synced = asyncio.Event()
        # Per exact service name: its watch task and its latest endpoints.
        self._service_tasks: dict[str, asyncio.Task[None]] = {}
        self._by_name: dict[str, tuple[Endpoint, ...]] = {}
        self._names_by_key: dict[str, set[str]] = {}  # lower-cased name -> exact names
        self._endpoints: dict[str, tuple[Endpoint, ...]] = {}  # what the next view publishes
        self._nodes: MappingProxyType[str, NodeInfo] = _EMPTY_NODES
        self._pending: set[str] = set()  # services whose first health read has not arrived
        self._vips: dict[tuple[str, str], str] = {}  # (namespace, lower-cased service) → VIP (mesh.control.vips)
        self._services_loaded = False
        self._nodes_loaded = False
        self._failing: set[str] = set()  # watch keys whose latest request failed
        self._reachable = True
        self._was_ready = False
        self._tasks: list[asyncio.Task[None]] = []
        self._retired: set[asyncio.Task[None]] = set()
        self._publish_handle: asyncio.Handle | None = None
        self._started = False
        self._closed = False

    # === public ===

    @property
    def view(self) -> RegistryView:
        """The current snapshot; never mutated, replaced whole on change."""
        return self._view

    @property
    def ready(self) -> bool:
        """The first full sync completed and the registry answers every watch right now."""
        return self._view.synced and self._reachable and not self._failing

    @property
    def service_watches(self) -> int:
        """How many per-service health watches are running (one parked connection each)."""
        return len(self._service_tasks)

    async def start(self) -> None:
        """Start the watches and return at once; use ``wait_synced`` to wait for the first view."""
        if self._started:
            raise RuntimeError("ViewWatcher.start() was already called")
        self._started = True
        self._tasks.append(asyncio.create_task(self._follow_services(), name="dns-watch:catalog/services"))
        self._tasks.append(asyncio.create_task(self._follow_nodes(), name="dns-watch:catalog/nodes"))
        self._tasks.append(asyncio.create_task(self._follow_vips(), name="dns-watch:kv/mesh/vips"))
        if self._probe_interval > 0:
            self._tasks.append(asyncio.create_task(self._probe(), name="dns-watch:probe"))

    async def wait_synced(self, timeout: float | None = None) -> RegistryView:
        """Wait for the first full sync (``TimeoutError`` after ``timeout``) and return the view."""
        async with asyncio.timeout(timeout):
            await self._synced.wait()
        return self._view

    async def close(self) -> None:
        """Cancel every watch and wait for them to end; the last view stays readable. Idempotent."""
        self._closed = True
        if self._publish_handle is not None:
            self._publish_handle.cancel()
            self._publish_handle = None
        tasks = [*self._tasks, *self._service_tasks.values(), *self._retired]
        self._tasks.clear()
        self._service_tasks.clear()
        self._retired.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # === watches ===

    def _fetcher(
        self, key: str, read: Callable[[int], Awaitable[QueryResult[T]]]
    ) -> Callable[[int], Awaitable[QueryResult[T]]]:
        """Wrap one blocking read: stagger index-0 reads, and record reachability per watch.

        After a failed request the next one is a non-blocking read (index 0), not a long poll on
        the old index: a registry that came back (restarted, possibly with its index at or below
        ours) would otherwise park that poll until ``wait`` expires (minutes), keeping the watch
        marked failing (``ready`` False) and its data possibly stale all that time.
        """

        async def fetch(index: int) -> QueryResult[T]:
            if key in self._failing:
                index = 0
            try:
                if index == 0:
                    async with self._startup:
                        result = await read(index)
                else:
                    result = await read(index)
            except RegistryError:
                self._mark(key, ok=False)
                raise
            self._mark(key, ok=True)
            return result

        return fetch

    async def _supervise(self, key: str, watch: Watch[T], handle: Callable[[T], None]) -> None:
        """Feed each new result to ``handle``; survive unexpected errors (retryable ones never get here)."""
        while not self._closed:
            try:
                async for result in watch:
                    handle(result.value)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: watch failed; restarting in %.1fs", key, self._restart_delay)
                self._mark(key, ok=False)
                await asyncio.sleep(self._restart_delay)

    async def _follow_services(self) -> None:
        async def read(index: int) -> QueryResult[dict[str, tuple[str, ...]]]:
            return await self._client.catalog_services(index=index, wait=self._wait, consistency=self._consistency)

        watch = Watch(self._fetcher(_SERVICES_KEY, read), name=_SERVICES_KEY, **self._watch_options)
        await self._supervise(_SERVICES_KEY, watch, self._on_services)

    async def _follow_nodes(self) -> None:
        async def read(index: int) -> QueryResult[list[CatalogNode]]:
            return await self._client.catalog_nodes(index=index, wait=self._wait, consistency=self._consistency)

        watch = Watch(self._fetcher(_NODES_KEY, read), name=_NODES_KEY, **self._watch_options)
        await self._supervise(_NODES_KEY, watch, self._on_nodes)

    async def _follow_vips(self) -> None:
        async def read(index: int) -> QueryResult[dict[tuple[str, str], str]]:
            result = await self._client.kv_list(VIP_PREFIX, index=index, wait=self._wait, consistency=self._consistency)
            return QueryResult(result.index, vip_map(result.value or ()), result.known_leader, result.last_contact_ms)

        # Not part of readiness: without the control plane's VIPs every name still answers (its endpoints).
        watch = Watch(read, name=_VIPS_KEY, **self._watch_options)
        async for result in watch:
            self._on_vips(result.value)

    async def _follow_service(self, name: str) -> None:
        key = _service_key(name)

        async def read(index: int) -> QueryResult[list[HealthServiceEntry]]:
            return await self._client.health_service(
                name, False, index=index, wait=self._wait, consistency=self._consistency
            )

        watch = Watch(self._fetcher(key, read), name=key, **self._watch_options)
        await self._supervise(key, watch, lambda entries: self._on_health(name, entries))

    async def _probe(self) -> None:
        while True:
            await asyncio.sleep(self._probe_interval)
            try:
                await self._client.leader()
            except RegistryError as exc:
                if self._reachable:
                    log.warning("registry probe failed: %s", exc)
                self._reachable = False
            else:
                self._reachable = True
            self._note_readiness()

    # === results ===

    def _on_services(self, names: dict[str, tuple[str, ...]]) -> None:
        if self._closed:
            return
        wanted = set(names)
        for name in [n for n in self._service_tasks if n not in wanted]:
            self._stop_service(name)
        for name in sorted(wanted.difference(self._service_tasks)):
            self._pending.add(name)
            self._service_tasks[name] = asyncio.create_task(self._follow_service(name), name=f"dns-watch:{name}")
        self._services_loaded = True
        self._check_synced()

    def _stop_service(self, name: str) -> None:
        task = self._service_tasks.pop(name)
        task.cancel()
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)
        self._pending.discard(name)
        self._failing.discard(_service_key(name))
        self._by_name.pop(name, None)
        key = name.lower()
        names = self._names_by_key.get(key)
        if names is not None:
            names.discard(name)
            if not names:
                del self._names_by_key[key]
        self._refresh(key)
        self._check_synced()
        self._note_readiness()

    def _on_health(self, name: str, entries: list[HealthServiceEntry]) -> None:
        if self._closed or name not in self._service_tasks:
            return
        self._by_name[name] = tuple(sorted((endpoint_from_entry(e) for e in entries), key=_endpoint_order))
        key = name.lower()
        self._names_by_key.setdefault(key, set()).add(name)
        self._refresh(key)
        if name in self._pending:
            self._pending.discard(name)
            self._check_synced()

    def _on_vips(self, vips: dict[tuple[str, str], str]) -> None:
        if self._closed:
            return
        keys = vips.keys() | self._vips.keys()
        changed = {service for key in keys if vips.get(key) != self._vips.get(key) for service in key[1:]}
        self._vips = vips
        for service in changed:
            self._refresh(service)

    def _refresh(self, key: str) -> None:
        """Recompute one lower-cased service's endpoints (names differing only in case are merged)."""
        names = self._names_by_key.get(key, ())
        merged: tuple[Endpoint, ...]
        if len(names) == 1:
            merged = self._by_name.get(next(iter(names)), ())
        else:
            merged = tuple(sorted(_chain(self._by_name.get(n, ()) for n in names), key=_endpoint_order))
        if self._vips:
            merged = with_vips(merged, key, self._vips)
        if merged:
            if self._endpoints.get(key) == merged:
                return
            self._endpoints[key] = merged
        elif self._endpoints.pop(key, None) is None:
            return
        self._changed()

    def _on_nodes(self, nodes: list[CatalogNode]) -> None:
        if self._closed:
            return
        latest = {node.name.lower(): node_from_catalog(node) for node in nodes}
        self._nodes_loaded = True
        if latest != self._nodes:
            self._nodes = MappingProxyType(latest)
            self._changed()
        self._check_synced()

    # === publishing and readiness ===

    def _check_synced(self) -> None:
        if self._synced.is_set() or not (self._services_loaded and self._nodes_loaded) or self._pending:
            return
        self._synced.set()
        log.info("registry view synced: %d services, %d nodes", len(self._endpoints), len(self._nodes))
        self._publish()

    def _changed(self) -> None:
        if not self._synced.is_set() or self._publish_handle is not None or self._closed:
            return
        loop = asyncio.get_running_loop()
        if self._coalesce_delay > 0:
            self._publish_handle = loop.call_later(self._coalesce_delay, self._publish)
        else:
            self._publish_handle = loop.call_soon(self._publish)

    def _publish(self) -> None:
        if self._publish_handle is not None:
            self._publish_handle.cancel()
            self._publish_handle = None
        view = RegistryView(
            version=self._view.version + 1,
            datacenter=self._datacenter,
            services=MappingProxyType(dict(self._endpoints)) if self._endpoints else _EMPTY_SERVICES,
            nodes=self._nodes,
            synced=True,
        )
        self._view = view  # the one reference swap readers see
        self._note_readiness()
        if self._on_change is not None:
            try:
                self._on_change(view)
            except Exception:
                log.exception("on_change callback failed")

    def _mark(self, key: str, *, ok: bool) -> None:
        if ok:
            self._failing.discard(key)
            self._reachable = True
        elif not key.startswith(_SERVICE_PREFIX) or key.removeprefix(_SERVICE_PREFIX) in self._service_tasks:
            self._failing.add(key)  # a cancelled service's last failure must not count
        self._note_readiness()

    def _note_readiness(self) -> None:
        ready = self.ready
        if ready == self._was_ready:
            return
        self._was_ready = ready
        if ready:
            log.info("registry view ready (version %d)", self._view.version)
        else:
            log.warning(
                "registry unreachable (%d failing watches); serving the last view (version %d)",
                len(self._failing),
                self._view.version,
            )


def _service_key(name: str) -> str:
    return _SERVICE_PREFIX + name


def _chain(groups: Iterable[tuple[Endpoint, ...]]) -> list[Endpoint]:
    return [endpoint for group in groups for endpoint in group]


__all__ = ["OnChange", "ViewWatcher", "endpoint_from_entry", "node_from_catalog", "recommended_max_connections"]
