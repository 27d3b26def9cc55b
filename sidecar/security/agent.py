"""The sidecar's certificate agent: gets the workload certificate from the mesh CA and renews it.

At start it generates a key in the process, sends a CSR for its SPIFFE ID (the trust domain from
the CA, the namespace and service it registered with) and installs the answer into ``TlsState``.
It renews at a random point between 50 % and 80 % of the certificate's lifetime
(``rotation_time``, Istio's agent habit), or at once on ``renew_now``. Each renewal uses a fresh
key. A failed request is logged, counted (``mesh_sidecar_certificate_requests{result="failed"}``)
and retried with exponential backoff (1 s doubling to 60 s, jittered); the certificate in use is
kept until it expires, then dropped (new mTLS connections fail rather than present an expired one).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from mesh.security.identity import SpiffeId, workload_id
from mesh.security.workload import (
    WorkloadCredentials,
    build_csr,
    new_private_key,
    rotation_time,
    seconds_until,
)
from sidecar.security.tls_state import TlsState
from sidecar.security.wiring import SecurityStats

log = logging.getLogger("sidecar.security")


class CertificateError(Exception):
    """The CA did not issue a certificate (the message says why)."""


class Signer(Protocol):
    """The mesh CA as the sidecar reaches it (the control plane, or an in-process CA in tests)."""

    async def trust_domain(self) -> str: ...

    async def sign(self, csr_pem: bytes) -> tuple[str, str]:
        """The certificate chain and the trust bundle (PEM) for ``csr_pem``."""
        ...


def utc_now() -> datetime:
    return datetime.now(UTC)


class CertificateAgent:
    def __init__(
        self,
        signer: Signer,
        namespace: str,
        service: str,
        tls: TlsState,
        stats: SecurityStats,
        *,
        clock: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
    ) -> None:
        self.signer = signer
        self.namespace = namespace
        self.service = service
        self.tls = tls
        self.stats = stats
        self.clock = clock
        self.rng = rng or random.Random()
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.failures = 0
        self.identity: SpiffeId | None = None
        self.next_renewal: datetime | None = None
        self._wake = asyncio.Event()

    async def run(self) -> None:
        while True:
            delay = await self.step()
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()

    def renew_now(self) -> None:
        """Renew at once (an operator's forced rotation, or a test)."""
        self._wake.set()

    async def step(self) -> float:
        """One issue/renewal attempt; the seconds until the next one."""
        try:
            credentials = await self.issue()
        except (CertificateError, OSError, TimeoutError, ValueError) as exc:
            return self._failed(exc)
        self.failures = 0
        self.tls.install(credentials)
        self.stats.renewal("issued")
        self.next_renewal = rotation_time(credentials.not_before, credentials.not_after, self.rng)
        log.info(
            "workload certificate installed",
            extra={
                "identity": credentials.identity.uri,
                "not_after": credentials.not_after.isoformat(),
                "renew_at": self.next_renewal.isoformat(),
            },
        )
        return seconds_until(self.next_renewal, self.clock())

    async def issue(self) -> WorkloadCredentials:
        if self.identity is None:
            self.identity = workload_id(await self.signer.trust_domain(), self.namespace, self.service)
        key = new_private_key()
        chain, bundle = await self.signer.sign(build_csr(self.identity, key))
        return WorkloadCredentials.from_pem(self.identity, key, chain, bundle)

    def _failed(self, exc: Exception) -> float:
        self.failures += 1
        self.stats.renewal("failed")
        current = self.tls.credentials
        now = self.clock()
        if current is not None and now >= current.not_after:
            log.error("workload certificate expired and could not be renewed: mTLS stops", extra={"error": str(exc)})
            self.tls.clear()
        else:
            log.warning(
                "workload certificate request failed",
                extra={"error": str(exc) or type(exc).__name__, "failures": self.failures},
            )
        delay = min(self.backoff_cap, self.backoff_base * float(2 ** min(self.failures - 1, 16)))
        delay *= 0.5 + self.rng.random() / 2  # jitter: a fleet does not retry in step
        if current is not None and now < current.not_after:
            delay = min(delay, max(0.0, (current.not_after - now).total_seconds()))  # wake to drop it at expiry
        return delay


__all__ = ["CertificateAgent", "CertificateError", "Signer"]
