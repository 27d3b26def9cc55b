"""Fixtures for the registrar tests: registries, in-process registrars, waits on what they registered.

The Docker side (the daemon, the busybox image, labelled containers, ``docker_command``) lives in
tests/docker_support.py, shared with tests/e2e/; its fixtures are imported here by name.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from discovery.client import RegistryClient
from discovery.client_models import AgentService, HealthCheck
from discovery.registrar.config import RegistrarConfig
from discovery.registrar.server import Registrar
from discovery.server import RegistryServer
from tests.docker_support import (
    DEFAULT_NAME,
    LABEL,
    Containers,
    DockerCommandError,
    busybox_image,
    containers,
    docker_cli,
    docker_command,
    docker_daemon,
    eventually,
)

# Fixtures pytest finds here, and helpers the registrar tests import from this module.
__all__ = [
    "DEFAULT_NAME",
    "LABEL",
    "Containers",
    "DockerCommandError",
    "busybox_image",
    "containers",
    "docker_cli",
    "docker_command",
    "docker_daemon",
    "eventually",
]


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
