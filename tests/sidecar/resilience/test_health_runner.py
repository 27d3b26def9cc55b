"""Active health checks against real servers that fail on purpose (loopback sockets, real probes)."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from lb import Endpoint
from mesh.demo.processes import free_port
from mesh.model.policies import HealthCheck
from sidecar.resilience.health_check import HEALTHY, UNHEALTHY, HealthChecker
from sidecar.resilience.health_runner import HealthCheckRunner, probe, probe_host
from tests.sidecar.helpers import serve_app


class Backend:
    """An aiohttp server whose /healthz answers ``status`` (changed by the test) and counts probes."""

    def __init__(self) -> None:
        self.status = 200
        self.probes = 0
        self.hosts: list[str] = []
        self.delay = 0.0
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        async def healthz(request: web.Request) -> web.Response:
            self.probes += 1
            self.hosts.append(request.host)
            if self.delay:
                await asyncio.sleep(self.delay)
            return web.Response(status=self.status, text="state\n")

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        self.runner, self.port = await serve_app(app)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(f"127.0.0.1:{self.port}", "127.0.0.1", self.port)


@pytest.fixture
async def backends() -> AsyncIterator[list[Backend]]:
    servers = [Backend() for _ in range(2)]
    for server in servers:
        await server.start()
    yield servers
    for server in servers:
        await server.stop()


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` (state changes in the checker are not events a test can await)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_probe_http_statuses(backends: list[Backend]) -> None:
    check = HealthCheck(path="/healthz", timeout_s=1.0)
    b = backends[0]
    assert (await probe(check, "127.0.0.1", b.port, "web")).passed
    b.status = 302
    assert (await probe(check, "127.0.0.1", b.port, "web")).passed  # 200-399 by default
    b.status = 503
    result = await probe(check, "127.0.0.1", b.port, "web")
    assert not result.passed
    assert result.detail == "HTTP 503"
    assert b.hosts[-1] == "web"
    narrow = HealthCheck(path="/healthz", expected_statuses=((204, 205),))
    b.status = 200
    assert not (await probe(narrow, "127.0.0.1", b.port, "web")).passed
    missing = HealthCheck(path="/nope")
    assert (await probe(missing, "127.0.0.1", b.port, "web")).detail == "HTTP 404"


async def test_probe_failures() -> None:
    refused = await probe(HealthCheck(timeout_s=1.0), "127.0.0.1", free_port(), "web")
    assert not refused.passed
    assert refused.detail.startswith("connection failed")
    # A listener that accepts but never answers: the probe times out.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        port = silent.getsockname()[1]
        timed_out = await probe(HealthCheck(timeout_s=0.2), "127.0.0.1", port, "web")
        assert not timed_out.passed
        assert "timed out" in timed_out.detail
        # TCP checks only need the connection to open.
        assert (await probe(HealthCheck(kind="tcp", timeout_s=1.0), "127.0.0.1", port, "web")).passed
    finally:
        silent.close()
    assert not (await probe(HealthCheck(kind="tcp", timeout_s=1.0), "127.0.0.1", free_port(), "web")).passed


async def test_probe_rejects_garbage() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        result = await probe(HealthCheck(timeout_s=1.0), "127.0.0.1", port, "web")
        assert not result.passed
        assert "invalid status line" in result.detail
    finally:
        server.close()
        await server.wait_closed()


async def test_endpoint_goes_unhealthy_after_n_failures_and_returns_after_m_passes(backends: list[Backend]) -> None:
    check = HealthCheck(path="/healthz", interval_s=0.02, timeout_s=0.5, unhealthy_threshold=3, healthy_threshold=2)
    a, b = backends
    checker = HealthChecker(check, [a.endpoint.key, b.endpoint.key])
    changes: list[frozenset[str]] = []
    runner = HealthCheckRunner(lambda cluster: changes.append(checker.unavailable), rng=random.Random(1))
    try:
        runner.sync("web", checker, [a.endpoint, b.endpoint])
        await wait_for(lambda: checker.unavailable == frozenset())
        assert a.hosts[0] == "web"  # the cluster's name is the Host
        a.status = 500
        failed_from = a.probes
        await wait_for(lambda: checker.state(a.endpoint.key) == UNHEALTHY)
        assert a.probes - failed_from >= 3  # not before the third failure in a row
        assert checker.unavailable == frozenset({a.endpoint.key})
        assert checker.state(b.endpoint.key) == HEALTHY
        a.status = 200
        passed_from = a.probes
        await wait_for(lambda: checker.state(a.endpoint.key) == HEALTHY)
        assert a.probes - passed_from >= 2
        assert changes[-2:] == [frozenset({a.endpoint.key}), frozenset()]
    finally:
        await runner.close()


async def test_slow_endpoint_fails_by_timeout_and_sync_stops_probes(backends: list[Backend]) -> None:
    a, b = backends
    a.delay = 0.5
    check = HealthCheck(path="/healthz", interval_s=0.02, timeout_s=0.05, unhealthy_threshold=1)
    checker = HealthChecker(check, [a.endpoint.key, b.endpoint.key])
    runner = HealthCheckRunner(lambda cluster: None)
    try:
        runner.sync("web", checker, [a.endpoint, b.endpoint])
        await wait_for(lambda: checker.state(b.endpoint.key) == HEALTHY and checker.state(a.endpoint.key) == UNHEALTHY)
        assert "timed out" in checker.endpoint_state(a.endpoint.key)["last_detail"]
        # The endpoint leaves the cluster: its probes stop.
        checker.set_endpoints([b.endpoint.key])
        runner.sync("web", checker, [b.endpoint])
        await asyncio.sleep(0.05)
        count = a.probes
        await asyncio.sleep(0.15)
        assert a.probes == count
        assert runner.running == 1
        runner.forget_others(set())
        await asyncio.sleep(0.01)
        assert runner.running == 0
    finally:
        await runner.close()


def test_probe_host_defaults() -> None:
    endpoint = Endpoint("e", "10.0.0.1", 8080)
    assert probe_host("web", endpoint) == "web"
    assert probe_host("inbound|8080", endpoint) == "10.0.0.1:8080"
    assert probe_host("x y", Endpoint("e", "::1", 80)) == "[::1]:80"
