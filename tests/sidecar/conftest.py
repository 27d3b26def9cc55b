"""Fixtures for sidecar tests: aiohttp backends and sidecars on free loopback ports, stopped after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from sidecar.server import SidecarServer
from tests.sidecar.helpers import Backend, start_sidecar

BackendFactory = Callable[..., Awaitable[Backend]]
SidecarFactory = Callable[..., Awaitable[SidecarServer]]


@pytest.fixture
async def backend_factory() -> AsyncIterator[BackendFactory]:
    started: list[Backend] = []

    async def start(name: str, delay: float = 0.0) -> Backend:
        backend = await Backend(name, delay=delay).start()
        started.append(backend)
        return backend

    yield start
    for backend in started:
        await backend.stop()


@pytest.fixture
async def sidecar_factory() -> AsyncIterator[SidecarFactory]:
    started: list[SidecarServer] = []

    async def start(config: dict[str, Any], *args: Any, **kwargs: Any) -> SidecarServer:
        sidecar = await start_sidecar(config, *args, **kwargs)
        started.append(sidecar)
        return sidecar

    yield start
    for sidecar in started:
        await sidecar.stop()
