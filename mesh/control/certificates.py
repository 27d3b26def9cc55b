"""The control plane's CA: where its root lives, and which identity each registered sidecar may ask for.

By default the root is generated on first start into ``<data-dir>/ca/`` (``ca-cert.pem``,
``ca-key.pem`` with mode 0600, the directory 0700), beside the SQLite store, and reloaded on
every later start; a key file others can read is refused. A user-supplied CA (``cert_file`` +
``key_file``, optionally ``bundle_file``) replaces it: that is how several replicas sharing one
store (``--store consul``) sign under one root.

Entitlement: a sidecar registered as service ``S`` in namespace ``N`` may get a certificate for
``spiffe://<trust-domain>/ns/N/sa/S`` and nothing else. With a token set (``mesh.control.auth``)
only the holder of that registration's secret may ask; without one registration is open, so whoever
can reach the control API can register under any service name and obtain that service's identity:
keep such a control plane on loopback.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from mesh.control.sidecars import Registration
from mesh.security.ca import DEFAULT_LEAF_TTL, CaError, MeshCA, load_ca, load_or_create_ca
from mesh.security.identity import DEFAULT_TRUST_DOMAIN, IdentityError, SpiffeId

CA_DIR = "ca"


@dataclass(frozen=True)
class CaSettings:
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    leaf_ttl: timedelta = DEFAULT_LEAF_TTL
    cert_file: Path | None = None  # a user-supplied CA certificate (optionally followed by its chain)
    key_file: Path | None = None  # its key (mode 0600)
    bundle_file: Path | None = None  # the roots peers trust (default: the self-signed certificates given)


def open_ca(settings: CaSettings, data_dir: Path) -> MeshCA:
    """The CA ``settings`` describe; ``CaError`` says what is wrong with the files."""
    if settings.cert_file is not None or settings.key_file is not None:
        if settings.cert_file is None or settings.key_file is None:
            raise CaError("a user-supplied CA needs both its certificate and its key file")
        return load_ca(
            settings.cert_file,
            settings.key_file,
            trust_domain=settings.trust_domain,
            bundle_path=settings.bundle_file,
            leaf_ttl=settings.leaf_ttl,
        )
    return load_or_create_ca(data_dir / CA_DIR, trust_domain=settings.trust_domain, leaf_ttl=settings.leaf_ttl)


def entitled_identity(registration: Registration, trust_domain: str) -> SpiffeId:
    """The one identity a registered sidecar may ask for; ``IdentityError`` when its names cannot form one."""
    return SpiffeId(trust_domain, registration.namespace, registration.service)


__all__ = ["CA_DIR", "CaSettings", "IdentityError", "entitled_identity", "open_ca"]
