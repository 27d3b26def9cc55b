"""Prometheus metrics of the registry (one place, so names stay consistent)."""

from __future__ import annotations

import functools

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "mesh_registry_http_requests_total",
    "HTTP API requests served, by route and status code.",
    ["method", "route", "code"],
)
HTTP_LATENCY = Histogram(
    "mesh_registry_http_request_duration_seconds",
    "Time to answer an HTTP API request (blocking queries included).",
    ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 60, 600),
)
BLOCKING_IN_FLIGHT = Gauge("mesh_registry_blocking_queries", "Blocking queries currently waiting.")
WRITES = Counter("mesh_registry_writes_total", "Writes that changed the catalog (each takes one index).")
WATCHES_FIRED = Counter("mesh_registry_watches_fired_total", "Blocking-query watches woken by writes.")
COMMIT_BATCH = Histogram(
    "mesh_registry_commit_batch_size",
    "Writes made durable per SQLite transaction (group commit).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
COMMIT_SECONDS = Histogram(
    "mesh_registry_commit_duration_seconds",
    "Time of one durable SQLite commit.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1),
)
CHECKS_RUN = Counter(
    "mesh_registry_checks_run_total",
    "Health checks the registry ran, by type and resulting status.",
    ["type", "status"],
)
INDEX = Gauge("mesh_registry_index", "The catalog's current global index.")
ENTRIES = Gauge("mesh_registry_catalog_entries", "Records in the catalog, by kind.", ["kind"])


@functools.lru_cache(maxsize=4096)
def http_series(method: str, route: str, code: int) -> tuple[Counter, Histogram]:
    """The request counter and latency histogram children for one label set, looked up once."""
    return HTTP_REQUESTS.labels(method, route, str(code)), HTTP_LATENCY.labels(route)


def observe_commit_batch(size: int, seconds: float) -> None:
    COMMIT_BATCH.observe(size)
    COMMIT_SECONDS.observe(seconds)
