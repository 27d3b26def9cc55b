"""Rate limits enforced by real inbound sidecars in front of a real backend; shared limits through the
embedded registry's KV (two sidecars, one budget), and both failure modes with the registry gone."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from discovery.server import RegistryServer
from mesh.model.parse import parse_snapshot
from sidecar.server import SidecarServer
from tests.sidecar.conftest import BackendFactory
from tests.sidecar.helpers import Backend
from tests.sidecar.security.mesh_pair import server_config, start_with, stop


def policy(*limits: dict[str, Any], name: str = "limits") -> dict[str, Any]:
    return {"namespace": "default", "name": name, "spec": {"limits": list(limits)}}


async def start(backend: Backend, *limits: dict[str, Any]) -> SidecarServer:
    config = server_config(backend, None)
    config["rate_limits"] = [policy(*limits)]
    return await start_with(config, None)


async def call(port: int, path: str = "/items", **headers: str) -> tuple[int, str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}", headers=headers) as r:
        return r.status, await r.text(), r.headers


async def statuses(port: int, count: int, path: str = "/items", **headers: str) -> list[int]:
    return [(await call(port, path, **headers))[0] for _ in range(count)]


async def test_token_bucket_per_client_header(backend_factory: BackendFactory) -> None:
    backend = await backend_factory("b1")
    sidecar = await start(
        backend,
        {"name": "per-user", "key": {"header": "x-user"}, "tokenBucket": {"maxTokens": 3, "fillInterval": "1s"}},
    )
    port = sidecar.listener_port("inbound")
    try:
        assert await statuses(port, 3, **{"x-user": "alice"}) == [200, 200, 200]
        status, text, headers = await call(port, **{"x-user": "alice"})
        assert (status, text.strip()) == (429, "local_rate_limited")
        assert headers["retry-after"] == "1"
        assert headers["x-ratelimit-limit"] == "3, 3;w=1"
        assert headers["x-ratelimit-remaining"] == "0"
        assert await statuses(port, 3, **{"x-user": "bob"}) == [200, 200, 200]  # bob has his own bucket
        assert len(backend.seen) == 6
        await asyncio.sleep(1.05)  # one fill interval: alice's bucket is full again
        assert await statuses(port, 1, **{"x-user": "alice"}) == [200]
        assert sidecar.security.stats.limited == {("inbound", "default/limits", "per-user"): 1}
        url = f"http://127.0.0.1:{sidecar.admin_port}/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as r:
            metrics = await r.text()
        assert (
            'mesh_sidecar_ratelimited_total{limit="per-user",listener="inbound",policy="default/limits"} 1.0' in metrics
        )
    finally:
        await stop(sidecar)


async def test_match_and_source_ip_key(backend_factory: BackendFactory) -> None:
    backend = await backend_factory("b1")
    sidecar = await start(
        backend,
        {
            "name": "api-writes",
            "match": {"paths": ["/api/*"], "methods": ["GET"]},
            "key": {"sourceIp": {}},
            "tokenBucket": {"maxTokens": 1, "fillInterval": "10s"},
        },
    )
    port = sidecar.listener_port("inbound")
    try:
        assert await statuses(port, 2, "/api/a") == [200, 429]
        assert await statuses(port, 3, "/other") == [200, 200, 200]  # not matched: not counted
    finally:
        await stop(sidecar)


async def test_a_new_snapshot_keeps_the_count(backend_factory: BackendFactory) -> None:
    backend = await backend_factory("b1")
    limit = {"name": "all", "tokenBucket": {"maxTokens": 2, "fillInterval": "30s"}}
    sidecar = await start(backend, limit)
    port = sidecar.listener_port("inbound")
    try:
        assert await statuses(port, 2) == [200, 200]
        config = server_config(backend, None)
        config["version"] = "s2"
        config["rate_limits"] = [policy(limit)]
        assert sidecar.apply(parse_snapshot(config)).ok
        await sidecar.settle()
        assert await statuses(port, 1) == [429]  # a config push refills nobody's bucket
    finally:
        await stop(sidecar)


SHARED = {"name": "everyone", "shared": {"requestsPerUnit": 10, "unit": "MINUTE"}}


async def until_synced(*sidecars: SidecarServer) -> None:
    """Wait for two more syncs of every sidecar's shared windows (each sees the others' counts after)."""
    stores = [store for s in sidecars for store in s.security.limits._stores.values()]
    targets = [getattr(store, "syncs", 0) + 2 for store in stores]
    for _ in range(200):
        if all(getattr(store, "syncs", 0) >= t for store, t in zip(stores, targets, strict=True)):
            return
        await asyncio.sleep(0.02)
    pytest.fail("the shared windows never synced")


async def test_shared_budget_across_two_sidecars(
    backend_factory: BackendFactory, registry: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSUL_HTTP_ADDR", registry.url)
    backend = await backend_factory("b1")
    first, second = await start(backend, SHARED), await start(backend, SHARED)
    try:
        assert await statuses(first.listener_port("inbound"), 6) == [200] * 6
        await until_synced(first, second)
        # the second sidecar learns the window's count at its first sync after its first request
        # (until then it admits on what it knows: the documented overshoot of one sync interval)
        assert await statuses(second.listener_port("inbound"), 1) == [200]
        await until_synced(first, second)
        answers = await statuses(second.listener_port("inbound"), 5)
        assert answers == [200] * 3 + [429] * 2  # the other sidecar's six count here too
        status, text, headers = await call(second.listener_port("inbound"))
        assert (status, text.strip()) == (429, "rate_limited")
        assert 1 <= int(headers["retry-after"]) <= 60
        await until_synced(first, second)
        assert await statuses(first.listener_port("inbound"), 1) == [429]
        async with (
            aiohttp.ClientSession(base_url=registry.url) as http,
            http.get("/v1/kv/mesh/ratelimit", params={"recurse": ""}) as r,
        ):
            entries = await r.json()
        assert len(entries) == 1
        assert entries[0]["Key"].startswith("mesh/ratelimit/default/limits/everyone/")
    finally:
        await stop(first, second)


@pytest.mark.parametrize(("mode", "expected"), [("ALLOW", 200), ("DENY", 429)])
async def test_registry_unreachable_follows_the_failure_mode(
    backend_factory: BackendFactory, start_registry: Any, monkeypatch: pytest.MonkeyPatch, mode: str, expected: int
) -> None:
    registry = await start_registry()
    monkeypatch.setenv("CONSUL_HTTP_ADDR", registry.url)
    backend = await backend_factory("b1")
    limit = {"name": "everyone", "shared": {"requestsPerUnit": 100, "unit": "MINUTE", "failureMode": mode}}
    sidecar = await start(backend, limit)
    port = sidecar.listener_port("inbound")
    try:
        assert await statuses(port, 1) == [200]
        await registry.stop()
        await asyncio.sleep(0.1)
        await statuses(port, 1)  # counted locally; the next sync finds the registry gone
        store = next(iter(sidecar.security.limits._stores.values()))
        for _ in range(200):
            if getattr(store, "down", False):
                break
            await asyncio.sleep(0.02)
        assert getattr(store, "down", False)
        assert await statuses(port, 3) == [expected] * 3
    finally:
        await stop(sidecar)
