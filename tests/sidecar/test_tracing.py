"""OpenTelemetry span export over the real wire: sidecars → OTLP/HTTP protobuf → a real receiver.

The receiver is an aiohttp server at /v1/traces that decodes each body with opentelemetry-proto's
``ExportTraceServiceRequest``, as a collector does. Requests go through real sidecars to a real
backend, which reports the ``traceparent`` it received.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from prometheus_client import generate_latest
from typer.testing import CliRunner

from mesh.cli import app
from mesh.demo.processes import free_port
from sidecar.access_log import AccessLog, AccessLogSettings
from sidecar.tracing import (
    SpanRecorder,
    TracingSettings,
    check_packages,
    join_context,
    parse_sampling,
    parse_traceparent,
    settings_from_options,
    traces_url,
)
from tests.sidecar.conftest import BackendFactory, SidecarFactory
from tests.sidecar.helpers import Backend, cluster, get, get_ok, http_config, port_of, serve_app, simple_config
from tests.sidecar.test_cli_sidecar import MESH, sidecar_process_env, wait_ready

REPO = Path(__file__).resolve().parents[2]
GIVEN_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
GIVEN_PARENT = "00f067aa0ba902b7"
SPAN_SERVER, SPAN_CLIENT = 2, 3  # opentelemetry.proto.trace.v1.Span.SpanKind
STATUS_ERROR = 2


def _value(value: AnyValue) -> Any:
    field = value.WhichOneof("value")
    return None if field is None else getattr(value, field)


class Collector:
    """A real OTLP/HTTP traces receiver; keeps every span it decoded, flattened to a dict."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.spans: list[dict[str, Any]] = []
        self.posts = 0
        self.runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    async def start(self) -> Collector:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self.runner, self.port = await serve_app(app)
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _traces(self, request: web.Request) -> web.Response:
        self.posts += 1
        assert request.content_type == "application/x-protobuf"
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        if self.delay:
            await asyncio.sleep(self.delay)
        for resource_spans in message.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        {
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_id": span.parent_span_id.hex(),
                            "name": span.name,
                            "kind": span.kind,
                            "start": span.start_time_unix_nano,
                            "end": span.end_time_unix_nano,
                            "status": span.status.code,
                            "attributes": {a.key: _value(a.value) for a in span.attributes},
                            "service": resource.get("service.name"),
                            "scope": scope_spans.scope.name,
                        }
                    )
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(), content_type="application/x-protobuf"
        )

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.spans) < count and time.monotonic() < deadline:  # noqa: ASYNC110 - spans come from another thread's posts
            await asyncio.sleep(0.02)
        return self.spans


@pytest.fixture
async def collector() -> Any:
    started = await Collector().start()
    yield started
    await started.stop()


def traced_log(collector: Collector, ratio: float, service: str = "", **extra: Any) -> AccessLog:
    """An access log that writes no lines (ratio 0) and exports spans to ``collector``."""
    settings = TracingSettings(collector.url, ratio, service=service, flush_interval_s=0.05, **extra)
    return AccessLog(AccessLogSettings(0.0, tracing=settings), lambda data: None)


def forwarded(backend: Backend, index: int = -1) -> list[str]:
    """The traceparent the backend received, split: [version, trace id, parent id, flags]."""
    parts: list[str] = backend.seen[index]["headers"]["traceparent"].split("-")
    return parts


# === pure parts ===


def test_traceparent_parsing_follows_w3c() -> None:
    assert parse_traceparent(f"00-{GIVEN_TRACE}-{GIVEN_PARENT}-01".encode()) == (
        GIVEN_TRACE.encode(),
        GIVEN_PARENT.encode(),
        1,
    )
    assert parse_traceparent(f"01-{GIVEN_TRACE}-{GIVEN_PARENT}-09-future".encode()) is not None  # a later version
    for bad in (
        f"00-{GIVEN_TRACE}-{GIVEN_PARENT}-01-extra",  # version 00 has exactly four fields
        f"ff-{GIVEN_TRACE}-{GIVEN_PARENT}-01",
        f"00-{'0' * 32}-{GIVEN_PARENT}-01",
        f"00-{GIVEN_TRACE}-{'0' * 16}-01",
        f"00-{GIVEN_TRACE.upper()}-{GIVEN_PARENT}-01",
        "00-abc-def-01",
        "",
    ):
        assert parse_traceparent(bad.encode()) is None, bad


def test_join_context_rewrites_the_parent_only_when_sampled() -> None:
    span = b"1111222233334444"
    headers = [(b"Traceparent", f"00-{GIVEN_TRACE}-{GIVEN_PARENT}-01".encode())]
    assert join_context(headers, span, lucky=False) == (GIVEN_TRACE.encode(), GIVEN_PARENT.encode())
    assert headers == [(b"Traceparent", f"00-{GIVEN_TRACE}-{span.decode()}-01".encode())]

    unsampled = [(b"traceparent", f"00-{GIVEN_TRACE}-{GIVEN_PARENT}-00".encode())]
    assert join_context(unsampled, span, lucky=False) is None
    assert unsampled == [(b"traceparent", f"00-{GIVEN_TRACE}-{GIVEN_PARENT}-00".encode())]
    assert join_context(unsampled, span, lucky=True) == (GIVEN_TRACE.encode(), GIVEN_PARENT.encode())
    assert unsampled == [(b"traceparent", f"00-{GIVEN_TRACE}-{span.decode()}-01".encode())]


def test_join_context_b3() -> None:
    span = b"1111222233334444"
    multi = [
        (b"X-B3-TraceId", GIVEN_TRACE[16:].encode()),
        (b"X-B3-SpanId", GIVEN_PARENT.encode()),
        (b"X-B3-Sampled", b"1"),
    ]
    assert join_context(multi, span, lucky=False) == (b"0" * 16 + GIVEN_TRACE[16:].encode(), GIVEN_PARENT.encode())
    assert dict(multi) == {
        b"X-B3-TraceId": GIVEN_TRACE[16:].encode(),
        b"X-B3-SpanId": span,
        b"X-B3-Sampled": b"1",
        b"x-b3-parentspanid": GIVEN_PARENT.encode(),
    }
    single = [(b"b3", f"{GIVEN_TRACE}-{GIVEN_PARENT}-0".encode())]
    assert join_context(single, span, lucky=False) is None
    assert join_context(single, span, lucky=True) == (GIVEN_TRACE.encode(), GIVEN_PARENT.encode())
    assert single == [(b"b3", f"{GIVEN_TRACE}-{span.decode()}-1-{GIVEN_PARENT}".encode())]


def test_flags_are_validated_with_their_names(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_sampling("0.25") == 0.25
    assert parse_sampling("1%") == 0.01
    for bad in ("2", "-0.1", "often", "150%"):
        with pytest.raises(ValueError, match="--trace-sampling"):
            parse_sampling(bad)
    assert traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert traces_url("https://collector:4318/") == "https://collector:4318/v1/traces"
    assert traces_url("http://collector/otlp/v1/traces") == "http://collector/otlp/v1/traces"
    for bad in ("collector:4318", "ftp://collector", "http://:4318", "http://collector:99999"):
        with pytest.raises(ValueError, match="--otlp-endpoint"):
            traces_url(bad)
    assert settings_from_options({"trace_sampling": "0.5"}) is None  # no endpoint: off
    settings = settings_from_options({"otlp_endpoint": "http://127.0.0.1:4318", "trace_sampling": "5%", "service": "a"})
    assert settings == TracingSettings("http://127.0.0.1:4318/v1/traces", 0.05, service="a")
    # Export asked for without the packages: a clear error naming them.
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ValueError, match="opentelemetry-exporter-otlp-proto-http"):
        check_packages()


# === over real sockets ===


async def test_a_sampled_request_becomes_one_span_that_the_upstream_links_to(
    collector: Collector, backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    backend = await backend_factory("web")
    log = traced_log(collector, 0.0, service="frontend")
    sidecar = await sidecar_factory(simple_config([backend]), access_log=log)
    given = f"00-{GIVEN_TRACE}-{GIVEN_PARENT}-01"
    headers = {"traceparent": given, "User-Agent": "probe/1", "x-request-id": "rid-1"}
    assert await get(port_of(sidecar), "web:8080", "/a/b?c=1", headers) == 200

    [span] = await collector.wait_for(1)
    version, trace, parent, flags = forwarded(backend)
    assert (version, trace, flags) == ("00", GIVEN_TRACE, "01")
    assert parent != GIVEN_PARENT  # the sidecar's own span is the upstream's parent
    assert (span["trace_id"], span["parent_id"], span["span_id"]) == (GIVEN_TRACE, GIVEN_PARENT, parent)
    assert span["kind"] == SPAN_CLIENT  # an outbound listener's hop
    assert span["name"] == "GET"
    assert span["service"] == "frontend"
    assert span["scope"] == "pymesh.sidecar"
    assert 0 < span["start"] <= span["end"] <= time.time_ns()
    assert span["status"] != STATUS_ERROR
    attributes = span["attributes"]
    assert attributes["http.request.method"] == "GET"
    assert attributes["url.path"] == "/a/b"
    assert attributes["url.query"] == "c=1"
    assert attributes["http.response.status_code"] == 200
    assert (attributes["server.address"], attributes["server.port"]) == ("web", 8080)
    assert attributes["upstream_cluster"] == "web"
    assert attributes["upstream_address"] == f"127.0.0.1:{backend.port}"
    assert attributes["response_flags"] == "-"
    assert attributes["mesh.route"] == "all"
    assert attributes["mesh.listener"] == "outbound"
    assert attributes["mesh.destination.workload"] == "web"
    assert attributes["guid:x-request-id"] == "rid-1"
    assert attributes["user_agent.original"] == "probe/1"
    assert attributes["http.response.body.size"] > 0
    assert "http.request.resend_count" not in attributes  # no retries

    # An unsampled context is forwarded untouched and makes no span.
    unsampled = f"00-{GIVEN_TRACE}-{GIVEN_PARENT}-00"
    assert await get(port_of(sidecar), "web", headers={"traceparent": unsampled}) == 200
    assert backend.seen[-1]["headers"]["traceparent"] == unsampled
    # No context and a ratio of 0: the sidecar starts the trace, marked unsampled for later hops.
    assert await get(port_of(sidecar), "web") == 200
    assert forwarded(backend)[3] == "00"
    # An invalid traceparent is replaced by a new trace (W3C), here unsampled.
    assert await get(port_of(sidecar), "web", headers={"traceparent": "00-not-a-trace-01"}) == 200
    assert [v for k, v in backend.seen[-1]["header_list"] if k.lower() == "traceparent"] == [
        "-".join(forwarded(backend))
    ]
    assert forwarded(backend)[3] == "00"
    # A sampled B3 context: the span joins it and the next hop's B3 span id is the sidecar's.
    b3 = {"X-B3-TraceId": GIVEN_TRACE, "X-B3-SpanId": GIVEN_PARENT, "X-B3-Sampled": "1"}
    assert await get(port_of(sidecar), "web", headers=b3) == 200
    [_, b3_span] = await collector.wait_for(2)
    seen = backend.seen[-1]["headers"]
    assert (b3_span["trace_id"], b3_span["parent_id"]) == (GIVEN_TRACE, GIVEN_PARENT)
    assert (seen["x-b3-spanid"], seen["x-b3-parentspanid"]) == (b3_span["span_id"], GIVEN_PARENT)
    assert "traceparent" not in seen  # B3 callers keep B3
    await asyncio.sleep(0.3)  # several flush intervals
    assert len(collector.spans) == 2
    text = generate_latest(sidecar.registry).decode()
    assert "mesh_sidecar_trace_spans_total 2.0" in text
    assert "mesh_sidecar_trace_spans_exported_total 2.0" in text
    assert 'mesh_sidecar_trace_spans_dropped_total{reason="queue_full"} 0.0' in text
    assert "mesh_sidecar_access_log_entries_total" not in text  # log lines are off


async def test_two_hops_chain_client_and_server_spans(
    collector: Collector, backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    """app → outbound sidecar (CLIENT span) → inbound sidecar (SERVER span) → backend; each a child of the last."""
    backend = await backend_factory("reviews")
    inbound_config = simple_config([backend], host="*")
    inbound_config["listeners"][0].update(name="inbound", direction="inbound")
    inbound = await sidecar_factory(inbound_config, access_log=traced_log(collector, 1.0, service="reviews"))
    hop = Backend("inbound-sidecar", port=port_of(inbound))
    outbound_config = http_config(
        [cluster("reviews", [hop], service="reviews")],
        [
            {
                "name": "r",
                "domains": ["reviews"],
                "routes": [{"name": "r", "match": {"prefix": "/"}, "cluster": "reviews"}],
            }
        ],
    )
    outbound = await sidecar_factory(outbound_config, access_log=traced_log(collector, 1.0, service="productpage"))

    assert await get(port_of(outbound), "reviews", "/x") == 200  # no trace context: the outbound sidecar starts one
    spans = await collector.wait_for(2)
    by_kind = {span["kind"]: span for span in spans}
    client, server = by_kind[SPAN_CLIENT], by_kind[SPAN_SERVER]
    _, trace, parent, flags = forwarded(backend)
    assert flags == "01"
    assert client["trace_id"] == server["trace_id"] == trace
    assert client["parent_id"] == ""  # the root: the trace started here
    assert server["parent_id"] == client["span_id"]
    assert parent == server["span_id"]
    assert (client["service"], server["service"]) == ("productpage", "reviews")
    assert client["attributes"]["mesh.source.workload"] == "productpage"
    assert client["attributes"]["mesh.destination.workload"] == "reviews"
    assert server["attributes"]["mesh.destination.workload"] == "reviews"
    assert server["attributes"]["mesh.listener"] == "inbound"
    assert server["attributes"]["client.address"] == "127.0.0.1"


async def test_failures_carry_status_flags_and_retries(
    collector: Collector, backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    backend = await backend_factory("web")
    config = http_config(
        [cluster("web", [backend]), cluster("empty", [])],
        [
            {
                "name": "empty",
                "domains": ["empty"],
                "routes": [{"name": "uh", "match": {"prefix": "/"}, "cluster": "empty"}],
            },
            {"name": "web", "domains": ["web"], "routes": [{"name": "ok", "match": {"prefix": "/"}, "cluster": "web"}]},
        ],
    )
    sidecar = await sidecar_factory(config, access_log=traced_log(collector, 1.0))
    port = port_of(sidecar)
    assert await get(port, "empty") == 503
    assert await get(port, "nowhere.example") == 404
    spans = await collector.wait_for(2)
    by_code = {span["attributes"]["http.response.status_code"]: span for span in spans}
    assert by_code[503]["attributes"]["response_flags"] == "UH"
    assert by_code[503]["attributes"]["upstream_cluster"] == "empty"
    assert by_code[503]["attributes"]["error.type"] == "503"
    assert by_code[503]["status"] == STATUS_ERROR
    assert by_code[404]["attributes"]["response_flags"] == "NR"
    assert by_code[404]["status"] == STATUS_ERROR  # a CLIENT span: 4xx is an error (semantic conventions)
    assert "upstream_cluster" not in by_code[404]["attributes"]


async def test_sampling_ratio_is_respected(
    collector: Collector, backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    backend = await backend_factory("web")
    log = traced_log(collector, 0.0)
    assert log.tracer is not None
    log.tracer = SpanRecorder(
        TracingSettings(collector.url, 0.25, flush_interval_s=0.05), rng=random.Random(11)
    )  # the same exporter path, a seeded draw
    sidecar = await sidecar_factory(simple_config([backend]), access_log=log)
    n = 400
    await get_ok(port_of(sidecar), "web", n)
    sampled_flags = sum(forwarded(backend, i)[3] == "01" for i in range(n))
    spans = await collector.wait_for(sampled_flags)
    await asyncio.sleep(0.1)
    assert abs(len(collector.spans) - 0.25 * n) <= 4 * (n * 0.25 * 0.75) ** 0.5  # within 4 standard deviations
    assert len(spans) == sampled_flags  # a span exactly for the requests forwarded as sampled
    assert {span["span_id"] for span in spans} == {
        forwarded(backend, i)[2] for i in range(n) if forwarded(backend, i)[3] == "01"
    }
    await sidecar.stop()


async def test_access_log_lines_and_spans_together(
    collector: Collector, backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    backend = await backend_factory("web")
    lines: list[bytes] = []
    settings = AccessLogSettings(1.0, tracing=TracingSettings(collector.url, 1.0, flush_interval_s=0.05))
    log = AccessLog(settings, lines.append, flush_interval_s=0.05)
    sidecar = await sidecar_factory(simple_config([backend]), access_log=log)
    assert await get(port_of(sidecar), "web") == 200
    [span] = await collector.wait_for(1)
    deadline = time.monotonic() + 5.0
    while not lines and time.monotonic() < deadline:  # noqa: ASYNC110 - the writer is a thread
        await asyncio.sleep(0.02)
    [line] = [json.loads(text) for text in b"".join(lines).decode().splitlines()]
    assert line["trace_id"] == span["trace_id"] == forwarded(backend)[1]
    assert line["x_request_id"] == span["attributes"]["guid:x-request-id"]
    text = generate_latest(sidecar.registry).decode()
    assert "mesh_sidecar_access_log_entries_total 1.0" in text
    assert "mesh_sidecar_trace_spans_total 1.0" in text


async def test_tracing_off_exports_nothing_and_forwards_context_untouched(
    collector: Collector, backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    backend = await backend_factory("web")
    lines: list[bytes] = []
    sidecar = await sidecar_factory(
        simple_config([backend]), access_log=AccessLog(AccessLogSettings(1.0), lines.append)
    )
    given = f"00-{GIVEN_TRACE}-{GIVEN_PARENT}-01"
    for _ in range(5):
        assert await get(port_of(sidecar), "web", headers={"traceparent": given}) == 200
    assert await get(port_of(sidecar), "web") == 200
    await asyncio.sleep(0.3)
    assert collector.posts == 0
    assert [record["headers"]["traceparent"] for record in backend.seen[:5]] == [given] * 5
    assert forwarded(backend)[3] == "01"  # a started trace is still marked sampled, as before
    assert "mesh_sidecar_trace" not in generate_latest(sidecar.registry).decode()


@pytest.mark.slow
async def test_a_slow_collector_never_slows_requests_and_drops_are_counted(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    slow = await Collector(delay=0.5).start()
    try:
        backend = await backend_factory("web")
        log = traced_log(slow, 1.0, batch_spans=1, max_queue_spans=2, export_timeout_s=2.0)
        sidecar = await sidecar_factory(simple_config([backend]), access_log=log)
        for _ in range(20):
            assert await get(port_of(sidecar), "web") == 200
        assert slow.posts < 10  # the 20 requests were answered while the collector had taken few batches
        text = generate_latest(sidecar.registry).decode()
        dropped = next(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith('mesh_sidecar_trace_spans_dropped_total{reason="queue_full"}')
        )
        assert dropped >= 10
    finally:
        await slow.stop()


async def test_an_unreachable_collector_counts_failures_and_shutdown_stays_bounded(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    backend = await backend_factory("web")
    dead = f"http://127.0.0.1:{free_port()}/v1/traces"  # nothing listens there
    settings = TracingSettings(dead, 1.0, flush_interval_s=0.05, export_timeout_s=0.5)
    log = AccessLog(AccessLogSettings(0.0, tracing=settings), lambda data: None)
    sidecar = await sidecar_factory(simple_config([backend]), access_log=log)
    for _ in range(5):
        assert await get(port_of(sidecar), "web") == 200
    tracer = log.tracer
    assert tracer is not None
    deadline = time.monotonic() + 10.0
    while tracer.failed + tracer.dropped < 5 and time.monotonic() < deadline:  # noqa: ASYNC110 - a thread's counters
        await asyncio.sleep(0.05)
    assert (tracer.sampled, tracer.exported, tracer.failed + tracer.dropped) == (5, 0, 5)
    text = generate_latest(sidecar.registry).decode()
    assert f'mesh_sidecar_trace_spans_dropped_total{{reason="export_failed"}} {float(tracer.failed)}' in text
    async with asyncio.timeout(30):  # bounded even if the exporter were stuck retrying
        await sidecar.stop()


# === the command line ===


def test_bad_tracing_flags_are_named(tmp_path: Path) -> None:
    config = tmp_path / "sidecar.json"
    config.write_text(json.dumps(simple_config([])))
    for flags, named in (
        (["--otlp-endpoint", "http://127.0.0.1:4318", "--trace-sampling", "3"], "--trace-sampling"),
        (["--otlp-endpoint", "collector:4318"], "--otlp-endpoint"),
    ):
        result = CliRunner().invoke(app, ["sidecar", "--config", str(config), *flags])
        assert result.exit_code == 2
        assert named in result.output


def test_missing_packages_fail_at_start_with_their_names(tmp_path: Path) -> None:
    """A shadowing ``opentelemetry`` package hides the real one, as an environment without it would."""

    shadow = tmp_path / "shadow" / "opentelemetry"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    config = tmp_path / "sidecar.json"
    config.write_text(json.dumps(simple_config([])))
    env = {"PYTHONPATH": f"{shadow.parent}:{REPO}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [*MESH, "sidecar", "--config", str(config), "--otlp-endpoint", "http://127.0.0.1:4318"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "opentelemetry-sdk" in result.stderr
    assert "--otlp-endpoint" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
async def test_sidecar_process_exports_spans(
    workers: int, tmp_path: Path, backend_factory: BackendFactory, collector: Collector
) -> None:
    backend = await backend_factory("web")
    env, listen, admin = sidecar_process_env(
        simple_config([backend], version="otel"),
        tmp_path,
        workers,
        MESH_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.port}",
        MESH_TRACE_SAMPLING="100%",
        MESH_SERVICE="frontend",
    )
    proc = await asyncio.create_subprocess_exec(*MESH, "sidecar", env=env)
    try:
        await wait_ready(admin, proc)
        for _ in range(4):
            assert await get(listen, "web") == 200  # a new connection each: with 2 workers, both may serve
        spans = await collector.wait_for(4, timeout=10.0)
        assert sorted(span["span_id"] for span in spans) == sorted(forwarded(backend, i)[2] for i in range(4))
        assert {span["service"] for span in spans} == {"frontend"}
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{admin}/metrics") as response:
            text = await response.text()
        exported = [
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("mesh_sidecar_trace_spans_exported_total")
        ]
        assert sum(exported) == 4.0  # summed over the workers' series
    finally:
        proc.terminate()
        await proc.wait()
