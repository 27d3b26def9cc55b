"""Push: a real control plane and sidecar sources speaking the sync protocol, with recording applies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import yaml

from discovery.server import RegistryServer
from mesh.control.server import ControlServer
from mesh.model.policies import FaultDelay, FaultPolicy, MirrorPolicy
from mesh.model.routing import select_route
from mesh.model.snapshot import Snapshot
from sidecar.sources.control_plane import ControlPlaneSource
from sidecar.sources.defaults import SidecarSettings
from tests.mesh.control.fixtures import register
from tests.mesh.rules.helpers import dr, vs
from tests.sidecar.sources.recorder import Recorder

SUBSETS = dr(subsets=[{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}])


def route_to(*weights: tuple[str, int]) -> dict[str, Any]:
    targets = [{"destination": {"host": "reviews", "subset": s}, "weight": w} for s, w in weights]
    return vs(http=[{"route": targets}])


Sidecars = Callable[..., Any]


@pytest.fixture
async def registry_http(registry: RegistryServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=registry.url) as session:
        await register(session, "reviews", "reviews-v1", 9081, Meta={"version": "v1"})
        await register(session, "reviews", "reviews-v2", 9082, Meta={"version": "v2"})
        yield session


@pytest.fixture
async def sidecars(control: ControlServer, tmp_path: Any) -> AsyncIterator[Sidecars]:
    """Start sidecar sources (real sync protocol) with recording applies."""
    tasks: list[asyncio.Task[None]] = []

    async def start(
        count: int = 1,
        *,
        reject: Callable[[Snapshot], str | None] | None = None,
        service: str = "productpage",
        **kw: Any,
    ) -> list[tuple[ControlPlaneSource, Recorder]]:
        out = []
        for _ in range(count):
            index = len(tasks)
            source = ControlPlaneSource(
                SidecarSettings(service=service),
                control.url,
                sidecar_id=f"{service}-{index}",
                state_dir=tmp_path / f"sidecar-{index}",
                wait=5.0,
                backoff_base=0.05,
                backoff_cap=0.2,
                **kw,
            )
            recorder = Recorder(reject)
            tasks.append(asyncio.create_task(source.run(recorder.apply)))
            out.append((source, recorder))
        for source, recorder in out:
            await recorder.applied_count(1)
            assert await source.demand("reviews")
        return out

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def put(control: ControlServer, *docs: dict[str, Any]) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.put(f"{control.url}/v1/mesh/config", data=yaml.safe_dump_all(docs)) as r,
    ):
        result: dict[str, Any] = json.loads(await r.text())
        assert r.status == 200, result
        return result


async def status(control: ControlServer) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{control.url}/v1/mesh/status") as r:
        result: dict[str, Any] = await r.json()
        return result


def clusters(recorder: Recorder) -> list[str]:
    current = recorder.current
    assert current is not None
    return sorted(name for name in current.clusters if name.startswith("outbound|"))


async def until_status(
    control: ControlServer, check: Callable[[dict[str, Any]], bool], timeout: float = 5.0
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await status(control)
        if check(result):
            return result
        assert asyncio.get_running_loop().time() < deadline, result
        await asyncio.sleep(0.02)


async def test_every_sidecar_gets_each_new_version_and_acks(
    control: ControlServer, registry_http: aiohttp.ClientSession, sidecars: Sidecars
) -> None:
    started = await sidecars(5)
    result = await put(control, SUBSETS, route_to(("v1", 90), ("v2", 10)))
    version = result["version"]
    for _, recorder in started:
        await recorder.until(lambda r=recorder: r.current is not None and r.current.version.startswith(f"{version}."))
        assert clusters(recorder) == [
            "outbound||v1|reviews.default.svc.cluster.local",
            "outbound||v2|reviews.default.svc.cluster.local",
        ]
    report = await until_status(control, lambda s: all(c["in_sync"] for c in s["sidecars"]))
    assert report["config_version"] == version
    assert report["watched_services"] == ["reviews"]  # one registry watch, however many sidecars
    assert len(report["sidecars"]) == 5
    for entry in report["sidecars"]:
        assert entry["applied_version"] == entry["version"]
        assert entry["last_ack"]["version"] == entry["version"]
        assert entry["last_nack"] is None
        assert entry["connected"]
        assert entry["hosts"] == ["reviews"]


async def test_a_nack_is_recorded_and_the_old_snapshot_stays(
    control: ControlServer, registry_http: aiohttp.ClientSession, sidecars: Sidecars
) -> None:
    def no_v2(snapshot: Snapshot) -> str | None:
        return "v2 not allowed here" if any("|v2|" in name for name in snapshot.clusters) else None

    ((picky_source, picky), (_, easy)) = (await sidecars(1, reject=no_v2))[0], (await sidecars(1))[0]
    before = picky.current
    await put(control, SUBSETS, route_to(("v1", 50), ("v2", 50)))
    await easy.until(lambda: any("|v2|" in n for n in (easy.current.clusters if easy.current else ())))
    await picky.until(lambda: len(picky.offered) > len(picky.applied))
    assert picky.current is before
    report = await until_status(control, lambda s: any(c["last_nack"] for c in s["sidecars"]))
    entry = next(c for c in report["sidecars"] if c["id"] == picky_source.sidecar_id)
    assert entry["last_nack"]["error"] == "v2 not allowed here"
    assert entry["last_nack"]["version"] == entry["version"]
    assert not entry["in_sync"]
    assert before is not None
    assert entry["applied_version"] == before.version
    offered = len(picky.offered)
    await asyncio.sleep(0.3)
    assert len(picky.offered) == offered  # the rejected snapshot is not sent again
    await put(control, route_to(("v1", 100), ("v2", 0)))
    await picky.until(lambda: picky.current is not before)
    assert "outbound||v2|reviews.default.svc.cluster.local" not in (picky.current.clusters if picky.current else {})


async def test_identical_snapshots_are_not_sent_again(
    control: ControlServer, registry: RegistryServer, registry_http: aiohttp.ClientSession, sidecars: Sidecars
) -> None:
    ((_, recorder),) = await sidecars(1)
    await put(control, SUBSETS)
    await recorder.until(lambda: len(recorder.offered) >= 1)
    await asyncio.sleep(0.2)
    offered = len(recorder.offered)
    await put(control, SUBSETS)  # unchanged
    await put(control, vs("ratings"))  # a host this sidecar never asked for
    await register(registry_http, "ratings", "ratings-1", 9090)  # a service it does not watch
    await asyncio.sleep(0.3)
    assert len(recorder.offered) == offered
    before = control.plane.pusher.pushes
    await register(registry_http, "reviews", "reviews-v3", 9083, Meta={"version": "v3"})
    await recorder.until(lambda: len(recorder.offered) == offered + 1)
    current = recorder.current
    assert current is not None
    ports = sorted(e.port for e in current.clusters["outbound|||reviews.default.svc.cluster.local"].endpoints)
    assert ports == [9081, 9082, 9083]
    assert control.plane.pusher.pushes == before + 1


async def test_registry_health_changes_reach_sidecars(
    control: ControlServer, registry_http: aiohttp.ClientSession, sidecars: Sidecars
) -> None:
    await register(
        registry_http, "reviews", "reviews-v1", 9081, Meta={"version": "v1"}, Check={"TTL": "30s", "Status": "passing"}
    )
    ((_, recorder),) = await sidecars(1)

    def ports() -> list[int]:
        snapshot = recorder.current
        assert snapshot is not None
        return sorted(e.port for e in snapshot.clusters["outbound|||reviews.default.svc.cluster.local"].endpoints)

    await recorder.until(lambda: ports() == [9081, 9082])
    async with registry_http.put("/v1/agent/check/fail/service:reviews-v1") as response:
        assert response.status == 200
    await recorder.until(lambda: ports() == [9082])


async def test_sidecars_of_one_profile_share_one_computation(
    control: ControlServer, registry_http: aiohttp.ClientSession, sidecars: Sidecars
) -> None:
    started = await sidecars(4)
    pushes = control.plane.pusher.pushes
    await put(control, SUBSETS, route_to(("v1", 20), ("v2", 80)))
    for _, recorder in started:
        await recorder.until(lambda r=recorder: any("|v2|" in n for n in (r.current.clusters if r.current else ())))
    assert control.plane.pusher.pushes == pushes + 1


async def test_explain_uses_the_sidecars_snapshot(
    control: ControlServer, registry_http: aiohttp.ClientSession, sidecars: Sidecars
) -> None:
    ((source, recorder),) = await sidecars(1)
    await put(control, SUBSETS, route_to(("v1", 100), ("v2", 0)))
    await recorder.until(lambda: recorder.current is not None and "|v1|" in " ".join(recorder.current.clusters))
    await until_status(control, lambda s: all(c["in_sync"] for c in s["sidecars"]))
    params = {"source": "productpage", "host": "reviews:9080", "path": "/reviews/1"}
    async with aiohttp.ClientSession() as http, http.get(f"{control.url}/v1/mesh/explain", params=params) as r:
        result = await r.json()
    assert result["source"]["sidecar"] == source.sidecar_id
    assert recorder.current is not None
    assert result["source"]["snapshot_version"] == recorder.current.version
    assert result["route"]["rule"] == "VirtualService default/reviews"
    (dest,) = result["destinations"]
    assert dest["subset"] == "v1"
    assert [e["address"] for e in dest["endpoints"]] == ["127.0.0.1:9081"]
    assert dest["excluded"][0]["reason"] == "not in the subset: lacks version=v1"
    params = {"source": "ratings", "host": "reviews"}  # no sidecar of ratings: computed for a new one
    async with aiohttp.ClientSession() as http, http.get(f"{control.url}/v1/mesh/explain", params=params) as r:
        result = await r.json()
    assert result["source"]["sidecar"] is None
    assert result["status"] == 200


async def test_a_restarted_control_plane_gets_its_sidecars_back(
    start_control: Callable[..., Any], registry_http: aiohttp.ClientSession, tmp_path: Any
) -> None:
    first: ControlServer = await start_control()
    port = first.port
    source = ControlPlaneSource(
        SidecarSettings(service="productpage"), first.url, sidecar_id="pp", wait=2.0, backoff_base=0.05, backoff_cap=0.2
    )
    recorder = Recorder()
    task = asyncio.create_task(source.run(recorder.apply))
    try:
        await recorder.applied_count(1)
        assert await source.demand("reviews")
        await first.stop()
        second: ControlServer = await start_control(http_addr=f"127.0.0.1:{port}")
        report = await until_status(second, lambda s: len(s["sidecars"]) == 1 and s["sidecars"][0]["in_sync"])
        assert report["sidecars"][0]["hosts"] == ["reviews"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_bursts_of_changes_are_coalesced(
    control: ControlServer, registry_http: aiohttp.ClientSession, sidecars: Sidecars
) -> None:
    await sidecars(2)
    pusher = control.plane.pusher
    assert await pusher.settled(5.0)
    rounds = pusher.rounds
    for _ in range(50):
        pusher.rules_changed()
        pusher.service_changed("reviews")
    assert await pusher.settled(5.0)
    assert pusher.rounds == rounds + 1


async def test_resilience_settings_reach_the_sidecar_in_its_snapshot(
    control: ControlServer, registry_http: aiohttp.ClientSession, sidecars: Sidecars
) -> None:
    ((_, recorder),) = await sidecars(1)
    rule = dr(
        trafficPolicy={
            "connectionPool": {"tcp": {"maxConnections": 5}, "http": {"http2MaxRequests": 50}},
            "outlierDetection": {"consecutiveGatewayErrors": 2, "interval": "1s"},
        },
        subsets=[{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}],
    )
    route = vs(
        http=[
            {
                "route": [{"destination": {"host": "reviews", "subset": "v1"}}],
                "retries": {"attempts": 3, "perTryTimeout": "500ms", "retryOn": "5xx"},
                "fault": {"delay": {"fixedDelay": "10ms", "percentage": {"value": 50}}},
                "mirror": {"host": "reviews", "subset": "v2"},
                "mirrorPercentage": {"value": 20},
            }
        ]
    )
    result = await put(control, rule, route)
    assert result["warnings"] == []  # every setting above is enforced: nothing to warn about
    v1 = "outbound||v1|reviews.default.svc.cluster.local"
    v2 = "outbound||v2|reviews.default.svc.cluster.local"
    await recorder.until(lambda: recorder.current is not None and v2 in recorder.current.clusters)
    snapshot = recorder.current
    assert snapshot is not None
    selection = select_route(snapshot.route_tables["outbound"], "reviews", "GET", "/", "", {})
    assert selection is not None
    chosen = selection.route
    assert chosen.retry_policy is not None
    assert (chosen.retry_policy.num_retries, chosen.retry_policy.per_try_timeout_s) == (3, 0.5)
    assert chosen.retry_policy.retry_on == {"5xx"}
    assert chosen.fault == FaultPolicy(delay=FaultDelay(0.01, 50.0))
    assert chosen.mirrors == (MirrorPolicy(v2, 20.0),)
    assert [c.name for c in chosen.clusters] == [v1]
    assert snapshot.clusters[v1].circuit_breakers.max_connections == 5
    assert snapshot.clusters[v1].circuit_breakers.max_requests == 50
    detection = snapshot.clusters[v1].outlier_detection
    assert detection is not None
    assert (detection.consecutive_gateway_errors, detection.interval_s) == (2, 1.0)
    assert [e.port for e in snapshot.clusters[v2].endpoints] == [9082]
