"""Authorization enforced by the inbound sidecar: the allow/deny matrix over real mTLS (HTTP 403, TCP reset)."""

from __future__ import annotations

import asyncio
import re
import ssl
from typing import Any

import pytest

from mesh.model.parse import parse_snapshot
from tests.mesh.security.helpers import identity, issue, make_ca
from tests.sidecar.conftest import BackendFactory
from tests.sidecar.security.mesh_pair import client_ctx, get, mesh_pair, server_config, start_with, stop, tls_get

DENY_DELETE = {
    "namespace": "default",
    "name": "deny-delete",
    "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["DELETE"]}}]}]},
}
ALLOW_SLEEP_GET = {
    "namespace": "default",
    "name": "allow-sleep",
    "spec": {
        "action": "ALLOW",
        "rules": [
            {
                "from": [{"source": {"principals": ["cluster.local/ns/default/sa/sleep"]}}],
                "to": [{"operation": {"methods": ["GET"], "paths": ["/api/*"]}}],
            }
        ],
    },
}
DENY_PLAINTEXT = {
    "namespace": "istio-system",
    "name": "require-mtls",
    "spec": {"action": "DENY", "rules": [{"from": [{"source": {"notPrincipals": ["*"]}}]}]},
}


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


@pytest.mark.parametrize(
    ("client", "method", "path", "expected"),
    [
        ("sleep", "GET", "/api/items", 200),  # ALLOW rule matches
        ("sleep", "POST", "/api/items", 403),  # method not allowed
        ("sleep", "GET", "/admin", 403),  # path not allowed
        ("other", "GET", "/api/items", 403),  # principal not allowed
        ("sleep", "DELETE", "/api/items", 403),  # DENY first
    ],
)
async def test_http_allow_deny_matrix(
    backend_factory: BackendFactory, client: str, method: str, path: str, expected: int
) -> None:
    ca = make_ca()
    backend = await backend_factory("b1")
    security = {"mtls": {"mode": "STRICT"}, "authorization": [DENY_DELETE, ALLOW_SLEEP_GET]}
    server, sidecar = await mesh_pair(ca, backend, security, client_service=client)
    try:
        answer = await get(sidecar.listener_port("outbound"), path, method)
        assert status(answer) == expected, answer[:300]
        if expected == 403:
            assert b"RBAC: access denied" in answer
            policy = b"default/deny-delete" if method == "DELETE" else b"default/allow-sleep"
            assert policy in answer
            assert sum(server.security.stats.rbac.values()) == 1
    finally:
        await stop(sidecar, server)


async def test_plaintext_denied_by_not_principals_in_permissive_mode(backend_factory: BackendFactory) -> None:
    ca = make_ca()
    backend = await backend_factory("b1")
    server, client = await mesh_pair(ca, backend, {"mtls": {"mode": "PERMISSIVE"}, "authorization": [DENY_PLAINTEXT]})
    try:
        assert status(await get(client.listener_port("outbound"))) == 200
        plain = await get(server.listener_port("inbound"))
        assert status(plain) == 403
        assert b"istio-system/require-mtls" in plain
        headers = plain.split(b"\r\n\r\n")[0].lower()
        assert b"x-mesh-response-flags: rbac" in headers
    finally:
        await stop(client, server)


async def test_pipelined_request_after_a_denied_one_is_not_served(backend_factory: BackendFactory) -> None:
    backend = await backend_factory("b1")
    server = await start_with(
        server_config(backend, {"mtls": {"mode": "DISABLE"}, "authorization": [DENY_DELETE]}), None
    )
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.listener_port("inbound"))
        requests = [f"{method} /{i} HTTP/1.1\r\nHost: web\r\n\r\n" for i, method in enumerate(["GET", "DELETE", "GET"])]
        writer.write("".join(requests).encode())
        async with asyncio.timeout(5):
            answer = await reader.read(-1)
        writer.close()
        assert [int(s) for s in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)] == [200, 403]
    finally:
        await stop(server)


async def _tcp_exchange(port: int, context: Any) -> bytes:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="" if context else None
    )
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        async with asyncio.timeout(5):
            return await reader.read(-1)
    finally:
        writer.close()


async def _reset(port: int, context: Any) -> bool:
    """Whether the connection is reset (RST: ECONNRESET on our side), as Envoy's RBAC filter does."""
    try:
        await _tcp_exchange(port, context)
    except ConnectionResetError:
        return True
    except ssl.SSLError as exc:
        return "reset" in str(exc).lower() or exc.errno == 104
    return False


async def test_tcp_allow_and_reset(backend_factory: BackendFactory) -> None:
    ca = make_ca()
    backend = await backend_factory("b1")
    tcp_only_sleep = {
        "namespace": "default",
        "name": "tcp-sleep-only",
        "spec": {
            "action": "ALLOW",
            "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/sleep"]}}]}],
        },
    }
    config = server_config(
        backend, {"mtls": {"mode": "PERMISSIVE"}, "authorization": [tcp_only_sleep]}, tcp_backend=backend
    )
    server = await start_with(config, issue(ca, identity("web")))
    try:
        port = server.listener_port("inbound-tcp")
        allowed = await _tcp_exchange(port, client_ctx(issue(ca, identity("sleep"))))
        assert status(allowed) == 200
        assert await _reset(port, client_ctx(issue(ca, identity("other"))))
        assert await _reset(port, None)  # plaintext: no principal
        assert server.security.stats.rbac[("inbound-tcp", "tcp", "")] == 2
        # the HTTP listener of the same workload uses the same policy (no HTTP fields: applies to both)
        assert status(await tls_get(server.listener_port("inbound"), client_ctx(issue(ca, identity("sleep"))))) == 200
    finally:
        await stop(server)


async def test_policies_name_the_workload_port_not_the_listener_port(backend_factory: BackendFactory) -> None:
    backend = await backend_factory("b1")
    app_port = backend.address["port"]
    deny_app_port = {
        "namespace": "default",
        "name": "deny-app-port",
        "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"ports": [str(app_port)]}}]}]},
    }
    server = await start_with(
        server_config(backend, {"mtls": {"mode": "DISABLE"}, "authorization": [deny_app_port]}), None
    )
    try:
        answer = await get(server.listener_port("inbound"))
        assert status(answer) == 403
        assert b"default/deny-app-port" in answer
    finally:
        await stop(server)


async def test_a_new_policy_applies_to_clients_already_connected(backend_factory: BackendFactory) -> None:
    """Connections accepted under the old policies are renewed (closed when idle, or after the response in
    flight), so a keep-alive client cannot go on using rules that no longer hold."""
    backend = await backend_factory("b1")
    server = await start_with(server_config(backend, {"mtls": {"mode": "PERMISSIVE"}}), None)
    try:
        port = server.listener_port("inbound")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert status(head) == 200
        length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
        await reader.readexactly(length)

        config = server_config(backend, {"mtls": {"mode": "PERMISSIVE"}, "authorization": [DENY_PLAINTEXT]})
        config["version"] = "s2"
        assert server.apply(parse_snapshot(config)).ok
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the idle keep-alive connection was closed
        writer.close()
        assert status(await get(port)) == 403  # a new connection meets the new policy
        assert server.security.stats.rbac
    finally:
        await stop(server)
