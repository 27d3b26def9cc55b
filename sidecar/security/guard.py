"""What an inbound listener port enforces under one snapshot: its mTLS mode and its authorization
policies, compiled once per snapshot (pure, no sockets).

``InboundGuard.plain_only`` (mode DISABLE and no policy selects the workload) lets the listener
accept with its ordinary protocol: such traffic pays nothing for security. Otherwise a decision
is ``None`` (allowed) or the ``Decision`` that denied, naming the policy and rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.model.security import local_ports
from mesh.model.snapshot import Snapshot
from mesh.security.authz import Decision, NamedPolicy, RequestAttributes, evaluate


@dataclass(frozen=True, slots=True)
class InboundGuard:
    mode: str  # STRICT, PERMISSIVE or DISABLE
    port: int  # the destination port policies see: the workload's (app) port, as in Istio
    policies: tuple[NamedPolicy, ...]

    @property
    def plain_only(self) -> bool:
        return self.mode == "DISABLE" and not self.policies

    @property
    def tls(self) -> bool:
        return self.mode != "DISABLE"

    def check_http(
        self, principal: str, source_ip: str, method: str, path: str, host: str, headers: dict[str, str]
    ) -> Decision | None:
        """None when allowed, else the denying decision."""
        if not self.policies:
            return None
        attributes = RequestAttributes(
            source_principal=principal,
            source_ip=source_ip,
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


def compile_guard(snapshot: Snapshot, listener_name: str, port: int) -> InboundGuard:
    """The guard of inbound listener ``listener_name`` (configured on ``port``) under ``snapshot``.

    Policies name the workload's port (``to.operation.ports``, ``destination.port``): the app port
    the listener forwards to when there is one, else the listener's own port."""
    security = snapshot.security
    listener = snapshot.listener(listener_name)
    ports = local_ports(listener, snapshot.route_tables, snapshot.clusters) if listener is not None else set()
    destination_port = next(iter(ports)) if len(ports) == 1 else port
    return InboundGuard(security.mode_for(port), destination_port, security.named_policies())


def denial_body(decision: Decision) -> str:
    """Envoy's ``RBAC: access denied``, plus which policy decided (or that no ALLOW rule matched)."""
    return f"RBAC: access denied ({decision.reason})"


__all__ = ["InboundGuard", "compile_guard", "denial_body"]
