"""Builders for security tests: CAs and workload credentials made with the real CA code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from mesh.security.ca import MeshCA, generate_root
from mesh.security.identity import SpiffeId
from mesh.security.workload import WorkloadCredentials, build_csr, new_private_key

TRUST_DOMAIN = "cluster.local"


def make_ca(trust_domain: str = TRUST_DOMAIN, *, now: datetime | None = None, **settings: object) -> MeshCA:
    certificate, key = generate_root(trust_domain, now=now)
    return MeshCA(certificate, key, trust_domain=trust_domain, **settings)  # type: ignore[arg-type]


def identity(service: str = "web", namespace: str = "default", trust_domain: str = TRUST_DOMAIN) -> SpiffeId:
    return SpiffeId(trust_domain, namespace, service)


def issue(
    ca: MeshCA, who: SpiffeId | None = None, *, now: datetime | None = None, ttl: timedelta | None = None
) -> WorkloadCredentials:
    """Credentials for ``who`` the way a sidecar gets them: its own key, a CSR, the CA's answer."""
    who = who or identity()
    key = new_private_key()
    issued = ca.sign(build_csr(who, key), who, now=now, ttl=ttl)
    return WorkloadCredentials.from_pem(who, key, issued.chain_pem(), ca.bundle_pem())


def tampered_csr(pem: bytes) -> bytes:
    """``pem`` with one bit of its signature flipped (still parseable, no longer valid)."""
    csr = x509.load_pem_x509_csr(pem)
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature's last INTEGER
    return x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)


def csr_with(names: list[x509.GeneralName], *, ca: bool = False) -> tuple[bytes, object]:
    key = new_private_key()
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM), key


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
