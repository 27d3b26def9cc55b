"""The control plane's CA over real HTTP: signing registered sidecars' CSRs, the trust bundle, the root on disk."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mesh.control.certificates import CaSettings
from mesh.control.server import ControlServer
from mesh.security.ca import CaError, generate_root
from mesh.security.identity import SpiffeId
from mesh.security.workload import WorkloadCredentials, build_csr, new_private_key, verify_peer_chain
from tests.mesh.security.helpers import tampered_csr

WEB = SpiffeId("cluster.local", "shop", "web")


async def call(http: aiohttp.ClientSession, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
    async with http.request(method, path, data=None if payload is None else json.dumps(payload)) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


async def register(http: aiohttp.ClientSession, sidecar: str, service: str, namespace: str = "shop") -> None:
    status, body = await call(http, "PUT", f"/v1/mesh/sidecars/{sidecar}", {"service": service, "namespace": namespace})
    assert status == 200, body


async def test_registered_sidecar_gets_a_certificate_for_its_identity(api: aiohttp.ClientSession) -> None:
    await register(api, "web-1", "web")
    key = new_private_key()
    status, issued = await call(
        api, "POST", "/v1/mesh/ca/sign", {"sidecar": "web-1", "csr": build_csr(WEB, key).decode()}
    )
    assert status == 200, issued
    assert issued["identity"] == WEB.uri
    status, bundle = await call(api, "GET", "/v1/mesh/ca/bundle")
    assert status == 200
    assert bundle["trust_domain"] == "cluster.local"
    assert bundle["trust_bundle"] == issued["trust_bundle"]
    credentials = WorkloadCredentials.from_pem(WEB, key, issued["cert_chain"], bundle["trust_bundle"])
    assert verify_peer_chain(credentials.chain, credentials.trust_bundle, now=datetime.now(UTC)) == WEB
    lifetime = credentials.not_after - datetime.fromisoformat(issued["not_before"])
    assert 24 * 3600 <= lifetime.total_seconds() <= 24 * 3600 + 120  # 24 h, plus the backdating
    async with api.get("/v1/mesh/ca/bundle", params={"format": "pem"}) as response:
        assert response.content_type == "application/x-pem-file"
        assert await response.text() == bundle["trust_bundle"]
    async with api.get("/metrics") as response:
        assert 'mesh_control_ca_csrs_total{result="issued"}' in await response.text()
    status, spec = await call(api, "GET", "/openapi.json")
    assert {"/v1/mesh/ca/sign", "/v1/mesh/ca/bundle"} <= set(spec["paths"])


async def test_oversized_body_is_refused(api: aiohttp.ClientSession) -> None:
    status, body = await call(api, "POST", "/v1/mesh/ca/sign", {"sidecar": "x", "csr": "A" * 70000})
    assert status == 413
    assert "larger than" in body["error"]


async def test_ttl_can_be_asked_for(api: aiohttp.ClientSession) -> None:
    await register(api, "web-1", "web")
    csr = build_csr(WEB, new_private_key()).decode()
    status, issued = await call(api, "POST", "/v1/mesh/ca/sign", {"sidecar": "web-1", "csr": csr, "ttl": "1h"})
    assert status == 200, issued
    leaf = x509.load_pem_x509_certificates(issued["cert_chain"].encode())[0]
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds() == 3600 + 60


@pytest.mark.parametrize(
    ("payload", "status", "path", "text"),
    [
        ({"sidecar": "web-1", "csr": "other"}, 403, "csr", "entitled only to spiffe://cluster.local/ns/shop/sa/web"),
        ({"sidecar": "web-1", "csr": "tampered"}, 400, "csr", "signature does not verify"),
        ({"sidecar": "web-1", "csr": "garbage"}, 400, "csr", "not a PEM certificate signing request"),
        ({"sidecar": "ghost", "csr": "mine"}, 404, "sidecar", "unknown sidecar 'ghost'"),
        ({"csr": "mine"}, 400, "sidecar", "sidecar is required"),
        ({"sidecar": "web-1"}, 400, "csr", "csr is required"),
        ({"sidecar": "web-1", "csr": "mine", "ttl": "forever"}, 400, "ttl", "invalid ttl"),
        ({"sidecar": "web-1", "csr": "mine", "ttl": "3000h"}, 400, "csr", "lifetime"),
        ({"sidecar": "web-1", "csr": "mine", "identity": "x"}, 400, "identity", "unknown key"),
    ],
)
async def test_sign_refusals_say_why(
    api: aiohttp.ClientSession, payload: dict[str, Any], status: int, path: str, text: str
) -> None:
    await register(api, "web-1", "web")
    csrs = {
        "mine": build_csr(WEB, new_private_key()).decode(),
        "other": build_csr(SpiffeId("cluster.local", "shop", "payments"), new_private_key()).decode(),
        "tampered": tampered_csr(build_csr(WEB, new_private_key())).decode(),
        "garbage": "hello",
    }
    if "csr" in payload:
        payload = {**payload, "csr": csrs[payload["csr"]]}
    got, body = await call(api, "POST", "/v1/mesh/ca/sign", payload)
    assert got == status, body
    assert body["path"] == path
    assert text in body["error"]


async def test_a_sidecar_cannot_get_another_namespace_identity(api: aiohttp.ClientSession) -> None:
    await register(api, "web-1", "web", namespace="default")
    status, body = await call(
        api, "POST", "/v1/mesh/ca/sign", {"sidecar": "web-1", "csr": build_csr(WEB, new_private_key()).decode()}
    )
    assert status == 403
    assert "spiffe://cluster.local/ns/default/sa/web" in body["error"]


async def test_root_is_kept_beside_the_store_and_reused(start_control: Callable[..., Any], tmp_path: Path) -> None:
    first: ControlServer = await start_control()
    ca_dir = tmp_path / "control" / "ca"
    assert stat.S_IMODE((ca_dir / "ca-key.pem").stat().st_mode) == 0o600
    assert (tmp_path / "control" / "control.db").exists()
    bundle = first.ca.bundle_pem() if first.ca else ""
    await first.stop()
    second: ControlServer = await start_control()
    assert second.ca is not None
    assert second.ca.bundle_pem() == bundle
    await second.stop()
    os.chmod(ca_dir / "ca-key.pem", 0o644)
    with pytest.raises(CaError, match="too open"):
        await start_control()


async def test_user_supplied_root(start_control: Callable[..., Any], tmp_path: Path) -> None:
    certificate, key = generate_root("example.org")
    cert_path, key_path = tmp_path / "root.pem", tmp_path / "root-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    os.chmod(key_path, 0o600)
    server: ControlServer = await start_control(
        ca=CaSettings(trust_domain="example.org", cert_file=cert_path, key_file=key_path)
    )
    async with aiohttp.ClientSession(base_url=server.url) as http:
        await register(http, "web-1", "web")
        identity = SpiffeId("example.org", "shop", "web")
        key2 = new_private_key()
        status, issued = await call(
            http, "POST", "/v1/mesh/ca/sign", {"sidecar": "web-1", "csr": build_csr(identity, key2).decode()}
        )
        assert status == 200, issued
        assert issued["trust_bundle"] == certificate.public_bytes(serialization.Encoding.PEM).decode()
        assert issued["identity"] == "spiffe://example.org/ns/shop/sa/web"
    assert not (tmp_path / "control" / "ca").exists()  # nothing generated


async def test_security_resources_are_applied_and_listed(api: aiohttp.ClientSession) -> None:
    docs = [
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "deny-all", "namespace": "shop"},
            "spec": {"action": "DENY", "rules": [{}]},
        },
        {
            "apiVersion": "security.istio.io/v1beta1",
            "kind": "PeerAuthentication",
            "metadata": {"name": "default", "namespace": "istio-system"},
            "spec": {"mtls": {"mode": "STRICT"}},
        },
    ]
    async with api.put("/v1/mesh/config", data=yaml.safe_dump_all(docs)) as response:
        result = await response.json()
        assert response.status == 200, result
    assert result["warnings"] == []  # the sidecars enforce both kinds: no "not enforced" warning
    for kind in ("ap", "pa"):
        status, listed = await call(api, "GET", f"/v1/mesh/config?kind={kind}")
        assert status == 200
        assert len(listed["items"]) == 1
    status, error = await call(
        api,
        "PUT",
        "/v1/mesh/config",
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "bad"},
            "spec": {"rules": [{"to": [{"operation": {"ports": ["http"]}}]}]},
        },
    )
    assert status == 400
    assert error["path"] == "spec.rules[0].to[0].operation.ports[0]"
