"""`mesh up` starts the registrar when a Docker daemon answers, and not otherwise."""

from __future__ import annotations

import pytest

from discovery.client import RegistryClient
from discovery.server import RegistryServer
from mesh.up import start_registrar
from tests.discovery.registrar.conftest import Containers, wait_services


async def test_up_runs_the_registrar_with_docker(
    containers: Containers, registry: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESH_HOSTNAME", "up-host")
    registrar = await start_registrar(registry, "")
    assert registrar is not None
    try:
        assert registrar.metrics_port == 0  # its metrics ride on the DNS server's port
        cid = await containers.run("-p", "127.0.0.1::80")
        async with RegistryClient(registry.url) as client:
            services = await wait_services(client, cid, 1)
        assert next(iter(services)).startswith("up-host:")
    finally:
        await registrar.stop()


async def test_up_skips_the_registrar_without_docker_or_when_told(
    registry: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert await start_registrar(registry, "") is None
    monkeypatch.delenv("DOCKER_HOST")
    monkeypatch.setenv("MESH_UP_REGISTRAR", "off")
    assert await start_registrar(registry, "") is None
