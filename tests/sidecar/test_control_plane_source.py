"""The sidecar side of the sync protocol: serving from disk, reconnecting, re-registering, NACKs."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from discovery.server import RegistryServer
from mesh.control.server import ControlServer
from sidecar.sources.control_plane import SNAPSHOT_FILE, ControlPlaneSource, backoff_delay
from sidecar.sources.defaults import SidecarSettings
from tests.mesh.control.fixtures import control, register, start_control
from tests.sidecar.sources.recorder import Recorder

__all__ = ["control", "start_control"]  # fixtures used here


def make_source(url: str, state_dir: Path, **kw: Any) -> ControlPlaneSource:
    return ControlPlaneSource(
        SidecarSettings(service="productpage", app_port=9999),
        url,
        sidecar_id="pp-1",
        state_dir=state_dir,
        wait=2.0,
        backoff_base=0.05,
        backoff_cap=0.2,
        **kw,
    )


async def status(control: ControlServer) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{control.url}/v1/mesh/status") as r:
        result: dict[str, Any] = await r.json()
        return result


async def test_serves_the_saved_snapshot_while_the_control_plane_is_down(
    start_control: Callable[..., Any], registry: RegistryServer, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession(base_url=registry.url) as http:
        await register(http, "reviews", "reviews-1", 9081)
    control: ControlServer = await start_control()
    port = control.port
    state_dir = tmp_path / "sidecar"
    first = make_source(control.url, state_dir)
    recorder = Recorder()
    task = asyncio.create_task(first.run(recorder.apply))
    await recorder.applied_count(1)
    assert await first.demand("reviews")
    held = recorder.current
    assert held is not None
    assert "outbound|||reviews.default.svc.cluster.local" in held.clusters
    await asyncio.sleep(0.1)  # the ACK and the save happen right after the apply
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    saved = json.loads((state_dir / SNAPSHOT_FILE).read_text())
    assert saved["version"] == held.version
    await control.stop()

    # The control plane is down: a restarted sidecar serves what it saved, and keeps trying.
    second = make_source(f"http://127.0.0.1:{port}", state_dir)
    offline = Recorder()
    task = asyncio.create_task(second.run(offline.apply))
    try:
        first_applied = await offline.applied_count(1)
        assert first_applied == held
        for _ in range(100):
            if second.failures >= 2:
                break
            await asyncio.sleep(0.02)
        assert second.failures >= 2
        assert not second.connected
        assert not await second.demand("ratings")  # no control plane: nothing new can be routed

        # It comes back on the same port: the sidecar registers again; the content is the same,
        # so nothing is re-sent, and the status shows the saved version as applied.
        back: ControlServer = await start_control(http_addr=f"127.0.0.1:{port}")
        for _ in range(250):
            report = await status(back)
            if report["sidecars"] and report["sidecars"][0]["in_sync"]:
                break
            await asyncio.sleep(0.02)
        entry = report["sidecars"][0]
        assert entry["in_sync"]
        assert entry["hosts"] == ["ratings", "reviews"]
        assert entry["applied_version"] == held.version
        assert len(offline.offered) == 1
        assert second.connected
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_corrupt_saved_snapshot_is_rejected_not_fatal(control: ControlServer, tmp_path: Path) -> None:
    state_dir = tmp_path / "sidecar"
    state_dir.mkdir()
    (state_dir / SNAPSHOT_FILE).write_text(json.dumps({"version": "x", "listeners": [{"name": "a"}]}))
    source = make_source(control.url, state_dir)
    recorder = Recorder()
    task = asyncio.create_task(source.run(recorder.apply))
    try:
        snapshot = await recorder.applied_count(1)
        assert snapshot.version != "x"  # the control plane's, not the corrupt file's
        assert source.stats.rejected == 1
        assert "listeners[0].protocol" in source.stats.last_error
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_bootstrap_carries_the_sidecars_own_listeners(control: ControlServer, tmp_path: Path) -> None:
    source = make_source(control.url, tmp_path / "s")
    recorder = Recorder()
    task = asyncio.create_task(source.run(recorder.apply))
    try:
        snapshot = await recorder.applied_count(1)
        assert [listener.name for listener in snapshot.listeners] == ["outbound", "inbound"]
        assert "inbound|9999" in snapshot.clusters
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert (await status(control))["sidecars"] == []  # a clean stop says goodbye


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    assert backoff_delay(1, 0.2, 10.0, lambda: 1.0) == 0.2
    assert backoff_delay(4, 0.2, 10.0, lambda: 1.0) == 1.6
    assert backoff_delay(100, 0.2, 10.0, lambda: 1.0) == 10.0
    rng = random.Random(1)
    delays = [backoff_delay(5, 0.2, 10.0, rng.random) for _ in range(200)]
    assert min(delays) < 0.5 < max(delays) <= 3.2
