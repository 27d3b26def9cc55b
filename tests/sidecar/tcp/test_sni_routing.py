"""A TCP listener routing by SNI (a gateway's PASSTHROUGH server): TLS is not terminated, the client
talks to the backend its server name picks, end to end; an unknown name closes the connection."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.sidecar.conftest import SidecarFactory
from tests.web_certs import TestCA


@pytest.fixture
async def tls_backends(tmp_path: Path) -> AsyncIterator[tuple[TestCA, dict[str, int]]]:
    """Two TLS servers, each with its own certificate, answering with their name."""
    ca = TestCA(tmp_path)
    servers = []
    ports: dict[str, int] = {}
    for name in ("a.example.com", "b.example.com"):
        files = ca.issue(name)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(files.cert, files.key)

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, who: str = name) -> None:
            await reader.readline()
            writer.write(f"hello from {who}\n".encode())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
        servers.append(server)
        ports[name] = server.sockets[0].getsockname()[1]
    yield ca, ports
    for server in servers:
        server.close()
        await server.wait_closed()


async def through(port: int, ca: TestCA, server_name: str) -> str:
    context = ssl.create_default_context(cafile=str(ca.cert))
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=server_name)
    try:
        writer.write(b"hi\n")
        async with asyncio.timeout(5):
            return (await reader.readline()).decode().strip()
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def test_sni_picks_the_backend_and_tls_goes_through(
    sidecar_factory: SidecarFactory, tls_backends: tuple[TestCA, dict[str, int]]
) -> None:
    ca, ports = tls_backends
    config = {
        "version": "v1",
        "listeners": [
            {
                "name": "tls",
                "protocol": "tcp",
                "host": "127.0.0.1",
                "port": 0,
                "sni_routes": [
                    {"server_names": ["a.example.com"], "cluster": "a"},
                    {"server_names": ["*.example.com"], "cluster": "b"},
                ],
            }
        ],
        "clusters": [
            {"name": "a", "protocol": "tcp", "endpoints": [{"host": "127.0.0.1", "port": ports["a.example.com"]}]},
            {"name": "b", "protocol": "tcp", "endpoints": [{"host": "127.0.0.1", "port": ports["b.example.com"]}]},
        ],
    }
    sidecar = await sidecar_factory(config)
    port = sidecar.listener_port("tls")
    assert await through(port, ca, "a.example.com") == "hello from a.example.com"  # its own certificate verified
    assert await through(port, ca, "b.example.com") == "hello from b.example.com"
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        await through(port, ca, "other.test")  # no route for that name: closed
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")  # not TLS at all
    async with asyncio.timeout(5):
        assert await reader.read() == b""
    writer.close()
