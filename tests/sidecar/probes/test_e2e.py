"""Probes end to end with real processes: `mesh sidecar ... -- python workload_app.py`, the embedded
registry, the DNS server (queried with dnspython) and a second sidecar in registry mode.

- readiness failing removes the instance from DNS and from the other sidecar's endpoints within
  one probe period, while the app process keeps running; it comes back when the probe passes;
- liveness failing restarts the app (a new process), which then serves again;
- SIGTERM: the readiness check turns critical first, an in-flight slow request finishes, new
  connections are refused, the instance is deregistered and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from discovery.client import RegistryClient
from discovery.client_config import ClientConfig
from discovery.server import RegistryServer
from dnsserver.config import DnsConfig
from dnsserver.server import DnsServer, DnsServerConfig
from mesh.demo.processes import free_port
from sidecar.server import SidecarConfig, SidecarServer, serve
from sidecar.sources.defaults import SidecarSettings
from sidecar.sources.registry import RegistrySource

pytestmark = pytest.mark.slow

MESH = [sys.executable, "-c", "from mesh.cli import main; main()"]
WORKLOAD_APP = str(Path(__file__).with_name("workload_app.py"))


@dataclass
class Workload:
    process: asyncio.subprocess.Process
    app_port: int
    inbound: int
    admin: int
    directory: Path

    def app_pids(self) -> list[int]:
        path = self.directory / "starts"
        return [int(line) for line in path.read_text().split()] if path.exists() else []


StartWorkload = Callable[..., Awaitable[Workload]]


@pytest.fixture
async def start_workload(registry: RegistryServer, tmp_path: Path) -> AsyncIterator[StartWorkload]:
    """`mesh sidecar --service web ... -- python workload_app.py` as a real process, in registry mode."""
    started: list[Workload] = []

    async def start(*flags: str) -> Workload:
        app_port, inbound, admin = free_port(), free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MESH_", "CONSUL_"))}
        env |= {
            "CONSUL_HTTP_ADDR": registry.url,
            "MESH_SERVICE": "web",
            "MESH_APP_PORT": str(app_port),
            "MESH_INBOUND_ADDR": f"127.0.0.1:{inbound}",
            "MESH_OUTBOUND_ADDR": f"127.0.0.1:{free_port()}",
            "MESH_ADMIN_ADDR": f"127.0.0.1:{admin}",
            "MESH_LOG_LEVEL": "warning",
        }
        command = [*MESH, "sidecar", *flags, "--", sys.executable, WORKLOAD_APP, str(app_port), str(tmp_path)]
        process = await asyncio.create_subprocess_exec(*command, env=env)
        workload = Workload(process, app_port, inbound, admin, tmp_path)
        started.append(workload)
        return workload

    yield start
    for workload in started:
        if workload.process.returncode is None:
            workload.process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                await workload.process.wait()


@pytest.fixture
async def client(registry: RegistryServer) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(registry.url) as registry_client:
        yield registry_client


@pytest.fixture
async def dns_port(registry: RegistryServer) -> AsyncIterator[int]:
    config = DnsServerConfig(
        dns=DnsConfig(),
        dns_addr="127.0.0.1:0",
        metrics_addr="127.0.0.1:0",
        registry=ClientConfig.from_address(registry.url),
    )
    server = DnsServer(config)
    await server.start()
    yield server.dns_port
    await server.stop()


@pytest.fixture
async def other_sidecar(registry: RegistryServer) -> AsyncIterator[SidecarServer]:
    """A second sidecar (registry mode) whose app calls `web` through the upstream listener."""
    registry_client = RegistryClient(registry.url, max_connections=0)
    settings = SidecarSettings(outbound_addr="127.0.0.1:0", upstreams=(("web", free_port()),))
    source = RegistrySource(settings, registry_client, wait=1.0)
    sidecar = SidecarServer(SidecarConfig(admin_addr="127.0.0.1:0", drain_timeout_s=1.0), demand=source.demand)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(sidecar, source, stop))
    async with asyncio.timeout(5):
        while not sidecar.applied:  # noqa: ASYNC110 - polls the first apply
            await asyncio.sleep(0.01)
    yield sidecar
    stop.set()
    await task
    await registry_client.close()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    """Poll ``check`` until true; the seconds it took. Fails naming ``what`` after ``timeout``."""
    began = time.monotonic()
    while not await check():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - began


async def dns_addresses(port: int) -> list[str]:
    query = dns.message.make_query("web.service.consul", dns.rdatatype.A)
    answer = await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=2.0)
    return sorted(item.address for rrset in answer.answer for item in rrset)


def endpoints(sidecar: SidecarServer) -> list[str]:
    clusters = {c["name"]: c for c in sidecar.clusters_view()["clusters"]}
    cluster = clusters.get("tcp|web")
    return [] if cluster is None else [e["address"] for e in cluster["endpoints"]]


async def check_statuses(client: RegistryClient) -> dict[str, str]:
    return {check_id: check.status for check_id, check in (await client.agent_checks()).items()}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}", timeout=aiohttp.ClientTimeout(total=15)) as response,
    ):
        return response.status, await response.text()


async def test_readiness_flip_leaves_dns_and_the_other_sidecar_while_the_app_runs(
    start_workload: StartWorkload, client: RegistryClient, dns_port: int, other_sidecar: SidecarServer
) -> None:
    period = 1.0
    probe = f"{{httpGet: {{path: /ready}}, periodSeconds: {period}, failureThreshold: 1}}"
    workload = await start_workload("--readiness-probe", probe, "--shutdown-delay", "0.2")
    address = f"127.0.0.1:{workload.inbound}"

    async def in_dns() -> bool:
        return await dns_addresses(dns_port) == ["127.0.0.1"]

    async def in_sidecar() -> bool:
        return endpoints(other_sidecar) == [address]

    await eventually(in_dns, 20, "the instance in DNS")
    await eventually(in_sidecar, 5, "the instance among the other sidecar's endpoints")
    # traffic flows: other sidecar's upstream listener -> the registered inbound address -> the app
    upstream_port = other_sidecar.listener_port("upstream|web")
    status, body = await get(upstream_port, "/")
    assert status == 200
    [pid] = workload.app_pids()
    assert body.strip() == str(pid)

    (workload.directory / "unready").touch()
    # within one probe period (plus a margin for a busy machine): out of DNS and the other sidecar
    took = await eventually(lambda: _not(in_dns()), period + 3.0, "the instance out of DNS")
    await eventually(lambda: _not(in_sidecar()), period + 3.0 - took, "the instance out of the other sidecar")
    assert (await check_statuses(client))[f"web-{socket.gethostname()}-{workload.inbound}:readiness"] == "critical"
    assert alive(pid)  # readiness does not restart the app
    assert workload.app_pids() == [pid]
    assert workload.process.returncode is None

    (workload.directory / "unready").unlink()
    await eventually(in_dns, period + 3.0, "the instance back in DNS")
    await eventually(in_sidecar, 2, "the instance back in the other sidecar")

    workload.process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(20):
        assert await workload.process.wait() == 0
    assert (await client.health_service("web")).value == []  # deregistered
    assert not alive(pid)  # the supervised app was stopped


async def test_liveness_failure_restarts_the_app(start_workload: StartWorkload, client: RegistryClient) -> None:
    probe = "{httpGet: {path: /live}, periodSeconds: 0.3, failureThreshold: 2, initialDelaySeconds: 1}"
    workload = await start_workload(
        "--liveness-probe", probe, "--readiness-probe", "{tcpSocket: {}, periodSeconds: 0.3}"
    )
    await eventually(lambda: _passing(client), 20, "the instance passing")
    [first] = workload.app_pids()
    (workload.directory / "dead").touch()  # the app removes it when it starts again
    await eventually(lambda: _now(len(workload.app_pids()) == 2), 10, "a restarted app")
    second = workload.app_pids()[1]
    assert second != first
    assert not alive(first)
    await eventually(lambda: _passing(client), 10, "the restarted instance passing again")
    status, body = await get(workload.inbound, "/")
    assert status == 200
    assert body.strip() == str(second)
    assert workload.process.returncode is None  # the sidecar itself kept running
    _, exposition = await get(workload.admin, "/metrics")
    assert 'mesh_workload_app_restarts_total{reason="liveness"} 1.0' in exposition
    failures = re.search(r'mesh_workload_probe_results_total\{probe="liveness",result="critical"\} (\S+)', exposition)
    assert failures is not None
    assert float(failures.group(1)) >= 2  # the failure threshold


async def test_sigterm_drains_in_flight_requests_and_refuses_new_ones(
    start_workload: StartWorkload, client: RegistryClient
) -> None:
    workload = await start_workload(
        "--readiness-probe", "{httpGet: {path: /ready}, periodSeconds: 0.3}", "--shutdown-delay", "2"
    )
    await eventually(lambda: _passing(client), 20, "the instance passing")
    slow = asyncio.create_task(get(workload.inbound, "/slow?s=6"))
    await asyncio.sleep(0.5)  # the request is in flight
    workload.process.send_signal(signal.SIGTERM)
    # first the readiness check fails (the instance leaves the passing set) while the listener still serves
    await eventually(lambda: _not(_passing(client)), 1.5, "the readiness check critical")
    assert (await client.health_service("web")).value != []  # still registered, just not passing
    status, _ = await get(workload.inbound, "/")
    assert status == 200  # inside --shutdown-delay: still served

    async def refused() -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", workload.inbound)
        except ConnectionRefusedError:
            return True
        writer.close()
        return False

    await eventually(refused, 4, "new connections refused")
    assert not slow.done()  # the in-flight request is still being served
    assert await slow == (200, "slow done\n")
    async with asyncio.timeout(20):
        assert await workload.process.wait() == 0
    assert (await client.health_service("web")).value == []  # deregistered after the drain


async def test_deregistration_by_someone_else_drains_and_exits(
    start_workload: StartWorkload, client: RegistryClient
) -> None:
    workload = await start_workload("--readiness-probe", "{tcpSocket: {}, periodSeconds: 0.3}")
    await eventually(lambda: _passing(client), 20, "the instance passing")
    [pid] = workload.app_pids()
    slow = asyncio.create_task(get(workload.inbound, "/slow?s=2"))
    await asyncio.sleep(0.3)
    [entry] = (await client.health_service("web")).value
    await client.deregister_service(entry.service.id)  # e.g. the registrar saw the container stop
    assert await slow == (200, "slow done\n")  # in flight: finished by the drain
    async with asyncio.timeout(20):
        assert await workload.process.wait() == 0
    assert not alive(pid)


async def test_an_app_command_alone_is_supervised_but_not_registered(
    start_workload: StartWorkload, client: RegistryClient
) -> None:
    workload = await start_workload()
    await eventually(lambda: _now(len(workload.app_pids()) == 1), 20, "the app started")
    await eventually(lambda: _serves(workload.inbound), 20, "the app served through the inbound listener")
    assert "web" not in (await client.catalog_services()).value  # no probe, no --register: not registered
    [first] = workload.app_pids()
    with contextlib.suppress(aiohttp.ClientError):
        await get(workload.app_port, "/exit")  # the app crashes
    await eventually(lambda: _now(len(workload.app_pids()) == 2), 10, "the app restarted after its backoff")
    second = workload.app_pids()[1]
    await eventually(lambda: _serves(workload.inbound), 10, "the restarted app serving")
    workload.process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(20):
        assert await workload.process.wait() == 0
    assert not alive(first)
    assert not alive(second)


async def _serves(port: int) -> bool:
    try:
        status, _ = await get(port, "/")
    except aiohttp.ClientError:
        return False
    return status == 200


async def _passing(client: RegistryClient) -> bool:
    return len((await client.health_service("web", passing=True)).value) == 1


async def _not(value: Awaitable[bool]) -> bool:
    return not await value


async def _now(value: bool) -> bool:
    return value
