"""Ops endpoints every long-running process serves, and a runner with clean shutdown."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from discovery.runtime.limits import raise_open_files_limit
from discovery.runtime.memory import freeze_long_lived


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


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` on uvloop; SIGTERM/SIGINT set ``stop`` so it can drain and return."""
    import uvloop

    raise_open_files_limit()

    async def wrapper() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # Once per process, however many parts `main` runs (`mesh up` runs several).
        gc_tuning = asyncio.create_task(freeze_long_lived(), name="gc-freeze")
        try:
            await main(stop)
        finally:
            gc_tuning.cancel()
            await asyncio.gather(gc_tuning, return_exceptions=True)

    uvloop.run(wrapper())
