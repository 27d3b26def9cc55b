"""Shared fixtures: a real registry on a loopback port, and an HTTP client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from discovery.server import RegistryConfig, RegistryServer

RegistryFactory = Callable[..., "RegistryServer"]


@pytest.fixture
async def start_registry(tmp_path: Path) -> AsyncIterator[Callable[..., object]]:
    """Start registries on free loopback ports; all are stopped after the test.

    Keyword arguments override ``RegistryConfig`` fields (e.g. ``acl_token``).
    """
    started: list[RegistryServer] = []

    async def start(**overrides: object) -> RegistryServer:
        settings: dict[str, object] = {
            "data_dir": tmp_path / f"data{len(started)}",
            "http_addr": "127.0.0.1:0",
            "node_name": "node1",
            "reap_interval": 0.2,
            "min_deregister_after": 0.0,
        }
        settings.update(overrides)
        server = RegistryServer(RegistryConfig(**settings))  # type: ignore[arg-type]
        await server.start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        await server.stop()


@pytest.fixture
async def registry(start_registry: Callable[..., object]) -> RegistryServer:
    server = await start_registry()  # type: ignore[misc]
    assert isinstance(server, RegistryServer)
    return server


@pytest.fixture
async def http(registry: RegistryServer) -> AsyncIterator[aiohttp.ClientSession]:
    """A client session whose relative URLs go to the registry (``await http.get("/v1/...")``)."""
    async with aiohttp.ClientSession(base_url=registry.url) as session:
        yield session
