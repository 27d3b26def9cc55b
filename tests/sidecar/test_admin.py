"""The admin API over HTTP: readiness, config dump, clusters, listeners, metrics, drain."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from sidecar.server import SidecarConfig, SidecarServer
from tests.sidecar.conftest import BackendFactory, SidecarFactory
from tests.sidecar.helpers import simple_config


async def admin_get(sidecar: SidecarServer, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{sidecar.admin_port}{path}") as response,
    ):
        return response.status, await response.text()


async def test_not_ready_before_a_config() -> None:
    sidecar = SidecarServer(SidecarConfig(admin_addr="127.0.0.1:0"))
    await sidecar.start()
    try:
        assert await admin_get(sidecar, "/ready") == (503, "PRE_INITIALIZING\n")
        assert (await admin_get(sidecar, "/healthz"))[0] == 200
    finally:
        await sidecar.stop()


async def test_admin_views(backend_factory: BackendFactory, sidecar_factory: SidecarFactory) -> None:
    web = await backend_factory("web")
    sidecar = await sidecar_factory(simple_config([web], version="v7"))
    port = sidecar.listener_port("outbound")
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.get(f"http://127.0.0.1:{port}/", headers={"Host": "web"}) as response:
                await response.read()
        async with session.get(f"http://127.0.0.1:{port}/", headers={"Host": "nope"}) as response:
            assert response.status == 404
        base = f"http://127.0.0.1:{sidecar.admin_port}"
        async with session.get(f"{base}/ready") as response:
            assert (response.status, await response.text()) == (200, "LIVE\n")
        async with session.get(f"{base}/config_dump") as response:
            dump = await response.json()
        assert dump["version"] == "v7"
        assert dump["snapshot"]["clusters"][0]["name"] == "web"
        assert dump["last_rejected"] is None
        async with session.get(f"{base}/clusters") as response:
            clusters = await response.json()
        (entry,) = clusters["clusters"]
        (endpoint,) = entry["endpoints"]
        assert entry["policy"] == "round_robin"
        assert endpoint["address"] == f"127.0.0.1:{web.port}"
        assert endpoint["healthy"] is True
        assert endpoint["weight"] == 1
        assert endpoint["active_requests"] == 0
        assert endpoint["pool"]["idle"] == 1
        async with session.get(f"{base}/clusters?format=text") as response:
            assert f"web::127.0.0.1:{web.port}::health_flags::healthy" in await response.text()
        async with session.get(f"{base}/listeners") as response:
            listeners = await response.json()
        assert listeners[0]["address"] == f"127.0.0.1:{port}"
        async with session.get(f"{base}/metrics") as response:
            text = await response.text()
        async with session.post(f"{base}/drain") as response:
            assert response.status == 200
        async with session.get(f"{base}/ready") as response:
            assert (response.status, await response.text()) == (503, "DRAINING\n")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    ok = (
        "mesh_sidecar_requests_total",
        (("cluster", "web"), ("code", "200"), ("listener", "outbound"), ("route", "all")),
    )
    assert samples[ok] == 3
    missing = (
        "mesh_sidecar_requests_total",
        (("cluster", ""), ("code", "404"), ("listener", "outbound"), ("route", "")),
    )
    assert samples[missing] == 1
    count = (
        "mesh_sidecar_request_duration_seconds_count",
        (("cluster", "web"), ("listener", "outbound"), ("route", "all")),
    )
    assert samples[count] == 3
    assert (
        samples[("mesh_sidecar_upstream_pool_connections_created_total", (("endpoint", f"127.0.0.1:{web.port}"),))] == 1
    )
    assert samples[("mesh_sidecar_config_info", (("version", "v7"),))] == 1
    assert ("mesh_sidecar_downstream_connections_active", (("listener", "outbound"),)) in samples
