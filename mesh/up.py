"""`mesh up`: registry, DNS, control plane (and the registrar when Docker answers) in one process,
started in dependency order, stopped in reverse. With a ``DemoConfig`` (``--demo``) the Bookinfo-like
workloads of ``mesh.demo`` start last, as child processes with their sidecars, and stop first."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from discovery.client_config import ClientConfig
from discovery.registrar.config import ConfigError, config_from_env
from discovery.registrar.docker_source import docker_reachable
from discovery.registrar.server import Registrar
from discovery.runtime.addresses import split_host_port
from discovery.server import RegistryConfig, RegistryServer
from dnsserver.server import DnsServer, DnsServerConfig
from mesh.control.server import ControlConfig, ControlServer
from mesh.demo.plan import Workload, next_steps
from mesh.demo.processes import DemoError, DemoProcesses

log = logging.getLogger("mesh.up")


@dataclass(frozen=True)
class DemoConfig:
    """`mesh up --demo`: these workloads (``mesh.demo.plan``), their children logging at ``log_level``."""

    workloads: tuple[Workload, ...]
    log_level: str = "warning"


async def run_up(
    registry_config: RegistryConfig,
    dns_config: DnsServerConfig,
    control_config: ControlConfig,
    stop: asyncio.Event,
    demo: DemoConfig | None = None,
) -> None:
    async with contextlib.AsyncExitStack() as parts:
        registry = RegistryServer(registry_config)
        await registry.start()
        parts.push_async_callback(registry.stop)
        dns = DnsServer(dns_config)
        await dns.start()
        parts.push_async_callback(dns.stop)
        registry_client = ClientConfig.from_address(registry.url, token=registry_config.acl_token or None)
        control = ControlServer(replace(control_config, registry=registry_client))
        await control.start()
        parts.push_async_callback(control.stop)
        registrar = await start_registrar(registry, registry_config.acl_token)
        if registrar is not None:
            parts.push_async_callback(registrar.stop)
        if demo is not None:
            processes = DemoProcesses(
                demo.workloads,
                control_url=control.url,
                registry=registry_client,
                data_dir=Path(registry_config.data_dir),
                log_level=demo.log_level,
                control_token=control_config.auth.token,
            )
            parts.push_async_callback(processes.stop)  # before start: a half-started demo is stopped too
            try:
                started = await processes.start(stop)
            except DemoError as exc:
                raise SystemExit(f"mesh up --demo: {exc}") from None
            if started:
                dns_host = split_host_port(dns_config.dns_addr, 8600)[0]
                print(next_steps(demo.workloads, registry.url, (dns_host, dns.dns_port), control.url), file=sys.stderr)
        await registry.wait(stop)


async def start_registrar(registry: RegistryServer, acl_token: str) -> Registrar | None:
    """The registrar joins when a Docker daemon answers (``MESH_UP_REGISTRAR=off`` leaves it out).

    Its flags come from the same ``MESH_*`` variables as ``mesh registrar``'s; its metrics are
    served with the DNS server's on ``--metrics-addr`` (one process, one metrics registry).
    """
    if os.environ.get("MESH_UP_REGISTRAR", "auto").lower() in ("off", "0", "false", "no"):
        return None
    try:
        config = config_from_env(metrics_addr=None)
    except ConfigError as exc:
        raise SystemExit(f"mesh up: registrar settings: {exc}") from None
    if not await docker_reachable(config.docker_url()):
        log.info("no Docker daemon answers at %s: the registrar is not started", config.docker_url())
        return None
    registrar = Registrar(config, ClientConfig.from_address(registry.url, token=acl_token or None))
    await registrar.start()
    return registrar
