"""Faults and restarts: the registrar adopts its own services, cleans up what it missed, and converges
after the registry or the Docker daemon comes back."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from discovery.client import RegistryClient
from discovery.client_models import ServiceRegistration
from discovery.server import RegistryConfig, RegistryServer
from tests.discovery.registrar.conftest import (
    Containers,
    RegistrarFactory,
    docker_command,
    eventually,
    services_of,
    wait_check,
    wait_gone,
    wait_services,
)
from tests.discovery.registrar.test_registrar_docker import exit_on_request

PUBLISH_80 = ("-p", "127.0.0.1::80")


async def test_restarted_registrar_adopts_its_services_without_rewriting_them(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    first = await start_registrar()
    kept = await containers.run(*PUBLISH_80, "-e", "SERVICE_CHECK_HTTP=/index.html", "-e", "SERVICE_CHECK_INTERVAL=1s")
    before = await wait_services(client, kept, 1)
    service_id = next(iter(before))
    await wait_check(client, f"service:{service_id}", "passing")
    await first.stop()

    # while no registrar runs: one container goes away, another starts
    gone = kept
    survivor = await containers.run(*PUBLISH_80)
    await docker_command("rm", "-f", gone)
    assert await services_of(client, gone)  # still there: nobody watched

    second = await start_registrar()  # same host name: it owns what the first registered
    await wait_gone(client, gone)
    await wait_services(client, survivor, 1)
    assert second.reconciler is not None

    # adopting means no second copy and no rewrite (the digest in Meta matched)
    third_container = await containers.run(*PUBLISH_80)
    adopted = (await wait_services(client, third_container, 1)).popitem()[1]
    await second.stop()
    await start_registrar()
    again = await services_of(client, third_container)
    assert list(again) == [adopted.id]
    assert again[adopted.id].modify_index == adopted.modify_index


async def test_checks_keep_their_status_when_a_restarted_registrar_adopts(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    first = await start_registrar()
    cid = await containers.run(*PUBLISH_80, "-e", "SERVICE_CHECK_HTTP=/index.html", "-e", "SERVICE_CHECK_INTERVAL=1s")
    service_id = next(iter(await wait_services(client, cid, 1)))
    passing = await wait_check(client, f"service:{service_id}", "passing")
    await first.stop()
    await start_registrar()
    check = (await client.agent_checks())[f"service:{service_id}"]
    assert check.status == "passing"
    assert check.create_index == passing.create_index


async def test_cleanup_removes_registrator_leftovers_of_this_host_only(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    hostname = "cleanup-host"
    running = await containers.run("--name", containers.name("live"), *PUBLISH_80)
    running_name = (await containers.inspect(running))["Name"].lstrip("/")
    # what a Registrator on this host left: no ownership Meta
    leftover = ServiceRegistration(name="old", id=f"{hostname}:long-gone:80", address="127.0.0.1", port=1)
    other_host = ServiceRegistration(name="old", id="other-host:long-gone:80", address="127.0.0.1", port=1)
    unrelated = ServiceRegistration(name="manual", id="manual-1", address="127.0.0.1", port=2)
    # a Registrator registration of a container that still runs: replaced by ours (same ID), not removed
    same_id = ServiceRegistration(name="old", id=f"{hostname}:{running_name}:80", address="127.0.0.1", port=3)
    for registration in (leftover, other_host, unrelated, same_id):
        await client.register_service(registration)

    await start_registrar(hostname=hostname)  # without --cleanup: leftovers stay
    ours = await wait_services(client, running, 1)
    assert list(ours) == [same_id.id]  # adopted by taking over the ID
    assert leftover.id in await client.agent_services()

    await start_registrar(hostname=hostname, cleanup=True)
    services = await client.agent_services()
    assert leftover.id not in services
    assert {other_host.id, unrelated.id, same_id.id} <= set(services)


async def test_registry_outage_keeps_desired_state_and_converges(
    containers: Containers, start_registry: object, start_registrar: RegistrarFactory, tmp_path: Path
) -> None:
    registry = await _start(start_registry)
    port = registry.port
    registrar = await start_registrar(registry_url=registry.url)
    async with RegistryClient(registry.url) as client:
        before = await containers.run(*PUBLISH_80)
        await wait_services(client, before, 1)
    await registry.stop()

    # while the registry is down: one container stops, one starts
    await docker_command("rm", "-f", before)
    after = await containers.run(*PUBLISH_80)
    assert registrar.reconciler is not None
    await eventually(lambda: _false_to_none(not registrar.reconciler.registry_ok), 10, "the outage to be noticed")  # type: ignore[union-attr]

    back = RegistryServer(
        RegistryConfig(data_dir=registry.config.data_dir, http_addr=f"127.0.0.1:{port}", node_name="node1")
    )
    await back.start()
    try:
        async with RegistryClient(back.url) as client:
            await wait_services(client, after, 1, timeout=20)
            await wait_gone(client, before, timeout=20)
        assert registrar.ready
    finally:
        await registrar.stop()
        await back.stop()


async def test_resync_repairs_what_was_changed_behind_our_back(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    await start_registrar(resync=0.3)
    cid = await containers.run(*PUBLISH_80)
    service_id = next(iter(await wait_services(client, cid, 1)))
    await client.deregister_service(service_id)  # someone removed it: no Docker event says so
    await wait_services(client, cid, 1, timeout=10)


async def test_rename_moves_the_service_to_the_new_id(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    registrar = await start_registrar()
    cid = await containers.run("--name", containers.name("before"), *PUBLISH_80)
    await wait_services(client, cid, 1)
    new_name = containers.name("after")
    await docker_command("rename", cid, new_name)

    async def renamed() -> bool:
        return list(await services_of(client, cid)) == [f"{registrar.config.hostname}:{new_name}:80"]

    await eventually(renamed, 15, "the service ID to follow the new container name")


async def test_without_docker_the_registrar_waits_not_ready(
    registry: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from discovery.client_config import ClientConfig
    from discovery.registrar.config import RegistrarConfig
    from discovery.registrar.server import Registrar

    registrar = Registrar(
        RegistrarConfig(docker_host="unix:///nonexistent/docker.sock", metrics_addr="127.0.0.1:0"),
        ClientConfig.from_address(registry.url),
    )
    await registrar.start()
    try:
        await asyncio.sleep(0.5)
        assert not registrar.ready
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{registrar.metrics_port}/readyz") as ready:
                assert ready.status == 503
            async with http.get(f"http://127.0.0.1:{registrar.metrics_port}/healthz") as alive:
                assert alive.status == 200
    finally:
        await registrar.stop()


async def test_metrics_and_probes(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    registrar = await start_registrar(metrics_addr="127.0.0.1:0")
    cid = await containers.run(*PUBLISH_80)
    await wait_services(client, cid, 1)
    base = f"http://127.0.0.1:{registrar.metrics_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/readyz") as ready:
            assert ready.status == 200
        async with http.get(f"{base}/healthz") as alive:
            assert alive.status == 200
        async with http.get(f"{base}/metrics") as response:
            text = await response.text()
    for series in (
        'mesh_registrar_docker_events_total{action="start"}',
        'mesh_registrar_reconciles_total{kind="container",result="ok"}',
        'mesh_registrar_reconciles_total{kind="full",result="ok"}',
        'mesh_registrar_registry_writes_total{op="register"}',
        "mesh_registrar_services ",
        "mesh_registrar_docker_connected 1.0",
        'mesh_registrar_event_to_registry_seconds_bucket{le="0.05",op="register"}',
    ):
        assert series in text, series


@pytest.mark.slow
async def test_ttl_heartbeat_passes_while_running_and_expires_for_kept_failures(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    await start_registrar(ttl=2.0, ttl_refresh=0.5, deregister="on-success")
    cid = await containers.run(*PUBLISH_80, command=exit_on_request(2))
    service_id = next(iter(await wait_services(client, cid, 1)))
    check_id = f"service:{service_id}:registrar-ttl"
    await wait_check(client, check_id, "passing")
    await asyncio.sleep(2.5)  # longer than the TTL: still passing, because it is refreshed
    assert (await client.agent_checks())[check_id].status == "passing"
    await docker_command("exec", cid, "touch", "/tmp/exit")
    await docker_command("wait", cid)  # exits 2: kept (on-success), but no longer refreshed
    await wait_check(client, check_id, "critical", timeout=10)
    assert await services_of(client, cid)


@pytest.mark.slow
async def test_docker_daemon_restart_reconnects_and_resyncs(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    daemon = LocalDockerd.find()
    registrar = await start_registrar()
    plain = await containers.run(*PUBLISH_80)  # stops with the daemon and stays stopped
    always = await containers.run("--restart", "always", *PUBLISH_80)  # comes back, maybe on a new port
    await wait_services(client, plain, 1)
    await wait_services(client, always, 1)

    await asyncio.to_thread(daemon.restart)
    await eventually(lambda: _false_to_none(registrar.docker_connected.is_set()), 60, "the registrar to reconnect")
    await wait_gone(client, plain, timeout=30)
    service = next(iter((await wait_services(client, always, 1, timeout=30)).values()))

    async def current_port() -> bool:
        port = await containers.host_port(always)
        found = await services_of(client, always)
        return bool(found) and next(iter(found.values())).port == port

    await eventually(current_port, 30, "the restarted container's current port")
    assert service.meta["registrar-container"] == always
    assert registrar.ready


# === helpers ===


async def _start(start_registry: object) -> RegistryServer:
    server = await start_registry()  # type: ignore[operator]
    assert isinstance(server, RegistryServer)
    return server


async def _false_to_none(value: bool) -> bool | None:
    return True if value else None


class LocalDockerd:
    """The local dockerd (the one bootstrap.sh started): stopped and started again with the same command."""

    PID_FILE = Path("/var/run/docker.pid")
    LOG = Path("/var/log/mesh-dockerd.log")

    def __init__(self, pid: int, argv: list[str]) -> None:
        self.pid = pid
        self.argv = argv

    @classmethod
    def find(cls) -> LocalDockerd:
        docker_host = os.environ.get("DOCKER_HOST", "")
        if docker_host and docker_host != "unix:///var/run/docker.sock":
            pytest.skip(f"restarts only a local dockerd; DOCKER_HOST is {docker_host}")
        try:
            pid = int(cls.PID_FILE.read_text().strip())
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        except (OSError, ValueError) as exc:
            pytest.skip(f"cannot find the local dockerd to restart ({exc})")
        if not argv or not argv[0].endswith(b"dockerd"):
            pytest.skip(f"{cls.PID_FILE} does not name a dockerd process")
        if os.getuid() != 0:
            pytest.skip("restarting dockerd needs root")
        return cls(pid, [a.decode() for a in argv])

    def restart(self) -> None:
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while Path(f"/proc/{self.pid}").exists():
            assert time.monotonic() < deadline, "dockerd did not stop within 60 s"
            time.sleep(0.1)
        with self.LOG.open("ab") as log:
            subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while subprocess.run(["docker", "version"], capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, f"dockerd did not come back within 60 s; see {self.LOG}"
            time.sleep(0.2)
