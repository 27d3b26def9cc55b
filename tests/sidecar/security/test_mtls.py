"""mTLS between two real sidecars on loopback: STRICT, PERMISSIVE, DISABLE; bad certificates refused."""

from __future__ import annotations

import asyncio
import socket
import ssl
from datetime import UTC, datetime, timedelta

import pytest

from tests.mesh.security.helpers import identity, issue, make_ca
from tests.sidecar.conftest import BackendFactory
from tests.sidecar.security.mesh_pair import (
    client_config,
    client_ctx,
    get,
    mesh_pair,
    refused,
    server_config,
    start_with,
    stop,
    tls_get,
)


async def test_strict_serves_mtls_and_refuses_plaintext(backend_factory: BackendFactory) -> None:
    ca = make_ca()
    backend = await backend_factory("b1")
    server, client = await mesh_pair(ca, backend, {"mtls": {"mode": "STRICT"}})
    try:
        answer = await get(client.listener_port("outbound"))
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        plain = await get(server.listener_port("inbound"))
        assert plain == b""  # closed without an answer
        stats = server.security.stats.connections
        assert stats["mtls"] >= 1
        assert stats["plaintext_refused"] == 1
        # the plaintext client of a STRICT server gets the sidecar's 502 (reset before headers), not the backend
        plain_client = await mesh_pair(ca, backend, {"mtls": {"mode": "STRICT"}}, mtls=False)
        try:
            refused = await get(plain_client[1].listener_port("outbound"))
            assert refused.startswith(b"HTTP/1.1 502"), refused[:200]
        finally:
            await stop(*plain_client)
    finally:
        await stop(client, server)


async def test_permissive_accepts_both(backend_factory: BackendFactory) -> None:
    ca = make_ca()
    backend = await backend_factory("b1")
    server, client = await mesh_pair(ca, backend, {"mtls": {"mode": "PERMISSIVE"}})
    try:
        assert (await get(client.listener_port("outbound"))).startswith(b"HTTP/1.1 200")
        assert (await get(server.listener_port("inbound"))).startswith(b"HTTP/1.1 200")
        assert server.security.stats.connections == {"mtls": 1, "plaintext": 1}
    finally:
        await stop(client, server)


async def test_disable_serves_plaintext_only(backend_factory: BackendFactory) -> None:
    ca = make_ca()
    backend = await backend_factory("b1")
    server, client = await mesh_pair(ca, backend, {"mtls": {"mode": "DISABLE"}}, mtls=False)
    try:
        assert (await get(client.listener_port("outbound"))).startswith(b"HTTP/1.1 200")
        assert (await get(server.listener_port("inbound"))).startswith(b"HTTP/1.1 200")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await tls_get(server.listener_port("inbound"), client_ctx(issue(ca, identity("sleep"))))
    finally:
        await stop(client, server)


async def test_port_level_mode_wins(backend_factory: BackendFactory) -> None:
    ca = make_ca()
    backend = await backend_factory("b1")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = server_config(backend, {"mtls": {"mode": "STRICT", "ports": {str(port): "DISABLE"}}})
    config["listeners"][0]["port"] = port
    server = await start_with(config, issue(ca, identity("web")))
    try:  # the port's own mode (DISABLE) wins over the workload's STRICT
        assert (await get(port)).startswith(b"HTTP/1.1 200")
    finally:
        await stop(server)


async def test_expired_and_foreign_certificates_are_refused(backend_factory: BackendFactory) -> None:
    ca = make_ca(now=datetime.now(UTC) - timedelta(days=2))
    backend = await backend_factory("b1")
    server, client = await mesh_pair(ca, backend, {"mtls": {"mode": "STRICT"}})
    try:
        port = server.listener_port("inbound")
        good = issue(ca, identity("sleep"))
        assert (await tls_get(port, client_ctx(good))).startswith(b"HTTP/1.1 200")
        expired = issue(ca, identity("sleep"), now=datetime.now(UTC) - timedelta(hours=1), ttl=timedelta(minutes=5))
        assert expired.not_after < datetime.now(UTC)
        assert await refused(port, client_ctx(expired))
        foreign = issue(make_ca(), identity("sleep"))
        assert await refused(port, client_ctx(foreign))
    finally:
        await stop(client, server)


async def test_client_refuses_a_server_outside_the_trust_bundle(backend_factory: BackendFactory) -> None:
    ca, other = make_ca(), make_ca()
    backend = await backend_factory("b1")
    server, client = await mesh_pair(ca, backend, {"mtls": {"mode": "PERMISSIVE"}})
    try:
        server.security.tls.install(issue(other, identity("web")))  # an impostor's certificate
        answer = await get(client.listener_port("outbound"))
        assert answer.startswith(b"HTTP/1.1 502"), answer[:200]
        # the client refused the impostor during its handshake (its chain does not reach the trust bundle)
        assert server.security.stats.connections["mtls"] >= 1
        assert client.pools.pools[("127.0.0.1", server.listener_port("inbound"))].connect_failures >= 1
    finally:
        await stop(client, server)


async def test_tls13_by_default_and_tls12_accepted(backend_factory: BackendFactory) -> None:
    ca = make_ca()
    backend = await backend_factory("b1")
    server, client = await mesh_pair(ca, backend, {"mtls": {"mode": "STRICT"}})
    try:
        port = server.listener_port("inbound")
        context = client_ctx(issue(ca, identity("sleep")))
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="")
        assert writer.get_extra_info("ssl_object").version() == "TLSv1.3"
        writer.close()
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        assert (await tls_get(port, context)).startswith(b"HTTP/1.1 200")
    finally:
        await stop(client, server)


@pytest.mark.parametrize(("expected", "status"), [("ns/default/sa/web", b"200"), ("ns/default/sa/ratings", b"502")])
async def test_client_checks_the_expected_server_identity(
    backend_factory: BackendFactory, expected: str, status: bytes
) -> None:
    ca = make_ca()
    backend = await backend_factory("b1")
    server = await start_with(server_config(backend, {"mtls": {"mode": "STRICT"}}), issue(ca, identity("web")))
    port = server.listener_port("inbound")
    config = client_config(port)
    config["security"]["mtls_identities"] = {f"127.0.0.1:{port}": expected}
    client = await start_with(config, issue(ca, identity("sleep")))
    try:
        answer = await get(client.listener_port("outbound"))
        assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
    finally:
        await stop(client, server)


async def test_client_refuses_a_server_of_another_trust_domain(backend_factory: BackendFactory) -> None:
    ca = make_ca()
    foreign_domain = make_ca("example.org")
    backend = await backend_factory("b1")
    server, client = await mesh_pair(ca, backend, {"mtls": {"mode": "PERMISSIVE"}})
    try:  # the client trusts both roots, but the server's identity is in example.org
        both = issue(ca, identity("sleep"))
        bundle = (*both.trust_bundle, *foreign_domain.trust_bundle)
        client.security.tls.install(type(both)(both.identity, both.key, both.chain, bundle))
        foreign = issue(foreign_domain, identity("web", trust_domain="example.org"))
        server.security.tls.install(type(foreign)(foreign.identity, foreign.key, foreign.chain, bundle))
        answer = await get(client.listener_port("outbound"))
        assert answer.startswith(b"HTTP/1.1 502"), answer[:200]
        # both handshakes verified (each side trusts both roots): the client's identity check refused the server
        assert server.security.stats.connections["mtls"] >= 1
        assert client.pools.pools[("127.0.0.1", server.listener_port("inbound"))].connect_failures >= 1
    finally:
        await stop(client, server)
