"""Mesh security in one sidecar: its credentials, the inbound protocol choice per accepted
connection, the outbound TLS context per upstream endpoint, and the security metrics.

Per accept the inbound listener asks ``InboundSecurity.accept``: with the port's mode DISABLE
and no authorization policy it returns the listener's ordinary protocol (nothing else is done);
otherwise a ``TlsSniffer`` (STRICT, PERMISSIVE) or a guarded plaintext protocol (DISABLE with
policies). Guards are compiled once per snapshot (``compile_guard``) and cached by the snapshot's
security section.

Outbound (Istio's auto-mTLS): a connection to an endpoint listed in the snapshot's
``mtls_endpoints`` (an endpoint fronted by a sidecar) is opened with TLS, presenting this
workload's certificate and requiring the server's chain to the mesh trust bundle.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from mesh.model.hosts import endpoint_key
from mesh.model.snapshot import Snapshot
from sidecar.active import ConfigHolder
from sidecar.http1.downstream import DownstreamConnection
from sidecar.ratelimit.limiter import RateLimitState, Refusal
from sidecar.security.guard import InboundGuard, compile_guard
from sidecar.security.inbound import GuardedDownstream, GuardedTcpDownstream, TlsSniffer
from sidecar.security.tls_state import TlsState
from sidecar.tcp.listener import TcpDownstream

if TYPE_CHECKING:
    from sidecar.http1.listener import HttpContext
    from sidecar.tcp.listener import TcpContext


class SecurityStats:
    """Counters for the security metrics (plain ints; exposed at scrape time)."""

    def __init__(self, tls: TlsState, limits: RateLimitState | None = None) -> None:
        self._tls = tls
        self._limits = limits
        self.limited: dict[tuple[str, str, str], int] = {}  # (listener, policy, limit) → requests refused (429)
        self.connections: dict[str, int] = {}  # by how the inbound connection was taken
        self.rbac: dict[tuple[str, str, str], int] = {}  # (listener, protocol, policy) → denials
        self.jwt_outcomes: dict[tuple[str, str], int] = {}  # (listener, allowed | denied | missing) → requests
        self.renewals: dict[str, int] = {}  # issued / failed

    def count(self, kind: str) -> None:
        self.connections[kind] = self.connections.get(kind, 0) + 1

    def denied(self, listener: str, protocol: str, policy: str) -> None:
        key = (listener, protocol, policy)
        self.rbac[key] = self.rbac.get(key, 0) + 1

    def rate_limited(self, listener: str, refusal: Refusal) -> None:
        key = (listener, refusal.policy, refusal.limit)
        self.limited[key] = self.limited.get(key, 0) + 1

    def jwt(self, listener: str, result: str) -> None:
        key = (listener, result)
        self.jwt_outcomes[key] = self.jwt_outcomes.get(key, 0) + 1

    def renewal(self, result: str) -> None:
        self.renewals[result] = self.renewals.get(result, 0) + 1

    def collect(self) -> Iterator[Metric]:
        inbound = CounterMetricFamily(
            "mesh_sidecar_inbound_tls_connections",
            "Inbound connections on mTLS-enabled ports by how they were taken "
            "(mtls, plaintext, plaintext_refused, no_certificate)",
            labels=["result"],
        )
        for kind, value in sorted(self.connections.items()):
            inbound.add_metric([kind], value)
        yield inbound
        rbac = CounterMetricFamily(
            "mesh_sidecar_rbac_denied",
            "Requests (HTTP) and connections (TCP) denied by authorization policies",
            labels=["listener", "protocol", "policy"],
        )
        for (listener, protocol, policy), value in sorted(self.rbac.items()):
            rbac.add_metric([listener, protocol, policy], value)
        yield rbac
        jwt = CounterMetricFamily(
            "mesh_sidecar_jwt_authn",
            "Requests by what RequestAuthentication found: a valid token (allowed), an invalid one (denied, 401), "
            "none (missing: authorization decides)",
            labels=["listener", "result"],
        )
        for (listener, result), value in sorted(self.jwt_outcomes.items()):
            jwt.add_metric([listener, result], value)
        yield jwt
        limited = CounterMetricFamily(
            "mesh_sidecar_ratelimited",
            "Requests refused with 429 by a RateLimitPolicy limit",
            labels=["listener", "policy", "limit"],
        )
        for (listener, policy, limit), value in sorted(self.limited.items()):
            limited.add_metric([listener, policy, limit], value)
        yield limited
        down = GaugeMetricFamily(
            "mesh_sidecar_ratelimit_shared_unavailable",
            "1 while a shared limit cannot reach the registry (its failureMode decides), else 0",
            labels=["policy", "limit"],
        )
        shared = self._limits.shared_down() if self._limits is not None else {}
        for (policy, limit), value in sorted(shared.items()):
            down.add_metric([policy, limit], 1.0 if value else 0.0)
        yield down
        renewals = CounterMetricFamily(
            "mesh_sidecar_certificate_requests", "Certificate requests to the mesh CA by result", labels=["result"]
        )
        for result, value in sorted(self.renewals.items()):
            renewals.add_metric([result], value)
        yield renewals
        yield GaugeMetricFamily(
            "mesh_sidecar_certificate_expiry_timestamp_seconds",
            "When the workload certificate in use expires (0: none)",
            value=self._tls.expires_at(),
        )


class InboundSecurity:
    """The accept-time choice for one inbound listener (HTTP or TCP)."""

    def __init__(
        self,
        security: SidecarSecurity,
        name: str,
        port: int,
        plain: Callable[[], asyncio.Protocol],
        guarded: Callable[[InboundGuard], asyncio.Protocol],
    ) -> None:
        self._security = security
        self.name = name  # the snapshot listener's name
        self.port = port  # the configured port (policies and port-level modes name it)
        self._plain = plain
        self._guarded = guarded
        self._cached: tuple[Snapshot, InboundGuard] | None = None
        self._accepted: InboundGuard | None = None  # the guard the open connections were accepted under

    def guard_changed(self) -> bool:
        """Whether the active snapshot's guard differs from the one connections were accepted under
        (then the caller renews them); the new guard counts as accepted from now on."""
        current = self.guard()
        changed = self._accepted is not None and current != self._accepted
        self._accepted = current
        return changed

    def guard(self) -> InboundGuard:
        snapshot = self._security.holder.current.snapshot
        cached = self._cached
        if cached is not None and cached[0] is snapshot:
            return cached[1]
        guard = compile_guard(snapshot, self.name, self.port, self._security.limits)
        self._cached = (snapshot, guard)
        return guard

    def accept(self) -> asyncio.Protocol:
        guard = self._accepted = self.guard()
        if guard.plain_only:
            return self._plain()
        if not guard.tls:
            return self._guarded(guard)
        plain: Callable[[], asyncio.Protocol] = (lambda: self._guarded(guard)) if guard.checks_requests else self._plain
        security = self._security
        return TlsSniffer(guard.mode == "STRICT", security.tls, plain, lambda: self._guarded(guard), security.stats)


class SidecarSecurity:
    """One per sidecar server: credentials (``tls``), stats, inbound and outbound choices."""

    def __init__(self, holder: ConfigHolder) -> None:
        self.holder = holder
        self.tls = TlsState()
        self.limits = RateLimitState()
        self.stats = SecurityStats(self.tls, self.limits)

    async def close(self) -> None:
        await self.limits.close()

    def inbound_http(self, context: HttpContext, port: int) -> InboundSecurity:
        stats = self.stats
        return InboundSecurity(
            self,
            context.name,
            port,
            lambda: DownstreamConnection(context),
            lambda g: GuardedDownstream(context, g, stats),
        )

    def inbound_tcp(self, context: TcpContext, port: int) -> InboundSecurity:
        stats = self.stats
        return InboundSecurity(
            self, context.name, port, lambda: TcpDownstream(context), lambda g: GuardedTcpDownstream(context, g, stats)
        )

    def outbound_context(self, host: str, port: int) -> ssl.SSLContext | None:
        """The TLS context for a new upstream connection to ``host:port`` (None: plaintext)."""
        security = self.holder.current.snapshot.security
        if not security.mtls_endpoints or endpoint_key(host, port) not in security.mtls_endpoints:
            return None
        return self.tls.client

    def check_server(self, host: str, port: int, transport: asyncio.BaseTransport) -> str | None:
        """After an outbound handshake (OpenSSL verified the chain to the trust bundle): the server's
        SPIFFE ID must be in our trust domain and, when the snapshot knows it, the expected workload's.
        None when it is; else why not (the connection is then closed as a connect failure)."""
        from mesh.security.workload import PeerVerificationError, identity_of_connection  # TLS only: see tls_state

        try:
            identity = identity_of_connection(transport.get_extra_info("ssl_object"))
        except PeerVerificationError as exc:
            return str(exc)
        if identity is None:
            return "the server presented no certificate"
        own = self.tls.credentials
        if own is not None and identity.trust_domain != own.identity.trust_domain:
            return f"the server {identity.uri} is outside the trust domain {own.identity.trust_domain!r}"
        expected = self.holder.current.snapshot.security.expected_identities.get(endpoint_key(host, port))
        if expected and f"ns/{identity.namespace}/sa/{identity.service}" != expected:
            return f"the server is {identity.uri}, not the expected {expected}"
        return None


__all__ = ["InboundSecurity", "SecurityStats", "SidecarSecurity"]
