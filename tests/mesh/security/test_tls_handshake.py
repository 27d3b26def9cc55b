"""Real TLS handshakes on loopback between asyncio endpoints, with certificates from the mesh CA."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from mesh.security.ca import MeshCA, generate_root
from mesh.security.identity import SpiffeId
from mesh.security.workload import (
    WorkloadCredentials,
    client_context,
    identity_of_connection,
    load_credentials,
    server_context,
)
from tests.mesh.security.helpers import identity, issue, make_ca

WEB, CLIENT = identity("web"), identity("client", namespace="shop")
TIMEOUT = 5.0


@dataclass
class Server:
    port: int
    accepted: list[tuple[SpiffeId | None, str | None]] = field(default_factory=list)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[ssl.SSLContext], asyncio.Future[Server]]]:
    servers: list[asyncio.Server] = []

    async def start(context: ssl.SSLContext) -> Server:
        record = Server(0)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            ssl_object = writer.get_extra_info("ssl_object")
            peer = identity_of_connection(ssl_object)
            record.accepted.append((peer, ssl_object.version() if ssl_object else None))
            try:
                while line := await reader.readline():
                    writer.write(f"{peer or 'anonymous'} said {line.decode().strip()}\n".encode())
                    await writer.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context, ssl_handshake_timeout=TIMEOUT)
        servers.append(server)
        record.port = server.sockets[0].getsockname()[1]
        return record

    yield start  # type: ignore[misc]
    for server in servers:
        server.close()
        await server.wait_closed()


async def talk(port: int, context: ssl.SSLContext | None, line: str = "hi") -> tuple[str, SpiffeId | None, str]:
    """One exchange; the server's reply, the server's identity, the TLS version."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=context), TIMEOUT)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        writer.write(f"{line}\n".encode())
        await writer.drain()
        reply = await asyncio.wait_for(reader.readline(), TIMEOUT)
        if not reply:
            raise ConnectionResetError("closed by the server")
        return reply.decode().strip(), identity_of_connection(ssl_object), ssl_object.version() if ssl_object else ""
    finally:
        writer.close()


async def refused(port: int, context: ssl.SSLContext | None, line: str = "hi") -> BaseException:
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)) as info:
        await talk(port, context, line)
    return info.value


async def test_mutual_tls_succeeds_and_both_sides_learn_the_peer(serve: Callable[..., object]) -> None:
    ca = make_ca()
    server = await serve(server_context(issue(ca, WEB)))  # type: ignore[misc]
    reply, server_id, version = await talk(server.port, client_context(issue(ca, CLIENT)))
    assert reply == f"{CLIENT} said hi"
    assert server_id == WEB
    assert version == "TLSv1.3"  # the default when both sides have it
    assert server.accepted == [(CLIENT, "TLSv1.3")]


async def test_tls12_is_still_accepted(serve: Callable[..., object]) -> None:
    ca = make_ca()
    server = await serve(server_context(issue(ca, WEB)))  # type: ignore[misc]
    context = client_context(issue(ca, CLIENT))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    _, _, version = await talk(server.port, context)
    assert version == "TLSv1.2"


async def test_client_certificate_from_a_foreign_ca_is_refused(serve: Callable[..., object]) -> None:
    ca, foreign = make_ca(), make_ca()
    server = await serve(server_context(issue(ca, WEB)))  # type: ignore[misc]
    intruder = issue(foreign, CLIENT)
    context = client_context(intruder)
    context.load_verify_locations(cadata=ca.bundle_pem())  # it trusts our server; we must not trust it
    await refused(server.port, context)
    assert server.accepted == []


async def test_server_certificate_from_a_foreign_ca_is_refused(serve: Callable[..., object]) -> None:
    ca, foreign = make_ca(), make_ca()
    server = await serve(server_context(issue(foreign, WEB)))  # type: ignore[misc]
    error = await refused(server.port, client_context(issue(ca, CLIENT)))
    assert isinstance(error, ssl.SSLCertVerificationError)


async def test_expired_client_certificate_is_refused(serve: Callable[..., object]) -> None:
    past = datetime.now(UTC) - timedelta(days=2)
    root, key = generate_root("cluster.local", now=past)
    ca = MeshCA(root, key, trust_domain="cluster.local")
    server = await serve(server_context(issue(ca, WEB)))  # type: ignore[misc]
    expired = issue(ca, CLIENT, now=past + timedelta(hours=1), ttl=timedelta(hours=1))
    await refused(server.port, client_context(expired))
    assert server.accepted == []


async def test_expired_server_certificate_is_refused(serve: Callable[..., object]) -> None:
    past = datetime.now(UTC) - timedelta(days=2)
    root, key = generate_root("cluster.local", now=past)
    ca = MeshCA(root, key, trust_domain="cluster.local")
    server = await serve(server_context(issue(ca, WEB, now=past + timedelta(hours=1), ttl=timedelta(hours=1))))  # type: ignore[misc]
    error = await refused(server.port, client_context(issue(ca, CLIENT)))
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert "expired" in str(error)


async def test_strict_refuses_plaintext_and_clients_without_certificates(serve: Callable[..., object]) -> None:
    ca = make_ca()
    server = await serve(server_context(issue(ca, WEB), mode="STRICT"))  # type: ignore[misc]
    await refused(server.port, None, "GET / HTTP/1.1")  # plaintext HTTP
    anonymous = ssl.create_default_context(cadata=ca.bundle_pem())
    anonymous.check_hostname = False
    await refused(server.port, anonymous)  # TLS without a client certificate
    assert server.accepted == []


async def test_permissive_verifies_a_certificate_when_offered(serve: Callable[..., object]) -> None:
    ca = make_ca()
    server = await serve(server_context(issue(ca, WEB), mode="PERMISSIVE"))  # type: ignore[misc]
    anonymous = ssl.create_default_context(cadata=ca.bundle_pem())
    anonymous.check_hostname = False
    reply, _, _ = await talk(server.port, anonymous)
    assert reply == "anonymous said hi"
    reply, _, _ = await talk(server.port, client_context(issue(ca, CLIENT)))
    assert reply == f"{CLIENT} said hi"
    await refused(server.port, client_context(issue(make_ca(), CLIENT)))  # offered but foreign: refused


async def test_renewed_credentials_apply_to_new_handshakes_without_dropping_old_connections(
    serve: Callable[..., object],
) -> None:
    ca = make_ca()
    first: WorkloadCredentials = issue(ca, WEB)
    context = server_context(first)
    server = await serve(context)  # type: ignore[misc]
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=client_context(issue(ca, CLIENT)))
    try:
        served_before = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        renewed = issue(ca, WEB)
        load_credentials(context, renewed)
        writer.write(b"still there\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.readline(), TIMEOUT) == f"{CLIENT} said still there\n".encode()
    finally:
        writer.close()
    _, again = await asyncio.open_connection("127.0.0.1", server.port, ssl=client_context(issue(ca, CLIENT)))
    served_after = again.get_extra_info("ssl_object").getpeercert(binary_form=True)
    again.close()

    assert x509.load_der_x509_certificate(served_before).serial_number == first.leaf.serial_number
    assert x509.load_der_x509_certificate(served_after).serial_number == renewed.leaf.serial_number
