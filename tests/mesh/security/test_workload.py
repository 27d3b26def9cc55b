"""Workload credentials without sockets: CSRs, checks on the CA's answer, renewal times, peer verification."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from mesh.security.ca import MeshCA, generate_root
from mesh.security.workload import (
    CredentialError,
    PeerVerificationError,
    WorkloadCredentials,
    build_csr,
    looks_like_tls,
    new_private_key,
    rotation_time,
    seconds_until,
    verify_peer_chain,
)
from tests.mesh.security.helpers import identity, issue, make_ca, utc

WEB = identity("web")


def test_csr_asks_for_exactly_the_identity() -> None:
    key = new_private_key()
    csr = x509.load_pem_x509_csr(build_csr(WEB, key))
    assert csr.is_signature_valid
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [WEB.uri]
    assert b"PRIVATE KEY" not in build_csr(WEB, key)


def test_credentials_check_the_answer_matches_identity_and_key() -> None:
    ca = make_ca()
    key = new_private_key()
    issued = ca.sign(build_csr(WEB, key), WEB)
    creds = WorkloadCredentials.from_pem(WEB, key, issued.chain_pem(), ca.bundle_pem())
    assert creds.leaf == issued.certificate
    assert creds.trust_bundle == ca.trust_bundle
    with pytest.raises(CredentialError, match=r"names spiffe://cluster\.local/ns/default/sa/web, not"):
        WorkloadCredentials.from_pem(identity("db"), key, issued.chain_pem(), ca.bundle_pem())
    with pytest.raises(CredentialError, match="does not certify this workload's key"):
        WorkloadCredentials.from_pem(WEB, new_private_key(), issued.chain_pem(), ca.bundle_pem())
    with pytest.raises(CredentialError, match="not PEM"):
        WorkloadCredentials.from_pem(WEB, key, "junk", ca.bundle_pem())


def test_rotation_time_lies_in_the_window_with_jitter() -> None:
    start, end = utc(2026, 1, 1), utc(2026, 1, 2)  # 24 h
    rng = random.Random(7)
    times = [rotation_time(start, end, rng) for _ in range(200)]
    assert all(start + timedelta(hours=12) <= t <= start + timedelta(hours=19.2) for t in times)
    assert len(set(times)) > 150  # spread out, not one instant for the whole fleet
    assert rotation_time(start, end, random.Random(1)) == rotation_time(start, end, random.Random(1))
    narrow = rotation_time(start, end, rng, low=0.6, high=0.6)
    assert narrow == start + timedelta(hours=14.4)
    assert seconds_until(start + timedelta(hours=1), start) == 3600.0
    assert seconds_until(start, start + timedelta(hours=1)) == 0.0
    with pytest.raises(ValueError, match="rotation window"):
        rotation_time(start, end, rng, low=0.9, high=0.5)


def test_peer_chain_verification() -> None:
    ca = make_ca()
    creds = issue(ca, WEB)
    now = datetime.now(UTC)
    assert verify_peer_chain(creds.chain, ca.trust_bundle, now=now, role="client") == WEB
    assert verify_peer_chain(creds.chain, ca.trust_bundle, now=now, role="server", trust_domain="cluster.local") == WEB
    with pytest.raises(PeerVerificationError, match="outside the trust domain"):
        verify_peer_chain(creds.chain, ca.trust_bundle, now=now, trust_domain="example.org")
    foreign = make_ca()
    with pytest.raises(PeerVerificationError, match="does not verify"):
        verify_peer_chain(creds.chain, foreign.trust_bundle, now=now)
    with pytest.raises(PeerVerificationError, match="does not verify"):
        verify_peer_chain(creds.chain, ca.trust_bundle, now=now + timedelta(hours=25))  # expired
    with pytest.raises(PeerVerificationError, match="no certificate"):
        verify_peer_chain((), ca.trust_bundle, now=now)


def test_expired_certificate_fails_verification_when_issued_in_the_past() -> None:
    past = datetime.now(UTC) - timedelta(days=3)
    root, key = generate_root("cluster.local", now=past)
    ca = MeshCA(root, key, trust_domain="cluster.local")
    creds = issue(ca, WEB, now=past + timedelta(hours=1), ttl=timedelta(hours=1))
    assert creds.not_after < datetime.now(UTC)
    with pytest.raises(PeerVerificationError, match="does not verify"):
        verify_peer_chain(creds.chain, ca.trust_bundle, now=datetime.now(UTC))


@pytest.mark.parametrize(
    ("first", "tls"),
    [
        (b"\x16\x03\x01\x02\x00", True),
        (b"\x16\x03\x03", True),
        (b"GET / HTTP/1.1\r\n", False),
        (b"\x16\x03", False),
        (b"\x17\x03\x03", False),
        (b"", False),
    ],
)
def test_tls_is_told_from_plaintext(first: bytes, tls: bool) -> None:
    assert looks_like_tls(first) is tls
