"""Real Docker for tests: the daemon (skip locally, fail under CI), the busybox image, labelled containers.

Shared by the registrar's tests (tests/discovery/registrar/) and the end-to-end tests (tests/e2e/);
a conftest that needs them imports the fixtures by name. No Docker: the tests that use them are
skipped with the reason, except under CI (``CI`` set), where they fail: CI must run them
(``deploy/dev/bootstrap.sh`` installs docker.io and busybox-static and starts dockerd). The image
is built once per session by importing a busybox-static root file system (``docker import``), so
no registry or network is needed. Every container carries the label ``mesh-registrar-test``; each
test removes its own, and the session removes any leftover.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

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


def docker_required() -> bool:
    """As deploy/dev/bootstrap.sh decides: ``MESH_REQUIRE_DOCKER=1``, or ``CI`` set and it not ``0``."""
    return os.environ.get("MESH_REQUIRE_DOCKER", "1" if os.environ.get("CI") else "0") == "1"


def require_or_skip(problem: str) -> None:
    if docker_required():
        pytest.fail(
            f"Docker is required here (MESH_REQUIRE_DOCKER=1 or CI set), so the Docker tests must run, but: {problem}. "
            "deploy/dev/bootstrap.sh installs docker.io and busybox-static and starts dockerd.",
            pytrace=False,
        )
    pytest.skip(f"needs a Docker daemon: {problem}")


@pytest.fixture(scope="session")
def docker_daemon() -> str:
    """The docker CLI path, once a daemon answers (skip locally, fail under CI, otherwise)."""
    problem = _docker_problem()
    if problem is not None:
        require_or_skip(problem)
    cli = docker_cli()
    assert cli is not None
    return cli


@pytest.fixture(scope="session")
def busybox_image(docker_daemon: str) -> Iterator[str]:
    """A local image with busybox (all applets), /www/index.html and a shell; built once per session."""
    busybox = static_busybox()
    if busybox is None:
        require_or_skip("no statically linked busybox at /bin/busybox (apt-get install busybox-static)")
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


# === waiting ===


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
