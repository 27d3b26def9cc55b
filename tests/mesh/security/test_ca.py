"""The mesh CA: root generation and persistence, CSR checks, the leaf certificates it issues."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mesh.security.ca import (
    CERT_FILE,
    KEY_FILE,
    CaError,
    CsrRejected,
    IdentityNotAllowed,
    MeshCA,
    generate_root,
    load_ca,
    load_or_create_ca,
)
from mesh.security.workload import build_csr, new_private_key, verify_peer_chain
from tests.mesh.security.helpers import csr_with, identity, make_ca, tampered_csr

WEB = identity("web")


def test_leaf_is_an_x509_svid_with_the_right_extensions() -> None:
    ca = make_ca()
    now = datetime.now(UTC).replace(microsecond=0)
    key = new_private_key()
    issued = ca.sign(build_csr(WEB, key), WEB, now=now)
    leaf = issued.certificate
    assert issued.chain == (leaf,)  # signed by the root itself: no intermediates
    assert leaf.subject == x509.Name([])
    assert leaf.issuer == ca.certificate.subject
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert list(san.value) == [x509.UniformResourceIdentifier("spiffe://cluster.local/ns/default/sa/web")]
    constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert not constraints.value.ca
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert not usage.key_encipherment
    assert not usage.key_cert_sign
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    ski = leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    root_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == root_ski.digest
    assert leaf.not_valid_before_utc == now - timedelta(minutes=1)  # clock skew allowance
    assert leaf.not_valid_after_utc == now + timedelta(hours=24)  # the default lifetime
    assert verify_peer_chain(issued.chain, ca.trust_bundle, now=now) == WEB


def test_root_is_a_p256_ca_named_after_the_trust_domain() -> None:
    certificate, key = generate_root("example.org")
    assert isinstance(key.curve, ec.SECP256R1)
    assert certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "example.org"
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca
    assert certificate.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert certificate.not_valid_after_utc - certificate.not_valid_before_utc > timedelta(days=3000)


def test_rsa_leaf_gets_key_encipherment_and_ttl_is_configurable() -> None:
    ca = make_ca(leaf_ttl=timedelta(hours=1))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(WEB.uri)]), critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    now = datetime.now(UTC).replace(microsecond=0)
    leaf = ca.sign(csr, WEB, now=now).certificate
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment
    assert leaf.not_valid_after_utc == now + timedelta(hours=1)
    short = ca.sign(csr, WEB, now=now, ttl=timedelta(minutes=5)).certificate
    assert short.not_valid_after_utc == now + timedelta(minutes=5)


def test_leaf_never_outlives_the_ca() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    ca = make_ca()
    ending = ca.certificate.not_valid_after_utc
    leaf = ca.sign(build_csr(WEB, new_private_key()), WEB, now=ending - timedelta(hours=2)).certificate
    assert leaf.not_valid_after_utc == ending
    assert leaf.not_valid_before_utc >= now - timedelta(minutes=2)


@pytest.mark.parametrize(
    ("csr", "error", "text"),
    [
        ("bad-signature", CsrRejected, "signature does not verify"),
        ("other-identity", IdentityNotAllowed, "entitled only to spiffe://cluster.local/ns/default/sa/web"),
        ("two-uris", IdentityNotAllowed, "entitled only to"),
        ("dns-name", CsrRejected, "names other than its SPIFFE ID"),
        ("no-san", CsrRejected, "names no identity"),
        ("ca-request", CsrRejected, "asks to be a CA"),
        ("not-pem", CsrRejected, "not a PEM certificate signing request"),
        ("small-rsa", CsrRejected, "too small"),
    ],
)
def test_csrs_the_ca_refuses(csr: str, error: type[Exception], text: str) -> None:
    ca = make_ca()
    mine = x509.UniformResourceIdentifier(WEB.uri)
    other = x509.UniformResourceIdentifier(identity("db").uri)
    pem: bytes
    if csr == "bad-signature":
        pem = tampered_csr(build_csr(WEB, new_private_key()))
    elif csr == "other-identity":
        pem = build_csr(identity("db"), new_private_key())
    elif csr == "two-uris":
        pem, _ = csr_with([mine, other])
    elif csr == "dns-name":
        pem, _ = csr_with([mine, x509.DNSName("web.default.svc")])
    elif csr == "no-san":
        pem, _ = csr_with([])
    elif csr == "ca-request":
        pem, _ = csr_with([mine], ca=True)
    elif csr == "not-pem":
        pem = b"-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----\n"
    else:
        small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        pem = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .add_extension(x509.SubjectAlternativeName([mine]), critical=False)
            .sign(small, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )
    with pytest.raises(error) as info:
        ca.sign(pem, WEB)
    assert text in str(info.value)


def test_identity_outside_the_trust_domain_is_refused() -> None:
    ca = make_ca()
    foreign = identity("web", trust_domain="example.org")
    with pytest.raises(IdentityNotAllowed, match="outside this CA's trust domain"):
        ca.sign(build_csr(foreign, new_private_key()), foreign)


def test_lifetime_outside_bounds_is_refused() -> None:
    ca = make_ca()
    with pytest.raises(CsrRejected, match="lifetime"):
        ca.sign(build_csr(WEB, new_private_key()), WEB, ttl=timedelta(days=365))


# === persistence ===


def test_generated_root_is_persisted_with_private_permissions(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    first = load_or_create_ca(directory, trust_domain="cluster.local")
    key_mode = stat.S_IMODE((directory / KEY_FILE).stat().st_mode)
    assert key_mode == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / CERT_FILE).stat().st_mode) == 0o644
    again = load_or_create_ca(directory, trust_domain="cluster.local")
    assert again.certificate == first.certificate  # reloaded, not regenerated
    leaf = again.sign(build_csr(WEB, new_private_key()), WEB)
    assert verify_peer_chain(leaf.chain, first.trust_bundle, now=datetime.now(UTC)) == WEB
    assert not [p for p in directory.iterdir() if p.name.startswith(".")]  # no temporary files left


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    directory = tmp_path / "ca"
    load_or_create_ca(directory, trust_domain="cluster.local")
    os.chmod(directory / KEY_FILE, mode)
    with pytest.raises(CaError) as info:
        load_or_create_ca(directory, trust_domain="cluster.local")
    assert f"permissions {mode:04o}" in str(info.value)
    assert "too open" in str(info.value)
    assert "chmod 600" in str(info.value)


def test_half_a_ca_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    load_or_create_ca(directory, trust_domain="cluster.local")
    (directory / KEY_FILE).unlink()
    with pytest.raises(CaError, match=r"ca-key\.pem is missing"):
        load_or_create_ca(directory, trust_domain="cluster.local")


def _write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


_CA_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def test_user_supplied_intermediate_with_its_root(tmp_path: Path) -> None:
    root_cert, root_key = generate_root("cluster.local", path_length=None)
    root = MeshCA(root_cert, root_key, trust_domain="cluster.local")
    inter_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    inter_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "intermediate")]))
        .issuer_name(root_cert.subject)
        .public_key(inter_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(inter_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    chain_pem = inter_cert.public_bytes(serialization.Encoding.PEM) + root.bundle_pem().encode()
    cert_path = _write(tmp_path / "ca-cert.pem", chain_pem, 0o644)
    key_path = _write(tmp_path / "ca-key.pem", _pem(inter_key))
    ca = load_ca(cert_path, key_path, trust_domain="cluster.local")
    assert ca.trust_bundle == (root_cert,)
    issued = ca.sign(build_csr(WEB, new_private_key()), WEB)
    assert issued.chain[1:] == (inter_cert,)  # the leaf, then the intermediate; never the root
    assert verify_peer_chain(issued.chain, ca.trust_bundle, now=datetime.now(UTC)) == WEB


def test_user_supplied_material_is_checked(tmp_path: Path) -> None:
    root_cert, root_key = generate_root("cluster.local")
    cert_path = _write(tmp_path / "cert.pem", root_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    other_key = _write(tmp_path / "other.pem", _pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(CaError, match="does not belong"):
        load_ca(cert_path, other_key, trust_domain="cluster.local")
    open_key = _write(tmp_path / "open.pem", _pem(root_key), 0o644)
    with pytest.raises(CaError, match="too open"):
        load_ca(cert_path, open_key, trust_domain="cluster.local")
    leaf_issuer = make_ca()
    leaf_key = new_private_key()
    leaf = leaf_issuer.sign(build_csr(WEB, leaf_key), WEB).certificate
    leaf_path = _write(tmp_path / "leaf.pem", leaf.public_bytes(serialization.Encoding.PEM), 0o644)
    with pytest.raises(CaError, match="not a CA certificate"):
        load_ca(leaf_path, _write(tmp_path / "leaf-key.pem", _pem(leaf_key)), trust_domain="cluster.local")
    garbage = _write(tmp_path / "garbage.pem", b"hello", 0o644)
    with pytest.raises(CaError, match="not PEM certificates"):
        load_ca(garbage, open_key, trust_domain="cluster.local")


def test_an_expired_ca_signs_nothing() -> None:
    ca = make_ca()
    after = ca.certificate.not_valid_after_utc + timedelta(seconds=1)
    with pytest.raises(CaError, match="CA certificate expired"):
        ca.sign(build_csr(WEB, new_private_key()), WEB, now=after)
