"""The exporter thread's side of tracing: finished requests → OpenTelemetry SDK spans → OTLP/HTTP.

Imported only when ``--otlp-endpoint`` is set (``sidecar.tracing.build_export``), so a sidecar
without the OpenTelemetry packages never touches them.

Spans are the SDK's own ``ReadableSpan`` objects handed straight to its ``OTLPSpanExporter``
(protobuf encoding, gzip/headers/TLS from the standard ``OTEL_EXPORTER_OTLP_*`` variables,
retries with backoff). They are built here, in the exporter thread, from plain values the loop
recorded: the span's ids (the one the sidecar put in the forwarded ``traceparent``) and its
start/end times are facts of a request that is already over, which is what ``ReadableSpan``
holds. The tracer API would have to run on the loop during the request (a ``Span`` object, a
lock and attribute checks per request) and needs a custom id generator to emit the span id
already chosen; building finished spans avoids both.

Attributes follow the OpenTelemetry HTTP semantic conventions (``http.request.method``,
``url.path``, ``url.query``, ``http.response.status_code``, ``server.address``/``server.port``,
``network.protocol.version``, ``client.address`` on SERVER spans, ``user_agent.original``,
``http.request.resend_count``, body sizes, ``error.type``), plus Envoy's tags (``upstream_cluster``,
``upstream_address``, ``response_flags``, ``guid:x-request-id``) and the mesh's (``mesh.route``,
``mesh.listener``, ``mesh.source.workload``, ``mesh.destination.workload``). Each attribute costs
the SDK's encoder a few µs per span (it dominates the export cost), so none is sent twice.
Status: ERROR for 5xx, and for 4xx on CLIENT spans (semantic conventions, "Status"); else unset.
"""

from __future__ import annotations

from collections.abc import Sequence

import requests
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.types import AttributeValue

from sidecar.metrics import UNKNOWN
from sidecar.tracing import FinishedSpan, TracingSettings

SCOPE = InstrumentationScope("pymesh.sidecar", "0.1.0")
DEFAULT_SERVICE = "mesh-sidecar"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_ERROR = Status(StatusCode.ERROR)
_UNSET = Status(StatusCode.UNSET)
CLIENT_CLOSED = 499  # the exchange's code for "the client left first": no response was sent


class OtlpExport:
    """Builds ``ReadableSpan`` objects for a batch and sends them with the SDK's OTLP/HTTP exporter."""

    def __init__(self, settings: TracingSettings) -> None:
        # HTTP(S)_PROXY variables are ignored: the sidecar is often the app's proxy itself, and its
        # own exports must not loop through its outbound listener.
        session = requests.Session()
        session.trust_env = False
        self._exporter = OTLPSpanExporter(
            endpoint=settings.endpoint, timeout=settings.export_timeout_s, session=session
        )
        self._resource = Resource.create({"service.name": settings.service or DEFAULT_SERVICE})
        self._own = settings.service

    def export(self, batch: Sequence[FinishedSpan]) -> bool:
        spans = [readable_span(finished, self._resource, self._own) for finished in batch]
        return self._exporter.export(spans) is SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._exporter.shutdown()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated


def readable_span(f: FinishedSpan, resource: Resource, own: str = "") -> ReadableSpan:
    trace_id = int(f.trace_id, 16)
    context = SpanContext(trace_id, int(f.span_id, 16), is_remote=False, trace_flags=_SAMPLED)
    parent = None if f.parent_id is None else SpanContext(trace_id, int(f.parent_id, 16), True, _SAMPLED)
    kind = SpanKind.CLIENT if f.outbound else SpanKind.SERVER
    attributes = span_attributes(f, own)
    error = f.status >= 500 or (f.outbound and 400 <= f.status != CLIENT_CLOSED)
    return ReadableSpan(
        name=str(attributes["http.request.method"]),
        context=context,
        parent=parent,
        resource=resource,
        attributes=attributes,
        kind=kind,
        status=_ERROR if error else _UNSET,
        start_time=f.start_ns,
        end_time=f.end_ns,
        instrumentation_scope=SCOPE,
    )


def span_attributes(f: FinishedSpan, own: str = "") -> dict[str, AttributeValue]:
    """The span's attributes (HTTP semantic conventions, Envoy's tags, the mesh's); ``own``: this
    sidecar's service, the source of an outbound hop and the destination of an inbound one."""
    method = f.method.decode("latin-1")
    path, _, query = f.target.decode("latin-1").partition("?")
    host, port = _host_port(f.host.decode("latin-1"))
    attrs: dict[str, AttributeValue] = {
        "http.request.method": method if method in _METHODS else "_OTHER",
        "url.path": path,
        "server.address": host,
        "network.protocol.version": f.version.decode("latin-1"),
        "response_flags": f.flags or "-",
        "mesh.listener": f.listener,
    }
    if method not in _METHODS:
        attrs["http.request.method_original"] = method
    if query:
        attrs["url.query"] = query
    if port:
        attrs["server.port"] = port
    if f.status != CLIENT_CLOSED:
        attrs["http.response.status_code"] = f.status
    if f.status >= 500 or (f.outbound and f.status >= 400):
        attrs["error.type"] = str(f.status) if f.status != CLIENT_CLOSED else "client_closed"
    if f.client and not f.outbound:  # an outbound hop's client is the local app
        attrs["client.address"] = f.client
    if f.endpoint is not None:
        attrs["upstream_address"] = f"{f.endpoint[0]}:{f.endpoint[1]}"
    if f.cluster is not None:
        attrs["upstream_cluster"] = f.cluster
    if f.route is not None:
        attrs["mesh.route"] = f.route
    if f.retries:
        attrs["http.request.resend_count"] = f.retries
    if f.request_id is not None:
        attrs["guid:x-request-id"] = f.request_id.decode("latin-1")
    if f.user_agent is not None:
        attrs["user_agent.original"] = f.user_agent.decode("latin-1")
    if f.request_size > 0:
        attrs["http.request.body.size"] = f.request_size
    if f.response_size >= 0:
        attrs["http.response.body.size"] = f.response_size
    if f.istio is not None:  # sidecar.metrics.ISTIO_LABELS order
        for key, value in (
            ("mesh.source.workload", f.istio[1]),
            ("mesh.destination.workload", f.istio[4]),
        ):
            if value != UNKNOWN:
                attrs[key] = value
    if own:
        attrs.setdefault("mesh.source.workload" if f.outbound else "mesh.destination.workload", own)
    return attrs


def _host_port(authority: str) -> tuple[str, int]:
    """``host[:port]`` (``[v6]:port`` too) → (host, port or 0)."""
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else 0
    host, sep, port = authority.rpartition(":")
    if sep and port.isdigit():
        return host, int(port)
    return authority, 0
