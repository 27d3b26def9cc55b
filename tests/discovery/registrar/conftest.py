"""Fixtures for the registrar tests: a real Docker daemon, a tiny busybox image, labelled containers.

No Docker: the Docker tests are skipped with the reason, except under CI (``CI`` set), where they
fail: CI must run them (``deploy/dev/bootstrap.sh`` installs docker.io and busybox-static and
starts dockerd). The image is built once per session by importing a busybox-static root file
system (``docker import``), so no registry or network is needed. Every container carries the
label ``mesh-registrar-test``; each test removes its own, and the session removes any leftover.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from discovery.client import RegistryClient
from discovery.client_models import AgentService, HealthCheck
from discovery.registrar.config import RegistrarConfig
from discovery.registrar.server import Registrar
from discovery.server import RegistryServer
from tests.discovery.registrar.busybox_image import IMAGE_REPO, ensure_image, static_busybox

T = TypeVar("T")

LABEL = "mesh-registrar-test"
DEFAULT_NAME = IMAGE_REPO  # the service name Registrator's rules give a container of this image


# === Docker availability ===


def docker_cli() -> str | None:
    return shutil.which("docker")


def _docker_problem() -> str | None:
    docker = docker_cli()
    if docker is None:
        return "the docker CLI is not installed (apt-get install docker.io)"
    try:
        probe = subprocess.run(
            [docker, "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return "`docker version` did not answer within 30 s"
    if probe.returncode != 0 or not probe.stdout.strip():
        return f"no Docker daemon answers: {probe.stderr.strip() or probe.stdout.strip()}"
    return None


def _require(problem: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(
            f"CI is set, so the registrar's Docker tests must run, but: {problem}. "
            "deploy/dev/bootstrap.sh installs docker.io and busybox-static and starts dockerd.",
            pytrace=False,
        )
    pytest.skip(f"needs a Docker daemon: {problem}")


@pytest.fixture(scope="session")
def docker_daemon() -> str:
    """The docker CLI path, once a daemon answers (skip locally, fail under CI, otherwise)."""
    problem = _docker_problem()
    if problem is not None:
        _require(problem)
    cli = docker_cli()
    assert cli is not None
    return cli


@pytest.fixture(scope="session")
def busybox_image(docker_daemon: str) -> Iterator[str]:
    """A local image with busybox (all applets), /www/index.html and a shell; built once per session."""
    busybox = static_busybox()
    if busybox is None:
        _require("no statically linked busybox at /bin/busybox (apt-get install busybox-static)")
        raise AssertionError("unreachable")
    yield ensure_image(docker_daemon, busybox)
    _remove_labelled(docker_daemon, LABEL)


def _remove_labelled(docker: str, label: str) -> None:
    ids = subprocess.run(
        [docker, "ps", "-aq", "--filter", f"label={label}"], capture_output=True, text=True
    ).stdout.split()
    if ids:
        subprocess.run([docker, "rm", "-f", *ids], capture_output=True)


# === containers ===


class DockerCommandError(AssertionError):
    pass


async def docker_command(*args: str, check: bool = True, timeout: float = 60.0) -> str:
    """Run the docker CLI without blocking the event loop; stdout, stripped."""
    cli = docker_cli()
    assert cli is not None
    proc = await asyncio.create_subprocess_exec(
        cli, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise DockerCommandError(f"docker {' '.join(args)}: timed out after {timeout:g}s") from None
    if check and proc.returncode != 0:
        raise DockerCommandError(f"docker {' '.join(args)}: exit {proc.returncode}: {err.decode().strip()}")
    return out.decode().strip()


class Containers:
    """Starts labelled test containers from the busybox image; ``cleanup`` removes them all."""

    def __init__(self, image: str) -> None:
        self.image = image
        self.run_label = f"{LABEL}={uuid.uuid4().hex[:12]}"

    def name(self, prefix: str = "c") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    async def run(self, *options: str, command: tuple[str, ...] = ("httpd", "-f", "-p", "80", "-h", "/www")) -> str:
        """``docker run -d`` with our label; ``options`` go before the image. Returns the full ID."""
        return await docker_command("run", "-d", "--label", self.run_label, *options, self.image, *command)

    async def create(self, *options: str, command: tuple[str, ...] = ("httpd", "-f", "-p", "80", "-h", "/www")) -> str:
        """``docker create`` with our label (start it with ``docker start``). Returns the full ID."""
        return await docker_command("create", "--label", self.run_label, *options, self.image, *command)

    async def inspect(self, container_id: str) -> dict[str, Any]:
        import json

        data: list[dict[str, Any]] = json.loads(await docker_command("inspect", container_id))
        return data[0]

    async def host_port(self, container_id: str, port: str = "80/tcp") -> int:
        data = await self.inspect(container_id)
        return int(data["NetworkSettings"]["Ports"][port][0]["HostPort"])

    async def cleanup(self) -> None:
        ids = (await docker_command("ps", "-aq", "--filter", f"label={self.run_label}", check=False)).split()
        if ids:
            await docker_command("rm", "-f", *ids, check=False)


@pytest.fixture
async def containers(busybox_image: str) -> AsyncIterator[Containers]:
    started = Containers(busybox_image)
    try:
        yield started
    finally:
        await started.cleanup()


# === registry + registrar ===


@pytest.fixture
async def client(registry: RegistryServer) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(registry.url) as c:
        yield c


RegistrarFactory = Callable[..., Awaitable[Registrar]]


@pytest.fixture
async def start_registrar(registry: RegistryServer, docker_daemon: str) -> AsyncIterator[RegistrarFactory]:
    """Start in-process registrars against the test registry; each gets its own host name by default.

    Keyword arguments override ``RegistrarConfig`` fields; ``registry_url`` points it elsewhere.
    Returns once the registrar has completed its first full sync.
    """
    started: list[Registrar] = []
    hostname = f"test-{uuid.uuid4().hex[:8]}"

    async def start(registry_url: str | None = None, **overrides: Any) -> Registrar:
        settings: dict[str, Any] = {"hostname": hostname, "metrics_addr": None}
        settings.update(overrides)
        registrar = Registrar(RegistrarConfig(**settings), _client_config(registry_url or registry.url))
        await registrar.start()
        started.append(registrar)
        assert registrar.reconciler is not None
        await asyncio.wait_for(registrar.reconciler.synced.wait(), 30)
        return registrar

    yield start
    for registrar in reversed(started):
        await registrar.stop()


def _client_config(url: str) -> Any:
    from discovery.client_config import ClientConfig

    return ClientConfig.from_address(url)


# === waiting on the registry ===


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout: float = 15.0, what: str = "") -> T:
    """Poll ``probe`` until it returns something other than ``None``/``False``; fail with ``what``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = await probe()
        if last is not None and last is not False:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or probe}")
        await asyncio.sleep(0.05)


async def services_of(client: RegistryClient, container_id: str) -> dict[str, AgentService]:
    """Registered services whose ownership Meta names this container."""
    services = await client.agent_services()
    return {sid: s for sid, s in services.items() if s.meta.get("registrar-container") == container_id}


async def wait_services(
    client: RegistryClient, container_id: str, count: int, timeout: float = 15.0
) -> dict[str, AgentService]:
    async def probe() -> dict[str, AgentService] | None:
        found = await services_of(client, container_id)
        return found if len(found) == count else None

    return await eventually(probe, timeout, f"{count} service(s) of container {container_id[:12]}")


async def wait_gone(client: RegistryClient, container_id: str, timeout: float = 15.0) -> None:
    async def probe() -> bool:
        return not await services_of(client, container_id)

    await eventually(probe, timeout, f"no services of container {container_id[:12]}")


async def wait_check(
    client: RegistryClient, check_id: str, status: str, timeout: float = 15.0, output: str = ""
) -> HealthCheck:
    """Wait until the check has ``status`` (and its output contains ``output``)."""

    async def probe() -> HealthCheck | None:
        check = (await client.agent_checks()).get(check_id)
        if check is None or check.status != status or output not in check.output:
            return None
        return check

    return await eventually(probe, timeout, f"check {check_id} to be {status}")


def free_tcp_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
