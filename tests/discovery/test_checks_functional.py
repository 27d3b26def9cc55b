"""Health checks against real servers on 127.0.0.1: HTTP, TCP, TTL, reaping, hysteresis, spread, bounds.

Checks run on the registry's own clock (Interval is clamped to >= 1 s), so tests poll the
catalog with deadlines instead of sleeping fixed times.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from discovery.checks import CheckRunner
from discovery.models import CRITICAL, PASSING, WARNING, Check, CheckDefinition, Service
from discovery.registry import AgentIdentity, Registry
from discovery.server import RegistryServer

NODE = "node1"  # the conftest registry's node name


# === a target whose answers the test controls ===


@dataclass
class Hit:
    path: str
    method: str
    headers: dict[str, str]
    body: bytes
    at: float
    code: int
    seen_status: str | None = None  # the check's status in the catalog when the probe arrived


@dataclass
class Target:
    url: str = ""
    code: int = 200
    delay: float = 0.0
    hits: list[Hit] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    observe: Callable[[str], str | None] = lambda _path: None

    async def handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            code = self.code
            self.hits.append(
                Hit(
                    request.path,
                    request.method,
                    dict(request.headers),
                    await request.read(),
                    time.monotonic(),
                    code,
                    self.observe(request.path),
                )
            )
            if self.delay:
                await asyncio.sleep(self.delay)
            return web.Response(status=code, text=f"status {code}")
        finally:
            self.in_flight -= 1

    def paths(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == path]


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    t = Target()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", t.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    t.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield t
    await runner.cleanup()


async def eventually(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> float:
    """Poll until ``condition()``; return the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def put_ok(http: aiohttp.ClientSession, path: str, body: Any = None, params: Any = None) -> None:
    async with http.put(path, json=body, params=params) as response:
        assert response.status == 200, (path, response.status, await response.text())


def check_of(server: RegistryServer, check_id: str) -> Check | None:
    return server.registry.catalog.check(NODE, check_id)


def status_of(server: RegistryServer, check_id: str) -> str | None:
    check = check_of(server, check_id)
    return check.status if check else None


# === HTTP ===


async def test_http_check_follows_the_target(
    target: Target, registry: RegistryServer, http: aiohttp.ClientSession
) -> None:
    url = f"{target.url}/health"
    body = {"Name": "web", "ID": "web1", "Port": 80, "Check": {"HTTP": url, "Interval": "1s", "Timeout": "2s"}}
    await put_ok(http, "/v1/agent/service/register", body)
    cid = "service:web1"
    assert status_of(registry, cid) == CRITICAL, "checks start critical"

    await eventually(lambda: status_of(registry, cid) == PASSING, "passing on 200")
    assert check_of(registry, cid).output == f"HTTP GET {url}: 200 OK Output: status 200"  # type: ignore[union-attr]

    target.code = 500
    await eventually(lambda: status_of(registry, cid) == CRITICAL, "critical on 500")
    assert "500 Internal Server Error" in check_of(registry, cid).output  # type: ignore[union-attr]

    target.code = 429
    await eventually(lambda: status_of(registry, cid) == WARNING, "warning on 429")
    assert "429 Too Many Requests" in check_of(registry, cid).output  # type: ignore[union-attr]

    target.code = 204
    await eventually(lambda: status_of(registry, cid) == PASSING, "passing again on 204")
    hit = target.paths("/health")[0]
    assert hit.method == "GET"
    assert hit.headers["User-Agent"] == "Consul Health Check"


async def test_http_check_hysteresis(target: Target, registry: RegistryServer, http: aiohttp.ClientSession) -> None:
    """SuccessBeforePassing=2 / FailuresBeforeCritical=2: one bad (or good) probe changes nothing."""
    cid = "service:flappy"
    target.observe = lambda _path: status_of(registry, cid)
    check = {"HTTP": f"{target.url}/flappy", "Interval": "1s", "SuccessBeforePassing": 2, "FailuresBeforeCritical": 2}
    await put_ok(http, "/v1/agent/service/register", {"Name": "flappy", "Check": check})

    await eventually(lambda: status_of(registry, cid) == PASSING, "first result applies at once (Consul)")
    assert [h.seen_status for h in target.hits] == [CRITICAL]

    target.code, mark = 500, len(target.hits)
    await eventually(lambda: status_of(registry, cid) == CRITICAL, "critical after two failures", timeout=6)
    failures = target.hits[mark:]
    assert [h.code for h in failures] == [500, 500]
    assert [h.seen_status for h in failures] == [PASSING, PASSING], "one failure is not enough"

    target.code, mark = 200, len(target.hits)
    await eventually(lambda: status_of(registry, cid) == PASSING, "passing after two successes", timeout=6)
    successes = target.hits[mark:]
    assert [(h.code, h.seen_status) for h in successes] == [(200, CRITICAL), (200, CRITICAL)]


# === TCP ===


async def test_tcp_check_follows_a_listener(registry: RegistryServer, http: aiohttp.ClientSession) -> None:
    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    listener = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    address = f"127.0.0.1:{port}"
    try:
        await put_ok(
            http,
            "/v1/agent/service/register",
            {"Name": "db", "Port": port, "Check": {"TCP": address, "Interval": "1s"}},
        )
        await eventually(lambda: status_of(registry, "service:db") == PASSING, "passing while listening")
        assert check_of(registry, "service:db").output == f"TCP connect {address}: Success"  # type: ignore[union-attr]
    finally:
        listener.close()
        await listener.wait_closed()
    await eventually(lambda: status_of(registry, "service:db") == CRITICAL, "critical once closed")
    assert check_of(registry, "service:db").output.startswith(f"TCP connect {address}: ")  # type: ignore[union-attr]


# === TTL ===


async def test_ttl_check_expires_unless_refreshed(registry: RegistryServer, http: aiohttp.ClientSession) -> None:
    await put_ok(http, "/v1/agent/service/register", {"Name": "worker", "Check": {"TTL": "500ms"}})
    cid = "service:worker"
    assert status_of(registry, cid) == CRITICAL

    passed = time.monotonic()  # the TTL restarts while this request is served
    await put_ok(http, f"/v1/agent/check/pass/{cid}", params={"note": "alive"})
    assert (status_of(registry, cid), check_of(registry, cid).output) == (PASSING, "alive")  # type: ignore[union-attr]
    await eventually(lambda: status_of(registry, cid) == CRITICAL, "critical when the TTL runs out", timeout=3)
    assert time.monotonic() - passed >= 0.5
    assert check_of(registry, cid).output.startswith("TTL expired")  # type: ignore[union-attr]

    # Refreshed every 100 ms for three TTLs: it never leaves passing.
    await put_ok(http, f"/v1/agent/check/warn/{cid}", params={"note": "degraded"})
    assert status_of(registry, cid) == WARNING
    await put_ok(http, f"/v1/agent/check/pass/{cid}")
    until = time.monotonic() + 1.5
    while time.monotonic() < until:
        assert status_of(registry, cid) == PASSING
        await put_ok(http, f"/v1/agent/check/update/{cid}", {"Status": "passing", "Output": "still alive"})
        await asyncio.sleep(0.1)
    assert check_of(registry, cid).output == "still alive"  # type: ignore[union-attr]
    await eventually(lambda: status_of(registry, cid) == CRITICAL, "expires again once refreshes stop", timeout=3)


async def test_ttl_check_registered_alone_expires(registry: RegistryServer, http: aiohttp.ClientSession) -> None:
    """A node-level TTL check (agent/check/register) follows the same timer."""
    await put_ok(http, "/v1/agent/check/register", {"Name": "cron", "TTL": "300ms", "Status": "passing"})
    assert status_of(registry, "cron") == PASSING
    await eventually(lambda: status_of(registry, "cron") == CRITICAL, "node TTL check expires", timeout=3)


# === reaping ===


async def test_critical_service_is_deregistered_after_the_configured_time(
    registry: RegistryServer, http: aiohttp.ClientSession
) -> None:
    catalog = registry.registry.catalog
    check = {"TTL": "30s", "DeregisterCriticalServiceAfter": "1s"}
    registered = time.monotonic()
    await put_ok(http, "/v1/agent/service/register", {"Name": "doomed", "Check": check})
    await put_ok(http, "/v1/agent/service/register", {"Name": "healthy", "Check": check})
    await put_ok(http, "/v1/agent/check/pass/service:healthy")

    await eventually(lambda: catalog.service_instance(NODE, "doomed") is None, "the critical service is reaped")
    assert time.monotonic() - registered >= 1.0, "not before DeregisterCriticalServiceAfter"
    assert catalog.check(NODE, "service:doomed") is None, "its checks go with it"
    async with http.get("/v1/agent/services") as response:
        services = await response.json()
    assert set(services) == {"healthy"}
    assert catalog.service_instance(NODE, "healthy") is not None


# === runner internals on an own registry: spread, bounds, request shape ===


@pytest.fixture
async def own_registry(tmp_path: Path) -> AsyncIterator[Registry]:
    registry = Registry(tmp_path / "own", AgentIdentity("n1", "127.0.0.1"))
    await registry.open()
    yield registry
    await registry.close()


def sequence(*first: float, then: float = 0.5) -> Callable[[], float]:
    values: Iterator[float] = iter(first)
    return lambda: next(values, then)


async def add_http_service(
    registry: Registry, sid: str, url: str, *, interval: float = 1.0, timeout: float = 2.0, **definition: Any
) -> None:
    d = CheckDefinition(http=url, interval=interval, timeout=timeout, **definition)
    await registry.write(
        lambda c: c.register_service(
            Service("n1", sid, sid),
            [Check("n1", f"service:{sid}", sid, service_id=sid, definition=d, agent_check=True)],
        )
    )


async def test_first_runs_are_spread_over_the_interval(target: Target, own_registry: Registry) -> None:
    runner = CheckRunner(own_registry, rand=sequence(0.0, 0.6))
    await runner.start()
    try:
        # Launched in check-ID order: "a" draws 0.0, "b" draws 0.6 of its 1 s interval.
        await add_http_service(own_registry, "a", f"{target.url}/a")
        await add_http_service(own_registry, "b", f"{target.url}/b")
        await eventually(lambda: bool(target.paths("/a")) and bool(target.paths("/b")), "both probed")
    finally:
        await runner.close()
    gap = target.paths("/b")[0].at - target.paths("/a")[0].at
    assert 0.4 <= gap <= 0.9, gap


async def test_probes_in_flight_are_bounded(target: Target, own_registry: Registry) -> None:
    target.delay = 0.25
    runner = CheckRunner(own_registry, concurrency=2, rand=lambda: 0.0)
    await runner.start()
    try:
        for i in range(6):
            await add_http_service(own_registry, f"s{i}", f"{target.url}/s{i}")
        await eventually(lambda: len({h.path for h in target.hits}) == 6, "every check probed once")
    finally:
        await runner.close()
    assert target.max_in_flight == 2


async def test_probe_sends_method_headers_and_body(target: Target, own_registry: Registry) -> None:
    runner = CheckRunner(own_registry, rand=lambda: 0.0)
    await runner.start()
    try:
        await add_http_service(
            own_registry,
            "p",
            f"{target.url}/p",
            method="PUT",
            header={"X-Token": ("a", "b")},
            body='{"ping":1}',
        )
        await eventually(lambda: bool(target.paths("/p")), "probed")
    finally:
        await runner.close()
    hit = target.paths("/p")[0]
    assert (hit.method, hit.headers["X-Token"], hit.body) == ("PUT", "a, b", b'{"ping":1}')


async def test_probe_timeout_is_critical(target: Target, own_registry: Registry) -> None:
    target.delay = 2.0
    runner = CheckRunner(own_registry, rand=lambda: 0.0)
    await runner.start()
    try:
        await add_http_service(own_registry, "slow", f"{target.url}/slow", timeout=0.2)

        def check() -> Check:
            found = own_registry.catalog.check("n1", "service:slow")
            assert found is not None
            return found

        await eventually(lambda: "timed out" in check().output, "timed out")
        assert check().status == CRITICAL
    finally:
        await runner.close()


async def test_deregistered_check_stops_probing(target: Target, own_registry: Registry) -> None:
    runner = CheckRunner(own_registry, rand=lambda: 0.0)
    await runner.start()
    try:
        await add_http_service(own_registry, "gone", f"{target.url}/gone")
        await eventually(lambda: bool(target.paths("/gone")), "probed")
        await own_registry.write(lambda c: c.deregister_service("n1", "gone"))
        count = len(target.paths("/gone"))
        await asyncio.sleep(1.3)  # more than one interval: no further probe
        assert len(target.paths("/gone")) == count
    finally:
        await runner.close()


# === catalog-registered checks are records, not work ===


async def test_catalog_check_without_interval_is_not_run(
    target: Target, registry: RegistryServer, http: aiohttp.ClientSession
) -> None:
    body = {
        "Node": NODE,
        "Address": "127.0.0.1",
        "SkipNodeUpdate": True,
        "Check": {"CheckID": "ext", "Name": "ext", "Status": "passing", "Definition": {"HTTP": f"{target.url}/c"}},
    }
    await put_ok(http, "/v1/catalog/register", body)
    await asyncio.sleep(1.0)
    assert target.paths("/c") == [], "probed a catalog check with no Interval"
    assert status_of(registry, "ext") == PASSING


async def test_catalog_check_with_interval_is_not_run(
    target: Target, registry: RegistryServer, http: aiohttp.ClientSession
) -> None:
    body = {
        "Node": NODE,
        "Address": "127.0.0.1",
        "SkipNodeUpdate": True,
        "Check": {
            "CheckID": "ext",
            "Name": "ext",
            "Status": "passing",
            "Definition": {"HTTP": f"{target.url}/c", "Interval": "1s"},
        },
    }
    target.code = 500
    await put_ok(http, "/v1/catalog/register", body)
    await asyncio.sleep(1.5)
    assert target.paths("/c") == []
    assert status_of(registry, "ext") == PASSING
