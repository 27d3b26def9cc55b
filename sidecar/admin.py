"""The admin port (Envoy-like): readiness, metrics, the config in use, clusters, listeners, drain.

Served by ``sidecar.admin_http`` (httptools, no aiohttp: see there why).

| route | answer |
|---|---|
| ``GET /ready`` | 200 ``LIVE`` once a config is applied, until a drain; else 503 ``PRE_INITIALIZING``/``DRAINING`` |
| ``GET /metrics`` ``/healthz`` ``/readyz`` | the ops routes every mesh process serves (``/readyz`` = ``/ready``) |
| ``GET /config_dump`` | the snapshot in use (config-file format), its version, and the last rejected one |
| ``GET /clusters`` | per cluster: policy, panic state; per endpoint: health, weight, active requests, pool |
| ``GET /listeners`` | listeners with their bound addresses |
| ``POST /drain`` | stop accepting, finish in-flight requests, close idle keep-alive connections |
"""

from __future__ import annotations

from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from sidecar.admin_http import AdminRequest, AdminResponse, Handler


class AdminView(Protocol):
    """What the admin routes read from the running sidecar (``SidecarServer`` implements it)."""

    def readiness(self) -> str: ...
    def config_dump(self) -> dict[str, Any]: ...
    def clusters_view(self) -> dict[str, Any]: ...
    def listeners_view(self) -> list[dict[str, Any]]: ...
    def start_drain(self) -> None: ...


def admin_routes(view: AdminView, registry: CollectorRegistry) -> dict[tuple[str, str], Handler]:
    """The admin routes; ``/metrics`` serves the process-wide registry plus this sidecar's own ``registry``.

    The sidecar keeps its series in its own registry so several sidecars (tests, workers) can live
    in one process.
    """

    def metrics(_: AdminRequest) -> AdminResponse:
        return AdminResponse(200, generate_latest(REGISTRY) + generate_latest(registry), CONTENT_TYPE_LATEST)

    def healthz(_: AdminRequest) -> AdminResponse:
        return AdminResponse.text("ok\n")

    def ready(_: AdminRequest) -> AdminResponse:
        state = view.readiness()
        return AdminResponse.text(state + "\n", 200 if state == "LIVE" else 503)

    def config_dump(_: AdminRequest) -> AdminResponse:
        return AdminResponse.json(view.config_dump())

    def clusters(request: AdminRequest) -> AdminResponse:
        data = view.clusters_view()
        if request.query.get("format") == "text":
            return AdminResponse.text(clusters_text(data))
        return AdminResponse.json(data)

    def listeners(_: AdminRequest) -> AdminResponse:
        return AdminResponse.json(view.listeners_view())

    def drain(_: AdminRequest) -> AdminResponse:
        view.start_drain()
        return AdminResponse.text("draining\n")

    return {
        ("GET", "/metrics"): metrics,
        ("GET", "/healthz"): healthz,
        ("GET", "/readyz"): ready,
        ("GET", "/ready"): ready,
        ("GET", "/config_dump"): config_dump,
        ("GET", "/clusters"): clusters,
        ("GET", "/listeners"): listeners,
        ("POST", "/drain"): drain,
    }


def clusters_text(data: dict[str, Any]) -> str:
    """Envoy's ``cluster::endpoint::field::value`` lines, for scripts that grep."""
    lines: list[str] = []
    for cluster in data.get("clusters", []):
        name = cluster["name"]
        for endpoint in cluster["endpoints"]:
            prefix = f"{name}::{endpoint['address']}"
            lines.append(f"{prefix}::health_flags::{'healthy' if endpoint['healthy'] else '/failed_eds_health'}")
            lines.append(f"{prefix}::weight::{endpoint['weight']}")
            lines.append(f"{prefix}::rq_active::{endpoint['active_requests']}")
            lines.append(f"{prefix}::cx_active::{endpoint['pool']['active'] + endpoint['pool']['idle']}")
    return "\n".join(lines) + "\n"
