"""The admin port's own small HTTP server, over real sockets (raw bytes and a real HTTP client)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from sidecar.admin_http import AdminRequest, AdminResponse, AdminServer, Routes


async def slow(request: AdminRequest) -> AdminResponse:
    await asyncio.sleep(0.05)
    return AdminResponse.text(f"slow {request.query.get('n', '')}\n")


def echo(request: AdminRequest) -> AdminResponse:
    return AdminResponse(200, request.body, "application/octet-stream")


def broken(_: AdminRequest) -> AdminResponse:
    raise RuntimeError("boom")


def ready(_: AdminRequest) -> AdminResponse:
    return AdminResponse.text("LIVE\n")


ROUTES: Routes = {
    ("GET", "/ready"): ready,
    ("GET", "/slow"): slow,
    ("POST", "/echo"): echo,
    ("GET", "/broken"): broken,
}


@pytest.fixture
async def server() -> AsyncIterator[tuple[AdminServer, int]]:
    admin = AdminServer(ROUTES)
    port = await admin.start_tcp("127.0.0.1", 0)
    yield admin, port
    await admin.close()


async def exchange(port: int, raw: bytes) -> bytes:
    """Send ``raw`` and read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


async def test_routes_answer_with_a_real_client(server: tuple[AdminServer, int]) -> None:
    _, port = server
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/ready") as response:
            assert (response.status, await response.text()) == (200, "LIVE\n")
        async with session.get(f"http://127.0.0.1:{port}/slow?n=7") as response:  # keep-alive, reused
            assert await response.text() == "slow 7\n"
        async with session.post(f"http://127.0.0.1:{port}/echo", data=b"x" * 100_000) as response:
            assert await response.read() == b"x" * 100_000
            assert response.headers["Content-Type"] == "application/octet-stream"
        async with session.head(f"http://127.0.0.1:{port}/ready") as response:
            assert response.status == 200
            assert response.headers["Content-Length"] == "5"


async def test_unknown_path_wrong_method_and_failing_handler(server: tuple[AdminServer, int]) -> None:
    _, port = server
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/nope") as response:
            assert response.status == 404
        async with session.get(f"http://127.0.0.1:{port}/echo") as response:
            assert response.status == 405
            assert response.headers["Allow"] == "POST"
        async with session.get(f"http://127.0.0.1:{port}/broken") as response:
            assert response.status == 500


async def test_pipelined_requests_are_answered_in_order(server: tuple[AdminServer, int]) -> None:
    _, port = server
    raw = b"GET /slow?n=1 HTTP/1.1\r\nHost: a\r\n\r\nGET /ready HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    data = await exchange(port, raw)
    first, second = data.index(b"slow 1"), data.index(b"LIVE")
    assert first < second  # the slow answer is not overtaken
    assert data.count(b"HTTP/1.1 200 OK") == 2


async def test_http10_closes_and_malformed_gets_400(server: tuple[AdminServer, int]) -> None:
    _, port = server
    data = await exchange(port, b"GET /ready HTTP/1.0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert b"Connection: close" in data
    data = await exchange(port, b"GARBAGE\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400 ")


async def test_unix_socket(tmp_path: Path) -> None:
    admin = AdminServer(ROUTES)
    path = str(tmp_path / "admin.sock")
    await admin.start_unix(path)
    try:
        connector = aiohttp.UnixConnector(path=path)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get("http://worker/ready") as response,
        ):
            assert await response.text() == "LIVE\n"
    finally:
        await admin.close()
