"""`mesh registrar` as one start/stop unit: Docker connection loop, periodic syncs, ops endpoints.

Startup follows Registrator: check the flags, ping the registry (``--retry-attempts`` more
times, ``--retry-interval`` apart, then give up), subscribe to Docker events, then sync. Unlike
Registrator, losing the Docker daemon is not fatal: the registrar reconnects with backoff and
resyncs. ``/readyz`` answers 200 once Docker is connected, the registry answers and a full
sync has completed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Awaitable
from typing import Final

from aiohttp import web

from discovery.client import RegistryClient
from discovery.client_config import ClientConfig
from discovery.client_models import RegistryError
from discovery.registrar import metrics
from discovery.registrar.config import RegistrarConfig
from discovery.registrar.desired import Rules
from discovery.registrar.docker_source import COUNTED_ONLY, DockerClient, DockerUnavailable
from discovery.registrar.reconciler import Reconciler
from discovery.runtime.addresses import split_host_port
from discovery.runtime.http import add_ops_routes, start_site

log = logging.getLogger("discovery.registrar")

RECONNECT_BASE: Final = 0.25
RECONNECT_CAP: Final = 10.0
SINCE_MARGIN_NS: Final = 1_000_000_000  # replay this much before the daemon's "now": clocks tick in steps
DRAIN_TIMEOUT: Final = 5.0
DOCKER_SCHEMES: Final = ("unix://", "tcp://", "http://", "https://", "ssh://", "npipe://")


class RegistrarError(Exception):
    """The registrar cannot start (registry unreachable after the retries, bad Docker address)."""


class Registrar:
    def __init__(self, config: RegistrarConfig, registry: ClientConfig | None = None) -> None:
        self.config = config.validate()
        self.docker_url = config.docker_url()
        if not self.docker_url.startswith(DOCKER_SCHEMES):
            raise RegistrarError(f"DOCKER_HOST {self.docker_url!r}: expected unix://, tcp://, https:// or ssh://")
        self.client = RegistryClient(registry)
        self.reconciler: Reconciler | None = None
        self.rules: Rules | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ops: web.AppRunner | None = None
        self._metrics_port = 0
        self.docker_connected = asyncio.Event()

    @property
    def metrics_port(self) -> int:
        return self._metrics_port

    @property
    def ready(self) -> bool:
        r = self.reconciler
        return r is not None and self.docker_connected.is_set() and r.registry_ok and r.synced.is_set()

    async def start(self) -> None:
        hostname = self.config.hostname or socket.gethostname()
        host_ip = self.config.ip or await _resolve(hostname)
        self.rules = Rules.from_config(self.config, hostname=hostname, host_ip=host_ip)
        await self._ping_registry()
        self.reconciler = Reconciler(self.client, self.config, self.rules)
        if self.config.metrics_addr:
            host, port = split_host_port(self.config.metrics_addr, 9154)
            ops = web.Application()
            add_ops_routes(ops, lambda: self.ready)
            self._ops, self._metrics_port = await start_site(ops, host, port)
        self._tasks.append(asyncio.create_task(self._follow_docker(self.reconciler), name="registrar-docker"))
        if self.config.resync:
            self._tasks.append(asyncio.create_task(self._resync_every(self.config.resync), name="registrar-resync"))
        refresh = self.config.ttl_refresh or self.rules.health_ttl / 4
        self._tasks.append(asyncio.create_task(self._refresh_every(refresh), name="registrar-ttl-refresh"))
        log.info(
            "registrar started",
            extra={
                "docker": self.docker_url,
                "registry": self.client.config.base_url,
                "hostname": hostname,
                "ip": host_ip,
                "metrics": f"{self.config.metrics_addr} (port {self._metrics_port})" if self._ops else "off",
            },
        )

    async def stop(self) -> None:
        """Stop following Docker, let in-flight writes finish, honour ``--deregister-on-exit``. Idempotent."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.reconciler is not None:
            reconciler, self.reconciler = self.reconciler, None
            reconciler.detach()
            await reconciler.drain(DRAIN_TIMEOUT)
            await reconciler.close()
            if self.config.deregister_on_exit:
                removed = await reconciler.deregister_all()
                log.info("deregistered our services on exit", extra={"services": removed})
        if self._ops is not None:
            await self._ops.cleanup()
            self._ops = None
        await self.client.close()
        metrics.DOCKER_CONNECTED.set(0)
        log.info("registrar stopped")

    async def _ping_registry(self) -> None:
        """Registrator's startup loop: 1 + ``retry_attempts`` tries (-1: forever), then fail."""
        attempt = 0
        while True:
            try:
                leader = await self.client.leader()
                log.debug("registry answers", extra={"leader": leader})
                return
            except RegistryError as exc:
                if self.config.retry_attempts != -1 and attempt >= self.config.retry_attempts:
                    raise RegistrarError(
                        f"registry at {self.client.config.base_url} is unreachable after {attempt + 1} attempt(s) "
                        f"(--retry-attempts {self.config.retry_attempts}): {exc}"
                    ) from exc
                log.warning("registry not reachable yet (attempt %d): %s", attempt + 1, exc)
            attempt += 1
            await asyncio.sleep(self.config.retry_interval)

    async def _follow_docker(self, reconciler: Reconciler) -> None:
        """Connect, subscribe, sync, follow events; on any loss, back off and do it all again."""
        failures = 0
        while True:
            docker = DockerClient(self.docker_url)
            sync: asyncio.Task[None] | None = None
            try:
                await docker.open()
                since = await docker.daemon_time_ns() - SINCE_MARGIN_NS
                async with docker.events(since) as events:
                    reconciler.attach(docker)
                    self.docker_connected.set()
                    metrics.DOCKER_CONNECTED.set(1)
                    log.info("following Docker events", extra={"docker": self.docker_url, "after_failures": failures})
                    failures = 0
                    sync = asyncio.create_task(_logged(reconciler.full_sync(), "full sync"), name="registrar-sync")
                    async for event in events:
                        metrics.EVENTS.labels(event.action).inc()
                        if event.time_ns:
                            metrics.EVENT_DELAY.observe(max(0.0, (time.time_ns() - event.time_ns) / 1e9))
                        if event.action not in COUNTED_ONLY:
                            reconciler.submit(event.container_id, event=event)
                log.warning("Docker event stream ended (daemon stopped or restarting); reconnecting")
            except DockerUnavailable as exc:
                level = logging.WARNING if failures == 0 else logging.DEBUG
                log.log(level, "Docker unavailable, retrying: %s", exc)
            except Exception:
                # A bug must not end the registrar's watch silently: say so, reconnect, resync.
                log.exception("unexpected error while following Docker; reconnecting")
            finally:
                reconciler.detach()
                self.docker_connected.clear()
                metrics.DOCKER_CONNECTED.set(0)
                if sync is not None:
                    sync.cancel()
                    await asyncio.gather(sync, return_exceptions=True)
                await docker.close()
            failures += 1
            backoff = min(RECONNECT_CAP, RECONNECT_BASE * 2.0 ** min(failures, 16))
            await asyncio.sleep(random.uniform(0.5, 1.0) * backoff)

    async def _resync_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            if self.reconciler is not None and self.docker_connected.is_set():
                await _logged(self.reconciler.full_sync(), "periodic resync")

    async def _refresh_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            if self.reconciler is not None:
                await _logged(self.reconciler.refresh_ttls(), "TTL refresh")


async def _logged(work: Awaitable[object], what: str) -> None:
    """Run a periodic or background step; an unexpected error is logged, never ends the loop."""
    try:
        await work
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("%s failed", what)


async def _resolve(hostname: str) -> str:
    """Registrator registers wildcard bindings at the host name's address (IPv4). If ``--hostname``
    names something unresolvable, this machine's own name is tried; 127.0.0.1 as the last resort."""
    loop = asyncio.get_running_loop()
    for name in dict.fromkeys((hostname, socket.gethostname())):
        try:
            infos = await loop.getaddrinfo(name, None, family=socket.AF_INET, type=socket.SOCK_STREAM)
        except OSError as exc:
            log.debug("cannot resolve %r: %s", name, exc)
            continue
        return str(infos[0][4][0])
    log.warning("cannot resolve host name %r: wildcard bindings are registered at 127.0.0.1 (set --ip)", hostname)
    return "127.0.0.1"


async def serve(config: RegistrarConfig, stop: asyncio.Event, registry: ClientConfig | None = None) -> None:
    """Run until ``stop`` is set (SIGTERM/SIGINT)."""
    registrar = Registrar(config, registry)
    try:
        await registrar.start()
        await stop.wait()
    finally:
        await registrar.stop()


__all__ = ["Registrar", "RegistrarError", "serve"]
