"""Running a sidecar: one process, or ``--workers N`` processes sharing the listener ports.

With N workers the parent (``sidecar.supervisor``) forks N children before any event loop
exists. Each child runs a whole sidecar (its own config source, balancers and pools) on uvloop,
binding every listener with SO_REUSEPORT so the kernel spreads connections across them, and
serves its admin API on a private Unix socket that the parent aggregates.

Imports follow the mode: a sidecar fed by a config file never imports the registry client,
aiohttp or the worker-sharing code (together about 14 MB of resident memory per sidecar).

Shared resilience state (docs/sidecar-config.md, "Several workers"): each worker enforces
``ceil(limit / N)`` (at least 1) of every circuit-breaker limit, so the cluster-wide totals
hold; only worker 0 runs active health checks and pushes the results to the others over the
same private sockets, and an outlier ejection decided by one worker is adopted by all
(``sidecar.resilience.sharing``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from discovery.client_config import ClientConfig
from discovery.runtime.addresses import is_loopback, split_host_port
from discovery.runtime.lifecycle import run_until_signalled
from sidecar.access_log import AccessLogSettings, settings_from_options
from sidecar.admin import admin_routes
from sidecar.admin_http import AdminServer
from sidecar.http1.listener import HttpSettings
from sidecar.metrics import SidecarMetrics
from sidecar.server import DEFAULT_ADMIN_ADDR, SidecarConfig, SidecarServer, serve
from sidecar.sources.base import ConfigSource, OnDemand
from sidecar.sources.defaults import DEFAULT_INBOUND_ADDR, DEFAULT_OUTBOUND_ADDR, SidecarSettings, parse_upstream

if TYPE_CHECKING:
    from discovery.client import RegistryClient
    from sidecar.resilience.sharing import EjectionBroadcaster, HealthFollower, HealthPublisher

log = logging.getLogger("sidecar.workers")


@dataclass(frozen=True)
class GatewayRole:
    """`mesh gateway`: this proxy registers as a gateway (its listeners come from Gateway resources)."""

    bind: str
    labels: tuple[tuple[str, str], ...]
    namespace: str


@dataclass(frozen=True)
class SidecarPlan:
    """Everything `mesh sidecar` (or `mesh gateway`) was asked to run."""

    server: SidecarConfig
    settings: SidecarSettings
    config_file: Path | None = None
    registry: ClientConfig | None = None  # None with config_file set
    workers: int = 1
    log_level: str = "info"
    access_log: AccessLogSettings = field(default_factory=AccessLogSettings)  # ratio 0: off
    gateway: GatewayRole | None = None


def plan_from_options(options: Mapping[str, Any]) -> SidecarPlan:
    """The plan for `mesh sidecar`'s flag values (keys are the flag names with underscores).

    Raises ``ValueError`` naming the flag at fault. The registry address comes from the
    ``CONSUL_*`` environment when no ``config`` file is given.
    """
    settings = SidecarSettings(
        service=str(options.get("service", "")),
        app_port=int(options.get("app_port") or 0) or None,
        outbound_addr=str(options.get("outbound_addr", DEFAULT_OUTBOUND_ADDR)),
        inbound_addr=str(options.get("inbound_addr", DEFAULT_INBOUND_ADDR)),
        upstreams=tuple(parse_upstream(str(item)) for item in options.get("upstream", ())),
    ).validate()
    config = options.get("config")
    config_file = Path(str(config)) if config else None
    if config_file is not None and not config_file.is_file():
        raise ValueError(f"--config: no such file: {config_file}")
    timeouts = {}
    for flag, default in (("header_timeout", 10.0), ("idle_timeout", 300.0), ("drain_timeout", 10.0)):
        value = float(options.get(flag, default))
        if not value > 0:
            raise ValueError(f"--{flag.replace('_', '-')}: must be > 0, got {value}")
        timeouts[flag] = value
    workers = int(options.get("workers", 1))
    if workers < 1:
        raise ValueError(f"--workers: must be >= 1, got {workers}")
    access_log = settings_from_options(
        str(options.get("access_log") or "off"),
        str(options.get("access_log_path") or "-"),
        str(options.get("access_log_fields") or ""),
    )
    admin_addr = str(options.get("admin_addr", DEFAULT_ADMIN_ADDR))
    check_admin_addr(admin_addr, allow_remote=bool(options.get("admin_allow_remote", False)))
    gateway = None
    if options.get("gateway_bind"):  # `mesh gateway`
        labels = options.get("gateway_labels") or {}
        gateway = GatewayRole(
            str(options["gateway_bind"]),
            tuple(sorted((str(k), str(v)) for k, v in dict(labels).items())),
            str(options.get("gateway_namespace") or "default"),
        )
    return SidecarPlan(
        server=SidecarConfig(
            admin_addr=admin_addr,
            http=HttpSettings(header_timeout_s=timeouts["header_timeout"], idle_timeout_s=timeouts["idle_timeout"]),
            drain_timeout_s=timeouts["drain_timeout"],
        ),
        settings=settings,
        config_file=config_file,
        registry=None if config_file is not None else ClientConfig.from_env(),
        workers=workers,
        gateway=gateway,
        log_level=str(options.get("log_level", "info")),
        access_log=access_log,
    )


def check_admin_addr(address: str, *, allow_remote: bool) -> None:
    """The admin API (config dump, /drain) has no authentication, so it binds loopback only unless allowed."""
    if address.startswith("unix:"):
        return
    host, _ = split_host_port(address, 15000, name="--admin-addr")
    if not allow_remote and not is_loopback(host):
        raise ValueError(
            f"--admin-addr: {address!r} is not a loopback address; the admin API is unauthenticated (it can drain "
            "the sidecar), so it binds 127.0.0.1 or ::1 only. Pass --admin-allow-remote to expose it anyway"
        )


@dataclass(frozen=True)
class WorkerSeat:
    """Which of ``count`` forked workers this process is, and where the private sockets live."""

    index: int
    count: int
    directory: str

    @property
    def probes_health(self) -> bool:
        return self.index == 0

    def socket(self, index: int | None = None) -> str:
        return worker_socket(self.directory, self.index if index is None else index)

    def siblings(self) -> list[str]:
        return [self.socket(i) for i in range(self.count) if i != self.index]


def run_sidecar(plan: SidecarPlan) -> int:
    """Run until SIGTERM/SIGINT, drain, and return the exit status."""
    if plan.workers <= 1:
        run_until_signalled(lambda stop: serve_plan(plan, stop))
        return 0
    from sidecar.supervisor import supervise  # imported only by the parent of several workers

    return supervise(plan)


async def serve_plan(plan: SidecarPlan, stop: asyncio.Event, seat: WorkerSeat | None = None) -> None:
    """One sidecar process: its config source, listeners and admin API (``seat``: as a worker)."""
    client: RegistryClient | None = None
    source: ConfigSource
    # Each source's module is imported only when it is the one in use (see the module docstring).
    if plan.config_file is not None:
        from sidecar.sources.static_file import StaticFileSource

        source = StaticFileSource(plan.config_file)
    elif os.environ.get("MESH_CONTROL_ADDR"):  # the control plane (its state dir keeps the last good snapshot)
        from sidecar.sources.control_plane import ControlPlaneSource, advertised_admin

        state = Path(os.environ.get("MESH_DATA_DIR") or "mesh-data") / f"sidecar-{plan.settings.service}"
        # the admin address registered for the topology scrape: read at registration, once `server` listens
        gateway = plan.gateway
        role: dict[str, Any] = {}
        if gateway is not None:
            role = {"labels": dict(gateway.labels), "namespace": gateway.namespace, "gateway_bind": gateway.bind}
        source = ControlPlaneSource(
            plan.settings,
            state_dir=state,
            admin=lambda: advertised_admin(plan.server.admin_addr, server.admin_port),
            **role,
        )
    else:
        from discovery.client import RegistryClient
        from sidecar.sources.registry import RegistrySource

        client = RegistryClient(plan.registry, max_connections=0)
        source = RegistrySource(plan.settings, client)
    # a gateway routes only what its Gateways and their VirtualServices say: no services learnt on demand
    demand = source.demand if isinstance(source, OnDemand) and plan.gateway is None else None
    server_config = plan.server if seat is None else replace(plan.server, serve_admin=False)
    access_log = None
    if plan.access_log.enabled:
        from sidecar.access_log import AccessLog

        access_log = AccessLog(plan.access_log)
    server = SidecarServer(
        server_config, demand=demand, metrics=SidecarMetrics(plan.settings.service), access_log=access_log
    )
    log.info(
        "sidecar starting",
        extra={
            "service": plan.settings.service,
            "source": source.name,
            "admin": plan.server.admin_addr,
            "worker": os.environ.get("MESH_WORKER_INDEX", ""),
        },
    )
    worker_admin: AdminServer | None = None
    sharing: list[HealthPublisher | HealthFollower | EjectionBroadcaster] = []
    try:
        if seat is not None:
            from sidecar.resilience.sharing import EjectionBroadcaster, HealthFollower, HealthPublisher

            resilience = server.resilience
            resilience.share_with_workers(seat.count, probes_health=seat.probes_health)
            worker_admin = await _serve_worker_admin(server, seat)
            if seat.probes_health:
                sharing.append(HealthPublisher(resilience, seat.siblings()))
            else:
                sharing.append(HealthFollower(resilience, seat.socket(0)))
            sharing.append(EjectionBroadcaster(resilience, seat.siblings()))
            for part in sharing:
                part.start()
        await serve(server, source, stop)
    finally:
        for part in sharing:
            await part.close()
        if worker_admin is not None:
            await worker_admin.close()
        if client is not None:
            await client.close()


async def _serve_worker_admin(server: SidecarServer, seat: WorkerSeat) -> AdminServer:
    """A worker's admin API on its private socket, plus the routes workers share state by."""
    from sidecar.resilience.sharing import sharing_routes

    admin = AdminServer({**admin_routes(server, server.registry), **sharing_routes(server.resilience)})
    await admin.start_unix(seat.socket())
    return admin


# === several workers ===


def worker_socket(directory: str, index: int) -> str:
    return os.path.join(directory, f"worker-{index}.sock")
