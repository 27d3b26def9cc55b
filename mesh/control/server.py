"""`mesh control` as one start/stop unit: store + registry client + CA + control plane + HTTP API."""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from aiohttp import web

from discovery.client import RegistryClient
from discovery.client_config import ClientConfig
from discovery.runtime.addresses import is_loopback, split_host_port
from discovery.runtime.http import start_site
from mesh.control.api import build_app
from mesh.control.api_observe import add_observe_routes
from mesh.control.auth import ControlAuth
from mesh.control.certificates import CA_DIR, CaSettings, open_ca
from mesh.control.plane import ControlPlane, PlaneSettings
from mesh.control.rollout_api import add_rollout_routes, start_rollouts
from mesh.control.rollout_controller import RolloutController
from mesh.control.status_share import StatusShare
from mesh.control.store import RuleStore
from mesh.control.store_consul import DEFAULT_PREFIX, ConsulRuleStore
from mesh.control.store_sqlite import SqliteRuleStore
from mesh.control.topology import DEFAULT_SCRAPE_INTERVAL, TopologyScraper
from mesh.security.ca import MeshCA

log = logging.getLogger("mesh.control.server")

DEFAULT_HTTP_ADDR = "127.0.0.1:15010"
DB_NAME = "control.db"
StoreKind = Literal["sqlite", "consul"]


@dataclass(frozen=True)
class ControlConfig:
    data_dir: Path = Path("mesh-data")
    http_addr: str = DEFAULT_HTTP_ADDR
    store: StoreKind = "sqlite"
    consul_prefix: str = DEFAULT_PREFIX
    registry: ClientConfig | None = None  # None: CONSUL_HTTP_ADDR / CONSUL_HTTP_TOKEN
    replica_id: str = ""  # this replica's name in status ("": <hostname>:<port>)
    settings: PlaneSettings = field(default_factory=PlaneSettings)
    ca: CaSettings | None = field(default_factory=CaSettings)  # None: no CA endpoints
    auth: ControlAuth = field(default_factory=ControlAuth)  # no token: the API is open (mesh.control.auth)
    scrape_interval: float = DEFAULT_SCRAPE_INTERVAL  # seconds between topology scrapes of sidecars' /metrics


class ControlServer:
    def __init__(self, config: ControlConfig) -> None:
        self.config = config
        self._host, self.port = split_host_port(config.http_addr, 15010)
        # One client for watches and KV: no connection limit, since each watch parks one connection.
        self.client = RegistryClient(config.registry, max_connections=0)
        store: RuleStore
        if config.store == "consul":
            store = ConsulRuleStore(self.client, config.consul_prefix, wait=config.settings.registry_wait)
        else:
            store = SqliteRuleStore(config.data_dir / DB_NAME)
        self.plane = ControlPlane(store, self.client, config.settings)
        self._runner: web.AppRunner | None = None
        self.ca: MeshCA | None = None
        self.rollouts: RolloutController | None = None  # progressive delivery (mesh.control.rollout_*)
        self.topology = TopologyScraper(lambda: self.plane.pusher.sidecars.values(), config.scrape_interval)

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Open the CA (``CaError`` when its files are unusable), the store, then listen."""
        if self.config.ca is not None:
            self.ca = await asyncio.to_thread(open_ca, self.config.ca, self.config.data_dir)
            self._log_ca(self.ca, self.config.ca)
            self.plane.trust_domain = self.ca.trust_domain
        await self.plane.start()
        app = build_app(self.plane, self.ca, self.config.auth)
        config = self.config
        self.rollouts = await start_rollouts(self.plane, config.store, config.data_dir / DB_NAME, config.consul_prefix)
        add_rollout_routes(app, self.rollouts)
        add_observe_routes(app, self.topology)
        self._runner, self.port = await start_site(app, self._host, self.port)
        replica = self.config.replica_id or f"{socket.gethostname()}:{self.port}"
        self.plane.replica = replica
        self.topology.start()
        if self.config.store == "consul":  # replicas share one store: share sidecar status through it too
            settings = self.config.settings
            share = StatusShare(
                self.client,
                self.config.consul_prefix,
                replica,
                url=self.url,
                ttl=settings.status_ttl,
                flush=settings.status_flush,
            )
            self.plane.share_status(share)
        log.info(
            "control plane listening",
            extra={
                "url": self.url,
                "store": self.plane.store.name,
                "config_version": self.plane.state.version,
                "registry": self.client.config.base_url,
                "replica": replica,
                "auth": self.config.auth.describe(),
            },
        )
        if not self.config.auth.enforced and not is_loopback(self._host):
            log.warning(
                "the control plane listens on %s without a token: anyone who reaches it can change the routing "
                "and register sidecars to obtain their certificates (set --token or MESH_CONTROL_TOKEN)",
                self.url,
            )

    def _log_ca(self, ca: MeshCA, settings: CaSettings) -> None:
        root = ca.trust_bundle[0]
        supplied = settings.cert_file is not None
        log.info(
            "mesh CA ready",
            extra={
                "trust_domain": ca.trust_domain,
                "root": root.subject.rfc4514_string(),
                "root_not_after": root.not_valid_after_utc.isoformat(),
                "source": str(settings.cert_file) if supplied else str(self.config.data_dir / CA_DIR),
            },
        )
        if self.config.store == "consul" and not supplied:
            log.warning(
                "each control plane replica generates its own CA root in its data dir: supply one CA to all "
                "replicas so their certificates share a trust bundle"
            )

    async def stop(self) -> None:
        """Answer parked long polls (503: sidecars reconnect elsewhere), drain requests, close. Idempotent."""
        self.plane.begin_shutdown()
        if self._runner is not None:
            await self._runner.cleanup()  # stops accepting, lets in-flight requests (applies) finish
            self._runner = None
        await self.topology.stop()
        if self.rollouts is not None:
            await self.rollouts.stop()
            self.rollouts = None
        await self.plane.stop()
        await self.client.close()
        log.info("control plane stopped")


async def serve(config: ControlConfig, stop: asyncio.Event) -> None:
    server = ControlServer(config)
    await server.start()
    try:
        await stop.wait()
    finally:
        await server.stop()


__all__ = ["DEFAULT_HTTP_ADDR", "ControlConfig", "ControlServer", "serve"]
