"""Prometheus metrics of the control plane (one place, so names stay consistent)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONFIG_VERSION = Gauge("mesh_control_config_version", "The configuration version in force.")
RESOURCES = Gauge("mesh_control_resources", "Stored rule resources, by kind.", ["kind"])
CHANGES = Counter(
    "mesh_control_config_changes_total",
    "Config API writes, by operation and result (applied, unchanged, dry_run, invalid, conflict).",
    ["operation", "result"],
)
SIDECARS = Gauge("mesh_control_sidecars", "Registered sidecars, by connection state.", ["state"])
SYNC_RESPONSES = Counter(
    "mesh_control_sync_responses_total", "Long-poll answers to sidecars: a new snapshot or not modified.", ["result"]
)
ACKS = Counter("mesh_control_acks_total", "Sidecar reports, by result (ack, nack).", ["result"])
PUSHES = Counter("mesh_control_snapshot_changes_total", "Computed snapshots that changed (each wakes its sidecars).")
ROUND_SECONDS = Histogram(
    "mesh_control_round_duration_seconds",
    "Time to recompute the marked sidecar profiles in one round.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)
WATCHED_SERVICES = Gauge("mesh_control_watched_services", "Registry services watched for sidecars.")
CA_CSRS = Counter(
    "mesh_control_ca_csrs_total",
    "Certificate signing requests, by result (issued, rejected, forbidden, unknown_sidecar, ca_unavailable).",
    ["result"],
)
AUTH_REFUSED = Counter(
    "mesh_control_auth_refused_total",
    "Requests refused for their credentials, by reason (missing_token, wrong_token, missing_secret, wrong_secret, "
    "sidecar_taken).",
    ["reason"],
)
SIDECAR_SCRAPES = Counter(
    "mesh_control_sidecar_scrapes_total",
    "Scrapes of sidecar admin /metrics for the topology, by result (ok, timeout, connect, http, parse).",
    ["result"],
)
SIDECAR_SCRAPE_TARGETS = Gauge(
    "mesh_control_sidecar_scrape_targets",
    "Sidecar admin addresses scraped for the topology, by state (ok, failing).",
    ["state"],
)
