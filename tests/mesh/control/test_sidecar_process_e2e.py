"""`mesh sidecar` as a real process following the control plane (MESH_CONTROL_ADDR), and serving
its saved snapshot after a restart while the control plane is down."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from discovery.server import RegistryServer
from mesh.control.server import ControlServer
from mesh.demo.processes import free_port
from tests.mesh.control.fixtures import register
from tests.mesh.rules.helpers import dr, vs
from tests.sidecar.helpers import Backend

pytestmark = pytest.mark.slow
MESH = str(Path(sys.executable).with_name("mesh"))
RULES = [
    dr(subsets=[{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]),
    vs(
        http=[
            {
                "match": [{"headers": {"end-user": {"exact": "jason"}}}],
                "route": [{"destination": {"host": "reviews", "subset": "v2"}}],
            },
            {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]},
        ]
    ),
]


class SidecarProcess:
    def __init__(
        self, control_url: str, registry_url: str, data_dir: Path, ports: tuple[int, int] | None = None
    ) -> None:
        # the same flags after a restart: the saved snapshot's listeners are the ones they made
        self.outbound, self.admin = ports or (free_port(), free_port())
        env = {
            **os.environ,
            "MESH_CONTROL_ADDR": control_url,
            "CONSUL_HTTP_ADDR": registry_url,
            "MESH_DATA_DIR": str(data_dir),
            "MESH_LOG_LEVEL": "warning",
        }
        argv = [
            MESH,
            "sidecar",
            "--service",
            "productpage",
            "--outbound-addr",
            f"127.0.0.1:{self.outbound}",
            "--admin-addr",
            f"127.0.0.1:{self.admin}",
        ]
        self.proc = subprocess.Popen(argv, env=env)

    async def live(self) -> None:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(f"http://127.0.0.1:{self.admin}/ready") as r:
                        if (await r.text()).strip() == "LIVE":
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError("the sidecar never became LIVE")

    async def backend(self, **headers: str) -> str:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{self.outbound}/", headers={"Host": "reviews", **headers}) as r,
        ):
            assert r.status == 200, await r.text()
            body: dict[str, Any] = await r.json()
            return str(body["backend"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(timeout=30) == 0


@pytest.fixture
async def backends(registry: RegistryServer) -> AsyncIterator[dict[str, Backend]]:
    started = {name: await Backend(name).start() for name in ("v1", "v2")}
    async with aiohttp.ClientSession(base_url=registry.url) as http:
        for name, backend in started.items():
            await register(http, "reviews", f"reviews-{name}", backend.port, Meta={"version": name})
    yield started
    for backend in started.values():
        await backend.stop()


async def test_mesh_sidecar_follows_the_control_plane_and_restarts_from_disk(
    control: ControlServer, registry: RegistryServer, backends: dict[str, Backend], tmp_path: Path
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.put(f"{control.url}/v1/mesh/config", data=yaml.safe_dump_all(RULES)) as r,
    ):
        assert r.status == 200, await r.text()
    sidecar = SidecarProcess(control.url, registry.url, tmp_path)
    try:
        await sidecar.live()
        assert await sidecar.backend(**{"end-user": "jason"}) == "v2"
        assert await sidecar.backend() == "v1"
        async with aiohttp.ClientSession() as http, http.get(f"{control.url}/v1/mesh/status") as r:
            status = await r.json()
        (entry,) = status["sidecars"]
        assert entry["service"] == "productpage"
        assert entry["hosts"] == ["reviews"]
        await asyncio.sleep(0.2)
        assert (tmp_path / "sidecar-productpage" / "snapshot.json").is_file()
    finally:
        sidecar.stop()
    await control.stop()
    again = SidecarProcess(control.url, registry.url, tmp_path, (sidecar.outbound, sidecar.admin))
    try:
        await again.live()  # from the saved snapshot: the control plane is gone
        assert await again.backend(**{"end-user": "jason"}) == "v2"
        assert await again.backend() == "v1"
    finally:
        again.stop()
