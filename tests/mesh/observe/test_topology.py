"""Edges from two scrapes per sidecar: rates, 5xx share, quantiles, versions, reporters, resets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from mesh.observe.samples import Scrape, parse_exposition
from mesh.observe.topology import (
    TargetScrapes,
    build_topology,
    destination_node,
    edge_samples,
    node_id,
    version_traffic,
)
from sidecar.metrics import SidecarMetrics
from tests.mesh.observe.test_samples import OUTBOUND

INBOUND_REVIEWS = ("destination", "unknown", "unknown", "reviews", "reviews", "reviews", "unknown")
INBOUND_PAGE = ("destination", "unknown", "unknown", "productpage", "productpage", "productpage", "unknown")
TO_V1 = (*OUTBOUND[:6], "v1")


class Sidecar:
    """A real SidecarMetrics; ``scrape`` parses its exposition as the control plane does."""

    def __init__(self, service: str) -> None:
        self.metrics = SidecarMetrics(service)
        self.registry = CollectorRegistry()
        self.registry.register(self.metrics)

    def record(self, labels: tuple[str, ...], status: int, seconds: float, count: int = 1) -> None:
        stats = self.metrics.request_stats("l", "|".join(labels), "c")
        stats.istio = (*labels, "http", "none")  # type: ignore[assignment]
        for _ in range(count):
            stats.record(status, seconds)

    def scrape(self, at: float) -> Scrape:
        return parse_exposition(generate_latest(self.registry).decode(), at)


def pair(sidecar: Sidecar, service: str, before: Scrape, after: Scrape, namespace: str = "default") -> TargetScrapes:
    return TargetScrapes(f"{service}-1", service, namespace, before, after)


def test_node_ids_from_fqdns_and_bare_names() -> None:
    assert destination_node("reviews.default.svc.cluster.local", "other") == "reviews.default"
    assert destination_node("reviews.shop.svc.cluster.local", "default") == "reviews.shop"
    assert destination_node("reviews", "shop") == "reviews.shop"
    assert destination_node("unknown", "shop") == "unknown"
    assert node_id("unknown", "x") == "unknown"


def test_an_edge_has_rps_error_share_quantiles_and_versions() -> None:
    page = Sidecar("productpage")
    page.record(OUTBOUND, 200, 0.003, 5)  # existed before the window
    before = page.scrape(100.0)
    page.record(OUTBOUND, 200, 0.003, 80)  # 80 in (2.5 ms, 5 ms]
    page.record(OUTBOUND, 503, 0.3, 10)  # 10 in (250 ms, 500 ms]
    page.record(TO_V1, 200, 0.0007, 10)  # a new series in the window: counted from 0
    after = page.scrape(110.0)
    topology = build_topology([pair(page, "productpage", before, after)])
    edge = topology.edge("productpage.default", "reviews.default")
    assert edge is not None
    assert edge.reporter == "source"
    assert edge.traffic.requests == 100
    assert edge.traffic.rps == pytest.approx(10.0)
    assert edge.traffic.error_rate == pytest.approx(0.1)
    # p50: rank 50 of 100; 10 ≤ 1 ms, then 80 in (2.5, 5]: 2.5 + 2.5 * (50-10)/80
    assert edge.traffic.p50_ms == pytest.approx(3.75)
    # p99: rank 99, in (250, 500] holding ranks 91..100: 250 + 250 * (99-90)/10
    assert edge.traffic.p99_ms == pytest.approx(475.0)
    v2, v1 = edge.versions["v2"], edge.versions["v1"]
    assert (v2.requests, v2.errors, v1.requests, v1.errors) == (90, 10, 10, 0)
    assert v1.rps == pytest.approx(1.0)
    assert v1.p99_ms is not None
    assert 0.5 < v1.p99_ms <= 1.0
    assert [n.id for n in topology.nodes] == ["productpage.default", "reviews.default"]
    assert topology.window_s == 10.0
    body = topology.to_json()
    assert body["edges"][0]["versions"]["v1"]["error_rate"] == 0.0
    assert body["edges"][0]["rps"] == 10.0


def test_callers_sidecars_are_preferred_over_the_destinations_own_count() -> None:
    page, reviews = Sidecar("productpage"), Sidecar("reviews")
    p0, r0 = page.scrape(0.0), reviews.scrape(0.0)
    page.record(INBOUND_PAGE, 200, 0.01, 20)  # users outside the mesh call productpage
    page.record(OUTBOUND, 200, 0.004, 20)
    reviews.record(INBOUND_REVIEWS, 200, 0.002, 20)  # the same 20 calls, seen by reviews' sidecar
    topology = build_topology(
        [pair(page, "productpage", p0, page.scrape(5.0)), pair(reviews, "reviews", r0, reviews.scrape(5.0))]
    )
    edges = {(e.source, e.destination): e for e in topology.edges}
    assert set(edges) == {("unknown", "productpage.default"), ("productpage.default", "reviews.default")}
    assert edges[("productpage.default", "reviews.default")].reporter == "source"
    assert edges[("productpage.default", "reviews.default")].traffic.rps == pytest.approx(4.0)  # not doubled
    outside = edges[("unknown", "productpage.default")]
    assert outside.reporter == "destination"
    assert outside.traffic.rps == pytest.approx(4.0)
    nodes = {n.id: n.sidecars for n in topology.nodes}
    assert nodes == {"productpage.default": 1, "reviews.default": 1, "unknown": 0}


def test_the_destination_count_stands_when_no_caller_reports() -> None:
    reviews = Sidecar("reviews")
    r0 = reviews.scrape(0.0)
    reviews.record(INBOUND_REVIEWS, 500, 0.002, 4)
    reviews.record(INBOUND_REVIEWS, 200, 0.002, 4)
    topology = build_topology([pair(reviews, "reviews", r0, reviews.scrape(2.0), namespace="shop")])
    (edge,) = topology.edges
    assert (edge.source, edge.destination, edge.reporter) == ("unknown", "reviews.shop", "destination")
    assert edge.traffic.rps == pytest.approx(4.0)
    assert edge.traffic.error_rate == pytest.approx(0.5)


def test_a_restarted_sidecar_counts_from_zero_like_prometheus_rate() -> None:
    old = Sidecar("productpage")
    old.record(OUTBOUND, 200, 0.004, 1000)
    before = old.scrape(0.0)
    new = Sidecar("productpage")  # the process restarted: its counters start again
    new.record(OUTBOUND, 200, 0.004, 30)
    topology = build_topology([pair(new, "productpage", before, new.scrape(10.0))])
    edge = topology.edge("productpage.default", "reviews.default")
    assert edge is not None
    assert edge.traffic.requests == 30
    assert edge.traffic.rps == pytest.approx(3.0)
    assert edge.traffic.p50_ms is not None
    assert 2.5 < edge.traffic.p50_ms <= 5.0


def test_several_sidecars_of_one_service_add_up_and_versions_sum_across_callers() -> None:
    a, b = Sidecar("productpage"), Sidecar("productpage")
    a0, b0 = a.scrape(0.0), b.scrape(0.0)
    a.record(OUTBOUND, 200, 0.004, 10)
    b.record(OUTBOUND, 503, 0.004, 30)
    topology = build_topology([pair(a, "productpage", a0, a.scrape(10.0)), pair(b, "productpage", b0, b.scrape(5.0))])
    edge = topology.edge("productpage.default", "reviews.default")
    assert edge is not None
    assert edge.traffic.rps == pytest.approx(1.0 + 6.0)  # sum of each sidecar's rate
    assert edge.traffic.error_rate == pytest.approx(30 / 40)
    per_version = version_traffic(topology, "reviews.default")
    assert set(per_version) == {"v2"}
    assert per_version["v2"].requests == 40
    assert per_version["v2"].p99_ms == edge.traffic.p99_ms
    assert topology.nodes[0].sidecars == 2


def test_no_window_no_edges() -> None:
    page = Sidecar("productpage")
    page.record(OUTBOUND, 200, 0.004)
    same = page.scrape(1.0)
    assert edge_samples(pair(page, "productpage", same, same)) == []
    assert build_topology([]).to_json() == {"window_s": 0.0, "nodes": [], "edges": []}


@given(st.lists(st.tuples(st.sampled_from([200, 404, 500, 503]), st.integers(1, 20)), min_size=1, max_size=8))
def test_error_rate_is_the_5xx_share_of_what_was_sent(calls: list[tuple[int, int]]) -> None:
    page = Sidecar("productpage")
    before = page.scrape(0.0)
    for status, count in calls:
        page.record(OUTBOUND, status, 0.001, count)
    edge = build_topology([pair(page, "productpage", before, page.scrape(4.0))]).edges[0]
    total = sum(count for _, count in calls)
    errors = sum(count for status, count in calls if status >= 500)
    assert edge.traffic.requests == total
    assert edge.traffic.error_rate == pytest.approx(errors / total)
    assert edge.traffic.rps == pytest.approx(total / 4.0)
