"""The real `mesh registry` process: kill -9, restart on the same data dir, nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from mesh.demo.processes import free_port

pytestmark = pytest.mark.slow

MESH = Path(sys.executable).parent / "mesh"


class Registry:
    """One `mesh registry` subprocess on a data dir; restartable."""

    def __init__(self, data_dir: Path, logs: Path) -> None:
        self.data_dir = data_dir
        self.logs = logs
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.starts = 0

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        with open(self.logs / f"registry-{self.starts}.log", "wb") as log:
            command = [str(MESH), "registry", "--data-dir", str(self.data_dir), "--http-addr", f"127.0.0.1:{port}"]
            return subprocess.Popen([*command, "--node", "n1"], stdout=log, stderr=subprocess.STDOUT)

    async def start(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.starts += 1
        self.proc = self._spawn(port)
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as session:
            while True:
                assert self.proc.poll() is None, f"registry exited with {self.proc.returncode}: {self.log_text()}"
                try:
                    async with session.get(f"{self.url}/readyz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, f"registry never became ready: {self.log_text()}"
                await asyncio.sleep(0.05)

    def log_text(self) -> str:
        return (self.logs / f"registry-{self.starts}.log").read_text(errors="replace")[-3000:]

    async def kill(self, sig: int = signal.SIGKILL, timeout: float = 10) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = await asyncio.to_thread(self.proc.wait, timeout)
        self.proc = None
        return code

    def stop_now(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Registry]:
    assert MESH.exists(), f"{MESH} is missing: install the project into the venv"
    registry = Registry(tmp_path / "data", tmp_path)
    yield registry
    registry.stop_now()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def always_ok() -> AsyncIterator[str]:
    """A health endpoint that always answers 200 (the same output before and after the restart)."""

    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="fine")

    app = web.Application()
    app.router.add_get("/health", ok)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/health"
    await runner.cleanup()


async def put(client: aiohttp.ClientSession, url: str, body: Any = None, *, data: bytes | None = None) -> Any:
    async with client.put(url, json=body, data=data) as response:
        text = await response.text()
        assert response.status == 200, (url, response.status, text)
        return json.loads(text) if text else None


async def get(client: aiohttp.ClientSession, url: str) -> tuple[Any, int]:
    async with client.get(url) as response:
        assert response.status == 200, (url, response.status, await response.text())
        return await response.json(), int(response.headers["X-Consul-Index"])


READS = (
    "/v1/catalog/nodes",
    "/v1/catalog/services",
    "/v1/catalog/service/web",
    "/v1/catalog/service/db",
    "/v1/health/service/web",
    "/v1/health/service/api",
    "/v1/health/service/db",
    "/v1/health/state/any",
    "/v1/health/node/n1",
    "/v1/kv/?recurse",
    "/v1/kv/cfg/a",
)


async def snapshot(client: aiohttp.ClientSession, base: str) -> dict[str, tuple[Any, int]]:
    out = {path: await get(client, base + path) for path in READS}
    for path in ("/v1/agent/services", "/v1/agent/checks"):
        async with client.get(base + path) as response:
            out[path] = (await response.json(), 0)
    return out


async def wait_for(condition: Any, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_everything_survives_kill_9(mesh: Registry, client: aiohttp.ClientSession, always_ok: str) -> None:
    await mesh.start()
    u = mesh.url
    ttl = {"TTL": "1h"}
    await put(
        client,
        f"{u}/v1/agent/service/register",
        {"Name": "web", "ID": "web1", "Port": 80, "Tags": ["v1", "blue"], "Meta": {"Owner_Team": "core"}, "Check": ttl},
    )
    await put(client, f"{u}/v1/agent/service/register", {"Name": "web", "ID": "web2", "Port": 81, "Check": ttl})
    await put(
        client,
        f"{u}/v1/agent/service/register",
        {
            "Name": "api",
            "Address": "10.1.2.3",
            "Weights": {"Passing": 5, "Warning": 1},
            "Checks": [{"TTL": "1h", "Notes": "heartbeat"}, {"HTTP": always_ok, "Interval": "1s"}],
        },
    )
    await put(client, f"{u}/v1/agent/check/register", {"Name": "disk", "TTL": "1h"})
    await put(client, f"{u}/v1/agent/check/pass/service:web1?note=all%20good")
    await put(client, f"{u}/v1/agent/check/warn/service:web2?note=slow")
    await put(client, f"{u}/v1/agent/check/update/service:api:1", {"Status": "passing", "Output": "beat"})
    await put(client, f"{u}/v1/agent/check/fail/disk?note=disk%20full")
    await put(
        client,
        f"{u}/v1/catalog/register",
        {
            "Node": "n2",
            "Address": "10.0.0.2",
            "NodeMeta": {"rack": "r2"},
            "Service": {"Service": "db", "ID": "db1", "Port": 5432, "Tags": ["primary"]},
            "Check": {"CheckID": "db-alive", "Name": "db", "Status": "passing", "ServiceID": "db1", "Output": "ok"},
        },
    )
    assert await put(client, f"{u}/v1/kv/cfg/a?flags=42", data=b"alpha") is True
    assert await put(client, f"{u}/v1/kv/cfg/bin?flags=18446744073709551615", data=bytes(range(256))) is True
    await put(client, f"{u}/v1/kv/cfg/twice", data=b"1")
    await put(client, f"{u}/v1/kv/cfg/twice", data=b"2")
    await put(client, f"{u}/v1/kv/cfg/empty", data=b"")
    await put(client, f"{u}/v1/kv/gone", data=b"x")
    async with client.delete(f"{u}/v1/kv/gone") as response:
        assert response.status == 200

    async def http_check_ran() -> bool:
        checks, _ = await get(client, f"{u}/v1/health/checks/api")
        return any(c["CheckID"] == "service:api:2" and c["Status"] == "passing" for c in checks)

    await wait_for(http_check_ran, "the HTTP check's first pass")
    await put(client, f"{u}/v1/kv/marker", data=b"last")
    (marker,), last_index = await get(client, f"{u}/v1/kv/marker")
    assert marker["ModifyIndex"] == last_index

    before = await snapshot(client, u)
    statuses = {c["CheckID"]: (c["Status"], c["Output"]) for c in before["/v1/agent/checks"][0].values()}
    assert statuses["service:web1"] == ("passing", "all good")
    assert statuses["service:web2"] == ("warning", "slow")
    assert statuses["disk"] == ("critical", "disk full")

    assert await mesh.kill() == -signal.SIGKILL
    await mesh.start()
    after = await snapshot(client, mesh.url)

    for path in before:
        body_before, index_before = before[path]
        body_after, index_after = after[path]
        assert body_after == body_before, f"{path} differs after kill -9"
        assert index_after >= index_before, f"{path}: X-Consul-Index went back"
    assert after["/v1/kv/cfg/a"][1] == before["/v1/kv/cfg/a"][1], "a key's index is its ModifyIndex"
    _, marker_index = await get(client, f"{mesh.url}/v1/kv/marker")
    assert marker_index == last_index

    await put(client, f"{mesh.url}/v1/kv/after", data=b"")
    (entry,), index = await get(client, f"{mesh.url}/v1/kv/after")
    assert entry["CreateIndex"] == entry["ModifyIndex"] == index > last_index


async def test_acknowledged_writes_survive_kill_9_during_a_burst(mesh: Registry) -> None:
    await mesh.start()
    base = mesh.url
    acked_kv: dict[str, bytes] = {}
    acked_services: set[str] = set()
    killed = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=64)

    async def writer(session: aiohttp.ClientSession, w: int) -> None:
        i = 0
        while not killed.is_set():
            i += 1
            try:
                if i % 3:
                    key, value = f"burst/{w}/{i}", f"{w}:{i}".encode()
                    async with session.put(f"{base}/v1/kv/{key}", data=value) as response:
                        if response.status == 200 and await response.json() is True:
                            acked_kv[key] = value
                else:
                    sid = f"svc-{w}-{i}"
                    body = {"Name": f"burst{w}", "ID": sid, "Port": i, "Check": {"TTL": "1h"}}
                    async with session.put(f"{base}/v1/agent/service/register", json=body) as response:
                        if response.status == 200:
                            acked_services.add(sid)
            except (TimeoutError, aiohttp.ClientError):
                return

    async with aiohttp.ClientSession(connector=connector) as session:
        writers = [asyncio.create_task(writer(session, w)) for w in range(24)]
        deadline = time.monotonic() + 20
        while len(acked_kv) + len(acked_services) < 400:
            assert time.monotonic() < deadline, "the burst never got going"
            await asyncio.sleep(0.005)
        mesh.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]  # mid-burst, writes in flight
        killed.set()
        await asyncio.gather(*writers)
        await asyncio.to_thread(mesh.proc.wait, 10)  # type: ignore[union-attr]
        mesh.proc = None

    acked = len(acked_kv) + len(acked_services)
    await mesh.start()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{mesh.url}/v1/kv/burst/?recurse") as response:
            assert response.status == 200
            stored = {e["Key"]: e for e in await response.json()}
        async with session.get(f"{mesh.url}/v1/agent/services") as response:
            services = await response.json()
    missing_kv = sorted(set(acked_kv) - set(stored))
    assert not missing_kv, f"{len(missing_kv)} of {acked} acknowledged writes lost, e.g. {missing_kv[:5]}"
    for key, value in acked_kv.items():
        assert base64.b64decode(stored[key]["Value"]) == value
    assert acked_services <= set(services), sorted(acked_services - set(services))[:5]


async def test_sigterm_exits_cleanly_and_keeps_data(mesh: Registry, client: aiohttp.ClientSession) -> None:
    await mesh.start()
    await put(client, f"{mesh.url}/v1/kv/k", data=b"v")
    started = time.monotonic()
    assert await mesh.kill(signal.SIGTERM) == 0, mesh.log_text()
    assert time.monotonic() - started < 5
    await mesh.start()
    (entry,), _ = await get(client, f"{mesh.url}/v1/kv/k")
    assert entry["Value"] == "dg=="


async def test_sigterm_with_a_parked_blocking_query_exits_promptly(
    mesh: Registry, client: aiohttp.ClientSession
) -> None:
    await mesh.start()
    _, index = await get(client, f"{mesh.url}/v1/catalog/services")
    parked = asyncio.ensure_future(get(client, f"{mesh.url}/v1/catalog/services?index={index}&wait=60s"))
    await asyncio.sleep(0.3)
    assert not parked.done()
    assert mesh.proc is not None
    mesh.proc.send_signal(signal.SIGTERM)
    try:
        code = await asyncio.to_thread(mesh.proc.wait, 3)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        mesh.stop_now()
        parked.cancel()
        await asyncio.gather(parked, return_exceptions=True)
    assert code == 0, "still running 3 s after SIGTERM"
