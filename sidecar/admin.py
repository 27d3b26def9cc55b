"""The admin port (Envoy-like): readiness, metrics, the config in use, clusters, listeners, drain.

aiohttp is fine here: none of this is on the request path.

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

import json
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest


class AdminView(Protocol):
    """What the admin routes read from the running sidecar (``SidecarServer`` implements it)."""

    def readiness(self) -> str: ...
    def config_dump(self) -> dict[str, Any]: ...
    def clusters_view(self) -> dict[str, Any]: ...
    def listeners_view(self) -> list[dict[str, Any]]: ...
    def start_drain(self) -> None: ...


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, indent=2, sort_keys=False) + "\n", status=status, content_type="application/json"
    )


def admin_app(
    view: AdminView, registry: CollectorRegistry, extra: Callable[[web.Application], None] | None = None
) -> web.Application:
    """The admin routes; ``/metrics`` serves the process-wide registry plus this sidecar's own ``registry``.

    The sidecar keeps its series in its own registry so several sidecars (tests, workers) can live
    in one process; the ops routes are written here rather than taken from
    ``discovery.runtime.http.add_ops_routes`` for that reason.
    """
    app = web.Application()

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(REGISTRY) + generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def ready(_: web.Request) -> web.Response:
        state = view.readiness()
        return web.Response(text=state + "\n", status=200 if state == "LIVE" else 503)

    async def config_dump(_: web.Request) -> web.Response:
        return _json(view.config_dump())

    async def clusters(request: web.Request) -> web.Response:
        data = view.clusters_view()
        if request.query.get("format") == "text":
            return web.Response(text=clusters_text(data))
        return _json(data)

    async def listeners(_: web.Request) -> web.Response:
        return _json(view.listeners_view())

    async def drain(_: web.Request) -> web.Response:
        view.start_drain()
        return web.Response(text="draining\n")

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", ready)
    app.router.add_get("/ready", ready)
    app.router.add_get("/config_dump", config_dump)
    app.router.add_get("/clusters", clusters)
    app.router.add_get("/listeners", listeners)
    app.router.add_post("/drain", drain)
    if extra is not None:
        extra(app)
    return app


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
