"""The sidecar's control-plane source against a control plane that requires a token: it registers with
the token, keeps its own secret, syncs and ACKs; another sidecar cannot use its registration."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from discovery.server import RegistryServer
from mesh.control.auth import ControlAuth
from mesh.control.server import ControlServer
from mesh.security.identity import SpiffeId
from mesh.security.workload import build_csr, new_private_key
from sidecar.sources.control_plane import ControlPlaneSource
from sidecar.sources.defaults import SidecarSettings
from tests.mesh.control.fixtures import register, start_control
from tests.sidecar.sources.recorder import Recorder

__all__ = ["start_control"]  # fixtures used here

TOKEN = "sidecar-bootstrap-token-93c1e"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def make_source(url: str, tmp_path: Path, **kw: Any) -> ControlPlaneSource:
    return ControlPlaneSource(
        SidecarSettings(service="productpage", app_port=9999),
        url,
        sidecar_id="pp-1",
        state_dir=tmp_path / "pp-1",
        wait=2.0,
        backoff_base=0.05,
        backoff_cap=0.2,
        **kw,
    )


@pytest.fixture
async def guarded(start_control: Callable[..., Any], registry: RegistryServer) -> ControlServer:
    async with aiohttp.ClientSession(base_url=registry.url) as http:
        await register(http, "reviews", "reviews-1", 9081)
    server: ControlServer = await start_control(auth=ControlAuth(TOKEN))
    return server


@pytest.fixture
async def running(guarded: ControlServer, tmp_path: Path) -> AsyncIterator[tuple[ControlPlaneSource, Recorder]]:
    source = make_source(guarded.url, tmp_path, token=TOKEN)
    recorder = Recorder()
    task = asyncio.create_task(source.run(recorder.apply))
    yield source, recorder
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def sidecar_status(control: ControlServer) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{control.url}/v1/mesh/status") as response:
        found = [s for s in (await response.json())["sidecars"] if s["id"] == "pp-1"]
        return found[0] if found else {"in_sync": False}


async def until_in_sync(control: ControlServer) -> dict[str, Any]:
    for _ in range(250):
        entry = await sidecar_status(control)
        if entry["in_sync"]:
            return entry
        await asyncio.sleep(0.02)
    raise AssertionError(f"pp-1 never in sync: {entry}")


async def test_the_source_syncs_acks_and_demands_with_the_token(
    running: tuple[ControlPlaneSource, Recorder], guarded: ControlServer
) -> None:
    source, recorder = running
    await recorder.applied_count(1)
    assert await source.demand("reviews")  # a POST about this sidecar: token and secret
    assert "outbound|||reviews.default.svc.cluster.local" in (recorder.current or recorder.applied[-1]).clusters
    entry = await until_in_sync(guarded)  # the ACK rode on a long poll carrying the secret
    assert entry["hosts"] == ["reviews"]
    assert source.connected
    assert source.failures == 0


async def test_the_token_comes_from_the_environment(
    guarded: ControlServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\n")
    monkeypatch.setenv("MESH_CONTROL_TOKEN_FILE", str(token_file))
    source = make_source(guarded.url, tmp_path)  # token=None: the environment
    recorder = Recorder()
    task = asyncio.create_task(source.run(recorder.apply))
    try:
        await recorder.applied_count(1)
        await until_in_sync(guarded)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_without_the_token_the_source_is_refused_and_serves_nothing(
    guarded: ControlServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("MESH_CONTROL_TOKEN", raising=False)
    monkeypatch.delenv("MESH_CONTROL_TOKEN_FILE", raising=False)
    caplog.set_level(logging.WARNING, logger="sidecar.sources.control_plane")
    for token in ("", "wrong-token"):
        source = make_source(guarded.url, tmp_path, token=token)
        recorder = Recorder()
        task = asyncio.create_task(source.run(recorder.apply))
        try:
            for _ in range(100):
                if source.failures >= 2:
                    break
                await asyncio.sleep(0.02)
            assert source.failures >= 2
            assert recorder.offered == []
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert "registration answered 401: this control plane requires a token" in caplog.text
    assert "registration answered 403" in caplog.text


async def test_another_sidecar_cannot_use_the_first_ones_registration(
    running: tuple[ControlPlaneSource, Recorder], guarded: ControlServer
) -> None:
    source, recorder = running
    await recorder.applied_count(1)
    identity = SpiffeId("cluster.local", "default", "productpage")
    csr = build_csr(identity, new_private_key()).decode()
    async with aiohttp.ClientSession(base_url=guarded.url) as http:
        # A second sidecar holds the shared token and a registration (and secret) of its own.
        async with http.put(
            "/v1/mesh/sidecars/intruder-1", json={"service": "intruder", "namespace": "shop"}, headers=BEARER
        ) as response:
            assert response.status == 200
            own_secret = (await response.json())["secret"]
        mine = {**BEARER, "X-Mesh-Sidecar-Secret": own_secret}
        async with http.post("/v1/mesh/ca/sign", json={"sidecar": "pp-1", "csr": csr}, headers=mine) as response:
            assert response.status == 403  # pp-1's certificate needs pp-1's secret
            assert "pp-1" in (await response.json())["error"]
        async with http.post("/v1/mesh/ca/sign", json={"sidecar": "pp-1", "csr": csr}, headers=BEARER) as response:
            assert response.status == 401
        # Nor can it re-register pp-1's id to get a secret for it: pp-1 is connected.
        async with http.put(
            "/v1/mesh/sidecars/pp-1", json={"service": "productpage", "namespace": "shop"}, headers=BEARER
        ) as response:
            assert response.status == 409
        async with http.get("/v1/mesh/sync/pp-1", params={"wait": "0s"}, headers=mine) as response:
            assert response.status == 403
        async with http.delete("/v1/mesh/sidecars/pp-1", headers=mine) as response:
            assert response.status == 403
    entry = await until_in_sync(guarded)
    assert entry["service"] == "productpage"  # the registration is still the first sidecar's
    assert source.connected


async def test_a_restarted_control_plane_hands_out_a_new_secret(
    start_control: Callable[..., Any], registry: RegistryServer, tmp_path: Path
) -> None:
    first: ControlServer = await start_control(auth=ControlAuth(TOKEN))
    port = first.port
    source = make_source(first.url, tmp_path, token=TOKEN)
    recorder = Recorder()
    task = asyncio.create_task(source.run(recorder.apply))
    try:
        await recorder.applied_count(1)
        await until_in_sync(first)
        await first.stop()
        back: ControlServer = await start_control(http_addr=f"127.0.0.1:{port}", auth=ControlAuth(TOKEN))
        entry = await until_in_sync(back)  # registered again (404), with the new plane's secret
        assert entry["applied_version"]
        assert source.connected
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_neither_token_nor_secret_is_logged(
    guarded: ControlServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    source = make_source(guarded.url, tmp_path, token=TOKEN)
    recorder = Recorder()
    task = asyncio.create_task(source.run(recorder.apply))
    try:
        await recorder.applied_count(1)
        await source.demand("reviews")
        await until_in_sync(guarded)
        secret = source._secret
        assert secret
        await guarded.stop()  # failures get logged too
        for _ in range(100):
            if source.failures >= 2:
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    logged = caplog.text + "".join(json.dumps(r.__dict__, default=str) for r in caplog.records)
    assert "registered with the control plane" in logged
    assert TOKEN not in logged
    assert secret not in logged
