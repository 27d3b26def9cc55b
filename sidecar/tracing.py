"""OpenTelemetry spans for proxied requests: sampling, trace context, batching off the event loop.

Optional: on only with ``--otlp-endpoint`` (``MESH_OTLP_ENDPOINT``) and only if the OpenTelemetry
packages are installed (``opentelemetry-sdk``, ``opentelemetry-exporter-otlp-proto-http``); a
sidecar without them runs as before, and one asked to export without them refuses to start with
an error naming the packages. This module never imports them: ``sidecar.tracing_export`` (the
exporter thread's side) does, when a recorder is built.

One span per request per hop, as Envoy does: a CLIENT span on an outbound listener, a SERVER span
on an inbound one. The span joins the request's trace context and becomes the parent of what the
next hop does:
- ``begin`` (the request's start, ``Exchange.begin``): a request is sampled when its W3C
  ``traceparent`` (or B3 context) says sampled, or else with probability ``ratio``. A sampled
  request gets a fresh span id, written into the forwarded ``traceparent`` (B3: ``x-b3-spanid``,
  ``b3``) in place of the caller's, so the upstream's spans are children of the sidecar's. A
  request without a valid context starts a trace here, its ``traceparent`` flag saying whether
  it was sampled (``-01``/``-00``) so later hops follow the decision. Unsampled requests with a
  context are forwarded untouched.
- ``record`` (the request's end, next to its access log line): a sampled request's span data is
  a small object appended to a list in the loop; no OpenTelemetry object is made on the loop.
- Batches of ``batch_spans`` (or what is buffered every ``flush_interval_s``) go to one exporter
  thread through a bounded queue of ``max_queue_spans // batch_spans`` batches, as the SDK's
  BatchSpanProcessor bounds its queue. When the thread is behind (a slow or unreachable
  collector) a batch is dropped and counted in ``mesh_sidecar_trace_spans_dropped_total``;
  requests never wait for export.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import queue
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from prometheus_client.core import CounterMetricFamily, Metric

from sidecar.http1.framing import Body
from sidecar.http1.wire import TraceParents

if TYPE_CHECKING:
    from sidecar.http1.exchange import Exchange
    from sidecar.workers import SidecarPlan

DEFAULT_RATIO = 0.01  # Istio's default: 1 % of the traces a sidecar starts
BATCH_SPANS = 512  # the SDK BatchSpanProcessor's max_export_batch_size
MAX_QUEUE_SPANS = 2048  # its max_queue_size
FLUSH_INTERVAL_S = 1.0
EXPORT_TIMEOUT_S = 10.0
TRACES_PATH = "/v1/traces"
REQUIRED_MODULES = ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter")
PACKAGES = "opentelemetry-sdk opentelemetry-exporter-otlp-proto-http"


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """Where spans go (the OTLP/HTTP traces URL), which requests make one, and the batching bounds."""

    endpoint: str
    ratio: float = DEFAULT_RATIO
    service: str = ""  # the resource's service.name (the workload's service)
    batch_spans: int = BATCH_SPANS
    max_queue_spans: int = MAX_QUEUE_SPANS
    flush_interval_s: float = FLUSH_INTERVAL_S
    export_timeout_s: float = EXPORT_TIMEOUT_S


# === settings ===


def parse_sampling(value: object) -> float:
    """A ratio in [0, 1] (``0.01``) or a percentage (``1%``); ValueError naming the flag."""
    text = str(value).strip()
    try:
        ratio = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"--trace-sampling: expected a ratio in [0, 1] (0.01) or a percentage (1%), got {value!r}")
    return ratio


def traces_url(endpoint: str) -> str:
    """The collector's OTLP/HTTP traces URL: a base URL gets ``/v1/traces``; a URL with a path is kept."""
    text = endpoint.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--otlp-endpoint: expected an http(s) URL such as http://127.0.0.1:4318, got {endpoint!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"--otlp-endpoint: bad port in {endpoint!r}") from None
    if parts.path in ("", "/"):
        return text.rstrip("/") + TRACES_PATH
    return text


def check_packages() -> None:
    """ValueError naming the missing packages when export is asked for but OpenTelemetry is absent."""
    for module in REQUIRED_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(
                f"--otlp-endpoint: OpenTelemetry export needs the Python packages {PACKAGES} "
                f"(pip install {PACKAGES}); importing {module} failed: {exc}"
            ) from None


def settings_from_options(options: Mapping[str, Any]) -> TracingSettings | None:
    """Tracing settings for `mesh sidecar`'s flags, or None when no ``otlp_endpoint`` is given."""
    ratio = parse_sampling(options.get("trace_sampling", DEFAULT_RATIO))
    endpoint = str(options.get("otlp_endpoint") or "").strip()
    if not endpoint:
        return None
    url = traces_url(endpoint)
    check_packages()
    return TracingSettings(url, ratio, service=str(options.get("service") or ""))


def plan_with_tracing(plan: SidecarPlan, options: Mapping[str, Any]) -> SidecarPlan:
    """``plan`` with its per-request record (the access log's settings) carrying the tracing settings."""
    tracing = settings_from_options(options)
    if tracing is None:
        return plan
    return replace(plan, access_log=replace(plan.access_log, tracing=tracing))


# === trace context (pure functions) ===

_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16
_HEX = frozenset(b"0123456789abcdef")


def parse_traceparent(value: bytes) -> tuple[bytes, bytes, int] | None:
    """(trace id, parent span id, flags) of a valid W3C ``traceparent``, else None (W3C Trace Context §3.2)."""
    found = _TRACEPARENT.fullmatch(value.strip())
    if found is None:
        return None
    version, trace_id, span_id, flags, rest = found.groups()
    if version == b"ff" or (version == b"00" and rest) or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id, int(flags, 16)


def _b3_id(value: bytes, width: int) -> bytes | None:
    text = value.strip().lower()
    if len(text) not in (16, width) or not set(text) <= _HEX or set(text) == {48}:
        return None
    return text.rjust(width, b"0")


def join_context(headers: list[tuple[bytes, bytes]], span_id: bytes, lucky: bool) -> tuple[bytes, bytes] | None:
    """Join the request's trace context as span ``span_id``; (trace id, parent span id) when sampled.

    ``lucky``: the sampling ratio picked this request. A sampled request's context field is
    rewritten in place to name ``span_id`` as the parent of the next hop (flag sampled). Unsampled,
    or without a valid context: None and ``headers`` untouched (the caller starts a trace when
    there is no valid context: ``has_context``).
    """
    b3_single = b3_trace = b3_span = None
    b3_sampled = False
    for index, (name, value) in enumerate(headers):
        lowered = name.lower()
        if lowered == b"traceparent":
            parsed = parse_traceparent(value)
            if parsed is None:
                return None
            trace_id, parent, flags = parsed
            if not (flags & 1 or lucky):
                return None
            headers[index] = (name, b"00-%b-%b-%02x" % (trace_id, span_id, (flags | 1) & 0xFF))
            return trace_id, parent
        if lowered == b"b3":
            b3_single = index
        elif lowered == b"x-b3-traceid":
            b3_trace = _b3_id(value, 32)
        elif lowered == b"x-b3-spanid":
            b3_span = index
        elif lowered == b"x-b3-sampled" or lowered == b"x-b3-flags":
            b3_sampled = b3_sampled or value.strip() in (b"1", b"true", b"d")
    if b3_single is not None:
        return _join_b3_single(headers, b3_single, span_id, lucky)
    if b3_trace is not None and b3_span is not None:
        caller = _b3_id(headers[b3_span][1], 16)
        if caller is None or not (b3_sampled or lucky):
            return None
        headers[b3_span] = (headers[b3_span][0], span_id)
        _set_field(headers, b"x-b3-parentspanid", caller)
        _set_field(headers, b"x-b3-sampled", b"1")
        return b3_trace, caller
    return None


def _join_b3_single(
    headers: list[tuple[bytes, bytes]], index: int, span_id: bytes, lucky: bool
) -> tuple[bytes, bytes] | None:
    """``b3: {trace}-{span}[-{sampled}[-{parent}]]`` (openzipkin/b3-propagation)."""
    name, value = headers[index]
    parts = value.strip().split(b"-")
    if len(parts) < 2:
        return None
    trace_id = _b3_id(parts[0], 32)
    parent = _b3_id(parts[1], 16)
    sampled = len(parts) > 2 and parts[2] in (b"1", b"d")
    if trace_id is None or parent is None or not (sampled or lucky):
        return None
    headers[index] = (name, b"%b-%b-1-%b" % (parts[0].strip().lower(), span_id, parent))
    return trace_id, parent


def _set_field(headers: list[tuple[bytes, bytes]], lowered: bytes, value: bytes) -> None:
    for index, (name, _) in enumerate(headers):
        if name.lower() == lowered:
            headers[index] = (name, value)
            return
    headers.append((lowered, value))


def has_context(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """A valid W3C or B3 context came with the request (an invalid ``traceparent`` is replaced)."""
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"traceparent":
            return parse_traceparent(value) is not None
        if lowered in (b"b3", b"x-b3-traceid"):
            return True
    return False


def _drop_traceparent(headers: list[tuple[bytes, bytes]]) -> None:
    headers[:] = [(name, value) for name, value in headers if name.lower() != b"traceparent"]


# === the span of one request ===


class FinishedSpan:
    """What the exporter thread needs of one finished, sampled request (plain values, no OTel objects)."""

    __slots__ = (
        "client",
        "cluster",
        "end_ns",
        "endpoint",
        "flags",
        "host",
        "istio",
        "listener",
        "method",
        "outbound",
        "parent_id",
        "request_id",
        "request_size",
        "response_size",
        "retries",
        "route",
        "span_id",
        "start_ns",
        "status",
        "target",
        "trace_id",
        "user_agent",
        "version",
    )

    def __init__(self, x: Exchange, status: int, elapsed: float, opened: tuple[bytes, bytes, bytes | None]) -> None:
        self.trace_id, self.span_id, self.parent_id = opened
        self.end_ns = time.time_ns()
        self.start_ns = self.end_ns - int(elapsed * 1e9)
        self.status = status
        self.flags = x.flags
        head = x.head
        self.method = head.method
        self.target = head.target
        self.version = head.version
        self.host = head.host
        self.request_id = head.request_id
        self.user_agent = next((v for n, v in head.headers if n.lower() == b"user-agent"), None)
        self.request_size = 0 if head.body == Body.NONE else (head.content_length if head.body == Body.LENGTH else -1)
        response = x.response
        self.response_size = -1 if response is None else response.content_length
        self.route = None if x.route is None else x.route.name
        self.cluster = None if x.cluster is None else x.cluster.name
        endpoint = x.endpoint
        self.endpoint = None if endpoint is None else (endpoint.host, endpoint.port)
        self.retries = 0 if x.plan is None else x.plan.retries
        self.client = x.conn.client_ip
        context = x.conn.context
        self.listener = context.name
        runtime = None if x.active is None else x.active.listeners.get(context.name)
        self.outbound = runtime is None or runtime.listener.direction == "outbound"
        self.istio = None if x.stats is None else x.stats.istio  # source/destination workload, service


Export = Callable[[Sequence[FinishedSpan]], bool]


def build_export(settings: TracingSettings) -> tuple[Export, Callable[[], None]]:
    """The OTLP exporter's export and shutdown functions (imports the OpenTelemetry SDK)."""
    from sidecar.tracing_export import OtlpExport

    exporter = OtlpExport(settings)
    return exporter.export, exporter.shutdown


class SpanRecorder:
    """Decides and rewrites trace context at a request's start, batches its span at its end (loop side);
    one daemon thread exports the batches."""

    def __init__(
        self,
        settings: TracingSettings,
        export: Export | None = None,
        shutdown: Callable[[], None] | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        if export is None:
            export, shutdown = build_export(settings)
        self.settings = settings
        self.ratio = settings.ratio
        self._export = export
        self._shutdown = shutdown
        self._random = (rng or random.Random()).random
        self._ids = TraceParents()  # fresh random ids; a span id is the parent-id part of one
        self._open: dict[Exchange, tuple[bytes, bytes, bytes | None]] = {}  # sampled, begun, not ended
        self._spans: list[FinishedSpan] = []
        self._batch = max(1, settings.batch_spans)
        self._timer: asyncio.TimerHandle | None = None
        self._queue: queue.Queue[list[FinishedSpan] | None] = queue.Queue(
            maxsize=max(1, settings.max_queue_spans // self._batch)
        )
        self._thread: threading.Thread | None = None
        self.sampled = 0  # spans recorded
        self.exported = 0  # spans the collector accepted
        self.dropped = 0  # spans dropped because the exporter thread was behind
        self.failed = 0  # spans in batches the collector refused or could not be reached for
        self.errors = 0  # spans lost to a fault in this module (never expected)

    # === the loop side ===

    def begin(self, x: Exchange) -> None:
        """At the request's start, before its head is forwarded: sample, join or start the trace."""
        head = x.head
        headers = head.headers
        lucky = self._random() < self.ratio
        value = self._ids.next()
        span_id = value[36:52]
        if head.traced and has_context(headers):
            joined = join_context(headers, span_id, lucky)
            if joined is not None:
                self._open[x] = (joined[0], span_id, joined[1])
            return
        if head.traced:
            _drop_traceparent(headers)  # an invalid one: W3C says start a new trace
        if not lucky:
            value = value[:-2] + b"00"
        headers.append((b"traceparent", value))
        head.traced = True
        if lucky:
            self._open[x] = (value[3:35], span_id, None)

    def record(self, x: Exchange, status: int, elapsed: float) -> None:
        """The request is over: a sampled one's span joins the batch."""
        opened = self._open.pop(x, None)
        if opened is None:
            return
        try:
            span = FinishedSpan(x, status, elapsed, opened)
        except Exception:  # a span must never break the request path
            self.errors += 1
            return
        self.sampled += 1
        spans = self._spans
        spans.append(span)
        if len(spans) >= self._batch:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.settings.flush_interval_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        """Hand the buffered spans to the exporter thread, or drop (and count) them if it is behind."""
        spans = self._spans
        if not spans:
            return
        self._spans = []
        self._start_thread()
        try:
            self._queue.put_nowait(spans)
        except queue.Full:
            self.dropped += len(spans)

    async def close(self, timeout_s: float = 3.0) -> None:
        """Export what is buffered (bounded by about ``timeout_s``), then shut the exporter down."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()
        self._open.clear()
        thread, self._thread = self._thread, None
        await asyncio.get_running_loop().run_in_executor(None, self._stop, thread, timeout_s)

    def _stop(self, thread: threading.Thread | None, timeout_s: float) -> None:
        """The end mark after the queued batches; if the collector is too slow for them within
        ``timeout_s``, the batches still waiting are dropped (counted) and a retry in progress is
        cut short by the exporter's shutdown."""
        deadline = time.monotonic() + timeout_s
        if thread is not None:
            try:
                self._queue.put(None, timeout=timeout_s / 2)
            except queue.Full:
                self._drop_queued()
                with contextlib.suppress(queue.Full):
                    self._queue.put_nowait(None)
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._shutdown is not None:
            with contextlib.suppress(Exception):
                self._shutdown()  # also aborts an export waiting to retry
        if thread is not None and thread.is_alive():
            thread.join(1.0)

    def _drop_queued(self) -> None:
        while True:
            try:
                spans = self._queue.get_nowait()
            except queue.Empty:
                return
            if spans is not None:
                self.dropped += len(spans)

    # === the exporter thread ===

    def _start_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._export_loop, name="otlp-export", daemon=True)
            self._thread.start()

    def _export_loop(self) -> None:
        while True:
            spans = self._queue.get()
            if spans is None:
                return
            try:
                ok = self._export(spans)
            except Exception:  # an exporter fault must not kill the thread
                ok = False
            if ok:
                self.exported += len(spans)
            else:
                self.failed += len(spans)

    # === metrics ===

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "mesh_sidecar_trace_spans", "Spans recorded for sampled requests (OpenTelemetry export)", value=self.sampled
        )
        yield CounterMetricFamily(
            "mesh_sidecar_trace_spans_exported", "Spans the OTLP collector accepted", value=self.exported
        )
        dropped = CounterMetricFamily(
            "mesh_sidecar_trace_spans_dropped", "Spans not exported, by reason", labels=("reason",)
        )
        dropped.add_metric(("queue_full",), self.dropped)
        dropped.add_metric(("export_failed",), self.failed)
        dropped.add_metric(("error",), self.errors)
        yield dropped
