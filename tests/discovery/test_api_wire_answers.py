"""Blocking reads answered from the wake-up callback, written straight to the connection.

The answer must be the same HTTP response aiohttp would have written (status, headers, body),
the connection must stay usable for the next request, and everything that is not a plain
HTTP/1.1 keep-alive GET must still be answered the ordinary way.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp

from discovery.server import RegistryServer
from tests.discovery.helpers import blocking_in_flight, register_service, ttl, wait_blocked, web_service

PATH = "/v1/health/service/web"


class RawConnection:
    """One keep-alive HTTP/1.1 connection read response by response (Content-Length framing)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, registry: RegistryServer) -> RawConnection:
        host, port = registry.url.removeprefix("http://").rsplit(":", 1)
        return cls(*await asyncio.open_connection(host, int(port)))

    def send(self, target: str, version: str = "1.1", method: str = "GET", extra: str = "") -> None:
        self.writer.write(f"{method} {target} HTTP/{version}\r\nHost: registry\r\n{extra}\r\n".encode())

    async def response(self, has_body: bool = True) -> tuple[str, dict[str, str], bytes]:
        head = (await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)).decode("latin-1")
        status, *lines = head.rstrip("\r\n").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        length = int(headers.get("content-length", "0")) if has_body else 0
        body = await asyncio.wait_for(self.reader.readexactly(length), 10)
        return status, headers, body

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def _setup(http: aiohttp.ClientSession) -> int:
    await register_service(http, web_service(Check={"TTL": "30s"}))
    await ttl(http, "pass", "service:web-1")
    async with http.get(PATH) as resp:
        return int(resp.headers["X-Consul-Index"])


async def test_woken_answer_matches_the_ordinary_response(
    registry: RegistryServer, http: aiohttp.ClientSession
) -> None:
    index = await _setup(http)
    conn = await RawConnection.open(registry)
    try:
        before = blocking_in_flight()
        conn.send(f"{PATH}?index={index}&wait=10s")
        await wait_blocked(before)
        await ttl(http, "fail", "service:web-1", note="down")
        status, woken_headers, woken_body = await conn.response()
        assert status == "HTTP/1.1 200 OK"
        new_index = int(woken_headers["x-consul-index"])
        assert new_index > index
        assert json.loads(woken_body)[0]["Checks"][0]["Status"] == "critical"

        # The same query at the new index, answered at once by aiohttp on the same connection.
        conn.send(f"{PATH}?index={new_index - 1}&wait=10s")
        status, plain_headers, plain_body = await conn.response()
        assert status == "HTTP/1.1 200 OK"
        assert plain_body == woken_body
        woken_headers.pop("date"), plain_headers.pop("date")
        assert woken_headers == plain_headers
    finally:
        await conn.close()


async def test_connection_keeps_serving_after_a_woken_answer(
    registry: RegistryServer, http: aiohttp.ClientSession
) -> None:
    index = await _setup(http)
    conn = await RawConnection.open(registry)
    try:
        for round_ in range(3):
            before = blocking_in_flight()
            conn.send(f"{PATH}?index={index}&wait=10s")
            await wait_blocked(before)
            await ttl(http, "fail" if round_ % 2 == 0 else "pass", "service:web-1")
            _, headers, _ = await conn.response()
            assert int(headers["x-consul-index"]) > index
            index = int(headers["x-consul-index"])
        conn.send("/v1/status/leader")
        status, _, body = await conn.response()
        assert status == "HTTP/1.1 200 OK"
        assert json.loads(body)
    finally:
        await conn.close()


async def test_many_watchers_of_one_query_all_woken(registry: RegistryServer, http: aiohttp.ClientSession) -> None:
    index = await _setup(http)
    conns = [await RawConnection.open(registry) for _ in range(50)]
    try:
        before = blocking_in_flight()
        for conn in conns:
            conn.send(f"{PATH}?index={index}&wait=10s")
        await wait_blocked(before + len(conns) - 1)
        await ttl(http, "fail", "service:web-1")
        answers = await asyncio.gather(*(conn.response() for conn in conns))
        assert len({body for _, _, body in answers}) == 1
        assert {headers["x-consul-index"] for _, headers, _ in answers} == {answers[0][1]["x-consul-index"]}
    finally:
        for conn in conns:
            await conn.close()


async def test_a_watcher_that_hung_up_does_not_disturb_the_others(
    registry: RegistryServer, http: aiohttp.ClientSession
) -> None:
    index = await _setup(http)
    gone, staying = await RawConnection.open(registry), await RawConnection.open(registry)
    try:
        before = blocking_in_flight()
        gone.send(f"{PATH}?index={index}&wait=10s")
        staying.send(f"{PATH}?index={index}&wait=10s")
        await wait_blocked(before + 1)
        await gone.close()
        await ttl(http, "fail", "service:web-1")
        status, headers, _ = await staying.response()
        assert status == "HTTP/1.1 200 OK"
        assert int(headers["x-consul-index"]) > index
    finally:
        await staying.close()


async def test_http10_and_closing_requests_are_answered_the_ordinary_way(
    registry: RegistryServer, http: aiohttp.ClientSession
) -> None:
    index = await _setup(http)
    old, closing = await RawConnection.open(registry), await RawConnection.open(registry)
    try:
        before = blocking_in_flight()
        old.send(f"{PATH}?index={index}&wait=10s", version="1.0")
        closing.send(f"{PATH}?index={index}&wait=10s", extra="Connection: close\r\n")
        await wait_blocked(before + 1)
        await ttl(http, "fail", "service:web-1")
        for conn in (old, closing):
            status, headers, body = await conn.response()
            assert status.endswith("200 OK")
            assert int(headers["x-consul-index"]) > index
            assert json.loads(body)[0]["Checks"][0]["Status"] == "critical"
            assert await asyncio.wait_for(conn.reader.read(), 5) == b""  # the server closed it
    finally:
        await old.close()
        await closing.close()


async def test_head_of_a_blocking_read_has_no_body(registry: RegistryServer, http: aiohttp.ClientSession) -> None:
    index = await _setup(http)
    conn = await RawConnection.open(registry)
    try:
        before = blocking_in_flight()
        conn.send(f"{PATH}?index={index}&wait=10s", method="HEAD")
        await wait_blocked(before)
        await ttl(http, "fail", "service:web-1")
        status, _, _ = await conn.response(has_body=False)
        assert status == "HTTP/1.1 200 OK"
        conn.send("/v1/status/leader")  # a body after the HEAD answer would corrupt this one
        status, _, body = await conn.response()
        assert status == "HTTP/1.1 200 OK"
        assert body.startswith(b'"')
    finally:
        await conn.close()
