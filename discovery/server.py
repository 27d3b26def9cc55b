"""`mesh registry`: the embedded Consul-compatible registry as one runnable unit."""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from discovery.api.app import build_app
from discovery.api.context import ApiContext
from discovery.checks import MIN_DEREGISTER_AFTER, REAP_INTERVAL, CheckRunner
from discovery.registry import AgentIdentity, Registry
from discovery.runtime.addresses import split_host_port

log = logging.getLogger("discovery.server")


@dataclass(frozen=True)
class RegistryConfig:
    data_dir: Path
    http_addr: str = "127.0.0.1:8500"
    node_name: str = ""
    advertise: str = ""
    datacenter: str = "dc1"
    acl_token: str = ""
    check_concurrency: int = 64
    reap_interval: float = REAP_INTERVAL
    min_deregister_after: float = MIN_DEREGISTER_AFTER


class RegistryServer:
    """Registry + health checks + HTTP API; ``start``/``stop`` bracket its life."""

    def __init__(self, config: RegistryConfig) -> None:
        self.config = config
        host, self._port = split_host_port(config.http_addr, 8500)
        self._host = host
        advertise = config.advertise or (host if host not in ("0.0.0.0", "::", "") else "127.0.0.1")
        identity = AgentIdentity(
            node_name=config.node_name or socket.gethostname(),
            address=advertise,
            datacenter=config.datacenter,
        )
        self.registry = Registry(config.data_dir, identity)
        self.checks = CheckRunner(
            self.registry,
            concurrency=config.check_concurrency,
            reap_interval=config.reap_interval,
            min_deregister_after=config.min_deregister_after,
        )
        self.failed = asyncio.Event()
        self.registry.on_fatal = lambda _exc: self.failed.set()
        self._runner: web.AppRunner | None = None
        self._context: ApiContext | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    async def start(self) -> None:
        from discovery.runtime.http import start_site

        await self.registry.open()
        await self.checks.start()
        self._context = ApiContext(
            self.registry, acl_token=self.config.acl_token, on_ttl_update=self.checks.ttl_refreshed
        )
        self._runner, self._port = await start_site(build_app(self._context), self._host, self._port)
        log.info(
            "registry listening",
            extra={"url": self.url, "data_dir": str(self.config.data_dir), "index": self.registry.catalog.index},
        )

    async def wait(self, stop: asyncio.Event) -> None:
        """Return when ``stop`` is set; raise SystemExit if the data directory fails first."""
        stopped = asyncio.create_task(stop.wait())
        failed = asyncio.create_task(self.failed.wait())
        await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
        for task in (stopped, failed):
            task.cancel()
        if self.failed.is_set():
            raise SystemExit("registry stopped: the data directory can no longer be written")

    async def stop(self) -> None:
        """Answer parked blocking queries, drain requests, stop checks, close the store. Idempotent."""
        if self._context is not None:
            self._context.release_waiters()
        if self._runner is not None:
            await self._runner.cleanup()  # stops accepting, lets in-flight requests finish
            self._runner = None
        await self.checks.close()
        await self.registry.close()
        log.info("registry stopped")


async def serve(config: RegistryConfig, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set (SIGTERM/SIGINT) or the data directory fails."""
    server = RegistryServer(config)
    await server.start()
    try:
        await server.wait(stop)
    finally:
        await server.stop()
