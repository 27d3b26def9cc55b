"""The sidecar's current workload credentials and the TLS contexts built from them.

A renewal builds fresh ``SSLContext`` objects and swaps them in one assignment: connections
accepted or opened from then on use the new ones, established connections keep theirs (an
``SSLObject`` holds its own reference to the context it was created with), so nothing drops.
"""

from __future__ import annotations

import ssl
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mesh.security.workload import WorkloadCredentials

# mesh.security.workload (the cryptography package, ~8 MB of memory) is imported only once a
# certificate arrives: a sidecar without mTLS never loads it.

CERT_DIR_ENV = "MESH_SIDECAR_CERT_DIR"  # credential files instead of the control plane's CA (sidecar.security.files)


class TlsState:
    """``server``/``client`` are None until the first certificate arrives (and after it expired)."""

    __slots__ = ("client", "credentials", "installed", "server")

    def __init__(self) -> None:
        self.credentials: WorkloadCredentials | None = None
        self.server: ssl.SSLContext | None = None  # inbound: client certificate required
        self.client: ssl.SSLContext | None = None  # outbound: presents ours, verifies the server's chain
        self.installed = 0  # how many credentials were installed (the first, then each renewal)

    def install(self, credentials: WorkloadCredentials) -> None:
        from mesh.security.workload import client_context, server_context

        server, client = server_context(credentials, mode="STRICT"), client_context(credentials)
        self.credentials, self.server, self.client = credentials, server, client
        self.installed += 1

    def clear(self) -> None:
        """Forget expired credentials: new mTLS connections fail until a certificate is issued again."""
        self.credentials = self.server = self.client = None

    def expires_at(self) -> float:
        """The certificate's expiry as a Unix time (0 without one), for the metrics."""
        credentials = self.credentials
        return credentials.not_after.timestamp() if credentials is not None else 0.0

    def expired(self, now: datetime | None = None) -> bool:
        credentials = self.credentials
        if credentials is None:
            return True
        return (now or datetime.fromtimestamp(time.time(), UTC)) >= credentials.not_after


__all__ = ["TlsState"]
