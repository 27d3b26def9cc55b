"""Certificate rotation under load through two real sidecars: zero failed requests."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from mesh.security.identity import SpiffeId
from sidecar.security.agent import CertificateAgent
from sidecar.server import SidecarServer
from tests.mesh.security.helpers import make_ca
from tests.sidecar.conftest import BackendFactory
from tests.sidecar.security.mesh_pair import client_config, server_config, start_with, stop
from tests.sidecar.security.test_certificates import LocalSigner


class NamedSigner(LocalSigner):
    def __init__(self, ca: object, service: str) -> None:
        super().__init__(ca)  # type: ignore[arg-type]
        self.service = service

    async def sign(self, csr_pem: bytes) -> tuple[str, str]:
        self.signed += 1
        issued = self.ca.sign(csr_pem, SpiffeId(self.ca.trust_domain, "default", self.service))
        return issued.chain_pem(), self.ca.bundle_pem()


async def _load(port: int, until: float, results: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < until:
            writer.write(b"GET /echo HTTP/1.1\r\nHost: web\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            results.append(int(head.split(b" ", 2)[1]))
    finally:
        writer.close()


def _agent(sidecar: SidecarServer, signer: NamedSigner) -> CertificateAgent:
    return CertificateAgent(
        signer, "default", signer.service, sidecar.security.tls, sidecar.security.stats, rng=random.Random(3)
    )


@pytest.mark.slow
async def test_rotation_under_load_drops_nothing(backend_factory: BackendFactory) -> None:
    ca = make_ca()
    backend = await backend_factory("b1")
    server = await start_with(server_config(backend, {"mtls": {"mode": "STRICT"}}), None)
    server_agent = _agent(server, NamedSigner(ca, "web"))
    await server_agent.step()
    config = client_config(server.listener_port("inbound"))
    config["clusters"][0]["max_requests_per_connection"] = 7  # upstream connections (and handshakes) keep coming
    client = await start_with(config, None)
    client_agent = _agent(client, NamedSigner(ca, "sleep"))
    await client_agent.step()
    agents = [asyncio.create_task(a.run()) for a in (server_agent, client_agent)]
    results: list[int] = []
    until = time.monotonic() + 1.5
    try:
        load = [asyncio.create_task(_load(client.listener_port("outbound"), until, results)) for _ in range(6)]
        while time.monotonic() < until:
            await asyncio.sleep(0.05)
            server_agent.renew_now()
            client_agent.renew_now()
        await asyncio.gather(*load)
    finally:
        for task in agents:
            task.cancel()
        await asyncio.gather(*agents, return_exceptions=True)
        await stop(client, server)
    assert len(results) > 100
    assert set(results) == {200}, {code: results.count(code) for code in set(results)}
    assert server.security.tls.installed >= 10
    assert client.security.tls.installed >= 10
    assert server.security.stats.connections["mtls"] >= len(results) // 7  # new handshakes throughout
