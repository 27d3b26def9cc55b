"""Fixtures (imported by conftest and other test packages): a registry, control planes, an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from discovery.client_config import ClientConfig
from discovery.server import RegistryServer
from mesh.control.plane import PlaneSettings
from mesh.control.server import ControlConfig, ControlServer

FAST = PlaneSettings(registry_wait=5.0, coalesce=0.001, first_answer_timeout=2.0)


@pytest.fixture
async def start_control(tmp_path: Path, registry: RegistryServer) -> AsyncIterator[Callable[..., Any]]:
    """Start control planes against the test registry; all are stopped after the test.

    ``data_dir`` defaults to one shared directory, so a second start after ``stop()`` reopens it.
    """
    started: list[ControlServer] = []

    async def start(**overrides: Any) -> ControlServer:
        settings: dict[str, Any] = {
            "data_dir": tmp_path / "control",
            "http_addr": "127.0.0.1:0",
            "registry": ClientConfig.from_address(registry.url),
            "settings": FAST,
        }
        settings.update(overrides)
        server = ControlServer(ControlConfig(**settings))
        await server.start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        await server.stop()


@pytest.fixture
async def control(start_control: Callable[..., Any]) -> ControlServer:
    server: ControlServer = await start_control()
    return server


@pytest.fixture
async def api(control: ControlServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=control.url) as session:
        yield session


async def register(http: aiohttp.ClientSession, service: str, service_id: str, port: int, **extra: Any) -> None:
    """Register an instance in the registry (``http`` is a session on the registry)."""
    body = {"Name": service, "ID": service_id, "Port": port, "Address": "127.0.0.1", **extra}
    async with http.put("/v1/agent/service/register", json=body) as response:
        assert response.status == 200, await response.text()
