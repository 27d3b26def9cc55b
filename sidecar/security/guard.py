"""What an inbound listener port enforces under one snapshot: its mTLS mode, its JWT rules, its
authorization policies and its rate limits, compiled once per snapshot (no sockets).

``InboundGuard.plain_only`` (mode DISABLE, no JWT rule and no policy selects the workload) lets
the listener accept with its ordinary protocol: such traffic pays nothing for security or limits.
Otherwise a decision is ``None`` (allowed) or the ``Decision`` that denied, naming the policy and
rule. The JWT authenticator (``mesh.security.jwt``, which loads the JOSE library) is built only
for a snapshot with JWT rules; guards compare by their rules, not by that object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mesh.model.ratelimit import RateLimitEntry
from mesh.model.security import local_ports
from mesh.model.snapshot import Snapshot
from mesh.rules.request_authentication import JwtRule
from mesh.security.authz import Decision, NamedPolicy, RequestAttributes, evaluate

if TYPE_CHECKING:
    from mesh.security.jwt import JwtAuthenticator
    from sidecar.ratelimit.limiter import InboundLimiter, RateLimitState


@dataclass(frozen=True, slots=True)
class InboundGuard:
    mode: str  # STRICT, PERMISSIVE or DISABLE
    port: int  # the destination port policies see: the workload's (app) port, as in Istio
    policies: tuple[NamedPolicy, ...]
    jwt_rules: tuple[JwtRule, ...] = ()
    authenticator: JwtAuthenticator | None = field(default=None, compare=False, repr=False)
    rate_limits: tuple[RateLimitEntry, ...] = ()
    limiter: InboundLimiter | None = field(default=None, compare=False, repr=False)

    @property
    def checks_requests(self) -> bool:
        """Whether each request is looked at (JWT, authorization, rate limits)."""
        return bool(self.policies or self.jwt_rules or self.rate_limits)

    @property
    def plain_only(self) -> bool:
        return self.mode == "DISABLE" and not self.checks_requests

    @property
    def tls(self) -> bool:
        return self.mode != "DISABLE"

    def check_http(
        self,
        principal: str,
        source_ip: str,
        method: str,
        path: str,
        host: str,
        headers: dict[str, str],
        request_principal: str = "",
        claims: Mapping[str, Any] | None = None,
    ) -> Decision | None:
        """None when allowed, else the denying decision. ``request_principal``/``claims``: a verified JWT's."""
        if not self.policies:
            return None
        attributes = RequestAttributes(
            source_principal=principal,
            source_ip=source_ip,
            request_principal=request_principal,
            request_claims=claims or {},
            destination_port=self.port,
            protocol="http",
            method=method,
            path=path,
            host=host,
            headers=headers,
        )
        decision = evaluate(attributes, self.policies)
        return None if decision.allowed else decision

    def check_tcp(self, principal: str, source_ip: str) -> Decision | None:
        if not self.policies:
            return None
        attributes = RequestAttributes(
            source_principal=principal, source_ip=source_ip, destination_port=self.port, protocol="tcp"
        )
        decision = evaluate(attributes, self.policies)
        return None if decision.allowed else decision


def compile_guard(
    snapshot: Snapshot, listener_name: str, port: int, limits: RateLimitState | None = None
) -> InboundGuard:
    """The guard of inbound listener ``listener_name`` (configured on ``port``) under ``snapshot``.

    Policies name the workload's port (``to.operation.ports``, ``destination.port``): the app port
    the listener forwards to when there is one, else the listener's own port."""
    security = snapshot.security
    listener = snapshot.listener(listener_name)
    ports = local_ports(listener, snapshot.route_tables, snapshot.clusters) if listener is not None else set()
    destination_port = next(iter(ports)) if len(ports) == 1 else port
    rules = security.jwt_rules()
    authenticator = None
    if rules:
        from mesh.security.jwt import JwtAuthenticator  # the JOSE library loads only for JWT rules

        authenticator = JwtAuthenticator(rules)
    limiter = limits.compile(snapshot.rate_limits) if limits is not None else None
    return InboundGuard(
        security.mode_for(port),
        destination_port,
        security.named_policies(),
        rules,
        authenticator,
        snapshot.rate_limits,
        limiter,
    )


def denial_body(decision: Decision) -> str:
    """Envoy's ``RBAC: access denied``, plus which policy decided (or that no ALLOW rule matched)."""
    return f"RBAC: access denied ({decision.reason})"


__all__ = ["InboundGuard", "compile_guard", "denial_body"]
