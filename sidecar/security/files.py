"""Workload credentials from files, for a sidecar without the control plane (``--config``).

``MESH_SIDECAR_CERT_DIR`` names a directory with Istio's file-mounted names: ``cert-chain.pem``
(the leaf first), ``key.pem`` (its ECDSA key) and ``root-cert.pem`` (the trust bundle). The files
are read at start and again whenever one of them changes (checked every ``poll_interval``
seconds): whoever writes them (cert-manager, a script, ``bench/mtls_bench.py``) rotates the
certificate. The key is then on disk, by the operator's choice; with the control plane the key
never leaves the sidecar (``sidecar.security.agent``). A file set that does not load is logged
and the credentials in use stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from mesh.security.ca import load_certificates
from mesh.security.workload import CredentialError, PeerVerificationError, WorkloadCredentials, peer_identity
from sidecar.security.tls_state import CERT_DIR_ENV, TlsState

log = logging.getLogger("sidecar.security")

FILES = ("cert-chain.pem", "key.pem", "root-cert.pem")


def load_directory(directory: Path) -> WorkloadCredentials:
    """The credentials in ``directory``; ``CredentialError`` says which file is at fault."""
    try:
        chain_pem, key_pem, bundle_pem = ((directory / name).read_bytes() for name in FILES)
    except OSError as exc:
        raise CredentialError(f"cannot read {exc.filename}: {exc.strerror}") from exc
    try:
        key = load_pem_private_key(key_pem, password=None)
    except ValueError as exc:
        raise CredentialError(f"{directory / 'key.pem'}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CredentialError(f"{directory / 'key.pem'}: must be an ECDSA key, got {type(key).__name__}")
    try:
        identity = peer_identity(load_certificates(chain_pem, "certificate chain")[0])
    except (ValueError, PeerVerificationError) as exc:
        raise CredentialError(f"{directory / 'cert-chain.pem'}: {exc}") from exc
    return WorkloadCredentials.from_pem(identity, key, chain_pem, bundle_pem)


class CredentialFiles:
    def __init__(self, directory: Path | str, tls: TlsState, *, poll_interval: float = 5.0) -> None:
        self.directory = Path(directory)
        self.tls = tls
        self.poll_interval = poll_interval

    @classmethod
    def from_env(cls, tls: TlsState) -> CredentialFiles | None:
        directory = os.environ.get(CERT_DIR_ENV)
        return cls(directory, tls) if directory else None

    def _stamp(self) -> tuple[int, ...]:
        stamps: list[int] = []
        for name in FILES:
            try:
                st = os.stat(self.directory / name)
            except OSError:
                stamps += (0, 0)
                continue
            stamps += (st.st_ino, st.st_mtime_ns)
        return tuple(stamps)

    def load(self) -> bool:
        try:
            credentials = load_directory(self.directory)
        except CredentialError as exc:
            log.error("workload credentials not loaded", extra={"directory": str(self.directory), "error": str(exc)})
            return False
        self.tls.install(credentials)
        log.info("workload credentials loaded", extra={"identity": credentials.identity.uri})
        return True

    async def run(self) -> None:
        seen: tuple[int, ...] | None = None
        while True:
            stamp = await asyncio.to_thread(self._stamp)
            if stamp != seen:
                seen = stamp
                await asyncio.to_thread(self.load)
            with contextlib.suppress(TimeoutError):
                await asyncio.sleep(self.poll_interval)


__all__ = ["CERT_DIR_ENV", "CredentialFiles", "load_directory"]
