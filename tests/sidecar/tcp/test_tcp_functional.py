"""L4 listeners on loopback: relay, half-close, backpressure, idle timeout, connect failures, balancing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.sidecar.conftest import SidecarFactory


def tcp_config(endpoints: list[dict[str, Any]], **cluster: Any) -> dict[str, Any]:
    return {
        "version": "t1",
        "listeners": [{"name": "db", "protocol": "tcp", "host": "127.0.0.1", "port": 0, "cluster": "db"}],
        "clusters": [{"name": "db", "protocol": "tcp", "endpoints": endpoints, **cluster}],
    }


@contextlib.asynccontextmanager
async def tcp_server(handler: Any) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def echo_after_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read until the client half-closes, then answer with what it sent, reversed."""
    data = await reader.read()
    writer.write(b"got:" + data[::-1])
    await writer.drain()
    writer.close()


async def test_relay_and_half_close(sidecar_factory: SidecarFactory) -> None:
    async with tcp_server(echo_after_eof) as port:
        sidecar = await sidecar_factory(tcp_config([{"host": "127.0.0.1", "port": port}]))
        reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.listener_port("db"))
        writer.write(b"hello ")
        writer.write(b"world")
        await writer.drain()
        writer.write_eof()  # half-close: the server only answers after our EOF
        async with asyncio.timeout(3):
            answer = await reader.read()
        assert answer == b"got:dlrow olleh"
        writer.close()
    stats = sidecar.metrics.tcp_stats("db")
    assert stats.total == 1
    assert stats.bytes_rx == 11


async def test_backpressure_bounds_what_the_proxy_buffers(sidecar_factory: SidecarFactory) -> None:
    """A server that never reads: the client's writes must stall instead of filling the proxy's memory."""
    release = asyncio.Event()

    async def stuck(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        total = 0
        while data := await reader.read(1 << 20):
            total += len(data)
        writer.write(str(total).encode())
        await writer.drain()
        writer.close()

    async with tcp_server(stuck) as port:
        sidecar = await sidecar_factory(tcp_config([{"host": "127.0.0.1", "port": port}]))
        reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.listener_port("db"))
        writer.transport.set_write_buffer_limits(high=64 * 1024)
        block = b"b" * 65536
        sent = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.5):
                while sent < 200 * 1024 * 1024:
                    writer.write(block)
                    sent += len(block)
                    await writer.drain()
        # Kernel buffers on three sockets plus the proxy's 256 KiB high-water mark: far below 200 MB.
        assert sent < 40 * 1024 * 1024, f"{sent} bytes were accepted with nobody reading"
        release.set()
        writer.write_eof()
        async with asyncio.timeout(10):
            total = int(await reader.read())
        assert total == sent
        writer.close()


async def test_idle_connection_is_closed(sidecar_factory: SidecarFactory) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    async with tcp_server(silent) as port:
        sidecar = await sidecar_factory(tcp_config([{"host": "127.0.0.1", "port": port}], idle_timeout="500ms"))
        reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.listener_port("db"))
        async with asyncio.timeout(4):
            assert await reader.read() == b""
        writer.close()


async def test_connect_failure_tries_another_endpoint(sidecar_factory: SidecarFactory, unused_tcp_port: int) -> None:
    async with tcp_server(echo_after_eof) as port:
        endpoints = [{"host": "127.0.0.1", "port": unused_tcp_port}, {"host": "127.0.0.1", "port": port}]
        sidecar = await sidecar_factory(tcp_config(endpoints))
        for _ in range(4):
            reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.listener_port("db"))
            writer.write(b"abc")
            writer.write_eof()
            async with asyncio.timeout(3):
                assert await reader.read() == b"got:cba"
            writer.close()
        assert sidecar.metrics.tcp_stats("db").connect_failures >= 1


async def test_no_endpoint_closes_the_client(sidecar_factory: SidecarFactory) -> None:
    sidecar = await sidecar_factory(tcp_config([]))
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.listener_port("db"))
    async with asyncio.timeout(3):
        assert await reader.read() == b""
    writer.close()


@pytest.mark.parametrize("kind", ["round_robin", "least_request"])
async def test_connections_are_balanced(kind: str, sidecar_factory: SidecarFactory) -> None:
    hits: dict[str, int] = {"a": 0, "b": 0}

    def named(name: str) -> Any:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            hits[name] += 1
            await reader.read()
            writer.write(name.encode())
            await writer.drain()
            writer.close()

        return handler

    async with tcp_server(named("a")) as port_a, tcp_server(named("b")) as port_b:
        endpoints = [{"host": "127.0.0.1", "port": port_a}, {"host": "127.0.0.1", "port": port_b}]
        sidecar = await sidecar_factory(tcp_config(endpoints, lb={"kind": kind}))
        # Ten connections held open together: least_request sees the load of the earlier ones.
        opened = [await asyncio.open_connection("127.0.0.1", sidecar.listener_port("db")) for _ in range(10)]
        async with asyncio.timeout(3):
            while sum(hits.values()) < 10:  # noqa: ASYNC110 - polls the handlers' counter
                await asyncio.sleep(0.01)
        for reader, writer in opened:
            writer.write_eof()
            async with asyncio.timeout(3):
                await reader.read()
            writer.close()
    assert hits == {"a": 5, "b": 5}
