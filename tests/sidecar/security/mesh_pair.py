"""Two real sidecars on loopback, as in a mesh: a client sidecar (outbound listener) calling a
server sidecar (inbound listener in front of an aiohttp backend), each with credentials from
the real CA code; the security section comes from the config, as the control plane sends it."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

from mesh.model.parse import parse_snapshot
from mesh.security.ca import MeshCA
from mesh.security.workload import WorkloadCredentials, client_context
from sidecar.server import SidecarServer
from tests.mesh.security.helpers import identity, issue
from tests.sidecar.helpers import Backend, start_sidecar


def server_config(
    backend: Backend, security: dict[str, Any] | None, *, tcp_backend: Backend | None = None
) -> dict[str, Any]:
    listeners: list[dict[str, Any]] = [
        {
            "name": "inbound",
            "protocol": "http",
            "host": "127.0.0.1",
            "port": 0,
            "direction": "inbound",
            "route_table": "in",
        }
    ]
    clusters: list[dict[str, Any]] = [{"name": "local", "endpoints": [backend.address]}]
    if tcp_backend is not None:
        listeners.append(
            {
                "name": "inbound-tcp",
                "protocol": "tcp",
                "host": "127.0.0.1",
                "port": 0,
                "direction": "inbound",
                "cluster": "local-tcp",
            }
        )
        clusters.append({"name": "local-tcp", "protocol": "tcp", "endpoints": [tcp_backend.address]})
    config: dict[str, Any] = {
        "version": "s1",
        "listeners": listeners,
        "route_tables": [
            {
                "name": "in",
                "virtual_hosts": [
                    {
                        "name": "any",
                        "domains": ["*"],
                        "routes": [{"name": "all", "match": {"prefix": "/"}, "cluster": "local"}],
                    }
                ],
            }
        ],
        "clusters": clusters,
    }
    if security is not None:
        config["security"] = security
    return config


def client_config(server_port: int, *, mtls: bool = True, version: str = "c1") -> dict[str, Any]:
    endpoint = {"host": "127.0.0.1", "port": server_port}
    config: dict[str, Any] = {
        "version": version,
        "listeners": [{"name": "outbound", "protocol": "http", "host": "127.0.0.1", "port": 0, "route_table": "out"}],
        "route_tables": [
            {
                "name": "out",
                "virtual_hosts": [
                    {
                        "name": "web",
                        "domains": ["web"],
                        "routes": [{"name": "all", "match": {"prefix": "/"}, "cluster": "web"}],
                    }
                ],
            }
        ],
        "clusters": [{"name": "web", "endpoints": [endpoint]}],
        "security": {"mtls": {"mode": "PERMISSIVE"}, "mtls_endpoints": [f"127.0.0.1:{server_port}"] if mtls else []},
    }
    return config


async def start_with(config: dict[str, Any], credentials: WorkloadCredentials | None) -> SidecarServer:
    sidecar = await start_sidecar({"version": "empty"})
    if credentials is not None:
        sidecar.security.tls.install(credentials)
    outcome = sidecar.apply(parse_snapshot(config))
    assert outcome.ok, outcome.error
    await sidecar.settle()
    return sidecar


async def mesh_pair(
    ca: MeshCA, backend: Backend, security: dict[str, Any] | None, *, client_service: str = "sleep", mtls: bool = True
) -> tuple[SidecarServer, SidecarServer]:
    server = await start_with(server_config(backend, security), issue(ca, identity("web")))
    port = server.listener_port("inbound")
    client = await start_with(client_config(port, mtls=mtls), issue(ca, identity(client_service)))
    return server, client


async def get(port: int, path: str = "/", method: str = "GET", host: str = "web", timeout: float = 5.0) -> bytes:
    """One request with ``Connection: close``; everything the server sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    try:
        async with asyncio.timeout(timeout):
            return await reader.read(-1)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def tls_get(port: int, context: ssl.SSLContext, path: str = "/", method: str = "GET") -> bytes:
    """A request over TLS straight to an inbound listener (as another sidecar would send it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="")
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n".encode())
    try:
        async with asyncio.timeout(5.0):
            return await reader.read(-1)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def client_ctx(credentials: WorkloadCredentials) -> ssl.SSLContext:
    return client_context(credentials)


async def stop(*sidecars: SidecarServer) -> None:
    for sidecar in sidecars:
        await sidecar.stop()


async def refused(port: int, context: ssl.SSLContext | None, path: str = "/") -> bool:
    """Whether the server refuses the connection: a failed handshake, a reset, or a close without an answer
    (with TLS 1.3 a refused client certificate is seen after the client's own handshake has finished)."""
    try:
        if context is None:
            answer = await get(port, path)
        else:
            answer = await tls_get(port, context, path)
    except (ssl.SSLError, ConnectionError):
        return True
    return answer == b""
