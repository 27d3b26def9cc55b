"""Istio-standard request metrics and W3C trace starts, over real sockets."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sidecar.http1.framing import request_head
from sidecar.http1.wire import TraceParents
from sidecar.metrics import SidecarMetrics
from sidecar.server import SidecarServer
from tests.sidecar.conftest import BackendFactory, SidecarFactory
from tests.sidecar.helpers import cluster, http_config, simple_config

REVIEWS = "outbound|9080|v1|reviews.default.svc.cluster.local"
TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")


def samples(sidecar: SidecarServer, name: str) -> list[tuple[dict[str, str], float]]:
    text = generate_latest(sidecar.registry).decode()
    return [
        (dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def outbound_port(sidecar: SidecarServer) -> int:
    return next(listening.port for listening in sidecar._listeners.values())


async def send(port: int, host: str, path: str = "/", headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host, **(headers or {})}) as response,
    ):
        body = await response.json() if response.content_type == "application/json" else await response.text()
        return response.status, body


async def test_istio_requests_total_and_duration_carry_config_labels(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    backend = await backend_factory("reviews-v1")
    config = http_config(
        [cluster(REVIEWS, [backend], service="reviews")],
        [
            {
                "name": "reviews",
                "domains": ["reviews"],
                "routes": [{"name": "r", "match": {"prefix": "/"}, "cluster": REVIEWS}],
            }
        ],
    )
    sidecar = await sidecar_factory(config, metrics=SidecarMetrics("productpage"))
    port = outbound_port(sidecar)
    for _ in range(3):
        assert (await send(port, "reviews", "/a"))[0] == 200
    for host in ("nope-1.example", "nope-2.example"):  # arbitrary Hosts must not become label values
        assert (await send(port, host))[0] == 404

    totals = samples(sidecar, "istio_requests_total")
    ok = [(labels, value) for labels, value in totals if labels["response_code"] == "200"]
    assert ok == [
        (
            {
                "reporter": "source",
                "source_workload": "productpage",
                "source_canonical_service": "productpage",
                "destination_service": "reviews.default.svc.cluster.local",
                "destination_workload": "reviews",
                "destination_canonical_service": "reviews",
                "destination_version": "v1",
                "request_protocol": "http",
                "connection_security_policy": "none",
                "response_code": "200",
                "response_flags": "-",
            },
            3.0,
        )
    ]
    no_route = [(labels, value) for labels, value in totals if labels["response_code"] == "404"]
    assert len(no_route) == 1
    assert no_route[0][0]["destination_service"] == "unknown"
    assert no_route[0][0]["response_flags"] == "NR"
    assert no_route[0][1] == 2.0
    text = generate_latest(sidecar.registry).decode()
    assert "nope-1" not in text
    assert "nope-2" not in text

    counts = samples(sidecar, "istio_request_duration_milliseconds_count")
    reviews = [value for labels, value in counts if labels["destination_service"].startswith("reviews")]
    assert reviews == [3.0]
    buckets = {
        labels["le"]: value
        for labels, value in samples(sidecar, "istio_request_duration_milliseconds_bucket")
        if labels["destination_service"].startswith("reviews")
    }
    assert buckets["+Inf"] == 3.0
    assert "0.5" in buckets  # milliseconds, as Istio's buckets are
    assert "30000.0" in buckets


async def test_inbound_listener_reports_as_destination(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    app = await backend_factory("app")
    config = {
        "version": "v1",
        "listeners": [
            {
                "name": "inbound",
                "protocol": "http",
                "host": "127.0.0.1",
                "port": 0,
                "route_table": "in",
                "direction": "inbound",
            }
        ],
        "route_tables": [
            {
                "name": "in",
                "virtual_hosts": [
                    {"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "cluster": "inbound|1"}]}
                ],
            }
        ],
        "clusters": [cluster("inbound|1", [app])],
    }
    sidecar = await sidecar_factory(config, metrics=SidecarMetrics("ratings"))
    status, body = await send(outbound_port(sidecar), "ratings:9080")
    assert status == 200
    assert "traceparent" not in body["headers"]  # only outbound sidecars start traces
    [(labels, value)] = samples(sidecar, "istio_requests_total")
    assert value == 1.0
    assert labels["reporter"] == "destination"
    assert labels["destination_workload"] == "ratings"
    assert labels["destination_service"] == "ratings"
    assert labels["source_workload"] == "unknown"


async def test_traceparent_is_started_when_absent_and_kept_when_present(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    backend = await backend_factory("web")
    sidecar = await sidecar_factory(simple_config([backend]))
    port = outbound_port(sidecar)

    started = set()
    for _ in range(3):
        status, body = await send(port, "web")
        assert status == 200
        value = body["headers"]["traceparent"]
        assert TRACEPARENT.match(value), value
        started.add(value.split("-")[1])
    assert len(started) == 3  # a new trace id each time

    given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    status, body = await send(port, "web", headers={"traceparent": given, "tracestate": "k=v"})
    assert body["headers"]["traceparent"] == given
    assert body["headers"]["tracestate"] == "k=v"
    assert [name for name, _ in body["header_list"]].count("traceparent") == 1

    status, body = await send(
        port, "web", headers={"X-B3-TraceId": "80f198ee56343ba864fe8b2a57d3eff7", "X-B3-SpanId": "e457b5a2e4d86bd1"}
    )
    assert "traceparent" not in body["headers"]  # a B3 trace is passed through as it is
    assert body["headers"]["x-b3-traceid"] == "80f198ee56343ba864fe8b2a57d3eff7"
    status, body = await send(port, "web", headers={"b3": "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"})
    assert "traceparent" not in body["headers"]


def test_generated_traceparents_are_valid_and_distinct() -> None:
    traces = TraceParents()
    values = [traces.next().decode() for _ in range(600)]  # more than one batch
    assert all(TRACEPARENT.match(value) for value in values)
    assert len({value.split("-")[1] for value in values}) == 600
    assert len({value.split("-")[2] for value in values}) == 600


def test_request_head_notes_a_trace_context() -> None:
    def traced(*fields: tuple[bytes, bytes]) -> bool:
        return request_head(b"GET", b"/", b"1.1", [(b"Host", b"web"), *fields]).traced

    assert traced() is False
    assert traced((b"TraceParent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")) is True
    assert traced((b"X-B3-TraceId", b"80f198ee56343ba864fe8b2a57d3eff7")) is True
    assert traced((b"b3", b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")) is True
    assert traced((b"x-b3-spanid", b"e457b5a2e4d86bd1")) is False  # a span id alone is no trace
    head = request_head(b"GET", b"/", b"1.1", [(b"Host", b"web"), (b"traceparent", b"00-ab-cd-01")])
    assert (b"traceparent", b"00-ab-cd-01") in head.headers  # kept for the upstream
