"""The workload agent against the real embedded registry: TTL checks follow the probes, thresholds hold,
the startup probe gates, attach/deregister, and an instance removed behind the sidecar's back is noticed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from discovery.client import RegistryClient
from discovery.client_models import ServiceRegistration
from discovery.server import RegistryServer
from mesh.model.probes import ProbeSpec, WorkloadSpec
from sidecar.probes.agent import Instance, WorkloadAgent
from tests.sidecar.helpers import serve_app

PERIOD = 0.05


@dataclass
class App:
    port: int
    ready: bool = True
    live: bool = True


@pytest.fixture
async def app() -> AsyncIterator[App]:
    state = App(0)

    async def ready(_: web.Request) -> web.Response:
        return web.Response(status=200 if state.ready else 503)

    async def live(_: web.Request) -> web.Response:
        return web.Response(status=200 if state.live else 500)

    application = web.Application()
    application.router.add_get("/ready", ready)
    application.router.add_get("/live", live)
    runner, state.port = await serve_app(application)
    yield state
    await runner.cleanup()


@pytest.fixture
async def client(registry: RegistryServer) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(registry.url) as registry_client:
        yield registry_client


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - polls the registry over HTTP
            await asyncio.sleep(0.02)


def http(port: int, path: str, failures: int = 1, successes: int = 1) -> ProbeSpec:
    return ProbeSpec(
        "http", port=port, path=path, period=PERIOD, failure_threshold=failures, success_threshold=successes
    )


async def passing(client: RegistryClient, service: str = "web") -> list[str]:
    return [entry.service.id for entry in (await client.health_service(service, passing=True)).value]


async def check_status(client: RegistryClient, check_id: str) -> str | None:
    check = (await client.agent_checks()).get(check_id)
    return None if check is None else check.status


async def test_readiness_flip_takes_the_instance_out_of_the_passing_set(app: App, client: RegistryClient) -> None:
    spec = WorkloadSpec(readiness=http(app.port, "/ready", failures=3, successes=2))
    agent = WorkloadAgent(spec, Instance("web", "web-1", "127.0.0.1", app.port), client)
    await agent.start()
    try:
        checks = await client.agent_checks()
        assert checks["web-1:readiness"].name == "readiness"
        assert checks["web-1:readiness"].service_id == "web-1"
        await until(lambda: _equals(passing(client), ["web-1"]))
        app.ready = False
        # three failures in a row are needed: the first two hold the check at passing
        await until(lambda: _equals(passing(client), []))
        output = (await client.agent_checks())["web-1:readiness"].output
        assert output == f"HTTP GET http://127.0.0.1:{app.port}/ready: 503 Service Unavailable"
        app.ready = True
        await until(lambda: _equals(passing(client), ["web-1"]))
    finally:
        await agent.close()
    assert await client.agent_service("web-1") is None  # registered by the agent: removed by it


async def test_liveness_without_a_supervised_app_marks_critical(app: App, client: RegistryClient) -> None:
    spec = WorkloadSpec(readiness=http(app.port, "/ready"), liveness=http(app.port, "/live", failures=2))
    agent = WorkloadAgent(spec, Instance("web", "web-2", "127.0.0.1", app.port), client)
    await agent.start()
    try:
        await until(lambda: _equals(check_status(client, "web-2:readiness"), "passing"))
        assert await check_status(client, "web-2:liveness") == "passing"
        app.live = False
        await until(lambda: _equals(check_status(client, "web-2:liveness"), "critical"))
        assert await passing(client) == []  # critical liveness: out of the passing set too
        app.live = True
        await until(lambda: _equals(check_status(client, "web-2:liveness"), "passing"))
    finally:
        await agent.close()


async def test_startup_probe_gates_readiness(app: App, client: RegistryClient, tmp_path: Path) -> None:
    flag = tmp_path / "started"
    # exit 2 while not started: exit 1 would be a warning (Consul), which counts as a success
    command = ("sh", "-c", f"test -e {flag} || exit 2")
    startup = ProbeSpec("exec", command=command, period=PERIOD, failure_threshold=1000)
    spec = WorkloadSpec(startup=startup, readiness=http(app.port, "/ready"))
    agent = WorkloadAgent(spec, Instance("web", "web-3", "127.0.0.1", app.port), client)
    await agent.start()
    try:
        await asyncio.sleep(5 * PERIOD)
        checks = await client.agent_checks()
        assert checks["web-3:readiness"].status == "critical"
        assert checks["web-3:readiness"].output == "waiting for the startup probe"
        assert checks["web-3:liveness"].status == "passing"
        flag.touch()
        await until(lambda: _equals(passing(client), ["web-3"]))
    finally:
        await agent.close()


async def test_attaches_to_an_instance_registered_by_someone_else(app: App, client: RegistryClient) -> None:
    await client.register_service(ServiceRegistration("web", id="web-r", address="127.0.0.1", port=app.port))
    spec = WorkloadSpec(readiness=http(app.port, "/ready"), service_id="web-r")
    agent = WorkloadAgent(spec, Instance("web", "web-r", "127.0.0.1", app.port), client)
    await agent.start()
    assert agent.attached
    await until(lambda: _equals(check_status(client, "web-r:readiness"), "passing"))
    await agent.close()
    assert await client.agent_service("web-r") is not None  # not ours to remove
    assert "web-r:readiness" not in await client.agent_checks()


async def test_deregistration_behind_its_back_is_noticed(app: App, client: RegistryClient) -> None:
    spec = WorkloadSpec(readiness=http(app.port, "/ready"))
    agent = WorkloadAgent(spec, Instance("web", "web-4", "127.0.0.1", app.port), client)  # refresh: 10 s
    await agent.start()
    try:
        await until(lambda: _equals(passing(client), ["web-4"]))
        await client.deregister_service("web-4")
        async with asyncio.timeout(5):  # the watch of its own instance sees it, long before a refresh would
            await agent.gone.wait()
    finally:
        await agent.close()


async def _equals(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def test_exec_probe_warning_and_threshold_reach_the_registry(client: RegistryClient, tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.write_text("0")
    command = ("sh", "-c", f'echo "exit $(cat {code})"; exit $(cat {code})')
    probe = ProbeSpec("exec", command=command, period=PERIOD, failure_threshold=2, timeout=5)
    agent = WorkloadAgent(WorkloadSpec(readiness=probe), Instance("job", "job-1", "127.0.0.1", 9), client)
    await agent.start()
    try:
        await until(lambda: _equals(check_status(client, "job-1:readiness"), "passing"))
        code.write_text("1")  # Consul's script-check warning: counts as a success, reported as warning
        await until(lambda: _equals(check_status(client, "job-1:readiness"), "warning"))
        assert (await client.agent_checks())["job-1:readiness"].output.endswith("exit 1: exit 1")
        assert await passing(client, "job") == []  # ?passing keeps only all-passing instances, as Consul
        code.write_text("2")
        await until(lambda: _equals(check_status(client, "job-1:readiness"), "critical"))
    finally:
        await agent.close()


async def test_tcp_probe_failure_threshold(client: RegistryClient) -> None:
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    probe = ProbeSpec("tcp", port=port, period=PERIOD, failure_threshold=3)
    agent = WorkloadAgent(WorkloadSpec(liveness=probe), Instance("db", "db-1", "127.0.0.1", port), client)
    await agent.start()
    try:
        await until(lambda: _equals(check_status(client, "db-1:liveness"), "passing"))
        server.close()
        await server.wait_closed()
        await until(lambda: _equals(check_status(client, "db-1:liveness"), "critical"))
        output = (await client.agent_checks())["db-1:liveness"].output
        assert output == f"TCP connect 127.0.0.1:{port}: Connection refused"
        assert agent.trackers["liveness"].failed  # three refusals in a row
    finally:
        await agent.close()
