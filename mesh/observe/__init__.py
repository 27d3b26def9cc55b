"""Live numbers from sidecar metrics: scrape, rates, quantiles, topology (public API in docs/observability.md).

``samples`` parses a ``/metrics`` page into a ``Scrape``; ``rates`` has Prometheus's counter-reset
and ``histogram_quantile`` semantics; ``topology`` turns two scrapes per sidecar into edges with rps,
error rate, p50 and p99; ``scrape`` is the one function doing I/O.
"""

from mesh.observe.rates import counter_increase, histogram_quantile, increases
from mesh.observe.samples import (
    ISTIO_DURATION,
    ISTIO_FAMILIES,
    ISTIO_REQUESTS,
    Labels,
    Scrape,
    ScrapeError,
    label,
    labels_of,
    parse_exposition,
)
from mesh.observe.scrape import metrics_url, scrape
from mesh.observe.topology import (
    UNKNOWN,
    Edge,
    EdgeSample,
    Node,
    Reporter,
    TargetScrapes,
    Topology,
    Traffic,
    build_topology,
    destination_node,
    edge_samples,
    node_id,
    traffic_of,
    version_traffic,
)

__all__ = [
    "ISTIO_DURATION",
    "ISTIO_FAMILIES",
    "ISTIO_REQUESTS",
    "UNKNOWN",
    "Edge",
    "EdgeSample",
    "Labels",
    "Node",
    "Reporter",
    "Scrape",
    "ScrapeError",
    "TargetScrapes",
    "Topology",
    "Traffic",
    "build_topology",
    "counter_increase",
    "destination_node",
    "edge_samples",
    "histogram_quantile",
    "increases",
    "label",
    "labels_of",
    "metrics_url",
    "node_id",
    "parse_exposition",
    "scrape",
    "traffic_of",
    "version_traffic",
]
