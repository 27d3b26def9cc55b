"""Structured access logs: one JSON line per request, never blocking the event loop.

``--access-log off|on|sampled:<ratio>`` (``MESH_ACCESS_LOG``) says which requests are logged;
``--access-log-path`` where (``-``: stdout, else a file opened for append); ``--access-log-fields``
which fields (``DEFAULT_FIELDS``, documented in docs/observability.md).

Writing: the request's end (``Exchange._record``) formats its line and appends it to a buffer in
the loop. The buffer is handed to a writer thread when it passes ``FLUSH_BYTES`` or on a short
timer (``FLUSH_INTERVAL_S``). The hand-off is a bounded queue: if the sink is slow (a full pipe,
a stuck disk) and ``MAX_QUEUED`` chunks are already waiting, the chunk is dropped and its lines
are counted in ``mesh_sidecar_access_log_dropped_total``. The loop never waits on the sink.

Response flags are Envoy's (``%RESPONSE_FLAGS%``), set by the exchange where it knows them: UH no
healthy upstream, NC cluster not found, NR no route, UF upstream connect failure, UO overflow
(circuit breaker), UT upstream timeout, URX retry limit reached, UC upstream connection
termination, UPE upstream protocol error, DC downstream connection termination, DPE downstream
protocol error, DI delay injected, FI fault abort; ``-`` when none.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import random
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring  # the C encoder: a quoted JSON string
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, Metric

from sidecar.http1.framing import Body

if TYPE_CHECKING:
    from sidecar.http1.exchange import Exchange
    from sidecar.tracing import SpanRecorder, TracingSettings

FIELDS: tuple[str, ...] = (
    "start_time",
    "method",
    "path",
    "protocol",
    "response_code",
    "response_flags",
    "bytes_received",
    "bytes_sent",
    "duration_ms",
    "upstream_host",
    "upstream_cluster",
    "route_name",
    "x_request_id",
    "trace_id",
    "retries",
    "downstream_remote_address",
    "user_agent",
    "authority",
    "listener",
)
DEFAULT_FIELDS: tuple[str, ...] = FIELDS[:-1]

FLUSH_INTERVAL_S = 0.2
FLUSH_BYTES = 64 * 1024
MAX_QUEUED = 16  # chunks waiting for the writer thread (about 1 MB at FLUSH_BYTES each)
PIPE_ATOMIC = 4096  # writes up to PIPE_BUF are never interleaved with another worker's on a pipe


@dataclass(frozen=True, slots=True)
class AccessLogSettings:
    """Which requests are logged (``ratio``: 0 off, 1 all), where, and with which fields; ``tracing``:
    the OpenTelemetry span export that rides on the same per-request record (``sidecar.tracing``)."""

    ratio: float = 0.0
    path: str = "-"
    fields: tuple[str, ...] = DEFAULT_FIELDS
    tracing: TracingSettings | None = None

    @property
    def enabled(self) -> bool:
        """A per-request record is wanted: log lines, spans, or both."""
        return self.ratio > 0.0 or self.tracing is not None


def parse_mode(value: str) -> float:
    """``off`` → 0, ``on`` → 1, ``sampled:<ratio>`` → ratio in (0, 1]; ValueError naming the flag."""
    text = value.strip().lower()
    if text in ("off", ""):
        return 0.0
    if text == "on":
        return 1.0
    if text.startswith("sampled:"):
        try:
            ratio = float(text[len("sampled:") :])
        except ValueError:
            ratio = -1.0
        if 0.0 < ratio <= 1.0:
            return ratio
        raise ValueError(f"--access-log: the sampled ratio must be a number in (0, 1], got {value!r}")
    raise ValueError(f"--access-log: expected off, on or sampled:<ratio>, got {value!r}")


def parse_fields(value: str) -> tuple[str, ...]:
    """A comma-separated field list (empty: the default set); ValueError naming unknown fields."""
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    if not names:
        return DEFAULT_FIELDS
    unknown = [name for name in names if name not in FIELDS]
    if unknown:
        raise ValueError(f"--access-log-fields: unknown field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}")
    return names


def settings_from_options(mode: str, path: str, fields: str) -> AccessLogSettings:
    ratio = parse_mode(mode)
    if not path.strip():
        raise ValueError("--access-log-path: must be '-' (stdout) or a file path")
    return AccessLogSettings(ratio, path.strip(), parse_fields(fields))


def open_sink(path: str) -> Callable[[bytes], None]:
    """A blocking writer for ``path`` (``-``: stdout), called only from the writer thread."""
    if path == "-":
        fd = sys.stdout.fileno()
    else:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    # A pipe (stdout under --workers is one pipe for all workers) gets line-aligned writes of at
    # most PIPE_BUF bytes, which the kernel never interleaves; a file opened for append gets one
    # write per chunk (fewer system calls, fewer hand-offs of the GIL between the two threads).
    split = stat.S_ISFIFO(os.fstat(fd).st_mode) or stat.S_ISSOCK(os.fstat(fd).st_mode)

    def write(data: bytes) -> None:
        for piece in _pieces(data) if split else (data,):
            view = memoryview(piece)
            while view:
                written = os.write(fd, view)
                view = view[written:]

    return write


class AccessLog:
    """Formats entries in the loop, writes them in a thread; drops (and counts) when the sink lags."""

    def __init__(
        self,
        settings: AccessLogSettings,
        sink: Callable[[bytes], None] | None = None,
        *,
        rng: random.Random | None = None,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        flush_bytes: int = FLUSH_BYTES,
        max_queued: int = MAX_QUEUED,
        tracer: SpanRecorder | None = None,
    ) -> None:
        self.settings = settings
        if tracer is None and settings.tracing is not None:
            from sidecar.tracing import SpanRecorder  # imported only when tracing is configured

            tracer = SpanRecorder(settings.tracing)
        self.tracer = tracer  # spans: ``begin`` at the request's start (``Exchange.begin``), ``record`` here
        self.ratio = settings.ratio
        self.fields = settings.fields
        self._template = line_template(settings.fields)
        if sink is None:  # no file is opened when only spans are wanted (ratio 0)
            sink = open_sink(settings.path) if settings.ratio > 0.0 else _discard
        self._sink = sink
        self._random = (rng or random.Random()).random
        self._flush_interval_s = flush_interval_s
        self._flush_bytes = flush_bytes
        self._lines: list[str] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None  # while a flush is scheduled
        self._queue: queue.Queue[tuple[bytes, int] | None] = queue.Queue(maxsize=max_queued)
        self._thread: threading.Thread | None = None
        self.entries = 0  # lines formatted
        self.written = 0  # lines the sink accepted
        self.dropped = 0  # lines dropped because the sink lagged
        self.errors = 0  # sink write failures (lines lost)

    # === the loop side ===

    def record(self, exchange: Exchange, status: int, elapsed: float) -> None:
        """The exchange is over: log it if sampled (and end its span if traced)."""
        if self.tracer is not None:
            self.tracer.record(exchange, status, elapsed)
        if self.ratio < 1.0 and self._random() >= self.ratio:
            return
        try:
            line = self._template.format(*values(exchange, status, elapsed))
        except Exception:  # a log line must never break the request path
            self.errors += 1
            return
        self.entries += 1
        self._lines.append(line)
        self._size += len(line)
        if self._size >= self._flush_bytes:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._flush_interval_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        """Hand the buffered lines to the writer thread, or drop them if it is behind."""
        lines = self._lines
        if not lines:
            return
        self._lines = []
        self._size = 0
        self._start_thread()
        try:
            self._queue.put_nowait(("".join(lines).encode("utf-8", "replace"), len(lines)))
        except queue.Full:
            self.dropped += len(lines)

    async def close(self, timeout_s: float = 2.0) -> None:
        """Flush what is buffered and let the thread write it (bounded by ``timeout_s``)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()
        if self.tracer is not None:
            await self.tracer.close()
        thread = self._thread
        if thread is None:
            return
        self._thread = None
        await asyncio.get_running_loop().run_in_executor(None, _stop_writer, self._queue, thread, timeout_s)

    # === the writer thread ===

    def _start_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._write_loop, name="access-log", daemon=True)
            self._thread.start()

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            data, count = item
            try:
                self._sink(data)
                self.written += count
            except Exception:  # a full disk or a closed pipe must not kill the thread
                self.errors += count

    # === metrics ===

    def collect(self) -> Iterator[Metric]:
        if self.tracer is not None:
            yield from self.tracer.collect()
            if self.ratio == 0.0:
                return
        yield CounterMetricFamily(
            "mesh_sidecar_access_log_entries", "Access log lines formatted (sampled requests)", value=self.entries
        )
        yield CounterMetricFamily(
            "mesh_sidecar_access_log_dropped",
            "Access log lines dropped because the sink was too slow (or failed)",
            value=self.dropped + self.errors,
        )


def _discard(data: bytes) -> None:
    """The sink of an access log that writes no lines (only its tracer records)."""


def _stop_writer(chunks: queue.Queue[tuple[bytes, int] | None], thread: threading.Thread, timeout_s: float) -> None:
    """After the queued chunks, the end mark; wait for the thread (each step bounded by ``timeout_s``)."""
    with contextlib.suppress(queue.Full):
        chunks.put(None, timeout=timeout_s)
    thread.join(timeout_s)


def _pieces(data: bytes) -> Iterator[bytes]:
    """``data`` in line-aligned pieces of at most ``PIPE_ATOMIC`` bytes (longer lines alone)."""
    if len(data) <= PIPE_ATOMIC:
        yield data
        return
    start = 0
    while start < len(data):
        end = data.rfind(b"\n", start, start + PIPE_ATOMIC)
        end = data.find(b"\n", start) if end == -1 else end
        end = len(data) if end == -1 else end + 1
        yield data[start:end]
        start = end


def line_template(fields: tuple[str, ...]) -> str:
    """A ``str.format`` template for one JSON line with ``fields`` in order (values from ``values``)."""
    body = ",".join(f'"{name}":{{{FIELDS.index(name)}}}' for name in fields)
    return "{{" + body + "}}\n"


def entry(exchange: Exchange, status: int, elapsed: float, fields: tuple[str, ...]) -> dict[str, Any]:
    """The log fields of a finished exchange as a dict (for tools and tests; the log uses ``values``)."""
    decoded: dict[str, Any] = json.loads(line_template(fields).format(*values(exchange, status, elapsed)))
    return decoded


def values(x: Exchange, status: int, elapsed: float) -> tuple[str, ...]:
    """Every field of ``FIELDS`` as JSON text, in that order.

    Built by hand rather than by ``json.dumps`` on a dict (several times faster per line): numbers
    with ``%d``/``%.3f``, strings through the json module's C string encoder.
    """
    head = x.head
    route = x.route
    cluster = x.cluster
    plan = x.plan
    endpoint = x.endpoint
    response = x.response
    user_agent = "null"
    trace = None
    b3 = None
    for name, value in head.headers:
        lowered = name.lower()
        if lowered == b"user-agent":
            user_agent = _text(value)
        elif lowered == b"traceparent":
            parts = value.strip().split(b"-")
            if len(parts) >= 4 and len(parts[1]) == 32:
                trace = parts[1]
        elif lowered == b"x-b3-traceid" or lowered == b"b3":
            b3 = b3 or value.strip().split(b"-")[0]
    trace = trace or b3
    body = head.body
    return (
        _start_time(time.time() - elapsed),
        _METHODS.get(head.method) or _text(head.method),
        _text(head.target),
        _PROTOCOLS.get(head.version) or _text(b"HTTP/" + head.version),
        str(status),
        _encode(x.flags) if x.flags else '"-"',
        "0" if body == Body.NONE else (str(head.content_length) if body == Body.LENGTH else "null"),
        str(response.content_length) if response is not None and response.content_length >= 0 else "null",
        f"{elapsed * 1000.0:.3f}",
        "null" if endpoint is None else _encode(f"{endpoint.host}:{endpoint.port}"),
        "null" if cluster is None else _encode(cluster.name),
        "null" if route is None else _encode(route.name),
        "null" if head.request_id is None else _text(head.request_id),
        "null" if trace is None else _text(trace.lower()),
        "0" if plan is None else str(plan.retries),
        _encode(x.conn.client_ip) if x.conn.client_ip else "null",
        user_agent,
        _text(head.host),
        _encode(x.conn.context.name),
    )


def _text(value: bytes) -> str:
    return _encode(value.decode("latin-1"))


_second = -1
_second_text = ""


def _start_time(started: float) -> str:
    """ISO 8601 UTC with milliseconds, quoted; the part up to the second is formatted once a second."""
    global _second, _second_text
    whole = int(started)
    if whole != _second:
        _second_text = time.strftime('"%Y-%m-%dT%H:%M:%S', time.gmtime(whole))
        _second = whole
    return f'{_second_text}.{int((started - whole) * 1000):03d}Z"'


_encode: Callable[[str], str] = encode_basestring

_METHODS = {m: f'"{m.decode()}"' for m in (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH")}
_PROTOCOLS = {b"1.1": '"HTTP/1.1"', b"1.0": '"HTTP/1.0"'}
