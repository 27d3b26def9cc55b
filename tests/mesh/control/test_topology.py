"""``GET /v1/mesh/topology`` against real sidecars: a registry, a control plane, a productpage sidecar
calling reviews (v1 directly, v3 behind its own sidecar) over real HTTP, scraped over real HTTP.

Scrape rounds are driven by the test (``control.topology.round()``, with the background interval set
to an hour) so the window's counts are exact; one test lets the interval loop run on its own.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from discovery.server import RegistryServer
from mesh.control.auth import ControlAuth
from mesh.control.server import ControlServer
from mesh.control.sidecars import check_admin_address, scrapable_admin
from sidecar.metrics import SidecarMetrics
from sidecar.server import SidecarConfig, SidecarServer
from sidecar.sources.control_plane import ControlPlaneSource, advertised_admin
from sidecar.sources.defaults import SidecarSettings
from tests.mesh.control.fixtures import register
from tests.sidecar.helpers import Backend

HOUR = 3600.0
DEST_RULE = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v3, labels: {version: v3}}
"""
SPLIT = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    fault: {abort: {percentage: {value: 100}, httpStatus: 503}}
    route: [{destination: {host: reviews, subset: v1}}]
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 50}
    - {destination: {host: reviews, subset: v3}, weight: 50}
"""


@dataclass
class Mesh:
    control: ControlServer
    registry: RegistryServer
    sidecars: dict[str, SidecarServer] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    backends: list[Backend] = field(default_factory=list)

    async def sidecar(self, service: str, tmp: Path, **settings: Any) -> SidecarServer:
        config = SidecarSettings(service=service, outbound_addr="127.0.0.1:0", inbound_addr="127.0.0.1:0", **settings)
        server = SidecarServer(
            SidecarConfig(admin_addr="127.0.0.1:0", drain_timeout_s=1.0), metrics=SidecarMetrics(service)
        )
        source = ControlPlaneSource(
            config,
            self.control.url,
            sidecar_id=f"{service}-1",
            state_dir=tmp / service,
            wait=5.0,
            admin=lambda: f"127.0.0.1:{server.admin_port}",
        )
        server._demand = source.demand  # as sidecar.workers wires it
        await server.start()
        self.tasks.append(asyncio.create_task(source.run(server.apply)))
        self.sidecars[service] = server
        for _ in range(250):
            if server.applied:
                break
            await asyncio.sleep(0.02)
        return server

    async def apply(self, http: aiohttp.ClientSession, body: str) -> None:
        async with http.put(
            f"{self.control.url}/v1/mesh/config", data=body, headers={"Content-Type": "application/yaml"}
        ) as r:
            assert r.status == 200, await r.text()
            version = int((await r.json())["version"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            async with http.get(f"{self.control.url}/v1/mesh/status") as r:
                sidecars = (await r.json())["sidecars"]
            if all(s["config_version"] >= version and s["in_sync"] for s in sidecars):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"sidecars never ACKed {version}")

    async def topology(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        async with http.get(f"{self.control.url}/v1/mesh/topology") as r:
            assert r.status == 200, await r.text()
            body: dict[str, Any] = await r.json()
            return body


@pytest.fixture
async def mesh(start_control: Any, registry: RegistryServer, tmp_path: Path) -> AsyncIterator[Mesh]:
    control: ControlServer = await start_control(scrape_interval=HOUR)
    world = Mesh(control, registry)
    try:
        yield world
    finally:
        for task in world.tasks:
            task.cancel()
        await asyncio.gather(*world.tasks, return_exceptions=True)
        for server in world.sidecars.values():
            await server.stop()
        for backend in world.backends:
            await backend.stop()


async def reviews_mesh(mesh: Mesh, tmp_path: Path, http: aiohttp.ClientSession) -> str:
    """reviews v1 (a bare backend) and v3 (behind its sidecar), and productpage's sidecar; the outbound URL."""
    v1 = await Backend("reviews-v1").start()
    v3 = await Backend("reviews-v3").start()
    mesh.backends += [v1, v3]
    reviews_sidecar = await mesh.sidecar("reviews", tmp_path, app_port=v3.port)
    async with aiohttp.ClientSession(base_url=mesh.registry.url) as registry:
        await register(registry, "reviews", "reviews-v1", v1.port, Meta={"version": "v1"})
        await register(
            registry, "reviews", "reviews-v3", reviews_sidecar.listener_port("inbound"), Meta={"version": "v3"}
        )
    page = await mesh.sidecar("productpage", tmp_path)
    await mesh.apply(http, DEST_RULE)
    await mesh.apply(http, SPLIT)
    return f"http://127.0.0.1:{page.listener_port('outbound')}"


async def send(http: aiohttp.ClientSession, outbound: str, count: int, user: str = "") -> list[int]:
    headers = {"Host": "reviews", **({"end-user": user} if user else {})}
    statuses = []
    for _ in range(count):
        async with http.get(outbound + "/reviews/1", headers=headers) as r:
            await r.read()
            statuses.append(r.status)
    return statuses


async def test_the_topology_shows_each_edge_with_rps_errors_latency_and_versions(mesh: Mesh, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as http:
        outbound = await reviews_mesh(mesh, tmp_path, http)
        scraper = mesh.control.topology
        await scraper.round()  # the "before" scrape of both sidecars
        started = time.monotonic()
        statuses = await send(http, outbound, 40) + await send(http, outbound, 10, user="jason")
        await scraper.round()
        elapsed = time.monotonic() - started
        assert statuses.count(503) == 10
        body = await mesh.topology(http)

    edges = {(e["source"], e["destination"]): e for e in body["edges"]}
    # reviews' own sidecar counted the v3 calls too (reporter=destination): not a second edge
    assert set(edges) == {("productpage.default", "reviews.default")}, json.dumps(body)
    edge = edges[("productpage.default", "reviews.default")]
    assert edge["reporter"] == "source"
    assert edge["requests"] == 50
    assert edge["error_rate"] == pytest.approx(0.2)
    # 50 requests over productpage's own window, which is at most the longest window (window_s)
    assert edge["rps"] >= 50 / body["window_s"] * 0.99  # window_s is rounded to 0.1 ms in the answer
    assert body["window_s"] >= elapsed * 0.5
    assert 0 < edge["p50_ms"] <= edge["p99_ms"]
    versions = edge["versions"]
    assert set(versions) == {"v1", "v3"}
    assert versions["v1"]["requests"] + versions["v3"]["requests"] == 50
    assert versions["v3"]["error_rate"] == 0.0
    assert versions["v1"]["requests"] >= 10  # jason's aborted calls are on the v1 route
    nodes = {n["id"]: n["sidecars"] for n in body["nodes"]}
    assert nodes == {"productpage.default": 1, "reviews.default": 1}
    targets = {t["sidecar"]: t for t in body["targets"]}
    assert set(targets) == {"productpage-1", "reviews-1"}
    assert all(t["error"] is None and t["scrapes"] == 2 for t in targets.values())
    assert body["interval_s"] == HOUR


async def test_the_interval_loop_scrapes_on_its_own(
    start_control: Any, registry: RegistryServer, tmp_path: Path
) -> None:
    control: ControlServer = await start_control(scrape_interval=0.2)
    world = Mesh(control, registry)
    try:
        async with aiohttp.ClientSession() as http:
            outbound = await reviews_mesh(world, tmp_path, http)
            deadline = time.monotonic() + 15
            edge: dict[str, Any] = {}
            while time.monotonic() < deadline and not edge.get("rps"):
                await send(http, outbound, 5)
                body = await world.topology(http)
                edge = next((e for e in body["edges"] if e["destination"] == "reviews.default"), {})
            assert edge.get("rps", 0) > 0, body
            assert control.topology.rounds >= 2
    finally:
        for task in world.tasks:
            task.cancel()
        await asyncio.gather(*world.tasks, return_exceptions=True)
        for server in world.sidecars.values():
            await server.stop()
        for backend in world.backends:
            await backend.stop()


async def test_an_unreachable_admin_address_is_a_counted_scrape_error(mesh: Mesh) -> None:
    async with aiohttp.ClientSession(base_url=mesh.control.url) as http:
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        body = {"service": "ghost", "admin": f"127.0.0.1:{port}"}
        async with http.put("/v1/mesh/sidecars/ghost-1", json=body) as r:
            assert r.status == 200, await r.text()
        await mesh.control.topology.round()
        topology = await mesh.topology(http)
        (target,) = topology["targets"]
        assert target["sidecar"] == "ghost-1"
        assert "127.0.0.1" in target["error"]
        async with http.get("/metrics") as r:
            text = await r.text()
        assert 'mesh_control_sidecar_scrapes_total{result="connect"}' in text
        assert 'mesh_control_sidecar_scrape_targets{state="failing"} 1.0' in text
        async with http.get("/v1/mesh/status") as r:
            (entry,) = (await r.json())["sidecars"]
        assert entry["admin"] == f"127.0.0.1:{port}"


@pytest.mark.parametrize("admin", ["nope", "127.0.0.1:0", "127.0.0.1:99999", "http://h:1", "::1:80", ":80", 5])
async def test_a_bad_admin_address_is_refused_naming_the_field(api: aiohttp.ClientSession, admin: object) -> None:
    async with api.put("/v1/mesh/sidecars/x-1", json={"service": "x", "admin": admin}) as r:
        assert r.status == 400
        body = await r.json()
    assert body["path"] == "admin"


async def test_good_admin_addresses_are_kept(api: aiohttp.ClientSession) -> None:
    for i, admin in enumerate(["127.0.0.1:15000", "[::1]:15000", "node-7.example:15000"]):
        async with api.put(f"/v1/mesh/sidecars/x-{i}", json={"service": "x", "admin": admin}) as r:
            assert r.status == 200, await r.text()
    async with api.get("/v1/mesh/status") as r:
        admins = sorted(s["admin"] for s in (await r.json())["sidecars"])
    assert admins == ["127.0.0.1:15000", "[::1]:15000", "node-7.example:15000"]


async def test_no_sidecar_no_scrape_and_an_empty_topology(api: aiohttp.ClientSession, control: ControlServer) -> None:
    await control.topology.round()
    async with api.get("/v1/mesh/topology") as r:
        body = await r.json()
    assert (body["nodes"], body["edges"], body["targets"]) == ([], [], [])


async def test_with_token_reads_the_views_need_the_token_but_the_page_does_not(start_control: Any) -> None:
    control: ControlServer = await start_control(auth=ControlAuth("s3cret", token_reads=True))
    async with aiohttp.ClientSession(base_url=control.url) as http:
        for path in ("/v1/mesh/topology", "/v1/mesh/services", "/v1/mesh/rules"):
            async with http.get(path) as r:
                assert r.status == 401, path
            async with http.get(path, headers={"X-Mesh-Token": "s3cret"}) as r:
                assert r.status == 200, path
        async with http.get("/ui") as r:
            assert r.status == 200
            assert '<svg id="graph"' in await r.text()
        async with http.get("/ui/ui.js") as r:
            assert r.status == 200
            assert r.content_type == "text/javascript"
            assert r.headers["Content-Security-Policy"] == "default-src 'self'"  # no script from elsewhere
            assert "X-Mesh-Token" in await r.text()
        async with http.get("/ui/secrets.txt") as r:
            assert r.status == 404


async def test_services_and_rules_summaries(mesh: Mesh, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as http:
        await reviews_mesh(mesh, tmp_path, http)
        async with aiohttp.ClientSession(base_url=mesh.registry.url) as registry:
            body = {"Name": "ratings", "ID": "ratings-1", "Port": 1, "Address": "127.0.0.1"}
            body["Check"] = {"TTL": "30s", "Status": "critical"}
            async with registry.put("/v1/agent/service/register", json=body) as r:
                assert r.status == 200, await r.text()
        async with http.get(f"{mesh.control.url}/v1/mesh/services") as r:
            services = {s["name"]: s for s in (await r.json())["services"]}
        async with http.get(f"{mesh.control.url}/v1/mesh/rules") as r:
            rules = await r.json()
    assert (services["reviews"]["healthy"], services["reviews"]["total"]) == (2, 2)
    assert services["reviews"]["sidecars"] == 1
    assert (services["ratings"]["healthy"], services["ratings"]["total"]) == (0, 1)
    by_name = {(r["kind"], r["name"]): r for r in rules["rules"]}
    assert by_name[("VirtualService", "reviews")]["state"] in ("valid", "warnings")
    assert by_name[("DestinationRule", "reviews")]["problem"] is None
    assert rules["version"] >= 2


def test_the_admin_address_a_sidecar_advertises() -> None:
    assert advertised_admin("127.0.0.1:15000") == "127.0.0.1:15000"
    assert advertised_admin("127.0.0.1:0", 41234) == "127.0.0.1:41234"  # the port actually bound
    assert advertised_admin("127.0.0.1:0") == ""  # not bound yet: nothing to send
    assert advertised_admin("[::1]:15000") == "[::1]:15000"
    assert advertised_admin("unix:/run/w0.sock") == ""
    assert advertised_admin("0.0.0.0:15000") == f"{socket.gethostname()}:15000"
    check_admin_address(advertised_admin("[::]:15000"))  # whatever the host name, it registers


@pytest.mark.parametrize(
    ("admin", "peer", "scraped"),
    [
        ("127.0.0.1:15000", "127.0.0.1", "127.0.0.1:15000"),  # same machine: its loopback is ours
        ("127.0.0.1:15000", "10.0.0.7", ""),  # another machine's loopback is not reachable from here
        ("[::1]:15000", "10.0.0.7", ""),
        ("localhost:15000", "::ffff:10.0.0.7", ""),
        ("10.0.0.7:15000", "10.0.0.7", "10.0.0.7:15000"),
        ("web-1.pods:15000", "10.0.0.7", "web-1.pods:15000"),
        ("127.0.0.1:15000", None, "127.0.0.1:15000"),  # peer unknown (Unix socket): as given
        ("", "10.0.0.7", ""),
    ],
)
def test_a_remote_sidecars_loopback_admin_address_is_not_scraped(admin: str, peer: str | None, scraped: str) -> None:
    assert scrapable_admin(admin, peer) == scraped
