"""Fetching a sidecar's /metrics over real HTTP: the whole page is read, however many network reads it takes."""

from __future__ import annotations

import importlib

import aiohttp
import pytest
from aiohttp import web

from mesh.observe import scrape
from mesh.observe.samples import ScrapeError

ISTIO = (
    "# HELP istio_requests_total Requests.\n"
    "# TYPE istio_requests_total counter\n"
    'istio_requests_total{reporter="source",source_workload="productpage",destination_service="reviews"} 7.0\n'
)


async def serve(body: bytes) -> tuple[web.AppRunner, str]:
    async def metrics(_: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(_)
        for start in range(0, len(body), 16 * 1024):  # many small writes: the page arrives in pieces
            await response.write(body[start : start + 16 * 1024])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"127.0.0.1:{port}"


async def test_the_istio_series_after_a_large_page_of_other_metrics_are_read() -> None:
    filler = "".join(f"# TYPE other_{i} gauge\nother_{i} {i}\n" for i in range(40_000)).encode()
    runner, address = await serve(filler + ISTIO.encode())
    try:
        async with aiohttp.ClientSession() as session:
            page = await scrape(session, address)
    finally:
        await runner.cleanup()
    (value,) = page.series("istio_requests_total").values()
    assert value == 7.0


async def test_a_runaway_page_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # the package re-exports the function ``scrape``, which hides the module of the same name
    monkeypatch.setattr(importlib.import_module("mesh.observe.scrape"), "MAX_BODY_BYTES", 100_000)
    runner, address = await serve(b"x" * 300_000)
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ScrapeError, match="larger than") as caught:
                await scrape(session, address)
        assert caught.value.reason == "http"
    finally:
        await runner.cleanup()
