"""Mirroring: target choice, the shadow Host, the copy's bytes, the in-flight cap, and real copies sent."""

from __future__ import annotations

import asyncio
import random

from aiohttp import web

from mesh.model.policies import MirrorPolicy
from sidecar.resilience.mirror import MirrorLimiter, mirror_targets, shadow_host, shadow_request_bytes
from sidecar.resilience.mirror_sender import MirrorSender
from tests.sidecar.helpers import serve_app


def test_shadow_host_as_envoy() -> None:
    assert shadow_host("api") == "api-shadow"
    assert shadow_host("api:8080") == "api-shadow:8080"
    assert shadow_host("api.default.svc.cluster.local") == "api.default.svc.cluster.local-shadow"
    assert shadow_host("[::1]:80") == "[::1]-shadow:80"
    assert shadow_host("10.0.0.1") == "10.0.0.1-shadow"


def test_targets_roll_per_mirror() -> None:
    rng = random.Random(1)
    mirrors = (MirrorPolicy("all", 100.0), MirrorPolicy("none", 0.0), MirrorPolicy("half", 50.0))
    picks = [mirror_targets(mirrors, rng) for _ in range(4000)]
    assert all(p[0] == "all" for p in picks)
    assert not any("none" in p for p in picks)
    assert 1800 < sum("half" in p for p in picks) < 2200
    assert mirror_targets((), rng) == ()


def test_copy_bytes_drop_hop_by_hop_headers() -> None:
    raw = shadow_request_bytes(
        "POST",
        "/v1/items?a=1",
        "api:8080",
        [
            ("Content-Type", "application/json"),
            ("Connection", "keep-alive"),
            ("Transfer-Encoding", "chunked"),
            ("X-Request-Id", "abc"),
            ("Host", "evil"),
        ],
        b'{"a":1}',
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/items?a=1 HTTP/1.1"
    assert "Host: api-shadow:8080" in lines
    assert "Content-Type: application/json" in lines
    assert "X-Request-Id: abc" in lines
    assert "Content-Length: 7" in lines
    assert "Connection: close" in lines
    assert not any(line.lower().startswith(("transfer-encoding", "host: evil", "connection: keep")) for line in lines)
    assert body == b'{"a":1}'
    get = shadow_request_bytes("GET", "/", "api", [], b"")
    assert b"Content-Length" not in get


def test_limiter_caps_in_flight_per_cluster() -> None:
    limiter = MirrorLimiter(limit=2)
    assert limiter.try_acquire("a")
    assert limiter.try_acquire("a")
    assert not limiter.try_acquire("a")
    assert limiter.try_acquire("b")
    limiter.release("a", ok=True)
    limiter.release("a", ok=False)
    assert limiter.in_flight["a"] == 0
    assert (limiter.sent, limiter.failed, limiter.dropped) == ({"a": 1}, {"a": 1}, {"a": 1})


async def test_sender_delivers_copies_and_releases_slots() -> None:
    received: list[tuple[str, str, bytes]] = []
    slow = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        received.append((request.method, request.host, await request.read()))
        if request.path == "/slow":
            await slow.wait()
        return web.Response(text="shadow answer")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner, port = await serve_app(app)
    limiter = MirrorLimiter(limit=3)
    sender = MirrorSender(limiter, timeout_s=2.0)
    try:
        assert limiter.try_acquire("shadow")
        sender.send("shadow", "127.0.0.1", port, shadow_request_bytes("PUT", "/x", "api", [], b"payload"))
        for _ in range(200):
            if limiter.sent.get("shadow"):
                break
            await asyncio.sleep(0.01)
        assert received == [("PUT", "api-shadow", b"payload")]
        assert limiter.in_flight["shadow"] == 0
        # A slow shadow: copies pile up only to the limit, the rest are dropped, nothing waits.
        for _ in range(5):
            if limiter.try_acquire("shadow"):
                sender.send("shadow", "127.0.0.1", port, shadow_request_bytes("GET", "/slow", "api", [], b""))
        assert limiter.in_flight["shadow"] == 3
        assert limiter.dropped["shadow"] == 2
        assert sender.in_flight == 3
        slow.set()
        for _ in range(200):
            if limiter.in_flight["shadow"] == 0:
                break
            await asyncio.sleep(0.01)
        assert limiter.sent["shadow"] == 4
        # An unreachable shadow counts as failed and frees its slot.
        assert limiter.try_acquire("gone")
        sender.send("gone", "127.0.0.1", 1, b"GET / HTTP/1.1\r\n\r\n")
        for _ in range(200):
            if limiter.failed.get("gone"):
                break
            await asyncio.sleep(0.01)
        assert limiter.failed["gone"] == 1
        assert limiter.in_flight["gone"] == 0
    finally:
        await sender.close()
        await runner.cleanup()
