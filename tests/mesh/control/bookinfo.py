"""Bookinfo end to end: a real registry, control plane, productpage sidecar and aiohttp backends.

The productpage sidecar (``SidecarServer`` fed by ``ControlPlaneSource``) calls the other
services through its outbound listener. Backends (``tests.sidecar.helpers.Backend``, named
``<service>-<version>``) register in the registry with ``Meta.version``. Rules are the files of
``examples/bookinfo/``, PUT to the control plane's API as ``mesh apply -f`` sends them; ``apply``
returns once the control plane's ``/v1/mesh/status`` shows the sidecar ACKed the new version.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from discovery.server import RegistryServer
from mesh.control.server import ControlServer
from sidecar.server import SidecarConfig, SidecarServer
from sidecar.sources.control_plane import ControlPlaneSource
from sidecar.sources.defaults import SidecarSettings
from tests.mesh.control.fixtures import register
from tests.sidecar.helpers import Backend

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
BOOKINFO = EXAMPLES / "bookinfo"
SIDECAR_ID = "productpage-1"


@dataclass(frozen=True)
class Answer:
    status: int
    backend: str  # the echo backend's name ("reviews-v2"), "" when the body is not its JSON
    body: str
    headers: dict[str, str]
    elapsed: float


@dataclass
class Bookinfo:
    control: ControlServer
    registry: RegistryServer
    sidecar: SidecarServer
    backends: dict[str, Backend] = field(default_factory=dict)

    @property
    def outbound(self) -> str:
        return f"http://127.0.0.1:{self.sidecar.listener_port('outbound')}"

    async def backend(self, service: str, version: str, *, delay: float = 0.0) -> Backend:
        """Start ``<service>-<version>`` and register it (``Meta.version``)."""
        name = f"{service}-{version}"
        backend = await Backend(name, delay=delay).start()
        self.backends[name] = backend
        async with aiohttp.ClientSession(base_url=self.registry.url) as http:
            await register(http, service, name, backend.port, Meta={"version": version})
        return backend

    async def apply(self, filename: str) -> dict[str, Any]:
        """PUT ``examples/bookinfo/<filename>`` as it is; wait until the sidecar ACKed the result."""
        body = (BOOKINFO / filename).read_bytes()
        async with (
            aiohttp.ClientSession() as http,
            http.put(
                f"{self.control.url}/v1/mesh/config", data=body, headers={"Content-Type": "application/yaml"}
            ) as r,
        ):
            result: dict[str, Any] = await r.json()
            assert r.status == 200, result
        await self.acked(int(result["version"]))
        return result

    async def acked(self, version: int, timeout: float = 5.0) -> dict[str, Any]:
        """The sidecar's status entry once it reflects config ``version`` and is ACKed (``mesh apply --wait``)."""
        deadline = time.monotonic() + timeout
        entry: dict[str, Any] = {}
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                async with http.get(f"{self.control.url}/v1/mesh/status") as r:
                    status = await r.json()
                entry = next((s for s in status["sidecars"] if s["id"] == SIDECAR_ID), {})
                last_ack = entry.get("last_ack") or {}
                if entry.get("config_version", -1) >= version and entry["in_sync"]:
                    assert last_ack.get("version") == entry["applied_version"] == entry["version"]
                    return entry
                await asyncio.sleep(0.02)
        raise AssertionError(f"the sidecar never ACKed config version {version}: {entry}")

    async def call(
        self,
        host: str,
        path: str = "/",
        headers: Mapping[str, str] | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
    ) -> Answer:
        """One request through the sidecar's outbound listener, as the productpage app sends it."""
        if session is None:
            async with aiohttp.ClientSession() as own:
                return await self.call(host, path, headers, session=own)
        started = time.monotonic()
        async with session.get(
            self.outbound + path, headers={"Host": host, **(headers or {})}, timeout=aiohttp.ClientTimeout(total=15)
        ) as r:
            text = await r.text()
            backend = ""
            if r.content_type == "application/json":
                backend = str((await r.json()).get("backend", ""))
            return Answer(r.status, backend, text, dict(r.headers), time.monotonic() - started)

    async def calls(
        self, host: str, count: int, path: str = "/", headers: Mapping[str, str] | None = None
    ) -> list[Answer]:
        """``count`` requests at once (one connection each)."""
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            return list(await asyncio.gather(*(self.call(host, path, headers, session=session) for _ in range(count))))

    def breaker(self, service: str) -> dict[str, Any]:
        """The sidecar's circuit-breaker state of the one cluster serving ``service``."""
        views = self.sidecar.resilience.admin_view()
        names = [name for name in views if f"|{service}." in name]
        assert len(names) == 1, sorted(views)
        state: dict[str, Any] = views[names[0]]["circuit_breakers"]
        return state


@pytest.fixture
async def bookinfo(control: ControlServer, registry: RegistryServer, tmp_path: Path) -> AsyncIterator[Bookinfo]:
    settings = SidecarSettings(service="productpage", outbound_addr="127.0.0.1:0")
    source = ControlPlaneSource(settings, control.url, sidecar_id=SIDECAR_ID, state_dir=tmp_path / "pp", wait=5.0)
    sidecar = SidecarServer(SidecarConfig(admin_addr="127.0.0.1:0", drain_timeout_s=2.0), demand=source.demand)
    await sidecar.start()
    task = asyncio.create_task(source.run(sidecar.apply))
    mesh = Bookinfo(control, registry, sidecar)
    try:
        for _ in range(250):
            if sidecar.applied:
                break
            await asyncio.sleep(0.02)
        await sidecar.settle()
        yield mesh
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sidecar.stop()
        for backend in mesh.backends.values():
            await backend.stop()


__all__ = ["BOOKINFO", "EXAMPLES", "Answer", "Bookinfo", "bookinfo"]
