"""Every load-balancing policy end to end: real backends, real requests, observed distribution."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import aiohttp
import pytest

from tests.sidecar.conftest import BackendFactory, SidecarFactory
from tests.sidecar.helpers import Backend, http_config


def lb_config(backends: list[Backend], lb: dict[str, Any], weights: list[int] | None = None) -> dict[str, Any]:
    endpoints = [{**b.address, "weight": (weights[i] if weights else 1)} for i, b in enumerate(backends)]
    return http_config(
        [{"name": "web", "endpoints": endpoints, "lb": lb}],
        [{"name": "web", "domains": ["web"], "routes": [{"name": "all", "match": {"prefix": "/"}, "cluster": "web"}]}],
    )


async def spread(
    port: int, count: int, *, headers: dict[str, str] | None = None, path: str = "/", concurrency: int = 1
) -> collections.Counter[str]:
    seen: collections.Counter[str] = collections.Counter()
    async with aiohttp.ClientSession() as session:
        queue = list(range(count))

        async def worker() -> None:
            while queue:
                queue.pop()
                async with session.get(
                    f"http://127.0.0.1:{port}{path}", headers={"Host": "web", **(headers or {})}
                ) as r:
                    assert r.status == 200
                    seen[r.headers.get("X-Backend", (await r.text())[-3:].strip())] += 1
                    await r.read()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return seen


async def three(backend_factory: BackendFactory) -> list[Backend]:
    return [await backend_factory(name) for name in ("a", "b", "c")]


async def test_round_robin_takes_turns(backend_factory: BackendFactory, sidecar_factory: SidecarFactory) -> None:
    backends = await three(backend_factory)
    sidecar = await sidecar_factory(lb_config(backends, {"kind": "round_robin"}))
    seen = await spread(sidecar.listener_port("outbound"), 30)
    assert seen == {"a": 10, "b": 10, "c": 10}


async def test_weighted_round_robin_follows_weights(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    backends = await three(backend_factory)
    sidecar = await sidecar_factory(lb_config(backends, {"kind": "weighted_round_robin"}, weights=[3, 2, 1]))
    seen = await spread(sidecar.listener_port("outbound"), 60)
    assert seen == {"a": 30, "b": 20, "c": 10}


async def test_random_uses_every_endpoint(backend_factory: BackendFactory, sidecar_factory: SidecarFactory) -> None:
    backends = await three(backend_factory)
    sidecar = await sidecar_factory(lb_config(backends, {"kind": "random"}))
    seen = await spread(sidecar.listener_port("outbound"), 150)
    assert set(seen) == {"a", "b", "c"}
    assert min(seen.values()) > 20


@pytest.mark.parametrize("kind", ["least_request", "peak_ewma"])
async def test_load_aware_policies_avoid_the_slow_endpoint(
    kind: str, backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    """With one slow backend, load-aware policies send most concurrent traffic to the fast ones."""
    fast_b, fast_c = await backend_factory("b"), await backend_factory("c")
    slow = await backend_factory("a", delay=0.05)
    sidecar = await sidecar_factory(lb_config([slow, fast_b, fast_c], {"kind": kind}))
    seen = await spread(sidecar.listener_port("outbound"), 300, concurrency=8)
    assert sum(seen.values()) == 300
    assert seen["a"] < 60, seen  # round robin would give it 100


@pytest.mark.parametrize("kind", ["ring_hash", "maglev"])
async def test_hashing_policies_with_header_affinity_stick(
    kind: str, backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    backends = await three(backend_factory)
    lb = {"kind": kind, "affinity": {"kind": "header", "name": "x-user"}}
    sidecar = await sidecar_factory(lb_config(backends, lb))
    port = sidecar.listener_port("outbound")
    owners = {}
    for user in range(30):
        seen = await spread(port, 5, headers={"x-user": f"user-{user}"})
        assert len(seen) == 1, f"user-{user} moved between {seen}"
        owners[user] = next(iter(seen))
    assert len(set(owners.values())) >= 2  # different keys spread over endpoints


async def test_cookie_affinity_sets_a_cookie_that_sticks(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    backends = await three(backend_factory)
    lb = {"kind": "ring_hash", "affinity": {"kind": "cookie", "name": "sticky", "cookie_ttl_s": 60}}
    sidecar = await sidecar_factory(lb_config(backends, lb))
    port = sidecar.listener_port("outbound")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/", headers={"Host": "web"}) as first:
            cookie = first.headers["Set-Cookie"]
            owner = first.headers["X-Backend"]
        assert cookie.startswith("sticky=")
        assert "Max-Age=60" in cookie
        value = cookie.split(";")[0].split("=", 1)[1]
        for _ in range(10):
            async with session.get(
                f"http://127.0.0.1:{port}/", headers={"Host": "web", "Cookie": f"sticky={value}"}
            ) as again:
                assert again.headers["X-Backend"] == owner
                assert "Set-Cookie" not in again.headers


async def test_weighted_clusters_split_traffic(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    v1, v2 = await backend_factory("v1"), await backend_factory("v2")
    config = http_config(
        [{"name": "v1", "endpoints": [v1.address]}, {"name": "v2", "endpoints": [v2.address]}],
        [
            {
                "name": "web",
                "domains": ["web"],
                "routes": [
                    {
                        "name": "split",
                        "match": {"prefix": "/"},
                        "clusters": [{"name": "v1", "weight": 80}, {"name": "v2", "weight": 20}],
                    }
                ],
            }
        ],
    )
    sidecar = await sidecar_factory(config)
    seen = await spread(sidecar.listener_port("outbound"), 1000, concurrency=8)
    assert 700 <= seen["v1"] <= 900, seen
    assert seen["v1"] + seen["v2"] == 1000
    stats = sidecar.metrics.request_stats("outbound", "split", "v2").codes[200]
    assert stats == seen["v2"]
