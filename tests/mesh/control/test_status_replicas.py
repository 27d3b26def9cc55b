"""Sidecar status across control-plane replicas sharing one Consul-KV store (the embedded registry).

Replica ``a`` runs in the test's loop; replica ``b`` is a real ``ControlServer`` in a child
process, so that it can die for real (``kill -9``: no goodbye, its KV entries stay until they
expire). Sidecars speak the real sync protocol (``ControlPlaneSource``) with recording applies;
the one on ``b`` refuses configuration changes, so its status carries a NACK.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from asyncio.subprocess import Process
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from discovery.client import RegistryClient
from discovery.server import RegistryServer
from mesh.control.server import ControlServer
from mesh.model.snapshot import Snapshot
from sidecar.sources.control_plane import ControlPlaneSource
from sidecar.sources.defaults import SidecarSettings
from tests.mesh.control.fixtures import FAST, register
from tests.mesh.rules.helpers import dr, vs
from tests.sidecar.sources.recorder import Recorder

ROOT = str(Path(__file__).resolve().parents[3])
SHARED = replace(FAST, status_ttl=1.0, status_flush=0.05)
PREFIX = "mesh/config"

# Replica b: the same ControlServer, alone in its process; prints its URL once it listens.
REPLICA = """
import asyncio, sys
from pathlib import Path
from discovery.client_config import ClientConfig
from mesh.control.plane import PlaneSettings
from mesh.control.server import ControlConfig, ControlServer

async def main() -> None:
    settings = PlaneSettings(registry_wait=5.0, coalesce=0.001, status_ttl=1.0, status_flush=0.05)
    config = ControlConfig(
        data_dir=Path(sys.argv[1]), http_addr="127.0.0.1:0", store="consul",
        registry=ClientConfig.from_address(sys.argv[2]), replica_id="b", settings=settings,
    )
    server = ControlServer(config)
    await server.start()
    print(server.url, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def status(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/v1/mesh/status") as r:
        assert r.status == 200
        result: dict[str, Any] = await r.json()
        return result


async def until_status(url: str, check: Callable[[dict[str, Any]], bool], timeout: float = 8.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    result = await status(url)
    while not check(result):
        assert time.monotonic() < deadline, f"status of {url} never got there: {result}"
        await asyncio.sleep(0.05)
        result = await status(url)
    return result


def by_id(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in result["sidecars"]}


@pytest.fixture
async def replica_b(registry: RegistryServer, tmp_path: Path) -> AsyncIterator[tuple[Process, str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        REPLICA,
        str(tmp_path / "b"),
        registry.url,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert proc.stdout is not None
    try:
        url = (await asyncio.wait_for(proc.stdout.readline(), 20.0)).decode().strip()
        assert url.startswith("http://"), url
        yield proc, url
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_every_replica_shows_every_sidecar_and_a_dead_replicas_entries_expire(
    start_control: Callable[..., Any],
    registry: RegistryServer,
    replica_b: tuple[Process, str],
    tmp_path: Path,
) -> None:
    a: ControlServer = await start_control(
        store="consul", data_dir=tmp_path / "a", replica_id="a", consul_prefix=PREFIX, settings=SHARED
    )
    proc, b_url = replica_b
    async with aiohttp.ClientSession(base_url=registry.url) as http:
        await register(http, "reviews", "reviews-v1", 9081, Meta={"version": "v1"})
        await register(http, "reviews", "reviews-v2", 9082, Meta={"version": "v2"})

    def refuse_rules(snapshot: Snapshot) -> str | None:
        return "v2 is not for me" if not snapshot.version.startswith("0.") else None

    sidecars = [
        (ControlPlaneSource(SidecarSettings(service="productpage"), url, sidecar_id=name, wait=2.0), Recorder(reject))
        for name, url, reject in (("pp-on-a", a.url, None), ("pp-on-b", b_url, refuse_rules))
    ]
    tasks = [asyncio.create_task(source.run(recorder.apply)) for source, recorder in sidecars]
    try:
        for source, recorder in sidecars:
            await recorder.applied_count(1)
            assert await source.demand("reviews")

        # a change applied on a reaches b through the store; b's sidecar NACKs it
        docs = [
            dr(subsets=[{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]),
            vs(http=[{"route": [{"destination": {"host": "reviews", "subset": "v2"}}]}]),
        ]
        async with (
            aiohttp.ClientSession() as http,
            http.put(f"{a.url}/v1/mesh/config", data=yaml.safe_dump_all(docs)) as r,
        ):
            assert r.status == 200, await r.text()
            version = (await r.json())["version"]

        def settled(result: dict[str, Any]) -> bool:
            seen = by_id(result)
            on_a, on_b = seen.get("pp-on-a"), seen.get("pp-on-b")
            return (
                on_a is not None
                and on_b is not None
                and on_a["in_sync"]
                and on_a["config_version"] == version
                and on_b["last_nack"] is not None
                and on_b["last_nack"]["version"] == on_b["version"]
            )

        for url in (a.url, b_url):  # any replica shows both, with who serves each
            seen = by_id(await until_status(url, settled))
            on_a, on_b = seen["pp-on-a"], seen["pp-on-b"]
            assert (on_a["replica"], on_b["replica"]) == ("a", "b")
            assert on_a["applied_version"] == on_a["version"] == on_a["last_ack"]["version"]
            assert on_a["version"].startswith(f"{version}.")
            assert on_b["last_nack"]["error"] == "v2 is not for me"
            assert on_b["applied_version"].startswith("0.")  # the old snapshot stays
            assert not on_b["in_sync"]
            assert all(s["connected"] for s in seen.values())
        result = await status(a.url)
        assert [(r["id"], r["self"]) for r in result["replicas"]] == [("a", True), ("b", False)]
        assert next(r for r in result["replicas"] if r["id"] == "b")["url"] == b_url

        # b dies without a goodbye: its sidecar's entry expires (ttl 1 s) and a removes b's keys
        proc.kill()
        await proc.wait()
        result = await until_status(a.url, lambda s: "pp-on-b" not in by_id(s))
        assert [r["id"] for r in result["replicas"]] == ["a"]
        assert by_id(result)["pp-on-a"]["replica"] == "a"
        client = RegistryClient(registry.url)
        try:
            for _ in range(100):
                keys = (await client.kv_keys(f"{PREFIX}/status/")).value
                if not any("/b" in key for key in keys):
                    break
                await asyncio.sleep(0.05)
            assert keys == [f"{PREFIX}/status/replicas/a", f"{PREFIX}/status/sidecars/a/pp-on-a"]
        finally:
            await client.close()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_replica_that_stops_cleanly_takes_its_entries_away_at_once(
    start_control: Callable[..., Any], tmp_path: Path
) -> None:
    settings = replace(SHARED, status_ttl=60.0)  # expiry would take a minute: only the goodbye can be this fast
    a: ControlServer = await start_control(store="consul", data_dir=tmp_path / "a", replica_id="a", settings=settings)
    c: ControlServer = await start_control(store="consul", data_dir=tmp_path / "c", replica_id="c", settings=settings)
    source = ControlPlaneSource(SidecarSettings(service="productpage"), c.url, sidecar_id="pp-on-c", wait=2.0)
    recorder = Recorder()
    task = asyncio.create_task(source.run(recorder.apply))
    try:
        await recorder.applied_count(1)
        await until_status(a.url, lambda s: by_id(s).get("pp-on-c", {}).get("replica") == "c")
        await c.stop()  # the sidecar is still running: only c's goodbye removes the entry
        result = await until_status(a.url, lambda s: "pp-on-c" not in by_id(s), timeout=3.0)
        assert [r["id"] for r in result["replicas"]] == ["a"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_one_replica_with_sqlite_shows_its_sidecars_as_before(control: ControlServer) -> None:
    source = ControlPlaneSource(SidecarSettings(service="productpage"), control.url, sidecar_id="pp-1", wait=2.0)
    recorder = Recorder()
    task = asyncio.create_task(source.run(recorder.apply))
    try:
        await recorder.applied_count(1)
        result = await until_status(control.url, lambda s: bool(s["sidecars"]) and s["sidecars"][0]["in_sync"])
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert result["store"] == "sqlite"
    assert "replicas" not in result
    assert [(s["id"], s["replica"]) for s in result["sidecars"]] == [("pp-1", result["replica"])]
    assert result["replica"].endswith(f":{control.port}")  # <hostname>:<port> by default


async def test_status_still_answers_with_its_own_sidecars_when_the_shared_store_is_down(
    start_control: Callable[..., Any], registry: RegistryServer, tmp_path: Path
) -> None:
    a: ControlServer = await start_control(store="consul", data_dir=tmp_path / "a", replica_id="a", settings=SHARED)
    source = ControlPlaneSource(SidecarSettings(service="productpage"), a.url, sidecar_id="pp-on-a", wait=2.0)
    recorder = Recorder()
    task = asyncio.create_task(source.run(recorder.apply))
    try:
        await recorder.applied_count(1)
        await registry.stop()
        result = await until_status(a.url, lambda s: "shared_status_error" in s)
        assert [(s["id"], s["replica"]) for s in result["sidecars"]] == [("pp-on-a", "a")]
        assert "cannot read the other replicas' status" in result["shared_status_error"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
