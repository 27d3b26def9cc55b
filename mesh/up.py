"""`mesh up`: every part in one process, started in dependency order, stopped in reverse."""

from __future__ import annotations

import asyncio

from discovery.server import RegistryConfig, RegistryServer
from dnsserver.server import DnsServer, DnsServerConfig


async def run_up(registry_config: RegistryConfig, dns_config: DnsServerConfig, stop: asyncio.Event) -> None:
    registry = RegistryServer(registry_config)
    await registry.start()
    dns = DnsServer(dns_config)
    try:
        await dns.start()
        try:
            await registry.wait(stop)
        finally:
            await dns.stop()
    finally:
        await registry.stop()
