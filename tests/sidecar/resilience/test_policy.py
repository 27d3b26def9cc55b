"""The composition: per-request plans across attempts, carry-over across swaps, the balancer's view,
admin data and the metrics exposition."""

from __future__ import annotations

import random
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from lb import Endpoint, LoadTracker, PickContext, PolicySpec, build_balancer
from mesh.model.parse import parse_snapshot
from mesh.model.snapshot import Snapshot
from sidecar.resilience.metrics import ResilienceMetrics
from sidecar.resilience.policy import ClusterResilience, Overflow, RequestPlan, Resilience, ResilienceConfig
from sidecar.resilience.retry import CONNECT_FAILURE, PER_TRY_TIMEOUT, RESET, AttemptResult


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def snapshot(route: dict[str, Any] | None = None, cluster: dict[str, Any] | None = None, hosts: int = 3) -> Snapshot:
    return parse_snapshot(
        {
            "version": "1",
            "listeners": [{"name": "out", "protocol": "http", "port": 0, "route_table": "t"}],
            "route_tables": [
                {
                    "name": "t",
                    "virtual_hosts": [
                        {
                            "name": "v",
                            "domains": ["*"],
                            "routes": [{"name": "r", "cluster": "web", "timeout": "10s", **(route or {})}],
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "web",
                    "endpoints": [{"host": "127.0.0.1", "port": 8000 + i} for i in range(hosts)],
                    **(cluster or {}),
                },
                {"name": "shadow", "endpoints": [{"host": "127.0.0.1", "port": 9000}]},
            ],
        }
    )


def setup(
    route: dict[str, Any] | None = None, cluster: dict[str, Any] | None = None, hosts: int = 3
) -> tuple[Resilience, ResilienceConfig, Snapshot, Clock, list[str]]:
    clock = Clock()
    changes: list[str] = []
    res = Resilience(ResilienceMetrics(), changes.append, clock=clock, rng=random.Random(4))
    snap = snapshot(route, cluster, hosts)
    config = res.build(snap)
    return res, config, snap, clock, changes


def start(config: ResilienceConfig, snap: Snapshot, method: str = "GET", now: float = 100.0) -> RequestPlan:
    route = snap.route_tables["t"].virtual_hosts[0].routes[0]
    plan = config.routes[id(route)].begin(config.clusters["web"], method, now)
    assert isinstance(plan, RequestPlan)
    return plan


def test_retry_goes_elsewhere_with_backoff() -> None:
    _, config, snap, clock, _ = setup({"retry_policy": {"retry_on": "5xx", "num_retries": 2}})
    plan = start(config, snap)
    plan.request_complete(clock.now)
    rng = random.Random(1)
    first = plan.next_attempt(clock.now)
    assert first.number == 0
    assert first.exclude == frozenset()
    plan.attempt_started("127.0.0.1:8000", clock.now)
    verdict = plan.on_attempt_result(AttemptResult(503), clock.now, rng)
    assert verdict.retry
    assert 0 <= verdict.delay_s < 0.025
    second = plan.next_attempt(clock.now)
    assert second == (1, frozenset({"127.0.0.1:8000"}))
    plan.attempt_started("127.0.0.1:8001", clock.now)
    assert plan.on_attempt_result(AttemptResult(failure=RESET), clock.now, rng).retry
    assert plan.next_attempt(clock.now).exclude == frozenset({"127.0.0.1:8000", "127.0.0.1:8001"})
    plan.attempt_started("127.0.0.1:8002", clock.now)
    final = plan.on_attempt_result(AttemptResult(503), clock.now, rng)
    assert final == (False, 0.0, "limit_exceeded")
    plan.finish()
    stats = config.clusters["web"].retry_stats
    assert (stats.retries, stats.limit_exceeded, stats.success) == (2, 1, 0)
    assert config.clusters["web"].breaker.requests == 0
    assert config.clusters["web"].breaker.retries == 0


def test_the_balancer_avoids_tried_hosts() -> None:
    _, config, snap, clock, _ = setup({"retry_policy": {"retry_on": "5xx", "num_retries": 2}})
    cluster = snap.clusters["web"]
    balancer = build_balancer(cluster.lb, cluster.endpoints, load=LoadTracker(), rng=random.Random(0))
    plan = start(config, snap)
    seen = []
    for _ in range(3):
        attempt = plan.next_attempt(clock.now)
        endpoint = balancer.pick(PickContext(exclude=attempt.exclude))
        assert endpoint is not None
        seen.append(endpoint.key)
        plan.attempt_started(endpoint.key, clock.now)
        plan.on_attempt_result(AttemptResult(503), clock.now, random.Random(0))
    assert len(set(seen)) == 3


def test_success_after_retry_is_counted() -> None:
    _, config, snap, clock, _ = setup({"retry_policy": {"retry_on": "connect-failure"}})
    plan = start(config, snap)
    plan.attempt_started("127.0.0.1:8000", clock.now)
    assert plan.on_attempt_result(AttemptResult(failure=CONNECT_FAILURE), clock.now, random.Random()).retry
    assert config.clusters["web"].breaker.retries == 1  # held while the retry is in flight
    plan.attempt_started("127.0.0.1:8001", clock.now)
    assert not plan.on_attempt_result(AttemptResult(200), clock.now, random.Random()).retry
    assert config.clusters["web"].breaker.retries == 0
    assert config.clusters["web"].retry_stats.success == 1
    plan.finish()
    plan.finish()  # idempotent
    assert config.clusters["web"].breaker.requests == 0


def test_post_is_not_retried_after_the_upstream_saw_it() -> None:
    _, config, snap, clock, _ = setup({"retry_policy": {"retry_on": "5xx,connect-failure", "num_retries": 3}})
    plan = start(config, snap, method="POST")
    plan.attempt_started("127.0.0.1:8000", clock.now)
    assert plan.on_attempt_result(AttemptResult(failure=CONNECT_FAILURE), clock.now, random.Random()).retry
    plan.attempt_started("127.0.0.1:8001", clock.now)
    assert plan.on_attempt_result(AttemptResult(503), clock.now, random.Random()).reason == "method"


def test_body_longer_than_the_buffer_is_not_retried() -> None:
    _, config, snap, clock, _ = setup({"retry_policy": {"retry_on": "5xx", "num_retries": 3, "buffer_limit_bytes": 8}})
    plan = start(config, snap)
    plan.keep_body(b"1234")
    plan.keep_body(b"5678")
    assert plan.replay_body() == b"12345678"
    plan.attempt_started("127.0.0.1:8000", clock.now)
    assert plan.on_attempt_result(AttemptResult(503), clock.now, random.Random()).retry
    plan.keep_body(b"9")  # the rest of the body streams on: over the limit now
    plan.attempt_started("127.0.0.1:8001", clock.now)
    assert plan.on_attempt_result(AttemptResult(503), clock.now, random.Random()).reason == "body"


def test_deadlines_per_try_and_route() -> None:
    _, config, snap, clock, _ = setup({"retry_policy": {"retry_on": "5xx", "per_try_timeout": "2s", "num_retries": 9}})
    plan = start(config, snap)
    plan.attempt_started("127.0.0.1:8000", clock.now)
    assert plan.deadline() == float("inf")  # armed when the request is complete (Envoy)
    clock.now = 101.0
    plan.request_complete(clock.now)
    assert plan.deadline() == 103.0
    clock.now = 103.0
    assert plan.timeout_kind(clock.now) == "per_try"
    assert plan.on_attempt_result(AttemptResult(failure=PER_TRY_TIMEOUT), clock.now, random.Random()).retry
    clock.now = 110.5
    plan.attempt_started("127.0.0.1:8001", clock.now)
    assert plan.deadline() == 111.0  # the route's 10 s since completion caps the per-try 2 s
    clock.now = 111.0
    assert plan.timeout_kind(clock.now) == "route"
    plan.on_route_timeout()
    stats = config.clusters["web"].retry_stats
    assert (stats.timeouts_per_try, stats.timeouts_route) == (1, 1)


def test_no_retry_whose_backoff_ends_after_the_route_deadline() -> None:
    _, config, snap, clock, _ = setup(
        {"timeout": "1s", "retry_policy": {"retry_on": "5xx", "retry_back_off": {"base_interval": "1s"}}}
    )
    rng = random.Random(2)
    reasons = []
    for _ in range(200):
        plan = start(config, snap)
        plan.request_complete(clock.now)  # deadline: now + 1 s
        plan.attempt_started("127.0.0.1:8000", clock.now)
        late = clock.now + 0.5
        verdict = plan.on_attempt_result(AttemptResult(503), late, rng)
        if verdict.retry:
            assert late + verdict.delay_s < plan.route_deadline
        reasons.append(verdict.reason)
        plan.finish()
    assert 50 < reasons.count("deadline") < 150  # backoff uniform in [0, 1 s): about half do not fit


def test_max_requests_overflow_and_retry_budget() -> None:
    _, config, snap, clock, _ = setup(
        {"retry_policy": {"retry_on": "5xx", "num_retries": 5}},
        {"circuit_breakers": {"max_requests": 10, "retry_budget": {"budget_percent": 20, "min_retry_concurrency": 1}}},
    )
    route = snap.route_tables["t"].virtual_hosts[0].routes[0]
    route_res = config.routes[id(route)]
    cluster = config.clusters["web"]
    plans = [route_res.begin(cluster, "GET", clock.now) for _ in range(11)]
    overflow = plans.pop()
    assert overflow == Overflow(
        503, (("x-mesh-overflow", "max_requests"),), "upstream overflow: cluster 'web' is at max_requests (10)"
    )
    retried = 0
    for plan in plans:
        assert isinstance(plan, RequestPlan)
        plan.attempt_started("127.0.0.1:8000", clock.now)
        if plan.on_attempt_result(AttemptResult(503), clock.now, random.Random()).retry:
            retried += 1
    assert retried == 2  # 20 % of 10 active requests: an outage does not double the load
    assert cluster.retry_stats.overflows == 8
    first = plans[0]
    assert isinstance(first, RequestPlan)
    assert first.overflow("max_pending_requests") == Overflow(
        503,
        (("x-mesh-overflow", "max_pending_requests"),),
        "upstream overflow: cluster 'web' is at max_pending_requests (1024)",
    )
    for plan in plans:
        assert isinstance(plan, RequestPlan)
        plan.finish()
    assert (cluster.breaker.requests, cluster.breaker.retries) == (0, 0)


def test_outlier_ejection_reaches_the_balancer_and_respects_panic() -> None:
    res, config, snap, clock, changes = setup(
        {"retry_policy": {"retry_on": "5xx"}},
        {"outlier_detection": {"consecutive_5xx": 2, "max_ejection_percent": 100}, "lb": {"panic_threshold": 0.5}},
        hosts=3,
    )
    res.activate(config)
    cluster = config.clusters["web"]
    for key in ("127.0.0.1:8000", "127.0.0.1:8001"):
        for _ in range(2):
            plan = start(config, snap)
            plan.attempt_started(key, clock.now)
            plan.on_attempt_result(AttemptResult(500), clock.now, random.Random())
            plan.finish()
    assert changes == ["web", "web"]
    assert cluster.unavailable == frozenset({"127.0.0.1:8000", "127.0.0.1:8001"})
    endpoints = res.effective_endpoints("web", snap.clusters["web"].endpoints)
    assert [e.healthy for e in endpoints] == [False, False, True]
    balancer = build_balancer(PolicySpec(panic_threshold=0.5), endpoints, load=LoadTracker(), rng=random.Random())
    assert balancer.in_panic  # 1 of 3 healthy < 50 %: lb spreads over all of them
    view = res.admin_view()["web"]["endpoints"]["127.0.0.1:8000"]
    assert view["available"] is False
    assert view["outlier"]["ejected"] is True
    assert view["outlier"]["ejection_reason"] == "consecutive_5xx"


def test_state_survives_swaps_and_rejected_snapshots_change_nothing() -> None:
    res, config, snap, clock, changes = setup(cluster={"outlier_detection": {"consecutive_5xx": 1}})
    res.activate(config)
    cluster = config.clusters["web"]
    plan = start(config, snap)
    plan.attempt_started("127.0.0.1:8000", clock.now)
    plan.on_attempt_result(AttemptResult(500), clock.now, random.Random())
    assert cluster.unavailable == frozenset({"127.0.0.1:8000"})
    # In flight across the swap: the old plan still releases into the same breaker.
    newer = snapshot(cluster={"outlier_detection": {"consecutive_5xx": 1}, "circuit_breakers": {"max_requests": 7}})
    built = res.build(newer)
    assert built.clusters["web"] is cluster
    assert cluster.breaker.limits.max_requests == 1024  # not applied until activate
    res.activate(built)
    assert cluster.breaker.limits.max_requests == 7
    assert cluster.unavailable == frozenset({"127.0.0.1:8000"})  # ejection carried over
    plan.finish()
    assert cluster.breaker.requests == 0
    # A snapshot without the ejected endpoint: the set changes and the owner hears of it.
    smaller = snapshot(cluster={"outlier_detection": {"consecutive_5xx": 1}}, hosts=0)
    res.activate(res.build(smaller))
    assert cluster.unavailable == frozenset()
    assert changes[-1] == "web"
    # A cluster that leaves is forgotten.
    res.activate(res.build(Snapshot("empty")))
    assert res.clusters == {}


def test_health_check_gates_new_endpoints() -> None:
    _, config, _, _, _ = setup(cluster={"health_check": {"http": {"path": "/h"}}})
    cluster = config.clusters["web"]
    assert isinstance(cluster, ClusterResilience)
    assert cluster.health is not None
    assert len(cluster.unavailable) == 3  # unchecked: no traffic before the first passing probe
    cluster.health.record("127.0.0.1:8000", True)
    assert cluster.unavailable == frozenset({"127.0.0.1:8001", "127.0.0.1:8002"})
    registry_down = [Endpoint("127.0.0.1:8000", "127.0.0.1", 8000, healthy=False)]
    assert cluster.effective_endpoints(registry_down)[0].healthy is False  # both must say healthy


def test_fault_redirect_and_mirror_decisions() -> None:
    res, config, snap, _, _ = setup(
        {"fault": {"abort": {"http_status": 418, "percentage": 100}}, "mirrors": [{"cluster": "shadow"}]}
    )
    route_res = config.routes[id(snap.route_tables["t"].virtual_hosts[0].routes[0])]
    assert route_res.fault(random.Random()).abort_status == 418
    assert route_res.mirror_targets(random.Random()) == ("shadow",)
    assert res.mirror_limiter.in_flight == {"shadow": 1}
    res.drop_mirror("shadow")
    assert res.mirror_limiter.in_flight == {"shadow": 0}
    assert res.mirror_limiter.dropped == {"shadow": 1}
    redirect_snap = parse_snapshot(
        {
            "route_tables": [
                {
                    "name": "t",
                    "virtual_hosts": [
                        {
                            "name": "v",
                            "domains": ["*"],
                            "routes": [
                                {"name": "r", "match": {"prefix": "/a/"}, "redirect": {"prefix_rewrite": "/b/"}}
                            ],
                        }
                    ],
                }
            ]
        }
    )
    built = res.build(redirect_snap)
    redirect_route = built.routes[id(redirect_snap.route_tables["t"].virtual_hosts[0].routes[0])]
    assert redirect_route.redirect(scheme="http", authority="api", path="/a/x", query="q=1") == (
        301,
        "http://api/b/x?q=1",
    )


async def test_metrics_exposition() -> None:
    res, config, snap, clock, _ = setup(
        {"retry_policy": {"retry_on": "5xx"}, "fault": {"delay": {"fixed_delay": "1ms"}}},
        {
            "outlier_detection": {"consecutive_5xx": 1},
            "health_check": {"tcp": {}},
            "circuit_breakers": {"max_requests": 1},
        },
    )
    res.activate(config)
    try:
        route_res = config.routes[id(snap.route_tables["t"].virtual_hosts[0].routes[0])]
        route_res.fault(random.Random())
        plan = start(config, snap)
        assert isinstance(route_res.begin(config.clusters["web"], "GET", clock.now), Overflow)
        plan.attempt_started("127.0.0.1:8000", clock.now)
        plan.on_attempt_result(AttemptResult(500), clock.now, random.Random())
        registry = CollectorRegistry()
        registry.register(res.metrics)
        text = generate_latest(registry).decode()
    finally:
        await res.close()
    for line in (
        'mesh_sidecar_retries_total{cluster="web"} 1.0',
        'mesh_sidecar_overflows_total{cluster="web",limit="max_requests"} 1.0',
        'mesh_sidecar_circuit_breaker_open{cluster="web",resource="requests"} 1.0',
        'mesh_sidecar_outlier_ejections_total{cluster="web",reason="consecutive_5xx"} 1.0',
        'mesh_sidecar_outlier_ejections_active{cluster="web"} 1.0',
        'mesh_sidecar_faults_injected_total{kind="delay",route="r"} 1.0',
        'mesh_sidecar_health_check_unavailable{cluster="web"} 3.0',
        'mesh_sidecar_timeouts_total{cluster="web",kind="per_try"} 0.0',
    ):
        assert line in text, line


@pytest.mark.parametrize("hosts", [1, 3])
def test_retry_previous_hosts_off_keeps_exclude_empty(hosts: int) -> None:
    _, config, snap, clock, _ = setup({"retry_policy": {"retry_on": "5xx", "retry_previous_hosts": False}}, hosts=hosts)
    plan = start(config, snap)
    plan.attempt_started("127.0.0.1:8000", clock.now)
    plan.on_attempt_result(AttemptResult(503), clock.now, random.Random())
    assert plan.next_attempt(clock.now).exclude == frozenset()
