"""Ops endpoints every long-running process serves over aiohttp (``/metrics``, ``/healthz``, ``/readyz``)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest


def request_token(request: web.Request, header: str = "X-Consul-Token", query_param: str | None = "token") -> str:
    """The token a request presents, Consul's way: ``header`` (``X-Consul-Token``), else
    ``Authorization: Bearer``, else the legacy ``?token=`` (``query_param=None``: not accepted). "" if none."""
    token = request.headers.get(header, "")
    if not token:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            token = value.strip()
    if token or query_param is None:
        return token
    return request.query.get(query_param, "")


def add_ops_routes(app: web.Application, ready: Callable[[], bool]) -> None:
    """GET /metrics (Prometheus text), /healthz (alive), /readyz (ready to serve)."""

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve ``app``; returns the runner and the bound port (``port=0`` picks a free one)."""
    # handler_cancellation: a client that hangs up mid blocking query frees its handler at once.
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    return runner, int(runner.addresses[0][1])
