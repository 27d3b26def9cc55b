"""What a sidecar holds to speak mTLS: its key and CSR, its certificates, when to renew, TLS contexts.

The private key is generated in the process and never leaves it: only the CSR goes to the
control plane's CA. Python's ``ssl`` loads keys from files only, so the key and chain are handed
to OpenSSL through an anonymous in-memory file (``memfd``, Linux) that is closed right after
loading; elsewhere through a private temporary directory (0700, file 0600) removed at once.

Renewal follows Istio's agent: at a random point between 50 % and 80 % of the certificate's
lifetime (the jitter spreads a fleet's renewals), with the clock and RNG injected. A renewed
certificate goes into a fresh ``SSLContext``; connections keep the context they were accepted
with, so swapping contexts drops nothing.

Peers are checked twice over: OpenSSL verifies the chain against the trust bundle during the
handshake (``CERT_REQUIRED``; hostname checks are off because SPIFFE certificates carry no DNS
names), then ``peer_identity`` reads the SPIFFE ID from the leaf. ``verify_peer_chain`` does the
whole check without a socket (chain, validity, key usage, one SPIFFE URI, trust domain).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import ssl
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from mesh.security.ca import is_self_signed, load_certificates, pem_of
from mesh.security.identity import IdentityError, SpiffeId, parse_spiffe_id

ROTATE_FROM = 0.5
ROTATE_UNTIL = 0.8
Role = Literal["client", "server"]
InboundMode = Literal["STRICT", "PERMISSIVE"]


class CredentialError(ValueError):
    """Certificates that cannot serve this workload (wrong identity, key mismatch, malformed PEM)."""


class PeerVerificationError(ValueError):
    """A peer's certificate chain is not acceptable (the message says why)."""


# === key and CSR ===


def new_private_key() -> ec.EllipticCurvePrivateKey:
    """An ECDSA P-256 key, the kind Istio's agent generates."""
    return ec.generate_private_key(ec.SECP256R1())


def build_csr(identity: SpiffeId, key: ec.EllipticCurvePrivateKey) -> bytes:
    """A PEM CSR asking for ``identity`` (its URI as the one SAN), signed by ``key``."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)]), critical=True)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


# === credentials ===


@dataclass(frozen=True, slots=True)
class WorkloadCredentials:
    identity: SpiffeId
    key: ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...]  # the leaf first
    trust_bundle: tuple[x509.Certificate, ...]

    @classmethod
    def from_pem(
        cls, identity: SpiffeId, key: ec.EllipticCurvePrivateKey, chain_pem: str | bytes, bundle_pem: str | bytes
    ) -> WorkloadCredentials:
        """Credentials from the CA's answer, checked: the leaf names ``identity`` and certifies ``key``."""
        try:
            chain = load_certificates(_bytes(chain_pem), "certificate chain")
            bundle = load_certificates(_bytes(bundle_pem), "trust bundle")
        except ValueError as exc:
            raise CredentialError(str(exc)) from exc
        leaf = chain[0]
        try:
            named = peer_identity(leaf)
        except PeerVerificationError as exc:
            raise CredentialError(f"the issued certificate: {exc}") from exc
        if named != identity:
            raise CredentialError(f"the issued certificate names {named}, not {identity}")
        if _spki(leaf.public_key()) != _spki(key.public_key()):
            raise CredentialError("the issued certificate does not certify this workload's key")
        return cls(identity, key, tuple(chain), tuple(bundle))

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def not_before(self) -> datetime:
        return self.leaf.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        return self.leaf.not_valid_after_utc

    def bundle_pem(self) -> str:
        return pem_of(self.trust_bundle)

    def private_pem(self) -> bytes:
        """The chain and key in one PEM text (for handing to OpenSSL; never written to disk here)."""
        key = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return pem_of(self.chain).encode("ascii") + key


def rotation_time(
    not_before: datetime,
    not_after: datetime,
    rng: random.Random,
    *,
    low: float = ROTATE_FROM,
    high: float = ROTATE_UNTIL,
) -> datetime:
    """When to renew: a random point in [low, high] of the lifetime (jitter so a fleet does not renew at once)."""
    if not 0.0 < low <= high < 1.0:
        raise ValueError(f"rotation window must satisfy 0 < low <= high < 1, got {low}..{high}")
    lifetime = (not_after - not_before).total_seconds()
    return not_before + timedelta(seconds=lifetime * rng.uniform(low, high))


def seconds_until(deadline: datetime, now: datetime) -> float:
    """How long to sleep before ``deadline`` (0 when it has passed: renew now)."""
    return max(0.0, (deadline - now).total_seconds())


# === peers ===


def peer_identity(leaf: x509.Certificate) -> SpiffeId:
    """The SPIFFE ID a leaf certificate carries: exactly one URI SAN, a valid workload ID."""
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as exc:
        raise PeerVerificationError("the certificate has no subject alternative names (no SPIFFE ID)") from exc
    uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise PeerVerificationError(f"the certificate must carry exactly one URI SAN (a SPIFFE ID), found {len(uris)}")
    try:
        return parse_spiffe_id(uris[0])
    except IdentityError as exc:
        raise PeerVerificationError(f"the certificate's URI {uris[0]!r} is not a workload SPIFFE ID: {exc}") from exc


def verify_peer_chain(
    chain: Sequence[x509.Certificate],
    trust_bundle: Sequence[x509.Certificate],
    *,
    now: datetime,
    role: Role = "client",
    trust_domain: str | None = None,
) -> SpiffeId:
    """Verify ``chain`` (leaf first) up to a root in ``trust_bundle`` at ``now``; the peer's SPIFFE ID.

    ``role`` is what the peer acts as: a ``client`` needs the clientAuth usage, a ``server``
    serverAuth. ``trust_domain`` (when given) must be the ID's."""
    if not chain:
        raise PeerVerificationError("the peer sent no certificate")
    if not trust_bundle:
        raise PeerVerificationError("the trust bundle is empty")
    leaf, intermediates = chain[0], [cert for cert in chain[1:] if not is_self_signed(cert)]
    ee_policy = verification.ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.ExtendedKeyUsage, verification.Criticality.AGNOSTIC, None
    )
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store(list(trust_bundle)))
        .time(now)
        .extension_policies(ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy)
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, intermediates)
    except verification.VerificationError as exc:
        raise PeerVerificationError(f"the peer's certificate chain does not verify: {exc}") from exc
    _check_usage(leaf, role)
    identity = peer_identity(leaf)
    if trust_domain is not None and identity.trust_domain != trust_domain:
        raise PeerVerificationError(f"the peer {identity} is outside the trust domain {trust_domain!r}")
    return identity


def _check_usage(leaf: x509.Certificate, role: Role) -> None:
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return  # no EKU: any usage, as RFC 5280 reads it
    wanted = ExtendedKeyUsageOID.CLIENT_AUTH if role == "client" else ExtendedKeyUsageOID.SERVER_AUTH
    if wanted not in usages and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in usages:
        raise PeerVerificationError(f"the peer's certificate may not be used as a TLS {role}")


def identity_of_connection(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> SpiffeId | None:
    """The verified peer's SPIFFE ID on an established TLS connection; None without a peer certificate."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    return peer_identity(x509.load_der_x509_certificate(der))


# === TLS contexts ===


def server_context(credentials: WorkloadCredentials, *, mode: InboundMode = "STRICT") -> ssl.SSLContext:
    """The inbound side: this workload's certificate; client certificates required (STRICT) or
    verified when offered (PERMISSIVE, where plaintext is accepted beside TLS by the listener)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _common(context, credentials)
    context.verify_mode = ssl.CERT_REQUIRED if mode == "STRICT" else ssl.CERT_OPTIONAL
    return context


def client_context(credentials: WorkloadCredentials) -> ssl.SSLContext:
    """The outbound side: presents this workload's certificate, requires a server chain to the bundle.
    Hostnames are not checked (SPIFFE certificates have none): check ``identity_of_connection``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    _common(context, credentials)
    return context


def _common(context: ssl.SSLContext, credentials: WorkloadCredentials) -> None:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED  # TLS 1.3 whenever both sides have it
    context.options |= ssl.OP_NO_COMPRESSION
    context.load_verify_locations(cadata=credentials.bundle_pem())
    load_credentials(context, credentials)


def load_credentials(context: ssl.SSLContext, credentials: WorkloadCredentials) -> None:
    """Put (renewed) credentials into ``context``: handshakes from now on present them, while
    connections already established keep going untouched (how renewal drops nothing)."""
    with _in_memory_file(credentials.private_pem()) as path:
        context.load_cert_chain(path)


@contextlib.contextmanager
def _in_memory_file(data: bytes) -> Iterator[str]:
    """A path OpenSSL can open that holds ``data``: an anonymous memory file where the OS has them."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None and Path("/proc/self/fd").is_dir():
        fd = memfd_create("mesh-workload-credentials", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    directory = tempfile.mkdtemp(prefix="mesh-credentials-")  # 0700
    try:
        path = os.path.join(directory, "credentials.pem")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def looks_like_tls(first_bytes: bytes) -> bool:
    """Whether a connection's first bytes open a TLS handshake (record type 22, version 3.x):
    how a PERMISSIVE listener tells mTLS from plaintext."""
    return len(first_bytes) >= 3 and first_bytes[0] == 0x16 and first_bytes[1] == 0x03 and first_bytes[2] <= 0x04


def _bytes(data: str | bytes) -> bytes:
    return data.encode("ascii", "replace") if isinstance(data, str) else data


def _spki(key: object) -> bytes:
    public_bytes = getattr(key, "public_bytes", None)
    if public_bytes is None:
        raise CredentialError(f"unsupported key type {type(key).__name__}")
    data: bytes = public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return data


__all__ = [
    "CredentialError",
    "InboundMode",
    "PeerVerificationError",
    "Role",
    "WorkloadCredentials",
    "build_csr",
    "client_context",
    "identity_of_connection",
    "load_credentials",
    "looks_like_tls",
    "new_private_key",
    "peer_identity",
    "rotation_time",
    "seconds_until",
    "server_context",
    "verify_peer_chain",
]
