"""`mesh dns`: the cluster DNS server as one start/stop unit.

Wiring only: a registry client feeds the view watcher; the handler answers from the
watcher's current view over UDP and TCP; other zones go to the forwarder; a small HTTP
server exposes /metrics, /healthz and /readyz (ready = synced and the registry reachable).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import REGISTRY

from discovery.client import RegistryClient
from discovery.client_config import ClientConfig
from discovery.runtime.addresses import split_host_port
from discovery.runtime.http import add_ops_routes, start_site
from dnsserver.config import DEFAULT_DNS_ADDR, DEFAULT_METRICS_ADDR, DnsConfig
from dnsserver.forward import Forwarder
from dnsserver.handler import DnsHandler
from dnsserver.listeners import Listeners, start_listeners
from dnsserver.metrics import DnsMetrics
from dnsserver.watcher import ViewWatcher

log = logging.getLogger("dnsserver.server")

STARTUP_SYNC_TIMEOUT = 5.0  # as CoreDNS's kubernetes startup_timeout: then serve SERVFAIL until synced


@dataclass(frozen=True)
class DnsServerConfig:
    dns: DnsConfig = field(default_factory=DnsConfig)
    dns_addr: str = DEFAULT_DNS_ADDR
    metrics_addr: str = DEFAULT_METRICS_ADDR
    registry: ClientConfig | None = None  # None: CONSUL_HTTP_ADDR / CONSUL_HTTP_TOKEN from the environment


class DnsServer:
    def __init__(self, config: DnsServerConfig) -> None:
        self.config = config
        self._dns_host, self._dns_port = split_host_port(config.dns_addr, 8600)
        self._metrics_host, self._metrics_port = split_host_port(config.metrics_addr, 9153)
        self.metrics = DnsMetrics(REGISTRY)
        self._client = RegistryClient(config.registry, max_connections=0)
        self.watcher = ViewWatcher(self._client, datacenter=config.dns.datacenter)
        self._forwarder = Forwarder(config.dns.upstreams, metrics=self.metrics) if config.dns.upstreams else None
        self.handler = DnsHandler(config.dns, lambda: self.watcher.view, self._forwarder, metrics=self.metrics)
        self._listeners: Listeners | None = None
        self._ops: web.AppRunner | None = None

    @property
    def dns_port(self) -> int:
        return self._listeners.port if self._listeners else self._dns_port

    @property
    def metrics_port(self) -> int:
        return self._metrics_port

    async def start(self) -> None:
        await self.watcher.start()
        with contextlib.suppress(TimeoutError):
            await self.watcher.wait_synced(STARTUP_SYNC_TIMEOUT)
        if not self.watcher.view.synced:
            log.warning("registry not synced yet; answering SERVFAIL for our zones until it is")
        ops = web.Application()
        add_ops_routes(ops, lambda: self.watcher.ready)
        self._ops, self._metrics_port = await start_site(ops, self._metrics_host, self._metrics_port)
        self._listeners = await start_listeners(self.handler, self._dns_host, self._dns_port)
        log.info(
            "dns listening",
            extra={
                "dns": f"{self._dns_host}:{self._listeners.port}",
                "metrics": f"{self._metrics_host}:{self._metrics_port}",
                "services": len(self.watcher.view.services),
            },
        )

    async def stop(self) -> None:
        if self._listeners is not None:
            await self._listeners.close()
            self._listeners = None
        if self._ops is not None:
            await self._ops.cleanup()
            self._ops = None
        await self.watcher.close()
        if self._forwarder is not None:
            await self._forwarder.close()
        await self._client.close()
        REGISTRY.unregister(self.metrics)


async def serve(config: DnsServerConfig, stop: asyncio.Event) -> None:
    server = DnsServer(config)
    await server.start()
    try:
        await stop.wait()
    finally:
        await server.stop()
