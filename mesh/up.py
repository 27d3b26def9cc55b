"""`mesh up`: every part in one process, started in dependency order, stopped in reverse."""

from __future__ import annotations

import asyncio
import logging
import os

from discovery.client_config import ClientConfig
from discovery.registrar.config import ConfigError, config_from_env
from discovery.registrar.docker_source import docker_reachable
from discovery.registrar.server import Registrar
from discovery.server import RegistryConfig, RegistryServer
from dnsserver.server import DnsServer, DnsServerConfig

log = logging.getLogger("mesh.up")


async def run_up(registry_config: RegistryConfig, dns_config: DnsServerConfig, stop: asyncio.Event) -> None:
    registry = RegistryServer(registry_config)
    await registry.start()
    dns = DnsServer(dns_config)
    try:
        await dns.start()
        try:
            registrar = await start_registrar(registry, registry_config.acl_token)
            try:
                await registry.wait(stop)
            finally:
                if registrar is not None:
                    await registrar.stop()
        finally:
            await dns.stop()
    finally:
        await registry.stop()


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
