"""Egress through a real `mesh sidecar` process following the control plane: a ServiceEntry's external
host gets the mesh's retries, timeouts and metrics, and with ALLOW_ANY an unknown Host passes through
(PassthroughCluster) while with REGISTRY_ONLY it is refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from discovery.server import RegistryServer
from mesh.control.server import ControlServer
from tests.mesh.control.fixtures import FAST
from tests.mesh.control.test_sidecar_process_e2e import SidecarProcess
from tests.mesh.rules.helpers import se, vs
from tests.sidecar.helpers import serve_app

pytestmark = pytest.mark.slow
EXTERNAL = "api.external.test"


class External:
    """An outside API on loopback: /flaky fails with 503 once per key, /slow answers after 2 s."""

    def __init__(self) -> None:
        self.failed: set[str] = set()
        self.hits = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        if request.path == "/flaky" and request.query.get("k", "") not in self.failed:
            self.failed.add(request.query.get("k", ""))
            return web.Response(status=503, text="try again")
        if request.path == "/slow":
            await asyncio.sleep(2.0)
        return web.json_response({"from": "external", "host": request.headers.get("Host", "")})


@pytest.fixture
async def external() -> AsyncIterator[tuple[External, int]]:
    api = External()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", api.handle)
    runner, port = await serve_app(app)
    yield api, port
    await runner.cleanup()


async def get(sidecar: SidecarProcess, host: str, path: str) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{sidecar.outbound}{path}"
    async with aiohttp.ClientSession() as http, http.get(url, headers={"Host": host}) as r:
        return r.status, await r.json() if r.content_type == "application/json" else await r.text()


async def run_sidecar(
    control: ControlServer, registry: RegistryServer, tmp_path: Path, rules: list[Any]
) -> SidecarProcess:
    if rules:
        async with (
            aiohttp.ClientSession() as http,
            http.put(f"{control.url}/v1/mesh/config", data=yaml.safe_dump_all(rules)) as r,
        ):
            assert r.status == 200, await r.text()
    sidecar = SidecarProcess(control.url, registry.url, tmp_path)
    await sidecar.live()
    return sidecar


async def test_service_entry_gets_retries_timeouts_metrics_and_allow_any_passes_through(
    start_control: Callable[..., Any], registry: RegistryServer, external: tuple[External, int], tmp_path: Path
) -> None:
    api, port = external
    control: ControlServer = await start_control(settings=replace(FAST, outbound_traffic_policy="ALLOW_ANY"))
    entry = se(
        "external-api",
        hosts=[EXTERNAL],
        ports=[{"number": port, "name": "http", "protocol": "HTTP"}],
        resolution="DNS",
        endpoints=[{"address": "localhost"}],
    )
    route = vs(
        "external-api",
        hosts=[EXTERNAL],
        http=[
            {
                "timeout": "500ms",
                "retries": {"attempts": 2, "retryOn": "503"},
                "route": [{"destination": {"host": EXTERNAL, "port": {"number": port}}}],
            }
        ],
    )
    sidecar = await run_sidecar(control, registry, tmp_path, [entry, route])
    try:
        status, body = await get(sidecar, f"{EXTERNAL}:{port}", "/flaky?k=a")
        assert (status, body["from"]) == (200, "external")  # the 503 was retried
        assert api.hits == 2
        status, _ = await get(sidecar, f"{EXTERNAL}:{port}", "/slow")
        assert status == 504  # the VirtualService's timeout
        status, body = await get(sidecar, f"127.0.0.1:{port}", "/anything")  # no route: pass through
        assert (status, body["host"]) == (200, f"127.0.0.1:{port}")
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{sidecar.admin}/metrics") as r:
            metrics = await r.text()
        lines = [line for line in metrics.splitlines() if line.startswith("istio_requests_total{")]
        assert any(f'destination_service="{EXTERNAL}"' in line and 'response_code="200"' in line for line in lines)
        assert any(f'destination_service="{EXTERNAL}"' in line and 'response_code="504"' in line for line in lines)
        assert any('destination_service="PassthroughCluster"' in line for line in lines)
    finally:
        sidecar.stop()


async def test_registry_only_refuses_unknown_hosts(
    control: ControlServer, registry: RegistryServer, external: tuple[External, int], tmp_path: Path
) -> None:
    api, port = external
    sidecar = await run_sidecar(control, registry, tmp_path, [])
    try:
        status, _text = await get(sidecar, f"127.0.0.1:{port}", "/")
        assert status == 404
        assert api.hits == 0
    finally:
        sidecar.stop()
