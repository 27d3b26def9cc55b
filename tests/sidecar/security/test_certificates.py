"""The certificate agent: issue from the real control plane's CA, renewal timing, failures, expiry."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mesh.control.auth import ControlAuth
from mesh.control.server import ControlServer
from mesh.security.ca import MeshCA
from mesh.security.identity import SpiffeId
from mesh.security.workload import build_csr, new_private_key
from sidecar.security.agent import CertificateAgent, CertificateError
from sidecar.security.tls_state import TlsState
from sidecar.security.wiring import SecurityStats, SidecarSecurity
from sidecar.server import SidecarConfig, SidecarServer
from sidecar.sources.control_plane import ControlPlaneSource
from sidecar.sources.defaults import SidecarSettings
from tests.mesh.control.fixtures import start_control
from tests.mesh.security.helpers import make_ca

__all__ = ["start_control"]  # fixtures used here

TOKEN = "mtls-bootstrap-token-5d0a1"


class LocalSigner:
    """The real CA code in process, standing where the control plane would; ``fail`` makes it refuse."""

    def __init__(self, ca: MeshCA, *, ttl: timedelta | None = None, now: Callable[[], datetime] | None = None) -> None:
        self.ca = ca
        self.ttl = ttl
        self.now = now
        self.fail = False
        self.signed = 0

    async def trust_domain(self) -> str:
        return self.ca.trust_domain

    async def sign(self, csr_pem: bytes) -> tuple[str, str]:
        if self.fail:
            raise CertificateError("signing request answered 503: the CA cannot sign")
        self.signed += 1
        identity = SpiffeId(self.ca.trust_domain, "default", "web")
        issued = self.ca.sign(csr_pem, identity, ttl=self.ttl, now=self.now() if self.now else None)
        return issued.chain_pem(), self.ca.bundle_pem()


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


async def test_agent_issues_then_renews_within_50_to_80_percent() -> None:
    start = datetime.now(UTC)
    clock = Clock(start)
    signer = LocalSigner(make_ca(now=start - timedelta(days=1)), ttl=timedelta(hours=1), now=clock)
    tls = TlsState()
    agent = CertificateAgent(signer, "default", "web", tls, SecurityStats(tls), clock=clock, rng=random.Random(7))
    delay = await agent.step()
    assert tls.credentials is not None
    assert tls.credentials.identity.uri == "spiffe://cluster.local/ns/default/sa/web"
    assert 0.5 * 3600 - 61 <= delay <= 0.8 * 3600  # notBefore is 1 minute early (clock skew)
    first = tls.server
    clock.now = agent.next_renewal or start
    await agent.step()
    assert tls.installed == 2
    assert tls.server is not first


async def test_failures_back_off_keep_the_certificate_then_drop_it_at_expiry() -> None:
    start = datetime.now(UTC)
    clock = Clock(start)
    signer = LocalSigner(make_ca(now=start - timedelta(days=1)), ttl=timedelta(minutes=10), now=clock)
    tls = TlsState()
    stats = SecurityStats(tls)
    agent = CertificateAgent(signer, "default", "web", tls, stats, clock=clock, rng=random.Random(1), backoff_cap=8.0)
    await agent.step()
    held = tls.credentials
    signer.fail = True
    delays = [await agent.step() for _ in range(5)]
    assert tls.credentials is held  # kept while valid
    assert delays[0] <= 1.0
    assert delays[-1] <= 8.0
    assert delays[-1] > delays[0]
    assert stats.renewals == {"issued": 1, "failed": 5}
    assert held is not None
    clock.now = held.not_after + timedelta(seconds=1)
    await agent.step()
    assert tls.credentials is None
    assert tls.server is None


async def test_sidecar_gets_its_certificate_from_the_control_plane(
    start_control: Callable[..., Any], tmp_path: Path
) -> None:
    control: ControlServer = await start_control(auth=ControlAuth(TOKEN))
    source = ControlPlaneSource(
        SidecarSettings(service="ratings", app_port=9999),
        control.url,
        sidecar_id="ratings-1",
        namespace="shop",
        state_dir=tmp_path / "ratings-1",
        wait=2.0,
        token=TOKEN,
    )
    server = SidecarServer(SidecarConfig(admin_addr="127.0.0.1:0", serve_admin=False))
    security: SidecarSecurity = server.security
    source.bind_credentials(security)
    task = asyncio.create_task(source.run(server.apply))
    try:
        for _ in range(250):
            if security.tls.credentials is not None:
                break
            await asyncio.sleep(0.02)
        credentials = security.tls.credentials
        assert credentials is not None
        assert credentials.identity.uri == "spiffe://cluster.local/ns/shop/sa/ratings"
        assert security.stats.renewals["issued"] == 1
        assert security.tls.expires_at() > datetime.now(UTC).timestamp() + 3600
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop()


async def test_csr_without_token_or_secret_is_refused(start_control: Callable[..., Any]) -> None:
    control: ControlServer = await start_control(auth=ControlAuth(TOKEN))
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    csr = build_csr(SpiffeId("cluster.local", "default", "web"), new_private_key()).decode()
    async with aiohttp.ClientSession(base_url=control.url) as http:
        body = {"service": "web", "namespace": "default", "labels": {}}
        async with http.put("/v1/mesh/sidecars/web-1", json=body, headers=bearer) as response:
            assert response.status == 200
        sign = {"sidecar": "web-1", "csr": csr}
        async with http.post("/v1/mesh/ca/sign", json=sign) as response:
            assert response.status == 401  # no token
        async with http.post("/v1/mesh/ca/sign", json=sign, headers=bearer) as response:
            assert response.status in (401, 403)  # the token, but not this sidecar's secret


@pytest.mark.parametrize("reason", ["unreachable"])
async def test_unreachable_control_plane_is_a_counted_failure(reason: str, tmp_path: Path) -> None:
    source = ControlPlaneSource(
        SidecarSettings(service="ratings", app_port=9999), "http://127.0.0.1:9", state_dir=tmp_path, wait=1.0
    )
    server = SidecarServer(SidecarConfig(admin_addr="127.0.0.1:0", serve_admin=False))
    source.bind_credentials(server.security)
    agent = source._certificates
    assert agent is not None
    source._session = aiohttp.ClientSession()
    try:
        delay = await agent.step()
    finally:
        await source._session.close()
        await server.stop()
    assert server.security.stats.renewals == {"failed": 1}
    assert delay <= 1.0


def write_credentials(directory: Path, ca: MeshCA, service: str) -> None:
    from cryptography.hazmat.primitives import serialization

    from mesh.security.ca import pem_of
    from tests.mesh.security.helpers import identity, issue

    credentials = issue(ca, identity(service))
    directory.mkdir(exist_ok=True)
    (directory / "cert-chain.pem").write_text(pem_of(credentials.chain))
    key = credentials.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (directory / "key.pem").write_bytes(key)
    (directory / "root-cert.pem").write_text(credentials.bundle_pem())


async def test_credentials_from_files_load_and_reload_on_change(tmp_path: Path) -> None:
    from mesh.security.workload import CredentialError
    from sidecar.security.files import CredentialFiles, load_directory

    ca = make_ca()
    with pytest.raises(CredentialError, match="cannot read"):
        load_directory(tmp_path / "absent")
    write_credentials(tmp_path / "certs", ca, "web")
    tls = TlsState()
    files = CredentialFiles(tmp_path / "certs", tls, poll_interval=0.02)
    task = asyncio.create_task(files.run())
    try:
        for _ in range(100):
            if tls.installed:
                break
            await asyncio.sleep(0.01)
        assert tls.credentials is not None
        assert tls.credentials.identity.uri == "spiffe://cluster.local/ns/default/sa/web"
        first = tls.credentials
        (tmp_path / "certs" / "key.pem").write_text("garbage")  # a broken write: the credentials in use stay
        await asyncio.sleep(0.1)
        assert tls.credentials is first
        write_credentials(tmp_path / "certs", ca, "web")
        for _ in range(100):
            if tls.credentials is not first:
                break
            await asyncio.sleep(0.01)
        assert tls.credentials is not first
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
