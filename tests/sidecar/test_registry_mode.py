"""Registry mode end to end: the embedded registry, the registry source, a sidecar, real backends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from discovery.client import RegistryClient
from discovery.server import RegistryServer
from sidecar.server import SidecarConfig, SidecarServer, serve
from sidecar.sources.defaults import SidecarSettings
from sidecar.sources.registry import RegistrySource
from tests.sidecar.conftest import BackendFactory


async def register(http: aiohttp.ClientSession, base: str, name: str, port: int, *, passing: bool) -> None:
    body = {"Name": name, "ID": f"{name}-{port}", "Address": "127.0.0.1", "Port": port, "Check": {"TTL": "60s"}}
    async with http.put(f"{base}/v1/agent/service/register", json=body) as response:
        assert response.status == 200
    state = "pass" if passing else "fail"
    async with http.put(f"{base}/v1/agent/check/{state}/service:{name}-{port}") as response:
        assert response.status == 200


@pytest.fixture
async def registry_sidecar(registry: RegistryServer) -> AsyncIterator[SidecarServer]:
    client = RegistryClient(registry.url, max_connections=0)
    source = RegistrySource(SidecarSettings(outbound_addr="127.0.0.1:0"), client)
    sidecar = SidecarServer(SidecarConfig(admin_addr="127.0.0.1:0", drain_timeout_s=2.0), demand=source.demand)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(sidecar, source, stop))
    async with asyncio.timeout(5):
        while not sidecar.applied:  # noqa: ASYNC110 - polls the first apply
            await asyncio.sleep(0.01)
    await sidecar.settle()
    yield sidecar
    stop.set()
    await task
    await client.close()


async def test_registry_mode_routes_404s_and_503s(
    registry: RegistryServer, registry_sidecar: SidecarServer, backend_factory: BackendFactory
) -> None:
    web = await backend_factory("web")
    port = registry_sidecar.listener_port("outbound")
    async with aiohttp.ClientSession() as http:
        await register(http, registry.url, "web", web.port, passing=True)
        await register(http, registry.url, "sick", 1, passing=False)
        for host in ("web", "web.service.consul", "web.default.svc.cluster.local"):
            async with http.get(f"http://127.0.0.1:{port}/hello", headers={"Host": host}) as response:
                assert response.status == 200, await response.text()
                assert (await response.json())["backend"] == "web"
        async with http.get(f"http://127.0.0.1:{port}/", headers={"Host": "sick"}) as response:
            assert response.status == 503
            assert await response.text() == "no healthy upstream\n"
        async with http.get(f"http://127.0.0.1:{port}/", headers={"Host": "ghost"}) as response:
            assert response.status == 404
            assert "unknown service 'ghost'" in await response.text()
        async with http.get(f"http://127.0.0.1:{port}/", headers={"Host": "not a service!"}) as response:
            assert response.status == 404
