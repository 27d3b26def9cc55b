"""The mesh certificate authority: a root on disk, CSRs signed into short-lived SPIFFE leaves.

The root is either generated (ECDSA P-256, which Istio, SPIFFE and every TLS stack accept; valid
ten years, like Istio's self-signed root) and kept in the control plane's data directory as
``ca-cert.pem`` / ``ca-key.pem`` (Istio's plug-in CA file names), or supplied by the user (a CA
certificate, optionally followed by its chain up to a root, and its key). A key file readable by
group or others is refused, as OpenSSH refuses such private keys.

``MeshCA.sign`` turns a CSR into an X.509-SVID: the SPIFFE URI as the only subject alternative
name (critical, the subject being empty), ``CA:false``, key usage ``digitalSignature`` (plus
``keyEncipherment`` for RSA keys), extended key usage serverAuth + clientAuth, subject and
authority key identifiers, ``notBefore`` backdated by a clock-skew allowance and ``notAfter``
capped by the CA's own expiry. A CSR is refused when its signature does not verify, when it asks
for any name other than the identity the caller is entitled to, or when it asks to be a CA.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mesh.security.identity import IdentityError, SpiffeId, check_trust_domain

CERT_FILE = "ca-cert.pem"
KEY_FILE = "ca-key.pem"
DEFAULT_LEAF_TTL = timedelta(hours=24)
MAX_LEAF_TTL = timedelta(days=90)  # Istio's default ceiling for workload certificates
MIN_LEAF_TTL = timedelta(minutes=1)
DEFAULT_CLOCK_SKEW = timedelta(minutes=1)
ROOT_VALIDITY = timedelta(days=3650)
MIN_RSA_BITS = 2048

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
_ACCEPTED_CURVES = (ec.SECP256R1, ec.SECP384R1)


class CaError(ValueError):
    """Unusable CA material: a missing, malformed, mismatched or unprotected file (the message says which)."""


class CsrRejected(ValueError):
    """A certificate signing request this CA will not sign (the message says why)."""


class IdentityNotAllowed(CsrRejected):
    """The CSR asks for an identity its caller is not entitled to."""


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    identity: SpiffeId
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # the leaf, then intermediates; never the root

    @property
    def not_before(self) -> datetime:
        return self.certificate.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc

    @property
    def serial(self) -> str:
        return format(self.certificate.serial_number, "x")

    def chain_pem(self) -> str:
        return pem_of(self.chain)


def pem_of(certificates: Sequence[x509.Certificate]) -> str:
    return "".join(cert.public_bytes(serialization.Encoding.PEM).decode("ascii") for cert in certificates)


def load_certificates(data: bytes, what: str) -> list[x509.Certificate]:
    """Every certificate in a PEM text; ``CaError`` naming ``what`` when there is none or one is bad."""
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CaError(f"{what}: not PEM certificates ({exc})") from exc
    return certificates


def is_self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


class MeshCA:
    """Signs workload CSRs with one CA certificate and key; ``trust_bundle`` is what peers trust."""

    def __init__(
        self,
        certificate: x509.Certificate,
        key: SigningKey,
        *,
        trust_domain: str,
        chain: Sequence[x509.Certificate] = (),
        trust_bundle: Sequence[x509.Certificate] = (),
        leaf_ttl: timedelta = DEFAULT_LEAF_TTL,
        max_leaf_ttl: timedelta = MAX_LEAF_TTL,
        clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
    ) -> None:
        check_ca_certificate(certificate, key, "CA certificate")
        try:
            check_trust_domain(trust_domain)
        except IdentityError as exc:
            raise CaError(str(exc)) from exc
        if not MIN_LEAF_TTL <= leaf_ttl <= max_leaf_ttl:
            raise CaError(f"leaf lifetime {leaf_ttl} must lie between {MIN_LEAF_TTL} and {max_leaf_ttl}")
        if clock_skew < timedelta(0):
            raise CaError("clock skew allowance must not be negative")
        self.certificate = certificate
        self.key = key
        self.trust_domain = trust_domain
        self.leaf_ttl = leaf_ttl
        self.max_leaf_ttl = max_leaf_ttl
        self.clock_skew = clock_skew
        everything = [certificate, *chain]
        # what follows a leaf in its chain: the signing certificate unless it is a root, then its issuers
        self.intermediates = tuple(cert for cert in everything if not is_self_signed(cert))
        roots = list(trust_bundle) or [cert for cert in everything if is_self_signed(cert)]
        if not roots:
            raise CaError(
                "the CA certificate is not self-signed and no root was given: append the chain up to the root "
                "to the certificate file, or give the trust bundle"
            )
        self.trust_bundle = tuple(roots)

    def bundle_pem(self) -> str:
        return pem_of(self.trust_bundle)

    def sign(
        self, csr_pem: bytes | str, identity: SpiffeId, *, ttl: timedelta | None = None, now: datetime | None = None
    ) -> IssuedCertificate:
        """Sign ``csr_pem`` for ``identity`` (the one its caller is entitled to); ``CsrRejected`` says why not."""
        if identity.trust_domain != self.trust_domain:
            raise IdentityNotAllowed(f"identity {identity} is outside this CA's trust domain {self.trust_domain!r}")
        csr = parse_csr(csr_pem)
        check_csr(csr, identity)
        lifetime = self.leaf_ttl if ttl is None else ttl
        if not MIN_LEAF_TTL <= lifetime <= self.max_leaf_ttl:
            raise CsrRejected(f"requested lifetime {lifetime} must lie between {MIN_LEAF_TTL} and {self.max_leaf_ttl}")
        moment = now or datetime.now(UTC)
        not_after = min(moment + lifetime, self.certificate.not_valid_after_utc)
        if not_after <= moment:
            raise CaError(f"the CA certificate expired at {self.certificate.not_valid_after_utc.isoformat()}")
        public_key = csr.public_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(max(moment - self.clock_skew, self.certificate.not_valid_before_utc))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_leaf_key_usage(isinstance(public_key, rsa.RSAPublicKey)), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(_authority_key_id(self.certificate), critical=False)
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)]),
                critical=True,  # RFC 5280: critical when the subject is empty
            )
        )
        leaf = builder.sign(self.key, _hash_for(self.key))
        return IssuedCertificate(identity, leaf, (leaf, *self.intermediates))


# === CSRs ===


def parse_csr(csr_pem: bytes | str) -> x509.CertificateSigningRequest:
    data = csr_pem.encode("ascii", "replace") if isinstance(csr_pem, str) else csr_pem
    try:
        return x509.load_pem_x509_csr(data)
    except ValueError as exc:
        raise CsrRejected(f"not a PEM certificate signing request: {exc}") from exc


def check_csr(csr: x509.CertificateSigningRequest, identity: SpiffeId) -> None:
    """The checks a CSR passes before signing: its signature, key, CA request and names."""
    if not csr.is_signature_valid:
        raise CsrRejected("the CSR's signature does not verify with its own public key")
    check_public_key(csr.public_key())
    try:
        extensions = list(csr.extensions)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise CsrRejected(f"the CSR's extensions cannot be read: {exc}") from exc
    names: list[x509.GeneralName] = []
    for extension in extensions:
        value = extension.value
        if isinstance(value, x509.BasicConstraints) and value.ca:
            raise CsrRejected("the CSR asks to be a CA (basicConstraints CA:true); workloads get leaf certificates")
        if isinstance(value, x509.KeyUsage) and (value.key_cert_sign or value.crl_sign):
            raise CsrRejected("the CSR asks for certificate or CRL signing; workloads get leaf certificates")
        if isinstance(value, x509.SubjectAlternativeName):
            names = list(value)
    uris = [name.value for name in names if isinstance(name, x509.UniformResourceIdentifier)]
    others = [name for name in names if not isinstance(name, x509.UniformResourceIdentifier)]
    if others:
        raise CsrRejected(
            f"the CSR asks for names other than its SPIFFE ID ({', '.join(str(n.value) for n in others)}); "
            "workload certificates carry only spiffe://... URIs"
        )
    if not uris:
        raise CsrRejected(f"the CSR names no identity: put {identity.uri} in its subject alternative names")
    if uris != [identity.uri]:
        raise IdentityNotAllowed(
            f"the CSR asks for {', '.join(uris)} but the caller is entitled only to {identity.uri}"
        )


def check_public_key(key: object) -> None:
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _ACCEPTED_CURVES):
            raise CsrRejected(f"elliptic curve {key.curve.name} is not accepted (use P-256 or P-384)")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise CsrRejected(f"an RSA key of {key.key_size} bits is too small (at least {MIN_RSA_BITS})")
    elif not isinstance(key, ed25519.Ed25519PublicKey):
        raise CsrRejected(f"key type {type(key).__name__} is not accepted (use ECDSA P-256, RSA or Ed25519)")


def _leaf_key_usage(rsa_key: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=rsa_key,  # only RSA key exchange encrypts with the key
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _hash_for(key: SigningKey) -> hashes.SHA256 | hashes.SHA384 | None:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


# === roots ===


def generate_root(
    trust_domain: str,
    *,
    now: datetime | None = None,
    validity: timedelta = ROOT_VALIDITY,
    path_length: int | None = 0,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new self-signed ECDSA P-256 root for ``trust_domain`` (Istio names its root ``O=<trust domain>``).
    ``path_length`` 0 (the mesh's own root signs leaves only); ``None`` lets it sign intermediates."""
    key = ec.generate_private_key(ec.SECP256R1())
    moment = now or datetime.now(UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
            x509.NameAttribute(NameOID.COMMON_NAME, "pymesh root CA"),
        ]
    )
    public_key = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment - DEFAULT_CLOCK_SKEW)
        .not_valid_after(moment + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def check_ca_certificate(certificate: x509.Certificate, key: object, what: str) -> None:
    """``certificate`` can sign certificates and ``key`` is its private key."""
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise CaError(f"{what} is not a CA certificate (basicConstraints CA:true is missing)")
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is None or not usage.key_cert_sign:
        # RFC 5280 requires it on CA certificates, and peers verifying our chains (webpki) insist
        raise CaError(f"{what} may not sign certificates (its keyUsage extension lacks keyCertSign)")
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise CaError(f"the CA key is a {type(key).__name__}; ECDSA, RSA or Ed25519 keys are supported")
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    certified = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if public != certified:
        raise CaError(f"the CA key does not belong to the {what} (their public keys differ)")


# === files ===


def check_private_file(path: Path) -> None:
    """Refuse a key file that group or others may read or write (OpenSSH's rule for private keys)."""
    try:
        info = path.stat()
    except OSError as exc:
        raise CaError(f"cannot read the CA key {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise CaError(f"the CA key {path} is not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise CaError(
            f"permissions {mode:04o} for the CA key {path} are too open: it must be readable by its owner only "
            f"(chmod 600 {path})"
        )


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, created with mode 0600 (never readable by others, even briefly)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def load_private_key(path: Path) -> SigningKey:
    check_private_file(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise CaError(f"the CA key {path} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise CaError(f"the CA key {path} is a {type(key).__name__}; ECDSA, RSA or Ed25519 keys are supported")
    return key


def load_ca(
    cert_path: Path,
    key_path: Path,
    *,
    trust_domain: str,
    bundle_path: Path | None = None,
    leaf_ttl: timedelta = DEFAULT_LEAF_TTL,
    now: datetime | None = None,
) -> MeshCA:
    """A user-supplied CA: ``cert_path`` holds its certificate (optionally followed by its chain), ``key_path``
    its key (mode 0600), ``bundle_path`` the roots peers trust (default: the self-signed certificates given)."""
    try:
        cert_data = cert_path.read_bytes()
    except OSError as exc:
        raise CaError(f"cannot read the CA certificate {cert_path}: {exc.strerror or exc}") from exc
    certificates = load_certificates(cert_data, str(cert_path))
    key = load_private_key(key_path)
    bundle: list[x509.Certificate] = []
    if bundle_path is not None:
        try:
            bundle = load_certificates(bundle_path.read_bytes(), str(bundle_path))
        except OSError as exc:
            raise CaError(f"cannot read the trust bundle {bundle_path}: {exc.strerror or exc}") from exc
    signing = certificates[0]
    moment = now or datetime.now(UTC)
    if signing.not_valid_after_utc <= moment:
        raise CaError(f"the CA certificate {cert_path} expired at {signing.not_valid_after_utc.isoformat()}")
    try:
        return MeshCA(
            signing, key, trust_domain=trust_domain, chain=certificates[1:], trust_bundle=bundle, leaf_ttl=leaf_ttl
        )
    except CaError as exc:
        raise CaError(f"{cert_path}: {exc}") from exc


def load_or_create_ca(
    directory: Path, *, trust_domain: str, leaf_ttl: timedelta = DEFAULT_LEAF_TTL, now: datetime | None = None
) -> MeshCA:
    """The CA kept in ``directory`` (``ca-cert.pem``, ``ca-key.pem``), generated there on first use."""
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    if cert_path.exists() or key_path.exists():
        if not (cert_path.exists() and key_path.exists()):
            missing = key_path if cert_path.exists() else cert_path
            raise CaError(f"{missing} is missing (both {CERT_FILE} and {KEY_FILE} are needed, or neither)")
        return load_ca(cert_path, key_path, trust_domain=trust_domain, leaf_ttl=leaf_ttl, now=now)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    certificate, key = generate_root(trust_domain, now=now)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private_file(key_path, key_pem)  # the key first: a certificate alone is refused at the next start
    write_private_file(cert_path, certificate.public_bytes(serialization.Encoding.PEM))
    os.chmod(cert_path, 0o644)  # the certificate is public
    return MeshCA(certificate, key, trust_domain=trust_domain, leaf_ttl=leaf_ttl)


__all__ = [
    "CERT_FILE",
    "DEFAULT_CLOCK_SKEW",
    "DEFAULT_LEAF_TTL",
    "KEY_FILE",
    "MAX_LEAF_TTL",
    "CaError",
    "CsrRejected",
    "IdentityNotAllowed",
    "IssuedCertificate",
    "MeshCA",
    "check_csr",
    "check_private_file",
    "generate_root",
    "is_self_signed",
    "load_ca",
    "load_certificates",
    "load_or_create_ca",
    "parse_csr",
    "pem_of",
    "write_private_file",
]
