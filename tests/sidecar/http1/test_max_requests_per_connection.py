"""A cluster's ``max_requests_per_connection`` retires upstream connections (real sockets).

The backend is a raw asyncio server that numbers the connections it accepts, answers each request
with ``<connection>.<request on it>`` and records how many requests each connection carried when
its peer (the sidecar) closed it. Clients keep one connection to the sidecar, so every new upstream
connection is the sidecar's doing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from tests.sidecar.conftest import SidecarFactory
from tests.sidecar.helpers import http_config


@dataclass
class Upstream:
    """One accepted connection: requests served so far, and whether the sidecar closed it."""

    number: int
    served: int = 0
    closed: bool = False


@dataclass
class CountingBackend:
    delay: float = 0.0  # seconds before each answer
    accepted: list[Upstream] = field(default_factory=list)
    server: asyncio.Server | None = None
    port: int = 0

    async def start(self) -> CountingBackend:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = Upstream(len(self.accepted))
        self.accepted.append(upstream)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")  # GETs only: no request body
                assert head.startswith(b"GET "), head
                if self.delay:
                    await asyncio.sleep(self.delay)
                upstream.served += 1
                body = f"{upstream.number}.{upstream.served}".encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            upstream.closed = True  # the sidecar closed it (the backend never does)
        finally:
            writer.close()

    def served(self) -> list[int]:
        return [u.served for u in self.accepted]

    def closed(self) -> list[bool]:
        return [u.closed for u in self.accepted]


@pytest.fixture
async def backend() -> AsyncIterator[CountingBackend]:
    server = await CountingBackend().start()
    yield server
    await server.stop()


def config(backend: CountingBackend, **cluster: Any) -> dict[str, Any]:
    return http_config(
        [{"name": "web", "endpoints": [{"host": "127.0.0.1", "port": backend.port}], **cluster}],
        [{"name": "web", "domains": ["web"], "routes": [{"name": "all", "cluster": "web"}]}],
    )


async def fetch_all(port: int, count: int, *, parallel: int = 1) -> list[str]:
    """``count`` GETs through the sidecar, ``parallel`` at a time, each client on one keep-alive connection."""
    answers: list[str] = []

    async def client(n: int) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            for _ in range(n):
                async with session.get(f"http://127.0.0.1:{port}/", headers={"Host": "web"}) as response:
                    assert response.status == 200, await response.text()
                    answers.append(await response.text())

    await asyncio.gather(*(client(count // parallel) for _ in range(parallel)))
    return answers


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.01)


async def test_a_connection_is_closed_after_serving_its_share(
    backend: CountingBackend, sidecar_factory: SidecarFactory
) -> None:
    sidecar = await sidecar_factory(config(backend, max_requests_per_connection=3))
    answers = await fetch_all(sidecar.listener_port("outbound"), 9)
    assert answers == ["0.1", "0.2", "0.3", "1.1", "1.2", "1.3", "2.1", "2.2", "2.3"]
    assert backend.served() == [3, 3, 3]
    await until(lambda: all(backend.closed()))  # the third one too: it reached 3 with the last request


async def test_one_request_per_connection_turns_upstream_keep_alive_off(
    backend: CountingBackend, sidecar_factory: SidecarFactory
) -> None:
    sidecar = await sidecar_factory(config(backend, max_requests_per_connection=1))
    answers = await fetch_all(sidecar.listener_port("outbound"), 5)
    assert answers == ["0.1", "1.1", "2.1", "3.1", "4.1"]
    await until(lambda: backend.closed() == [True] * 5)


async def test_unset_keeps_one_connection_for_every_request(
    backend: CountingBackend, sidecar_factory: SidecarFactory
) -> None:
    sidecar = await sidecar_factory(config(backend))
    answers = await fetch_all(sidecar.listener_port("outbound"), 50)
    assert answers == [f"0.{i}" for i in range(1, 51)]
    await asyncio.sleep(0.1)  # a close would reach the backend within this
    assert backend.served() == [50]
    assert backend.closed() == [False]


@pytest.mark.parametrize(
    "limit",
    [{"circuit_breakers": {"max_connections": 1}}, {"max_connections_per_endpoint": 1}],
    ids=["cluster-max-connections", "endpoint-max-connections"],
)
async def test_requests_waiting_for_a_connection_get_a_fresh_one_when_it_retires(
    backend: CountingBackend, sidecar_factory: SidecarFactory, limit: dict[str, Any]
) -> None:
    """One connection allowed: a retired connection is not handed to a waiter; its slot opens a new one."""
    backend.delay = 0.01  # the clients pile up while one request is on the connection
    sidecar = await sidecar_factory(config(backend, max_requests_per_connection=2, **limit))
    answers = await fetch_all(sidecar.listener_port("outbound"), 12, parallel=4)
    assert len(answers) == 12
    assert backend.served() == [2] * 6
    await until(lambda: all(backend.closed()))
