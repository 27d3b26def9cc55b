"""The HTTP/1.1 proxy end to end on loopback: real aiohttp peers and raw sockets."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from sidecar.http1.listener import HttpSettings
from tests.sidecar.conftest import BackendFactory, SidecarFactory
from tests.sidecar.helpers import Backend, cluster, http_config, raw_request, simple_config, status_codes


async def get_json(
    port: int, path: str, host: str = "web", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host, **(headers or {})}) as response,
    ):
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except json.JSONDecodeError:
            return response.status, {"text": text}


async def test_routes_by_host_and_path(backend_factory: BackendFactory, sidecar_factory: SidecarFactory) -> None:
    api, web, static = await backend_factory("api"), await backend_factory("web"), await backend_factory("static")
    config = http_config(
        [cluster("api", [api]), cluster("web", [web]), cluster("static", [static])],
        [
            {
                "name": "web",
                "domains": ["web", "web.service.consul"],
                "routes": [
                    {"name": "static", "match": {"prefix": "/static/"}, "cluster": "static"},
                    {"name": "v2", "match": {"prefix": "/"}, "cluster": "web"},
                ],
            },
            {
                "name": "api",
                "domains": ["api", "*.api.example.com"],
                "routes": [{"match": {"prefix": "/"}, "cluster": "api"}],
            },
        ],
    )
    sidecar = await sidecar_factory(config)
    port = sidecar.listener_port("outbound")
    assert (await get_json(port, "/x"))[1]["backend"] == "web"
    assert (await get_json(port, "/static/a.css"))[1]["backend"] == "static"
    assert (await get_json(port, "/x", host="web.service.consul:15001"))[1]["backend"] == "web"
    assert (await get_json(port, "/x", host="eu.api.example.com"))[1]["backend"] == "api"
    status, body = await get_json(port, "/x", host="nowhere")
    assert status == 404
    assert "no route for host 'nowhere'" in str(body["text"])


async def test_route_on_header_rewrite_and_header_edits(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    v1, v2 = await backend_factory("v1"), await backend_factory("v2")
    config = http_config(
        [cluster("v1", [v1]), cluster("v2", [v2])],
        [
            {
                "name": "web",
                "domains": ["web"],
                "routes": [
                    {
                        "name": "canary",
                        "match": {"prefix": "/api/", "headers": [{"name": "x-canary", "exact": "1"}]},
                        "cluster": "v2",
                        "prefix_rewrite": "/v2/",
                        "request_headers_add": [{"name": "x-route", "value": "canary"}],
                        "request_headers_remove": ["x-internal"],
                        "response_headers_add": [{"name": "cache-control", "value": "no-store", "append": False}],
                    },
                    {"name": "default", "match": {"prefix": "/"}, "cluster": "v1"},
                ],
            }
        ],
    )
    sidecar = await sidecar_factory(config)
    port = sidecar.listener_port("outbound")
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{port}/api/users?id=7", headers={"Host": "web", "X-Canary": "1", "X-Internal": "secret"}
        ) as response,
    ):
        body = await response.json()
        assert response.headers["Cache-Control"] == "no-store"
    assert body["backend"] == "v2"
    assert body["path"] == "/v2/users"
    assert body["query"] == "id=7"
    assert body["headers"]["x-route"] == "canary"
    assert "x-internal" not in body["headers"]
    assert (await get_json(port, "/api/users"))[1]["backend"] == "v1"


async def test_forwarding_and_trace_headers(backend_factory: BackendFactory, sidecar_factory: SidecarFactory) -> None:
    web = await backend_factory("web")
    sidecar = await sidecar_factory(simple_config([web]))
    port = sidecar.listener_port("outbound")
    trace = {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": "congo=t61rcWkgMzE",
        "X-B3-TraceId": "80f198ee56343ba864fe8b2a57d3eff7",
        "X-B3-SpanId": "e457b5a2e4d86bd1",
        "b3": "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1",
    }
    _, first = await get_json(port, "/", headers={**trace, "X-Forwarded-For": "10.1.2.3", "Proxy-Connection": "x"})
    headers = first["headers"]
    assert isinstance(headers, dict)
    assert headers["x-forwarded-for"] == "10.1.2.3, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert uuid.UUID(headers["x-request-id"]).version == 4
    for name, value in trace.items():
        assert headers[name.lower()] == value
    assert "proxy-connection" not in headers
    _, second = await get_json(port, "/", headers={"X-Request-Id": "given-id"})
    assert second["headers"]["x-request-id"] == "given-id"  # type: ignore[index]


async def test_absolute_form_works_as_http_proxy(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    web = await backend_factory("web")
    sidecar = await sidecar_factory(simple_config([web]))
    port = sidecar.listener_port("outbound")
    async with (
        aiohttp.ClientSession() as session,
        session.get("http://web/via-proxy?a=1", proxy=f"http://127.0.0.1:{port}") as response,
    ):
        body = await response.json()
    assert body["backend"] == "web"
    assert body["path"] == "/via-proxy"
    assert body["headers"]["host"] == "web"


async def test_keep_alive_connections_are_pooled(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    web = await backend_factory("web")
    sidecar = await sidecar_factory(simple_config([web]))
    port = sidecar.listener_port("outbound")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4)) as session:

        async def one(i: int) -> int:
            async with session.get(f"http://127.0.0.1:{port}/{i}", headers={"Host": "web"}) as response:
                await response.read()
                return response.status

        statuses = await asyncio.gather(*(one(i) for i in range(200)))
    assert set(statuses) == {200}
    pool = sidecar.pools.pools[("127.0.0.1", web.port)]
    assert pool.created <= 4
    assert pool.reused >= 196


async def test_no_healthy_upstream_is_503(backend_factory: BackendFactory, sidecar_factory: SidecarFactory) -> None:
    config = http_config(
        [{"name": "empty", "endpoints": []}],
        [{"name": "web", "domains": ["web"], "routes": [{"match": {"prefix": "/"}, "cluster": "empty"}]}],
    )
    sidecar = await sidecar_factory(config)
    status, body = await get_json(sidecar.listener_port("outbound"), "/")
    assert status == 503
    assert body["text"] == "no healthy upstream\n"


async def test_connect_failure_is_502(sidecar_factory: SidecarFactory, unused_tcp_port: int) -> None:
    config = http_config(
        [{"name": "down", "endpoints": [{"host": "127.0.0.1", "port": unused_tcp_port}], "connect_timeout": "1s"}],
        [{"name": "web", "domains": ["web"], "routes": [{"match": {"prefix": "/"}, "cluster": "down"}]}],
    )
    sidecar = await sidecar_factory(config)
    status, body = await get_json(sidecar.listener_port("outbound"), "/")
    assert status == 502
    assert "upstream connect error" in str(body["text"])


async def test_reset_before_response_is_502(sidecar_factory: SidecarFactory) -> None:
    async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.transport.abort()

    server = await asyncio.start_server(slam, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = http_config(
        [{"name": "bad", "endpoints": [{"host": "127.0.0.1", "port": port}]}],
        [{"name": "web", "domains": ["web"], "routes": [{"match": {"prefix": "/"}, "cluster": "bad"}]}],
    )
    sidecar = await sidecar_factory(config)
    raw = await raw_request(
        sidecar.listener_port("outbound"),
        b"POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    assert status_codes(raw) == [502]
    server.close()


async def test_route_timeout_is_504(backend_factory: BackendFactory, sidecar_factory: SidecarFactory) -> None:
    web = await backend_factory("web")
    config = http_config(
        [cluster("web", [web])],
        [
            {
                "name": "web",
                "domains": ["web"],
                "routes": [{"match": {"prefix": "/"}, "cluster": "web", "timeout": "300ms"}],
            }
        ],
    )
    sidecar = await sidecar_factory(config, HttpSettings(sweep_interval_s=0.05))
    started = time.monotonic()
    status, body = await get_json(sidecar.listener_port("outbound"), "/slow?delay=3")
    assert status == 504
    assert body["text"] == "upstream request timeout\n"
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize(
    "raw",
    [
        b"POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGPOST / HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: web\r\nX-A: b\r\n c\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
    ],
    ids=["cl-te", "double-cl", "bad-chunk-size", "obs-fold", "double-te"],
)
async def test_smuggling_attempts_are_rejected(
    raw: bytes, backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    web = await backend_factory("web")
    sidecar = await sidecar_factory(simple_config([web]))
    answer = await raw_request(sidecar.listener_port("outbound"), raw)
    assert status_codes(answer) == [400]
    assert b"Connection: close" in answer
    assert [s for s in web.seen if s["method"] != "POST" or s["body_len"]] == []  # nothing smuggled through


async def test_oversized_head_is_431(backend_factory: BackendFactory, sidecar_factory: SidecarFactory) -> None:
    web = await backend_factory("web")
    sidecar = await sidecar_factory(simple_config([web]))
    answer = await raw_request(
        sidecar.listener_port("outbound"), b"GET / HTTP/1.1\r\nHost: web\r\nCookie: " + b"a" * 70_000 + b"\r\n\r\n"
    )
    assert status_codes(answer) == [431]
    assert web.seen == []


async def test_slowloris_is_cut_by_the_header_timeout(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    web = await backend_factory("web")
    sidecar = await sidecar_factory(simple_config([web]), HttpSettings(header_timeout_s=0.5, sweep_interval_s=0.05))
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.listener_port("outbound"))
    started = time.monotonic()
    received = b""
    closed_at = None
    for piece in (b"GET / HTTP/1.1\r\n", b"Host: web\r\n", b"X-a: 1\r\n", b"X-b: 2\r\n", b"X-c: 3\r\n", b"X-d: 4\r\n"):
        with contextlib.suppress(ConnectionError):
            writer.write(piece)
            await writer.drain()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.3):
                data = await reader.read(4096)
                received += data
                if not data:
                    closed_at = time.monotonic()
                    break
    if closed_at is None:
        async with asyncio.timeout(2):
            while data := await reader.read(4096):
                received += data
        closed_at = time.monotonic()
    writer.close()
    assert status_codes(received) == [408]
    assert closed_at - started < 1.5
    assert web.seen == []


async def test_idle_keep_alive_connection_is_closed(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    web = await backend_factory("web")
    sidecar = await sidecar_factory(simple_config([web]), HttpSettings(idle_timeout_s=0.3, sweep_interval_s=0.05))
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.listener_port("outbound"))
    writer.write(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
    async with asyncio.timeout(3):
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        assert await reader.read() == b""  # closed by the proxy while idle
    writer.close()


async def test_pipelined_responses_keep_request_order(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    web = await backend_factory("web")
    sidecar = await sidecar_factory(simple_config([web]))
    raw = (
        b"GET /slow?delay=0.3 HTTP/1.1\r\nHost: web\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /3 HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        b"GET /4 HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n"
    )
    answer = await raw_request(sidecar.listener_port("outbound"), raw)
    assert status_codes(answer) == [200, 200, 200, 200]
    slow_at = answer.index(b"slow web")
    paths = [answer.index(b'"path": "/%d"' % i) for i in (2, 3, 4)]
    assert slow_at < paths[0] < paths[1] < paths[2]
    assert b'"body_len": 5' in answer
    assert b'"body_len": 3' in answer


async def test_expect_100_continue(backend_factory: BackendFactory, sidecar_factory: SidecarFactory) -> None:
    web = await backend_factory("web")
    sidecar = await sidecar_factory(simple_config([web]))
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.listener_port("outbound"))
    writer.write(b"POST /upload HTTP/1.1\r\nHost: web\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    async with asyncio.timeout(3):
        interim = await reader.readuntil(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100")
        writer.write(b"data")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        body = json.loads(await reader.readexactly(length))
    assert body["body_len"] == 4
    writer.close()


async def test_websocket_upgrade_passes_through(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    web = await backend_factory("web")
    sidecar = await sidecar_factory(simple_config([web]))
    port = sidecar.listener_port("outbound")
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{port}/ws", headers={"Host": "web"}) as ws,
    ):
        await ws.send_str("hello")
        assert (await ws.receive(timeout=3)).data == "web:hello"
        payload = bytes(range(256)) * 4000
        await ws.send_bytes(payload)
        assert (await ws.receive(timeout=3)).data == payload
    assert sidecar.metrics.request_stats("outbound", "all", "web").codes.get(101) == 1


async def test_head_request_and_http10_client(backend_factory: BackendFactory, sidecar_factory: SidecarFactory) -> None:
    web = await backend_factory("web")
    sidecar = await sidecar_factory(simple_config([web]))
    port = sidecar.listener_port("outbound")
    head = await raw_request(
        port, b"HEAD /h HTTP/1.1\r\nHost: web\r\n\r\nGET /after HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n"
    )
    assert status_codes(head) == [200, 200]
    assert b'"path": "/after"' in head
    assert b'"path": "/h"' not in head  # no body for HEAD
    old = await raw_request(port, b"GET /stream?size=5000&chunk=1000 HTTP/1.0\r\nHost: web\r\n\r\n")
    response_head, _, body = old.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in response_head
    assert b"Connection: close" in response_head
    assert body == b"x" * 5000


async def test_large_streamed_response(backend_factory: BackendFactory, sidecar_factory: SidecarFactory) -> None:
    web = await backend_factory("web")
    sidecar = await sidecar_factory(simple_config([web]))
    size = 20 * 1024 * 1024
    digest = hashlib.sha256()
    received = 0
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{sidecar.listener_port('outbound')}/stream?size={size}", headers={"Host": "web"}
        ) as response,
    ):
        assert response.headers["Transfer-Encoding"] == "chunked"
        async for piece in response.content.iter_any():
            digest.update(piece)
            received += len(piece)
    assert received == size
    assert digest.hexdigest() == hashlib.sha256(b"x" * size).hexdigest()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.slow
async def test_100mb_chunked_upload_streams_with_bounded_memory(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    """The upstream sees the first bytes long before the upload ends, and memory does not hold the body."""
    web = await backend_factory("web")
    sidecar = await sidecar_factory(simple_config([web]))
    block = b"z" * (256 * 1024)
    total = 100 * 1024 * 1024
    expected = hashlib.sha256()
    for _ in range(total // len(block)):
        expected.update(block)
    sent_all_at = 0.0
    before = rss_mb()

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent_all_at
        for _ in range(total // len(block)):
            yield block
        sent_all_at = asyncio.get_running_loop().time()

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{sidecar.listener_port('outbound')}/sink", headers={"Host": "web"}, data=body()
        ) as response,
    ):
        result = await response.json()
    growth = rss_mb() - before
    assert result == {"backend": "web", "body_len": total, "body_sha": expected.hexdigest()}
    assert web.first_chunk_at[0] < sent_all_at - 0.05  # streamed: the upstream read early bytes first
    assert growth < 40, f"RSS grew {growth:.0f} MB while relaying 100 MB"


async def test_tunnel_bytes_in_the_same_read_as_the_101_reach_the_client(sidecar_factory: SidecarFactory) -> None:
    """An upstream that speaks first after switching protocols (one write: 101 head + its first bytes)."""

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: chat\r\n\r\nserver-hello;")
        while data := await reader.read(65536):
            writer.write(b"echo:" + data)
        writer.close()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    backend = Backend("raw", port=port)
    sidecar = await sidecar_factory(simple_config([backend]))
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.listener_port("outbound"))
    try:
        writer.write(b"GET /chat HTTP/1.1\r\nHost: web\r\nConnection: upgrade\r\nUpgrade: chat\r\n\r\n")
        async with asyncio.timeout(3):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101")
            assert await reader.readexactly(len(b"server-hello;")) == b"server-hello;"
            writer.write(b"ping")
            assert await reader.readexactly(len(b"echo:ping")) == b"echo:ping"
    finally:
        writer.close()
        server.close()
