"""State shared by ``--workers`` processes: breaker shares, health states and ejections taken from
another worker (pure parts), and the publisher / follower / broadcaster over real Unix sockets."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mesh.model.parse import parse_snapshot
from mesh.model.policies import CircuitBreakers, HealthCheck, OutlierDetection, RetryBudget
from mesh.model.snapshot import Snapshot
from sidecar.admin_http import AdminServer
from sidecar.resilience.circuit_breaker import share, worker_share
from sidecar.resilience.health_check import HEALTHY, UNCHECKED, UNHEALTHY, HealthChecker
from sidecar.resilience.metrics import ResilienceMetrics
from sidecar.resilience.outlier import CONSECUTIVE_5XX, OutlierDetector
from sidecar.resilience.policy import RequestPlan, Resilience
from sidecar.resilience.retry import AttemptResult
from sidecar.resilience.sharing import (
    EJECTIONS_PATH,
    HEALTH_PATH,
    EjectionBroadcaster,
    HealthFollower,
    HealthPublisher,
    parse_ejections,
    parse_health_states,
    sharing_routes,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def snapshot(cluster: dict[str, Any], hosts: int = 4) -> Snapshot:
    return parse_snapshot(
        {
            "route_tables": [
                {
                    "name": "t",
                    "virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [{"name": "r", "cluster": "web"}]}],
                }
            ],
            "clusters": [
                {"name": "web", "endpoints": [{"host": "127.0.0.1", "port": 8000 + i} for i in range(hosts)], **cluster}
            ],
        }
    )


def resilience(changes: list[str] | None = None, clock: Callable[[], float] | None = None) -> Resilience:
    sink = changes if changes is not None else []
    return Resilience(ResilienceMetrics(), sink.append, clock=clock or Clock(), rng=random.Random(1))


def activate(res: Resilience, snap: Snapshot) -> None:
    res.activate(res.build(snap))


# === breaker shares ===


@pytest.mark.parametrize(
    ("limit", "workers", "expected"),
    [(1024, 1, 1024), (1024, 4, 256), (5, 2, 3), (1, 4, 1), (3, 8, 1), (0, 4, 0), (7, 3, 3)],
)
def test_share_is_ceil_of_the_limit_over_workers_at_least_one(limit: int, workers: int, expected: int) -> None:
    assert share(limit, workers) == expected


def test_worker_share_splits_every_count_limit_and_the_budget_floor() -> None:
    limits = CircuitBreakers(
        max_connections=10, max_pending_requests=1, max_requests=100, max_retries=0, retry_budget=RetryBudget(20, 3)
    )
    split = worker_share(limits, 4)
    assert (split.max_connections, split.max_pending_requests, split.max_requests, split.max_retries) == (3, 1, 25, 0)
    assert split.retry_budget == RetryBudget(20, 1)  # the percentage is of each worker's own requests
    assert worker_share(limits, 1) is limits


def test_resilience_enforces_its_share_across_swaps() -> None:
    res = resilience()
    res.share_with_workers(2, probes_health=True)
    activate(res, snapshot({"circuit_breakers": {"max_requests": 5, "max_connections": 4}}))
    breaker = res.clusters["web"].breaker
    assert (breaker.limits.max_requests, breaker.limits.max_connections) == (3, 2)
    activate(res, snapshot({"circuit_breakers": {"max_requests": 9}}))
    assert breaker.limits.max_requests == 5
    assert res.admin_view()["web"]["circuit_breakers"]["requests"]["max"] == 5


def test_share_with_workers_after_a_config_applies_to_existing_clusters() -> None:
    res = resilience()
    activate(res, snapshot({"circuit_breakers": {"max_requests": 8}}))
    res.share_with_workers(4, probes_health=True)
    assert res.clusters["web"].breaker.limits.max_requests == 2


# === health states ===


def test_checker_adopts_another_workers_state() -> None:
    clock = Clock()
    checker = HealthChecker(HealthCheck(), ["a", "b"], clock=clock)
    assert checker.unavailable == {"a", "b"}
    assert checker.adopt("a", {"status": HEALTHY, "checks": 3, "last_result": "pass", "last_checked_ago_s": 0.5})
    assert checker.unavailable == {"b"}
    assert checker.endpoint_state("a")["last_checked_ago_s"] == 0.5
    assert not checker.adopt("b", {"status": UNCHECKED})  # no change
    assert not checker.adopt("gone", {"status": HEALTHY})  # not an endpoint here
    with pytest.raises(ValueError, match="status"):
        checker.adopt("a", {"status": "sick"})


def test_resilience_adopts_health_and_rebuilds_changed_clusters_only() -> None:
    changes: list[str] = []
    prober, follower = resilience(), resilience(changes)
    follower.share_with_workers(2, probes_health=False)
    snap = snapshot({"health_check": {"tcp": {}}}, hosts=2)
    prober_config = prober.build(snap)  # no activate: its checker is driven by hand, no probes
    prober.clusters.update(prober_config.clusters)
    activate(follower, snap)
    checker = prober.clusters["web"].health
    assert checker is not None
    checker.record("127.0.0.1:8000", True)
    checker.record("127.0.0.1:8001", False)
    follower.adopt_health(prober.health_states())
    assert changes == ["web"]
    assert follower.clusters["web"].unavailable == {"127.0.0.1:8001"}
    follower.adopt_health(prober.health_states())
    assert changes == ["web"]  # nothing new
    follower.adopt_health({"other": {"x": {"status": HEALTHY}}})  # a cluster it does not have: skipped
    with pytest.raises(ValueError, match=r"web\.127\.0\.0\.1:8000"):
        follower.adopt_health({"web": {"127.0.0.1:8000": {"status": "maybe"}}})


async def test_a_non_probing_worker_starts_no_probes_and_asks_for_states() -> None:
    res = resilience()
    asked: list[int] = []
    res.on_health_needed.append(lambda: asked.append(1))
    res.share_with_workers(2, probes_health=False)
    activate(res, snapshot({"health_check": {"tcp": {}, "interval": "50ms"}}))
    assert res.health_runner.running == 0
    assert asked == [1]
    await res.close()


def test_parse_health_states_names_what_is_wrong() -> None:
    assert parse_health_states({"web": {"a": {"status": UNHEALTHY}}}) == {"web": {"a": {"status": UNHEALTHY}}}
    with pytest.raises(ValueError, match="body"):
        parse_health_states([])
    with pytest.raises(ValueError, match="web"):
        parse_health_states({"web": 3})
    with pytest.raises(ValueError, match=r"web\.a"):
        parse_health_states({"web": {"a": {}}})


# === ejections ===


def test_detector_adopts_an_ejection_for_its_remaining_time() -> None:
    clock = Clock()
    config = OutlierDetection(max_ejection_percent=50.0)
    det = OutlierDetector(config, ["a", "b", "c", "d"], clock=clock)
    assert det.adopt_ejection("a", 12.0, CONSECUTIVE_5XX, 2)
    assert det.ejected == {"a"}
    assert det.ejection("a") == (12.0, CONSECUTIVE_5XX, 2)
    assert det.ejections_enforced == {}  # the worker that detected it counts it
    assert det.ejections_adopted == 1
    assert not det.adopt_ejection("a", 30.0, CONSECUTIVE_5XX, 1)  # already ejected
    assert det.adopt_ejection("b", 20.0, CONSECUTIVE_5XX, 1)
    assert not det.adopt_ejection("c", 5.0, CONSECUTIVE_5XX, 1)  # 3 of 4 would pass 50 %
    assert det.ejections_overflow == 1
    clock.now += 12.0
    assert det.tick()
    assert det.ejected == {"b"}


def test_local_ejections_are_told_once_and_adopted_ones_are_not_told_back() -> None:
    clock = Clock()
    res = resilience(clock=clock)
    told: list[tuple[str, str, float, str, int]] = []
    res.on_ejection.append(lambda *item: told.append(item))
    snap = snapshot({"outlier_detection": {"consecutive_5xx": 2, "max_ejection_percent": 50}})
    activate(res, snap)
    cluster = res.clusters["web"]
    for _ in range(2):
        plan = RequestPlan(snap.route_tables["t"].virtual_hosts[0].routes[0], cluster, "GET", clock())
        plan.attempt_started("127.0.0.1:8000", clock())
        plan.on_attempt_result(AttemptResult(500), clock(), random.Random(1))
        plan.finish()
    assert told == [("web", "127.0.0.1:8000", 30.0, CONSECUTIVE_5XX, 1)]
    assert res.adopt_ejection("web", "127.0.0.1:8001", 10.0, CONSECUTIVE_5XX, 1)
    assert len(told) == 1  # adopted: not told back
    assert not res.adopt_ejection("nope", "x", 1.0, "", 1)


def test_parse_ejections_names_what_is_wrong() -> None:
    body = {"ejections": [{"cluster": "web", "key": "a", "seconds": 3, "reason": "r", "ejections": 2}]}
    assert parse_ejections(body) == [("web", "a", 3.0, "r", 2)]
    with pytest.raises(ValueError, match="ejections"):
        parse_ejections({})
    with pytest.raises(ValueError, match=r"ejections\[0\]"):
        parse_ejections({"ejections": [{"cluster": "web"}]})
    with pytest.raises(ValueError, match=r"ejections\[0\]\.seconds"):
        parse_ejections({"ejections": [{"cluster": "web", "key": "a", "seconds": -1}]})


# === over real Unix sockets ===


async def serve_routes(res: Resilience, path: Path) -> AdminServer:
    server = AdminServer(sharing_routes(res))
    await server.start_unix(str(path))
    return server


@pytest.fixture
async def sockets(tmp_path: Path) -> AsyncIterator[list[AdminServer]]:
    servers: list[AdminServer] = []
    yield servers
    for server in servers:
        await server.close()


async def eventually(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polls state another task changes
            await asyncio.sleep(0.01)


async def test_publisher_pushes_on_change_and_follower_fetches_on_need(
    tmp_path: Path, sockets: list[AdminServer]
) -> None:
    snap = snapshot({"health_check": {"tcp": {}, "interval": "1h"}}, hosts=2)
    prober, follower = resilience(), resilience()
    prober.share_with_workers(2, probes_health=True)
    follower.share_with_workers(2, probes_health=False)
    sockets.append(await serve_routes(prober, tmp_path / "w0.sock"))
    sockets.append(await serve_routes(follower, tmp_path / "w1.sock"))
    publisher = HealthPublisher(prober, [str(tmp_path / "w1.sock")], resync_s=60)
    fetcher = HealthFollower(follower, str(tmp_path / "w0.sock"))
    publisher.start()
    fetcher.start()
    try:
        prober_config = prober.build(snap)  # no activate: its probes are driven by hand below
        prober.clusters.update(prober_config.clusters)
        checker = prober.clusters["web"].health
        assert checker is not None
        checker.record("127.0.0.1:8000", True)
        activate(follower, snap)  # endpoints it knows nothing of: it fetches worker 0's states
        await eventually(lambda: follower.clusters["web"].unavailable == {"127.0.0.1:8001"})
        assert fetcher.fetches >= 1
        checker.record("127.0.0.1:8001", True)
        prober._health_changed("web")  # what the runner calls on a change: pushed at once
        await eventually(lambda: not follower.clusters["web"].unavailable)
        assert publisher.pushes >= 1
        async with (
            aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(tmp_path / "w0.sock"))) as session,
            session.post(f"http://w{HEALTH_PATH}", json={}) as response,
        ):
            assert response.status == 409  # the prober keeps its own results
    finally:
        await publisher.close()
        await fetcher.close()
        await prober.close()
        await follower.close()


async def test_broadcaster_tells_the_other_worker_which_ejects_too(tmp_path: Path, sockets: list[AdminServer]) -> None:
    snap = snapshot({"outlier_detection": {"consecutive_5xx": 1, "max_ejection_percent": 50}})
    here, there = resilience(), resilience()
    activate(here, snap)
    activate(there, snap)
    sockets.append(await serve_routes(there, tmp_path / "w1.sock"))
    broadcaster = EjectionBroadcaster(here, [str(tmp_path / "w1.sock")])
    broadcaster.start()
    try:
        outlier = here.clusters["web"].outlier
        assert outlier is not None
        assert outlier.on_result("127.0.0.1:8002", AttemptResult(503))
        here._changed("web")  # what a plan's notify does on an ejection
        await eventually(lambda: there.clusters["web"].unavailable == {"127.0.0.1:8002"})
        assert broadcaster.sent == 1
        async with (
            aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(tmp_path / "w1.sock"))) as session,
            session.post(f"http://w{EJECTIONS_PATH}", json={"ejections": [{"cluster": "web"}]}) as response,
        ):
            assert response.status == 400
            assert "ejections[0]" in await response.text()
    finally:
        await broadcaster.close()
        await here.close()
        await there.close()
