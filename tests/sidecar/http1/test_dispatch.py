"""Dispatch and the active config, pure: snapshots in, decisions out (no sockets)."""

from __future__ import annotations

import collections
import random
from typing import Any

from lb import NO_HINTS
from mesh.model.parse import parse_snapshot
from sidecar.active import build_active, rebuild_balancer
from sidecar.http1.dispatch import Forward, Redirect, Reject, decide, parse_cookies
from sidecar.http1.framing import request_head
from sidecar.metrics import SidecarMetrics
from sidecar.resilience.metrics import ResilienceMetrics
from sidecar.resilience.policy import RequestPlan, Resilience
from sidecar.resilience.retry import AttemptResult


def snapshot(clusters: list[dict[str, Any]], routes: list[dict[str, Any]], version: str = "1") -> Any:
    return parse_snapshot(
        {
            "version": version,
            "listeners": [{"name": "out", "protocol": "http", "port": 0, "route_table": "t"}],
            "route_tables": [{"name": "t", "virtual_hosts": [{"name": "web", "domains": ["web"], "routes": routes}]}],
            "clusters": clusters,
        }
    )


def ep(port: int, **extra: Any) -> dict[str, Any]:
    return {"host": "10.0.0.1", "port": port, **extra}


def get(path: bytes = b"/", host: bytes = b"web", *headers: tuple[bytes, bytes]) -> Any:
    return request_head(b"GET", path, b"1.1", [(b"Host", host), *headers])


def test_weighted_clusters_follow_weights() -> None:
    snap = snapshot(
        [{"name": "a", "endpoints": [ep(1)]}, {"name": "b", "endpoints": [ep(2)]}],
        [{"name": "r", "match": {"prefix": "/"}, "clusters": [{"name": "a", "weight": 3}, {"name": "b", "weight": 1}]}],
    )
    runtime = build_active(snap, None, SidecarMetrics(), rng=random.Random(1)).listeners["out"]
    rng = random.Random(7)
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(4000):
        choice = decide(runtime, get(), "127.0.0.1", rng)
        assert isinstance(choice, Forward)
        seen[choice.cluster.name] += 1
    assert 2800 < seen["a"] < 3200


def test_no_route_unknown_host_and_empty_cluster() -> None:
    snap = snapshot([{"name": "a", "endpoints": []}], [{"name": "r", "match": {"prefix": "/api"}, "cluster": "a"}])
    runtime = build_active(snap, None, SidecarMetrics(), rng=random.Random()).listeners["out"]
    unknown = decide(runtime, get(host=b"other"), "", random.Random())
    assert isinstance(unknown, Reject)
    assert unknown.status == 404
    assert unknown.unknown_host
    no_route = decide(runtime, get(b"/else"), "", random.Random())
    assert isinstance(no_route, Reject)
    assert no_route.status == 404
    empty = decide(runtime, get(b"/api"), "", random.Random())
    assert isinstance(empty, Reject)
    assert (empty.status, empty.message) == (503, "no healthy upstream")


def test_route_cache_is_used_only_without_header_or_query_matches() -> None:
    plain = snapshot([{"name": "a", "endpoints": [ep(1)]}], [{"name": "r", "match": {"prefix": "/"}, "cluster": "a"}])
    runtime = build_active(plain, None, SidecarMetrics(), rng=random.Random()).listeners["out"]
    decide(runtime, get(b"/x"), "", random.Random())
    assert runtime.cacheable
    assert (b"web", b"GET", "/x") in runtime.cache
    by_header = snapshot(
        [{"name": "a", "endpoints": [ep(1)]}, {"name": "b", "endpoints": [ep(2)]}],
        [
            {"name": "h", "match": {"prefix": "/", "headers": [{"name": "x-v", "exact": "2"}]}, "cluster": "b"},
            {"name": "r", "match": {"prefix": "/"}, "cluster": "a"},
        ],
    )
    runtime = build_active(by_header, None, SidecarMetrics(), rng=random.Random()).listeners["out"]
    assert not runtime.cacheable
    first = decide(runtime, get(b"/x", b"web", (b"X-V", b"2")), "", random.Random())
    second = decide(runtime, get(b"/x"), "", random.Random())
    assert isinstance(first, Forward)
    assert first.cluster.name == "b"
    assert isinstance(second, Forward)
    assert second.cluster.name == "a"


def test_prefix_rewrite_changes_the_target() -> None:
    snap = snapshot(
        [{"name": "a", "endpoints": [ep(1)]}],
        [{"name": "r", "match": {"prefix": "/old/"}, "cluster": "a", "prefix_rewrite": "/new/"}],
    )
    runtime = build_active(snap, None, SidecarMetrics(), rng=random.Random()).listeners["out"]
    choice = decide(runtime, get(b"/old/x?q=1"), "", random.Random())
    assert isinstance(choice, Forward)
    assert choice.target == b"/new/x?q=1"


def test_load_trackers_survive_swaps_and_balancers_are_rebuilt() -> None:
    metrics = SidecarMetrics()
    first = build_active(
        snapshot(
            [{"name": "a", "endpoints": [ep(1), ep(2)]}], [{"name": "r", "match": {"prefix": "/"}, "cluster": "a"}]
        ),
        None,
        metrics,
        rng=random.Random(),
    )
    first.clusters["a"].load.start("10.0.0.1:1")
    second = build_active(
        snapshot([{"name": "a", "endpoints": [ep(1)]}], [{"name": "r", "match": {"prefix": "/"}, "cluster": "a"}], "2"),
        first,
        metrics,
        rng=random.Random(),
    )
    assert second.clusters["a"].load is first.clusters["a"].load
    assert second.clusters["a"].load.active("10.0.0.1:1") == 1
    assert second.clusters["a"].balancer is not first.clusters["a"].balancer
    assert len(second.clusters["a"].balancer.endpoints) == 1
    # Metric objects are shared across swaps: counts are cumulative.
    route_first = next(iter(first.listeners["out"].routes.values()))
    route_second = next(iter(second.listeners["out"].routes.values()))
    assert route_first.stats["a"] is route_second.stats["a"]


def test_parse_cookies() -> None:
    assert parse_cookies('a=1; b="two"; a=3') == {"a": "1", "b": "two"}


def test_redirect_route_is_decided_before_any_cluster_pick() -> None:
    snap = snapshot(
        [{"name": "a", "endpoints": [ep(1)]}],
        [
            {
                "name": "old",
                "match": {"prefix": "/old/"},
                "redirect": {"host": "new.example", "prefix_rewrite": "/v2/"},
            },
            {"name": "r", "match": {"prefix": "/"}, "cluster": "a", "host_rewrite": "a.internal"},
        ],
    )
    runtime = build_active(snap, None, SidecarMetrics(), rng=random.Random()).listeners["out"]
    choice = decide(runtime, get(b"/old/x?q=1"), "127.0.0.1", random.Random())
    assert isinstance(choice, Redirect)
    assert (choice.status, choice.location) == (301, "http://new.example/v2/x?q=1")
    forward = decide(runtime, get(b"/y"), "127.0.0.1", random.Random())
    assert isinstance(forward, Forward)
    assert forward.route.host == b"a.internal"


def test_balancers_are_built_over_effective_endpoints_and_rebuilt_on_change() -> None:
    snap = snapshot(
        [
            {
                "name": "a",
                "endpoints": [ep(1), ep(2)],
                "outlier_detection": {"consecutive_5xx": 1, "max_ejection_percent": 50},
            }
        ],
        [{"name": "r", "match": {"prefix": "/"}, "cluster": "a"}],
    )
    changed: list[str] = []
    resilience = Resilience(ResilienceMetrics(), changed.append)
    active = build_active(snap, None, SidecarMetrics(), rng=random.Random(), resilience=resilience)
    resilience.activate(active.resilience)
    runtime = active.clusters["a"]
    route = active.listeners["out"].routes[id(snap.route_tables["t"].virtual_hosts[0].routes[0])]
    plan = route.resilience.begin(runtime.resilience, "GET", 0.0)
    assert isinstance(plan, RequestPlan)
    plan.attempt_started("10.0.0.1:1", 0.0)
    plan.on_attempt_result(AttemptResult(status=500), 0.0, random.Random())  # ejects: notify
    plan.finish()
    assert changed == ["a"]
    rebuild_balancer(runtime, rng=random.Random(), clock=lambda: 0.0)
    picks = {runtime.balancer.pick(NO_HINTS).key for _ in range(20)}  # type: ignore[union-attr]
    assert picks == {"10.0.0.1:2"}
