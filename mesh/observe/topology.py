"""Who calls whom, how often, how badly and how slowly: a topology from two scrapes per sidecar (pure).

For each sidecar the control plane scraped twice (``TargetScrapes``), the Istio series' increases
between the scrapes become ``EdgeSample``s keyed by (reporter, source node, destination node,
destination version). ``build_topology`` sums them over sidecars into edges:

- **Which reporter.** Every call between two meshed services is counted twice: by the caller's
  sidecar (``reporter="source"``, which knows the caller and the destination subset) and by the
  callee's (``reporter="destination"``, which cannot name the caller without mTLS). An edge's numbers
  come from ``reporter="source"`` series whenever any sidecar reports calls into that destination;
  only when none does (callers outside the mesh, such as a user calling productpage's inbound
  port) do ``reporter="destination"`` series stand for it, with the caller ``unknown``.
- **Rates.** ``rps`` is the increase over the window divided by the window, per sidecar, then summed
  (Prometheus ``sum(rate(...))``); ``error_rate`` is the 5xx share; p50/p99 are
  ``histogram_quantile`` over the summed bucket increases (``sum by (le)``), in milliseconds.
- **Nodes** are services: ``<service>.<namespace>``. A destination FQDN
  (``reviews.default.svc.cluster.local``) gives its namespace; a bare name takes the reporting
  sidecar's namespace.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from mesh.model.hosts import service_from_host
from mesh.observe.rates import counter_increase, histogram_quantile, increases
from mesh.observe.samples import ISTIO_DURATION, ISTIO_REQUESTS, Labels, Scrape, label

UNKNOWN = "unknown"
Reporter = Literal["source", "destination"]
BucketCounts = Mapping[float, float]  # upper bound → cumulative count increase


@dataclass(frozen=True, slots=True)
class Traffic:
    requests: float  # increase in the window
    rps: float
    errors: float  # 5xx increase
    p50_ms: float | None
    p99_ms: float | None
    buckets: tuple[tuple[float, float], ...] = ()  # summed (upper bound, cumulative increase), for re-summing

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests > 0 else None

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": _round(self.requests),
            "rps": _round(self.rps),
            "error_rate": None if self.error_rate is None else _round(self.error_rate),
            "p50_ms": _finite(self.p50_ms),
            "p99_ms": _finite(self.p99_ms),
        }


@dataclass(frozen=True, slots=True)
class TargetScrapes:
    """Two scrapes of one sidecar, and who it is (from its registration)."""

    sidecar: str
    service: str
    namespace: str
    before: Scrape
    after: Scrape

    @property
    def window(self) -> float:
        return self.after.at - self.before.at


@dataclass(frozen=True, slots=True)
class EdgeSample:
    """One sidecar's increases for one (reporter, source, destination, version) over its window."""

    reporter: Reporter
    source: str
    destination: str
    version: str
    window: float
    requests: float
    errors: float
    buckets: BucketCounts


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    service: str
    namespace: str
    sidecars: int  # scraped sidecars of this service

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "service": self.service, "namespace": self.namespace, "sidecars": self.sidecars}


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    destination: str
    reporter: Reporter
    traffic: Traffic
    versions: Mapping[str, Traffic] = field(default_factory=lambda: MappingProxyType({}))

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "destination": self.destination,
            "reporter": self.reporter,
            **self.traffic.to_json(),
            "versions": {version: t.to_json() for version, t in sorted(self.versions.items())},
        }


@dataclass(frozen=True, slots=True)
class Topology:
    window_s: float
    nodes: tuple[Node, ...] = ()
    edges: tuple[Edge, ...] = ()

    def edge(self, source: str, destination: str) -> Edge | None:
        return next((e for e in self.edges if e.source == source and e.destination == destination), None)

    def into(self, destination: str) -> tuple[Edge, ...]:
        return tuple(e for e in self.edges if e.destination == destination)

    def to_json(self) -> dict[str, Any]:
        return {
            "window_s": _round(self.window_s),
            "nodes": [n.to_json() for n in self.nodes],
            "edges": [e.to_json() for e in self.edges],
        }


def node_id(service: str, namespace: str) -> str:
    return UNKNOWN if not service or service == UNKNOWN else f"{service}.{namespace}"


@functools.lru_cache(maxsize=4096)  # called per series per scrape with a bounded set of names
def destination_node(destination_service: str, namespace: str) -> str:
    """``reviews.default.svc.cluster.local`` → ``reviews.default``; a bare ``reviews`` takes ``namespace``."""
    if not destination_service or destination_service == UNKNOWN:
        return UNKNOWN
    ref = service_from_host(destination_service)
    if ref is None:
        return node_id(destination_service, namespace)
    return node_id(ref.service, ref.namespace or namespace)


def _split(node: str) -> tuple[str, str]:
    service, _, namespace = node.partition(".")
    return service, namespace


def edge_samples(target: TargetScrapes) -> list[EdgeSample]:
    """The increases of one sidecar's Istio series over its window, by edge and destination version."""
    window = target.window
    if window <= 0:
        return []
    keys: dict[Labels, tuple[Reporter, str, str, str] | None] = {}  # the same label sets recur per code and bucket

    def key_of(labels: Labels) -> tuple[Reporter, str, str, str] | None:
        if labels not in keys:
            keys[labels] = _edge_key(labels, target)
        return keys[labels]

    requests: dict[tuple[Reporter, str, str, str], list[float]] = {}
    for labels, grown in increases(target.before, target.after, ISTIO_REQUESTS).items():
        key = key_of(tuple(pair for pair in labels if pair[0] not in ("response_code", "response_flags")))
        if key is None:
            continue
        entry = requests.setdefault(key, [0.0, 0.0])
        entry[0] += grown
        if label(labels, "response_code").startswith("5"):
            entry[1] += grown
    buckets: dict[tuple[Reporter, str, str, str], dict[float, float]] = {}
    earlier = target.before.series(ISTIO_DURATION + "_bucket")
    for labels, value in target.after.series(ISTIO_DURATION + "_bucket").items():
        key = key_of(tuple(pair for pair in labels if pair[0] != "le"))
        if key is None:
            continue
        bound = _bound(label(labels, "le"))
        if bound is None:
            continue
        per_bound = buckets.setdefault(key, {})
        per_bound[bound] = per_bound.get(bound, 0.0) + counter_increase(earlier.get(labels), value)
    return [
        EdgeSample(*key, window, counts[0], counts[1], MappingProxyType(buckets.get(key, {})))
        for key, counts in requests.items()
    ]


def _edge_key(labels: Labels, target: TargetScrapes) -> tuple[Reporter, str, str, str] | None:
    """The reporting sidecar is the source (reporter=source) or the destination (reporter=destination):
    where its label says ``unknown`` (a sidecar started without ``--service``), its registration names it."""
    reporter = label(labels, "reporter")
    version = label(labels, "destination_version", UNKNOWN) or UNKNOWN
    own = node_id(target.service, target.namespace)
    if reporter == "source":
        workload = label(labels, "source_workload", UNKNOWN)
        source = own if workload in ("", UNKNOWN) else node_id(workload, target.namespace)
        return (
            "source",
            source,
            destination_node(label(labels, "destination_service", UNKNOWN), target.namespace),
            version,
        )
    if reporter == "destination":
        service = label(labels, "destination_service", UNKNOWN)
        destination = own if service in ("", UNKNOWN) else destination_node(service, target.namespace)
        # the caller is not known without a peer identity: the label says so ("unknown")
        return "destination", node_id(label(labels, "source_workload", UNKNOWN), target.namespace), destination, version
    return None


def _bound(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def traffic_of(samples: Iterable[EdgeSample]) -> Traffic:
    """Summed rates (``sum(rate(...))``) and quantiles of summed bucket increases."""
    requests = errors = rps = 0.0
    buckets: dict[float, float] = {}
    for sample in samples:
        requests += sample.requests
        errors += sample.errors
        rps += sample.requests / sample.window
        for bound, count in sample.buckets.items():
            buckets[bound] = buckets.get(bound, 0.0) + count
    return _traffic(requests, rps, errors, buckets)


def _traffic(requests: float, rps: float, errors: float, buckets: Mapping[float, float]) -> Traffic:
    pairs = tuple(sorted(buckets.items()))
    return Traffic(requests, rps, errors, histogram_quantile(0.5, pairs), histogram_quantile(0.99, pairs), pairs)


def build_topology(targets: Sequence[TargetScrapes]) -> Topology:
    samples = [sample for target in targets for sample in edge_samples(target)]
    by_source_reporter = {s.destination for s in samples if s.reporter == "source"}
    chosen: dict[tuple[str, str], list[EdgeSample]] = {}
    reporters: dict[tuple[str, str], Reporter] = {}
    for sample in samples:
        if sample.reporter == "destination" and sample.destination in by_source_reporter:
            continue  # the callers' sidecars report this destination
        key = (sample.source, sample.destination)
        chosen.setdefault(key, []).append(sample)
        reporters[key] = sample.reporter
    edges: list[Edge] = []
    for (source, destination), group in sorted(chosen.items()):
        versions: dict[str, list[EdgeSample]] = {}
        for sample in group:
            versions.setdefault(sample.version, []).append(sample)
        edges.append(
            Edge(
                source,
                destination,
                reporters[(source, destination)],
                traffic_of(group),
                MappingProxyType({version: traffic_of(part) for version, part in versions.items()}),
            )
        )
    sidecars: dict[str, int] = {}
    for target in targets:
        own = node_id(target.service, target.namespace)
        sidecars[own] = sidecars.get(own, 0) + 1
    ids = set(sidecars) | {e.source for e in edges} | {e.destination for e in edges}
    nodes = tuple(Node(i, *_split(i), sidecars.get(i, 0)) for i in sorted(ids))
    window = max((t.window for t in targets), default=0.0)
    return Topology(window, nodes, tuple(edges))


def version_traffic(topology: Topology, destination: str) -> dict[str, Traffic]:
    """Every edge into ``destination`` summed per destination version (what a canary analysis compares);
    quantiles come from the summed bucket increases."""
    parts: dict[str, list[Traffic]] = {}
    for edge in topology.into(destination):
        for version, traffic in edge.versions.items():
            parts.setdefault(version, []).append(traffic)
    out: dict[str, Traffic] = {}
    for version, group in parts.items():
        buckets: dict[float, float] = {}
        for traffic in group:
            for bound, count in traffic.buckets:
                buckets[bound] = buckets.get(bound, 0.0) + count
        requests = sum(t.requests for t in group)
        out[version] = _traffic(requests, sum(t.rps for t in group), sum(t.errors for t in group), buckets)
    return out


def _round(value: float) -> float:
    return round(value, 4)


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 3)


__all__ = [
    "UNKNOWN",
    "Edge",
    "EdgeSample",
    "Node",
    "Reporter",
    "TargetScrapes",
    "Topology",
    "Traffic",
    "build_topology",
    "destination_node",
    "edge_samples",
    "node_id",
    "traffic_of",
    "version_traffic",
]
