"""The registry's aiohttp application: routes, ACL, error mapping and request metrics."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Final

from aiohttp import web

from discovery import metrics
from discovery.api import agent, catalog, health, kv, status
from discovery.api.context import CONTEXT, ApiContext
from discovery.api.errors import ApiError
from discovery.catalog import Catalog, CatalogError
from discovery.runtime.http import add_ops_routes
from discovery.store import StoreError

log = logging.getLogger("discovery.api")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Ops endpoints and leader status stay open for probes and scrapers, as Consul's status API does.
_OPEN_PATHS: Final = frozenset({"/metrics", "/healthz", "/readyz", "/v1/status/leader", "/v1/status/peers"})
_CATALOG_ERROR_STATUS: Final = {"not_found": 404, "invalid": 400, "conflict": 409}


def request_token(request: web.Request) -> str:
    """Consul accepts X-Consul-Token, Authorization: Bearer, or the legacy ?token=."""
    token = request.headers.get("X-Consul-Token", "")
    if not token:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            token = value.strip()
    return token or request.query.get("token", "")


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return web.Response(status=exc.status, text=exc.message)
    except CatalogError as exc:
        return web.Response(status=_CATALOG_ERROR_STATUS[exc.kind], text=exc.message)
    except StoreError as exc:
        log.error("write failed", extra={"error": str(exc)})
        return web.Response(status=500, text=f"write failed: {exc}")


@web.middleware
async def acl_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    expected = request.app[CONTEXT].acl_token
    open_path = request.path in _OPEN_PATHS
    if expected and not open_path and not hmac.compare_digest(request_token(request).encode(), expected.encode()):
        return web.Response(status=403, text="Permission denied")
    return await handler(request)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    code = 500
    try:
        response = await handler(request)
        code = response.status
        return response
    except web.HTTPException as exc:
        code = exc.status
        raise
    finally:
        requests, latency = metrics.http_series(request.method, route, code)
        requests.inc()
        latency.observe(time.perf_counter() - started)


def _bind_gauges(context: ApiContext) -> None:
    """Catalog gauges read live state at scrape time."""
    catalog_ = context.registry.catalog
    metrics.INDEX.set_function(lambda: catalog_.index)
    for kind in catalog_.counts():
        metrics.ENTRIES.labels(kind).set_function(partial(_count, catalog_, kind))


def _count(catalog_: Catalog, kind: str) -> float:
    return catalog_.counts()[kind]


def build_app(context: ApiContext) -> web.Application:
    app = web.Application(
        middlewares=[metrics_middleware, errors_middleware, acl_middleware],
        client_max_size=4 * kv.MAX_VALUE_SIZE,
    )
    app[CONTEXT] = context
    for module in (agent, catalog, health, kv, status):
        module.add_routes(app)
    add_ops_routes(app, lambda: context.registry.healthy)
    _bind_gauges(context)
    return app
