"""Parsing a real sidecar's /metrics page (SidecarMetrics through prometheus-client's exposition)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from mesh.observe.samples import ISTIO_DURATION, ISTIO_REQUESTS, ScrapeError, label, labels_of, parse_exposition
from mesh.observe.scrape import metrics_url
from sidecar.metrics import SidecarMetrics

OUTBOUND = ("source", "productpage", "productpage", "reviews.default.svc.cluster.local", "reviews", "reviews", "v2")


def sidecar_page(requests: dict[tuple[str, ...], list[tuple[int, float]]]) -> str:
    """The exposition of a SidecarMetrics whose (listener, route, cluster) stats carry ``labels``."""
    metrics = SidecarMetrics("productpage")
    for i, (labels, calls) in enumerate(requests.items()):
        stats = metrics.request_stats("outbound", f"r{i}", f"c{i}")
        stats.istio = (*labels, "http", "none")  # type: ignore[assignment]
        for status, seconds in calls:
            stats.record(status, seconds)
    registry = CollectorRegistry()
    registry.register(metrics)
    return generate_latest(registry).decode()


def test_the_istio_series_of_a_sidecar_page_are_kept_by_sample_name_and_labels() -> None:
    page = sidecar_page({OUTBOUND: [(200, 0.002), (200, 0.004), (503, 0.2)]})
    scrape = parse_exposition(page, at=12.5)
    assert scrape.at == 12.5
    codes = {label(labels, "response_code"): value for labels, value in scrape.series(ISTIO_REQUESTS).items()}
    assert codes == {"200": 2.0, "503": 1.0}
    buckets = scrape.series(ISTIO_DURATION + "_bucket")
    by_le = {label(labels, "le"): value for labels, value in buckets.items()}
    assert by_le["2.5"] == 1.0
    assert by_le["5.0"] == 2.0
    assert by_le["+Inf"] == 3.0
    assert set(scrape.samples) == {
        ISTIO_REQUESTS,
        ISTIO_DURATION + "_bucket",
        ISTIO_DURATION + "_count",
        ISTIO_DURATION + "_sum",
    }
    assert "mesh_sidecar_requests_total" not in scrape.samples  # only the families asked for
    everything = parse_exposition(page, at=0.0, names=None)
    assert "mesh_sidecar_requests_total" in everything.samples


def test_labels_are_order_free() -> None:
    assert labels_of({"b": "2", "a": "1"}) == (("a", "1"), ("b", "2"))
    assert label((("a", "1"),), "missing", "dflt") == "dflt"


def test_malformed_text_is_a_parse_error() -> None:
    with pytest.raises(ScrapeError) as caught:
        parse_exposition('istio_requests_total{reporter="source" 1\n', at=0.0)
    assert caught.value.reason == "parse"


def test_metrics_url_takes_an_address_or_a_url() -> None:
    assert metrics_url("127.0.0.1:15000") == "http://127.0.0.1:15000/metrics"
    assert metrics_url("[::1]:15000") == "http://[::1]:15000/metrics"
    assert metrics_url("http://h:1/") == "http://h:1/metrics"
    assert metrics_url("http://h:1/metrics") == "http://h:1/metrics"
