"""`mesh sidecar` as one start/stop unit: config source → active config → listeners, plus admin.

Wiring only. A config source calls ``apply(snapshot)`` for each new snapshot; ``apply`` builds
the ``ActiveConfig`` (balancers, header bytes, metric objects), binds the sockets of listeners
the snapshot adds (so a port conflict rejects the snapshot before anything changes), swaps the
one reference, then starts serving the new listeners and drains the ones it removed. Any
failure before the swap leaves the old config in place and is reported back (NACK).

Shutdown (SIGTERM, or ``POST /drain`` without exiting): listeners stop accepting, idle
keep-alive connections close, requests in flight finish (bounded by ``drain_timeout_s``),
then everything closes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from discovery.runtime.addresses import split_host_port
from mesh.model.dump import snapshot_to_dict
from mesh.model.snapshot import Listener, Snapshot
from sidecar.active import ActiveConfig, ConfigHolder, build_active, empty_snapshot, rebuild_balancer
from sidecar.admin import admin_routes
from sidecar.admin_http import AdminServer
from sidecar.http1.listener import HttpContext, HttpListener, HttpSettings
from sidecar.http1.upstream_pool import UpstreamPools
from sidecar.metrics import SidecarMetrics
from sidecar.resilience.metrics import ResilienceMetrics
from sidecar.resilience.policy import Resilience
from sidecar.security.wiring import SidecarSecurity
from sidecar.sources.base import APPLIED, ApplyResult, ConfigSource
from sidecar.tcp.listener import TcpContext, TcpListener
from sidecar.tls_termination import Loaded, TlsLoadError, TlsTermination, load_certificates

if TYPE_CHECKING:
    from sidecar.access_log import AccessLog

log = logging.getLogger("sidecar.server")

DEFAULT_ADMIN_ADDR = "127.0.0.1:15000"


@dataclass(frozen=True, slots=True)
class Rejection:
    """The last snapshot ``apply`` refused (for ``/config_dump``)."""

    version: str
    error: str


@dataclass(frozen=True)
class SidecarConfig:
    admin_addr: str = DEFAULT_ADMIN_ADDR
    http: HttpSettings = field(default_factory=HttpSettings)
    drain_timeout_s: float = 30.0
    reuse_port: bool = False  # --workers: every worker binds the same listener ports
    serve_admin: bool = True


Listening = HttpListener | TcpListener


ListenerKey = tuple[str, str, str, int, bool]


def listener_identity(listener: Listener) -> ListenerKey:
    """Listeners with equal identity keep running across a swap; anything else is replaced (new
    certificates of an HTTPS listener are swapped in without a new listener)."""
    return (listener.name, listener.protocol, listener.host, listener.port, bool(listener.tls))


def bind_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A listening TCP socket, bound now (so conflicts surface in ``apply``, before the swap)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class SidecarServer:
    """The sidecar's listeners, pools, admin port and config swaps."""

    def __init__(
        self,
        config: SidecarConfig,
        *,
        demand: Callable[[str], Awaitable[bool]] | None = None,
        metrics: SidecarMetrics | None = None,
        access_log: AccessLog | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or SidecarMetrics()
        self.access_log = access_log  # requests log through the active config (``build_active``)
        if access_log is not None:
            self.metrics.add_collector(access_log.collect)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.metrics)
        self._rng = random.Random()
        self.resilience = Resilience(ResilienceMetrics(), self._on_cluster_change, rng=self._rng)
        self.registry.register(self.resilience.metrics)
        self.pools = UpstreamPools(config.http.limits, time.monotonic)
        self.metrics.attach_pools(self.pools)
        self.holder = ConfigHolder(
            build_active(
                empty_snapshot(), None, self.metrics, rng=self._rng, resilience=self.resilience, access_log=access_log
            )
        )
        self.security = SidecarSecurity(self.holder)  # credentials, mTLS, authorization, rate limits (sidecar.security)
        self.metrics.add_collector(self.security.stats.collect)
        self.pools.tls_for = self.security.outbound_context
        self.pools.tls_check = self.security.check_server
        self._demand = demand
        self._listeners: dict[ListenerKey, Listening] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._admin: AdminServer | None = None
        self.admin_port = 0
        self.applied = False
        self.applied_at = 0.0
        self.draining = False
        self.last_rejected: Rejection | None = None
        self._drained = asyncio.Event()

    # === lifecycle ===

    async def start(self) -> None:
        self.resilience.start()
        if not self.config.serve_admin:
            return
        self._admin = AdminServer(admin_routes(self, self.registry))
        address = self.config.admin_addr
        if address.startswith("unix:"):  # a worker's private admin socket (see sidecar.workers)
            await self._admin.start_unix(address[5:])
            return
        host, port = split_host_port(address, 15000)
        self.admin_port = await self._admin.start_tcp(host, port)
        log.info("sidecar admin listening", extra={"admin": f"{host}:{self.admin_port}"})

    async def stop(self) -> None:
        """Drain (bounded by ``drain_timeout_s``), then close everything."""
        self.start_drain()
        await self.wait_drained(self.config.drain_timeout_s)
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        for listening in list(self._listeners.values()):
            await listening.close()
        self._listeners.clear()
        await self.pools.close()
        await self.resilience.close()
        await self.security.close()
        if self.access_log is not None:
            await self.access_log.close()
        if self._admin is not None:
            await self._admin.close()
            self._admin = None

    def start_drain(self) -> None:
        """Stop accepting everywhere; in-flight requests finish; idle keep-alive connections close."""
        if self.draining:
            return
        self.draining = True
        self.metrics.draining = True
        log.info("draining", extra={"connections": self.open_connections()})
        for listening in self._listeners.values():
            listening.drain()
        self.pools.close_idle()

    def open_connections(self) -> int:
        return sum(listening.busy for listening in self._listeners.values())

    async def wait_drained(self, timeout_s: float) -> bool:
        """Wait until no client connection is open, up to ``timeout_s``; True if drained."""
        deadline = time.monotonic() + timeout_s
        while self.open_connections() > 0 or self._retiring:
            if time.monotonic() >= deadline:
                log.warning("drain timeout: closing connections still open", extra={"open": self.open_connections()})
                return False
            await asyncio.sleep(0.05)
        return True

    # === config swaps ===

    def apply(self, snapshot: Snapshot) -> ApplyResult:
        """Validate and swap in ``snapshot``; the old config stays if anything fails (NACK)."""
        previous = self.holder.current
        if self.applied and snapshot.version == previous.version and snapshot == previous.snapshot:
            return APPLIED
        try:
            active = build_active(
                snapshot, previous, self.metrics, rng=self._rng, resilience=self.resilience, access_log=self.access_log
            )
        except (ValueError, KeyError) as exc:
            return self._reject(snapshot, f"invalid config: {exc}")
        certificates: dict[ListenerKey, Loaded] = {}
        for i, listener in enumerate(snapshot.listeners):
            if listener.tls:
                try:
                    certificates[listener_identity(listener)] = load_certificates(listener.tls)
                except TlsLoadError as exc:
                    return self._reject(snapshot, f"listeners[{i}].tls ({listener.name!r}): {exc}")
        wanted = {listener_identity(listener): listener for listener in snapshot.listeners}
        added: dict[ListenerKey, Listening] = {}
        sockets: dict[ListenerKey, socket.socket] = {}
        if not self.draining:
            for identity, listener in wanted.items():
                if identity in self._listeners:
                    continue
                try:
                    sockets[identity] = bind_socket(listener.host, listener.port, reuse_port=self.config.reuse_port)
                except OSError as exc:
                    for sock in sockets.values():
                        sock.close()
                    return self._reject(
                        snapshot, f"listener {listener.name!r}: cannot listen on {listener.host}:{listener.port}: {exc}"
                    )
                added[identity] = self._make_listener(listener)
                if identity in certificates:
                    added[identity].tls = TlsTermination(certificates[identity])
        self.holder.swap(active)  # the atomic step
        for identity, loaded in certificates.items():
            running = self._listeners.get(identity)
            if running is not None and running.tls is not None:
                running.tls.update(loaded)
        self.resilience.activate(active.resilience)
        for listening in self._listeners.values():
            if listening.inbound_security is not None and listening.inbound_security.guard_changed():
                listening.renew_connections()
        removed = [self._listeners.pop(identity) for identity in list(self._listeners) if identity not in wanted]
        for identity, listening in added.items():
            self._listeners[identity] = listening
            listening.port = sockets[identity].getsockname()[1]
            self._spawn_retiring(listening.start(sockets[identity]))
        for listening in removed:
            self._spawn_retiring(self._retire(listening))
        self.applied = True
        self.applied_at = time.time()
        self.metrics.config_applied += 1
        self.metrics.config_version = snapshot.version
        log.debug(
            "config applied",
            extra={"version": snapshot.version, "listeners_added": len(added), "listeners_removed": len(removed)},
        )
        return APPLIED

    def _on_cluster_change(self, name: str) -> None:
        """An endpoint of ``name`` was ejected or returned, or changed health: rebuild its balancer."""
        runtime = self.holder.current.clusters.get(name)
        if runtime is not None:
            rebuild_balancer(runtime, rng=self._rng, clock=time.monotonic)

    def _reject(self, snapshot: Snapshot, error: str) -> ApplyResult:
        self.last_rejected = Rejection(snapshot.version, error)
        self.metrics.config_rejected += 1
        return ApplyResult.rejected(error)

    def _make_listener(self, listener: Listener) -> Listening:
        if listener.protocol == "tcp":
            tcp = TcpContext(listener.name, self.holder, self.metrics.tcp_stats(listener.name))
            tcp.tls_for = self.security.outbound_context
            tcp.tls_check = self.security.check_server
            l4 = TcpListener(tcp, listener.host, listener.port, reuse_port=self.config.reuse_port)
            if listener.direction == "inbound":
                l4.inbound_security = self.security.inbound_tcp(tcp, listener.port)
            return l4
        context = HttpContext(
            listener.name,
            self.holder,
            self.pools,
            self.config.http,
            self.metrics.listener_stats(listener.name),
            rng=self._rng,
            demand=self._demand if listener.direction == "outbound" else None,
            resilience=self.resilience,
        )
        http = HttpListener(context, listener.host, listener.port, reuse_port=self.config.reuse_port)
        if listener.direction == "inbound":
            http.inbound_security = self.security.inbound_http(context, listener.port)
        return http

    def _spawn_retiring(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception:
                log.exception("listener start/stop failed")

        task = asyncio.get_running_loop().create_task(run())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _retire(self, listening: Listening) -> None:
        """A listener the new config dropped: stop accepting, let its connections finish, close."""
        listening.drain()
        deadline = time.monotonic() + self.config.drain_timeout_s
        while listening.busy and time.monotonic() < deadline:  # noqa: ASYNC110 - polls a count, no event
            await asyncio.sleep(0.1)
        await listening.close()

    async def settle(self) -> None:
        """Wait until listeners added by the last swaps serve (and retired ones are closed)."""
        while self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    # === admin views ===

    @property
    def active(self) -> ActiveConfig:
        return self.holder.current

    def readiness(self) -> str:
        if self.draining:
            return "DRAINING"
        return "LIVE" if self.applied else "PRE_INITIALIZING"

    def config_dump(self) -> dict[str, Any]:
        active = self.holder.current
        rejected = self.last_rejected
        return {
            "version": active.version,
            "applied_at": _iso(self.applied_at) if self.applied else None,
            "snapshot": snapshot_to_dict(active.snapshot),
            "last_rejected": None if rejected is None else {"version": rejected.version, "error": rejected.error},
        }

    def clusters_view(self) -> dict[str, Any]:
        active = self.holder.current
        resilience = self.resilience.admin_view()
        out: list[dict[str, Any]] = []
        for name, runtime in active.clusters.items():
            cluster = runtime.cluster
            balancer = runtime.balancer
            res_view = resilience.get(name, {})
            res_endpoints = res_view.get("endpoints", {})
            endpoints = []
            for endpoint in cluster.endpoints:
                res_endpoint = res_endpoints.get(endpoint.key, {})
                pool = self.pools.pools.get((endpoint.host, endpoint.port))
                endpoints.append(
                    {
                        "key": endpoint.key,
                        "address": f"{endpoint.host}:{endpoint.port}",
                        "healthy": endpoint.healthy,
                        "weight": endpoint.weight,
                        "active_requests": runtime.load.active(endpoint.key),
                        "available": res_endpoint.get("available", True),
                        "outlier": res_endpoint.get("outlier"),
                        "health_check": res_endpoint.get("health_check"),
                        "pool": {
                            "active": pool.active if pool is not None else 0,
                            "idle": len(pool.idle) if pool is not None else 0,
                        },
                    }
                )
            out.append(
                {
                    "name": name,
                    "service": cluster.service,
                    "policy": cluster.lb.kind,
                    "in_panic": balancer.in_panic,
                    "healthy_endpoints": sum(1 for e in cluster.endpoints if e.healthy),
                    "circuit_breakers": res_view.get("circuit_breakers"),
                    "endpoints": endpoints,
                }
            )
        return {"version": active.version, "clusters": out}

    def listeners_view(self) -> list[dict[str, Any]]:
        active = self.holder.current
        by_name = {listener.name: listener for listener in active.snapshot.listeners}
        out = []
        for (name, protocol, host, _, tls), listening in self._listeners.items():
            listener = by_name.get(name)
            out.append(
                {
                    "name": name,
                    "protocol": "https" if tls else protocol,
                    "direction": listener.direction if listener is not None else "",
                    "address": f"{host}:{listening.port}",
                    "connections": listening.busy,
                }
            )
        return out

    def listener_port(self, name: str) -> int:
        """The bound port of listener ``name`` (tests and benchmarks use port 0)."""
        for (listener_name, *_), listening in self._listeners.items():
            if listener_name == name:
                return listening.port
        raise KeyError(name)


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


async def serve(server: SidecarServer, source: ConfigSource | None, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set, then drain and close (exit 0 follows)."""
    await server.start()
    task: asyncio.Task[None] | None = None
    if source is not None:
        bind_credentials = getattr(source, "bind_credentials", None)  # the control plane's CA (sidecar.security)
        if bind_credentials is not None:
            bind_credentials(server.security)
        task = asyncio.get_running_loop().create_task(source.run(server.apply))
    try:
        waiter = asyncio.get_running_loop().create_task(stop.wait())
        waited: set[asyncio.Future[Any]] = {waiter}
        if task is not None:
            waited.add(task)
        done, _ = await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
        if task is not None and task in done and task.exception() is not None:
            log.error("config source stopped", exc_info=task.exception())
        waiter.cancel()
    finally:
        await server.stop()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
