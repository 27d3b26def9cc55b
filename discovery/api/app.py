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
from discovery.runtime.http import add_ops_routes, request_token  # X-Consul-Token, Bearer or ?token=
from discovery.store import StoreError

log = logging.getLogger("discovery.api")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Ops endpoints and leader status stay open for probes and scrapers, as Consul's status API does.
_OPEN_PATHS: Final = frozenset({"/metrics", "/healthz", "/readyz", "/v1/status/leader", "/v1/status/peers"})
_CATALOG_ERROR_STATUS: Final = {"not_found": 404, "invalid": 400, "conflict": 409}


def _authorized(request: web.Request) -> bool:
    expected = request.app[CONTEXT].acl_token
    if not expected or request.path in _OPEN_PATHS:
        return True
    return hmac.compare_digest(request_token(request).encode(), expected.encode())


def _error_response(exc: ApiError | CatalogError | StoreError) -> web.Response:
    """Map an exception to Consul's plain-text error answer."""
    if isinstance(exc, ApiError):
        return web.Response(status=exc.status, text=exc.message)
    if isinstance(exc, CatalogError):
        return web.Response(status=_CATALOG_ERROR_STATUS[exc.kind], text=exc.message)
    log.error("write failed", extra={"error": str(exc)})
    return web.Response(status=500, text=f"write failed: {exc}")


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request metrics around the ACL check and the error mapping.

    One middleware rather than three: every blocking-query wake-up passes through here, and
    each extra layer is another coroutine frame per request.
    """
    started = time.perf_counter()
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    code = 500
    try:
        if not _authorized(request):
            response: web.StreamResponse = web.Response(status=403, text="Permission denied")
        else:
            try:
                response = await handler(request)
            except (ApiError, CatalogError, StoreError) as exc:
                response = _error_response(exc)
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
        middlewares=[api_middleware],
        client_max_size=4 * kv.MAX_VALUE_SIZE,
    )
    app[CONTEXT] = context
    for module in (agent, catalog, health, kv, status):
        module.add_routes(app)
    add_ops_routes(app, lambda: context.registry.healthy)
    _bind_gauges(context)
    return app
