"""Prometheus metrics of the registrar (prefix ``mesh_registrar_``), in one place.

Module-level like the registry's: every part of one process shares the default registry,
so ``mesh up`` exposes them on its DNS metrics port and ``mesh registrar`` on ``--metrics-addr``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("mesh_registrar_docker_events_total", "Docker container events received, by action.", ["action"])
RECONCILES = Counter(
    "mesh_registrar_reconciles_total",
    "Reconcile runs: one container (after an event or in a sync) or a full sync, by result.",
    ["kind", "result"],
)
WRITES = Counter(
    "mesh_registrar_registry_writes_total",
    "Writes sent to the registry: register, deregister, health (docker-health status), heartbeat.",
    ["op"],
)
ERRORS = Counter("mesh_registrar_errors_total", "Failed calls, by the side that failed (docker, registry).", ["source"])
ATTRIBUTE_WARNINGS = Counter(
    "mesh_registrar_attribute_warnings_total", "Bad SERVICE_* attributes reported and skipped."
)
SERVICES = Gauge("mesh_registrar_services", "Services this registrar owns in the registry.")
DOCKER_CONNECTED = Gauge("mesh_registrar_docker_connected", "1 while the Docker event stream is open.")
REGISTRY_REACHABLE = Gauge("mesh_registrar_registry_reachable", "1 while the registry answers.")
EVENT_LAG = Histogram(
    "mesh_registrar_event_to_registry_seconds",
    "From a Docker event's timestamp to the registry acknowledging the write it caused, by op.",
    ["op"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
_FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
EVENT_DELAY = Histogram(
    "mesh_registrar_docker_event_delay_seconds",
    "From a Docker event's timestamp to the registrar reading it off the event stream.",
    buckets=_FAST_BUCKETS,
)
START_PATH = Counter(
    "mesh_registrar_start_path_total",
    "Start events answered from the create-time configuration (predicted, confirmed by an inspect after) "
    "or by inspecting first.",
    ["path"],
)
INSPECT_SECONDS = Histogram(
    "mesh_registrar_docker_inspect_seconds", "Time Docker took to answer a container inspect.", buckets=_FAST_BUCKETS
)
WRITE_SECONDS = Histogram(
    "mesh_registrar_registry_write_seconds",
    "Time the registry took to acknowledge a write, by op.",
    ["op"],
    buckets=_FAST_BUCKETS,
)
