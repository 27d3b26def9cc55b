"""Read-only views for people: the live topology, a services summary, rules with their checks, and ``/ui``.

| method + path | meaning |
|---|---|
| ``GET /v1/mesh/topology`` | edges between services with rps, 5xx share, p50/p99 (``mesh.control.topology``) |
| ``GET /v1/mesh/services`` | every registry service: healthy/total instances, registered sidecars |
| ``GET /v1/mesh/rules`` | every stored rule with its warnings (accepted, not enforced) and cross-resource check |
| ``GET /ui`` (and ``/ui/<file>``) | the web page (static files, no data: open even with ``--token-reads``) |

The JSON endpoints are reads: with ``--token-reads`` they need the token like every other read.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any, Final

from aiohttp import web

from discovery.client_models import RegistryError
from mesh.control.api import PLANE
from mesh.control.topology import TopologyScraper
from mesh.rules.checks import check_rules
from mesh.rules.documents import RuleError
from mesh.rules.warnings import warnings_for

SCRAPER: Final = web.AppKey("topology_scraper", TopologyScraper)
UI_FILES: Final = {"index.html": "text/html", "ui.js": "text/javascript", "ui.css": "text/css"}
HEALTH_CONCURRENCY = 16


def add_observe_routes(app: web.Application, scraper: TopologyScraper) -> None:
    """On an app from ``mesh.control.api.build_app`` (the views read its control plane)."""
    app[SCRAPER] = scraper
    app.add_routes(
        [
            web.get("/v1/mesh/topology", topology),
            web.get("/v1/mesh/services", services),
            web.get("/v1/mesh/rules", rules),
            web.get("/ui", ui_redirect),
            web.get("/ui/", ui_file),
            web.get("/ui/{name}", ui_file),
        ]
    )


async def topology(request: web.Request) -> web.Response:
    return web.json_response(request.app[SCRAPER].view())


async def services(request: web.Request) -> web.Response:
    plane = request.app[PLANE]
    client = plane.client
    try:
        catalog = (await client.catalog_services()).value
        limit = asyncio.Semaphore(HEALTH_CONCURRENCY)

        async def health(name: str) -> tuple[int, int, list[str]]:
            async with limit:
                entries = (await client.health_service(name)).value
            healthy = sum(1 for e in entries if all(c.status == "passing" for c in e.checks))
            namespaces = sorted({e.service.meta.get("k8s-namespace") or "default" for e in entries})
            return healthy, len(entries), namespaces

        names = sorted(catalog)
        counts = await asyncio.gather(*(health(name) for name in names))
    except RegistryError as exc:
        return web.json_response({"error": f"registry: {exc}"}, status=503)
    sidecars: dict[str, int] = {}
    for record in plane.pusher.sidecars.values():
        sidecars[record.registration.service] = sidecars.get(record.registration.service, 0) + 1
    items = [
        {
            "name": name,
            "tags": list(catalog[name]),
            "healthy": healthy,
            "total": total,
            "namespaces": namespaces,
            "sidecars": sidecars.get(name, 0),
        }
        for name, (healthy, total, namespaces) in zip(names, counts, strict=True)
    ]
    return web.json_response({"services": items})


async def rules(request: web.Request) -> web.Response:
    state = request.app[PLANE].state
    items: list[dict[str, Any]] = []
    for item in state.listing():
        key = item.key
        try:
            check_rules(state.rules, [key])
            problem = None
        except RuleError as exc:
            problem = {"path": exc.path, "message": exc.message}
        warnings = [w.to_json() for w in warnings_for(item.resource)]
        items.append(
            {
                "kind": key.kind,
                "namespace": key.namespace,
                "name": key.name,
                "resourceVersion": item.resource_version,
                "state": "invalid" if problem else "warnings" if warnings else "valid",
                "problem": problem,
                "warnings": warnings,
            }
        )
    return web.json_response({"version": state.version, "rules": items})


async def ui_redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ui/")


async def ui_file(request: web.Request) -> web.Response:
    name = request.match_info.get("name") or "index.html"
    content_type = UI_FILES.get(name)
    if content_type is None:
        raise web.HTTPNotFound()
    body = resources.files("mesh.control.ui").joinpath(name).read_bytes()
    # nothing but these files and the API: the page shows names that came from the registry and rules
    headers = {
        "Cache-Control": "no-cache",
        "Content-Security-Policy": "default-src 'self'",
        "X-Content-Type-Options": "nosniff",
    }
    return web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)


__all__ = ["add_observe_routes"]
