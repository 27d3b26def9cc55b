"""Status and ops endpoints: leader/peers, /healthz, /readyz and Prometheus /metrics."""

from __future__ import annotations

import aiohttp

from tests.discovery.helpers import get, kv_put, ok_json, register_service, web_service


async def test_status_leader_and_peers(http: aiohttp.ClientSession) -> None:
    assert await ok_json(http, "/v1/status/leader") == "127.0.0.1:8300"
    assert await ok_json(http, "/v1/status/peers") == ["127.0.0.1:8300"]


async def test_healthz_and_readyz(http: aiohttp.ClientSession) -> None:
    assert (await get(http, "/healthz")).status == 200
    assert (await get(http, "/readyz")).status == 200


async def test_metrics_are_prometheus_text(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service())
    await kv_put(http, "k", b"v")
    await get(http, "/v1/catalog/services")
    reply = await get(http, "/metrics")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/plain")
    text = reply.text
    for series in (
        "mesh_registry_http_requests_total",
        "mesh_registry_http_request_duration_seconds_bucket",
        "mesh_registry_writes_total",
        "mesh_registry_blocking_queries",
        "mesh_registry_index",
        "mesh_registry_catalog_entries",
    ):
        assert f"\n{series}" in text, series
    assert "# TYPE mesh_registry_http_requests_total counter" in text
    assert 'route="/v1/catalog/services"' in text
    assert 'mesh_registry_catalog_entries{kind="kv"} 1.0' in text


async def test_metrics_index_follows_writes(http: aiohttp.ClientSession) -> None:
    def index_in(text: str) -> float:
        [line] = [ln for ln in text.splitlines() if ln.startswith("mesh_registry_index ")]
        return float(line.split()[1])

    before = index_in((await get(http, "/metrics")).text)
    await kv_put(http, "k", b"v")
    after = index_in((await get(http, "/metrics")).text)
    assert after == before + 1
    assert after == (await get(http, "/v1/kv/k")).index
