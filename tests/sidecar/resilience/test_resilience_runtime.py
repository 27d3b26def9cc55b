"""``Resilience`` running for real: the outlier ticker ends ejections on time, health checks probe
real servers through ``activate``, and both tell the owner which cluster changed."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from aiohttp import web

from mesh.model.parse import parse_snapshot
from mesh.model.snapshot import Snapshot
from sidecar.resilience.metrics import ResilienceMetrics
from sidecar.resilience.policy import RequestPlan, Resilience
from sidecar.resilience.retry import CONNECT_FAILURE, AttemptResult
from tests.sidecar.helpers import serve_app


def one_cluster(ports: list[int], cluster: dict[str, object]) -> Snapshot:
    return parse_snapshot(
        {
            "route_tables": [
                {
                    "name": "t",
                    "virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [{"name": "r", "cluster": "web"}]}],
                }
            ],
            "clusters": [{"name": "web", "endpoints": [{"host": "127.0.0.1", "port": p} for p in ports], **cluster}],
        }
    )


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_ticker_ends_ejections_and_notifies() -> None:
    changes: list[str] = []
    res = Resilience(ResilienceMetrics(), changes.append, rng=random.Random(1))
    snap = one_cluster(
        [8001, 8002],
        {"outlier_detection": {"consecutive_5xx": 1, "base_ejection_time": "150ms", "interval": "50ms"}},
    )
    config = res.build(snap)
    res.activate(config)
    res.start()
    try:
        route = snap.route_tables["t"].virtual_hosts[0].routes[0]
        plan = config.routes[id(route)].begin(config.clusters["web"], "GET", 0.0)
        assert isinstance(plan, RequestPlan)
        plan.attempt_started("127.0.0.1:8001", 0.0)
        plan.on_attempt_result(AttemptResult(failure=CONNECT_FAILURE), 0.0, random.Random())
        plan.finish()
        ejected_at = asyncio.get_running_loop().time()
        assert changes == ["web"]
        assert config.clusters["web"].unavailable == frozenset({"127.0.0.1:8001"})
        await eventually(lambda: not config.clusters["web"].unavailable)
        took = asyncio.get_running_loop().time() - ejected_at
        assert 0.1 <= took < 1.0  # the ticker woke for the ejection's end, not a full second later
        assert changes == ["web", "web"]
    finally:
        await res.close()


async def test_health_checks_start_with_activate_and_follow_a_real_server() -> None:
    status = {"code": 200}

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(status=status["code"])

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner, port = await serve_app(app)
    changes: list[str] = []
    res = Resilience(ResilienceMetrics(), changes.append, rng=random.Random(2))
    try:
        check = {"interval": "20ms", "timeout": "500ms", "unhealthy_threshold": 2, "http": {"path": "/healthz"}}
        config = res.build(one_cluster([port], {"health_check": check}))
        cluster = config.clusters["web"]
        assert cluster.unavailable == frozenset({f"127.0.0.1:{port}"})  # unchecked yet
        res.activate(config)
        await eventually(lambda: not cluster.unavailable)
        assert changes == ["web"]
        status["code"] = 503
        await eventually(lambda: bool(cluster.unavailable))
        assert changes == ["web", "web"]
        view = res.admin_view()["web"]["endpoints"][f"127.0.0.1:{port}"]
        assert view["health_check"]["status"] == "unhealthy"
        assert view["health_check"]["last_detail"] == "HTTP 503"
        # Health checking removed by a new snapshot: the probes stop, the endpoint is available.
        res.activate(res.build(one_cluster([port], {})))
        assert res.health_runner.running == 0 or await _stopped(res)
        assert not res.clusters["web"].unavailable
    finally:
        await res.close()
        await runner.cleanup()


async def _stopped(res: Resilience) -> bool:
    await eventually(lambda: res.health_runner.running == 0)
    return True
