"""Istio authorization as pure functions: ``AuthorizationPolicy`` decisions and ``PeerAuthentication`` modes.

Authorization follows Istio's documented semantics (CUSTOM is not supported; AUDIT policies only
log in Istio and do not change decisions, so they are skipped here):

1. If any DENY policy selecting the workload has a matching rule, the request is denied.
2. Else, if no ALLOW policy selects the workload, the request is allowed.
3. Else the request is allowed only when a rule of some ALLOW policy matches.

A rule matches when its ``from`` (any source), ``to`` (any operation) and ``when`` (every
condition) all hold; an absent part holds. Inside a source or operation the fields are ANDed
and each field's values ORed; ``notX`` holds when no value matches. So ``rules: [{}]`` matches
everything, and an ALLOW policy with no rules matches nothing (Istio's "allow nothing").
String values match exactly, by prefix (``/api/*``), by suffix (``*.example.com``), or ``*``
(any value; for principals and namespaces any *authenticated* value, so plaintext requests never
match ``principals: ["*"]``). Hosts match case-insensitively, with or without the port. For TCP
traffic the HTTP-only fields (hosts, methods, paths, request principals, request headers) are
handled as Istio does: an ALLOW rule that uses them never matches, a DENY rule ignores them
(denying more, never less).

Selection: a policy in the root namespace (``istio-system``) applies to every namespace; one
elsewhere applies to its own namespace; a ``selector`` narrows it to workloads whose labels
include every selector label.

mTLS mode (``resolve_mtls_mode``): the workload's selector policy, then its namespace's policy,
then the mesh-wide policy (root namespace, no selector); ``UNSET`` inherits from the next level
and the default is PERMISSIVE. A port-level mode of the workload policy wins for that port.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from mesh.rules.security import (
    AuthorizationPolicySpec,
    AuthorizationRule,
    Condition,
    Operation,
    PeerAuthenticationSpec,
    Source,
    claim_condition_path,
    header_condition_name,
)
from mesh.security.claims import audiences_of, claim_values
from mesh.security.identity import SCHEME

ROOT_NAMESPACE = "istio-system"
DEFAULT_MTLS_MODE = "PERMISSIVE"
Protocol = Literal["http", "tcp"]
Labels = Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class RequestAttributes:
    """What a decision may look at. Empty strings mean "absent" (no mTLS peer, no header...)."""

    source_principal: str = ""  # the peer's SPIFFE ID, with or without spiffe:// ("" without mTLS)
    source_ip: str = ""
    remote_ip: str = ""  # the original client (X-Forwarded-For); the source IP when not known
    request_principal: str = ""  # a verified JWT's "<iss>/<sub>" (RequestAuthentication), "" without one
    request_claims: Mapping[str, Any] = field(default_factory=dict)  # that JWT's claims
    destination_ip: str = ""
    destination_port: int = 0
    protocol: Protocol = "http"
    method: str = ""
    path: str = ""  # without the query string
    host: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    sni: str = ""

    @property
    def principal(self) -> str:
        return self.source_principal.removeprefix(SCHEME)

    @property
    def source_namespace(self) -> str:
        """The namespace in the peer's identity (``.../ns/<namespace>/...``), "" without one."""
        parts = self.principal.split("/")
        for i in range(1, len(parts) - 1):
            if parts[i] == "ns":
                return parts[i + 1]
        return ""


@dataclass(frozen=True, slots=True)
class NamedPolicy:
    namespace: str
    name: str
    spec: AuthorizationPolicySpec

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    policy: str | None  # "namespace/name" of the deciding policy; None when no rule decided
    action: str | None  # that policy's action
    rule: int | None  # the index of the rule that matched
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": "ALLOW" if self.allowed else "DENY",
            "policy": self.policy,
            "action": self.action,
            "rule": self.rule,
            "reason": self.reason,
        }


# === selection ===


def selects(selector: Labels, labels: Labels) -> bool:
    return set(selector) <= set(labels)


def policies_for_workload(
    policies: Iterable[NamedPolicy], namespace: str, labels: Labels, *, root_namespace: str = ROOT_NAMESPACE
) -> tuple[NamedPolicy, ...]:
    """The policies that apply to a workload of ``namespace`` with ``labels``."""
    return tuple(
        policy
        for policy in policies
        if policy.namespace in (namespace, root_namespace) and selects(policy.spec.selector, labels)
    )


# === decisions ===


def evaluate(attributes: RequestAttributes, policies: Iterable[NamedPolicy]) -> Decision:
    """Allow or deny one request, given the policies that select the workload (``policies_for_workload``)."""
    ordered = sorted(policies, key=lambda p: p.id)
    for policy in ordered:
        if policy.spec.action != "DENY":
            continue
        for i, rule in enumerate(policy.spec.rules):
            if rule_matches(rule, attributes, "DENY"):
                return Decision(False, policy.id, "DENY", i, f"denied by DENY policy {policy.id}, rule {i}")
    allow = [policy for policy in ordered if policy.spec.action == "ALLOW"]
    if not allow:
        return Decision(True, None, None, None, "no ALLOW policy selects the workload: allowed by default")
    for policy in allow:
        for i, rule in enumerate(policy.spec.rules):
            if rule_matches(rule, attributes, "ALLOW"):
                return Decision(True, policy.id, "ALLOW", i, f"allowed by ALLOW policy {policy.id}, rule {i}")
    names = ", ".join(policy.id for policy in allow)
    return Decision(False, None, None, None, f"no rule of the ALLOW policies selecting the workload matched ({names})")


def rule_matches(rule: AuthorizationRule, attributes: RequestAttributes, action: str) -> bool:
    tcp = attributes.protocol == "tcp"
    if tcp and action == "ALLOW" and _uses_http_fields(rule):
        return False  # Istio: an ALLOW rule that needs HTTP never matches TCP traffic
    if rule.sources and not any(_source_matches(source, attributes, tcp) for source in rule.sources):
        return False
    if rule.operations and not any(_operation_matches(op, attributes, tcp) for op in rule.operations):
        return False
    return all(_condition_matches(condition, attributes, tcp) for condition in rule.conditions)


def _source_matches(source: Source, a: RequestAttributes, tcp: bool) -> bool:
    principal, namespace = a.principal, a.source_namespace
    return (
        _strings(source.principals, source.not_principals, principal, required=True, strip_scheme=True)
        and _strings(source.namespaces, source.not_namespaces, namespace, required=True)
        and (tcp or _strings(source.request_principals, source.not_request_principals, a.request_principal, True))
        and _ips(source.ip_blocks, source.not_ip_blocks, a.source_ip)
        and _ips(source.remote_ip_blocks, source.not_remote_ip_blocks, a.remote_ip or a.source_ip)
    )


def _operation_matches(op: Operation, a: RequestAttributes, tcp: bool) -> bool:
    port = str(a.destination_port) if a.destination_port else ""
    if not _field(op.ports, op.not_ports, lambda value: value == port):
        return False
    if tcp:
        return True  # hosts, methods and paths are HTTP-only: ignored (only DENY rules get here)
    return (
        _field(op.hosts, op.not_hosts, lambda value: _host_matches(value, a.host))
        and _strings(op.methods, op.not_methods, a.method)
        and _strings(op.paths, op.not_paths, a.path)
    )


def _condition_matches(condition: Condition, a: RequestAttributes, tcp: bool) -> bool:
    key = condition.key
    header = header_condition_name(key)
    values, not_values = condition.values, condition.not_values
    if header is not None:
        if tcp:
            return True
        actual = a.headers.get(header)
        return _field(values, not_values, lambda value: actual is not None and string_matches(value, actual))
    if key in ("source.ip", "remote.ip", "destination.ip"):
        address = {
            "source.ip": a.source_ip,
            "remote.ip": a.remote_ip or a.source_ip,
            "destination.ip": a.destination_ip,
        }
        return _ips(values, not_values, address[key])
    if key == "destination.port":
        port = str(a.destination_port) if a.destination_port else ""
        return _field(values, not_values, lambda value: value == port)
    if key == "source.principal":
        return _strings(values, not_values, a.principal, required=True, strip_scheme=True)
    if key == "source.namespace":
        return _strings(values, not_values, a.source_namespace, required=True)
    if key == "request.auth.principal":
        return tcp or _strings(values, not_values, a.request_principal, required=True)
    if key.startswith("request.auth."):
        return tcp or _any_of(values, not_values, _auth_values(key, a.request_claims))
    if key == "connection.sni":
        return _strings(values, not_values, a.sni)
    return False  # validation admits no other key; an unknown one never matches


def _uses_http_fields(rule: AuthorizationRule) -> bool:
    for source in rule.sources:
        if source.request_principals or source.not_request_principals:
            return True
    for op in rule.operations:
        if op.hosts or op.not_hosts or op.methods or op.not_methods or op.paths or op.not_paths:
            return True
    return any(header_condition_name(c.key) is not None or c.key.startswith("request.auth.") for c in rule.conditions)


def _auth_values(key: str, claims: Mapping[str, Any]) -> tuple[str, ...]:
    """The verified token's values for ``request.auth.audiences`` / ``presenter`` / ``claims[...]``."""
    if key == "request.auth.audiences":
        return audiences_of(claims)
    if key == "request.auth.presenter":
        presenter = claims.get("azp")
        return (presenter,) if isinstance(presenter, str) else ()
    path = claim_condition_path(key)
    return claim_values(claims, path) if path else ()


def _any_of(values: Sequence[str], not_values: Sequence[str], actual: Sequence[str]) -> bool:
    """A multi-valued attribute (a list claim, the audiences): a pattern matches when it matches one element."""
    return _field(values, not_values, lambda pattern: any(string_matches(pattern, item) for item in actual))


# === value matching ===


def string_matches(pattern: str, value: str, *, required: bool = False) -> bool:
    """Istio's string match: ``*`` (anything; with ``required`` anything non-empty), ``*suffix``,
    ``prefix*``, else exact."""
    if pattern == "*":
        return bool(value) or not required
    if required and not value:
        return False
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


def _strings(
    values: Sequence[str], not_values: Sequence[str], actual: str, required: bool = False, strip_scheme: bool = False
) -> bool:
    def match(pattern: str) -> bool:
        return string_matches(pattern.removeprefix(SCHEME) if strip_scheme else pattern, actual, required=required)

    return _field(values, not_values, match)


def _field(values: Sequence[str], not_values: Sequence[str], match: Any) -> bool:
    """A field holds when some value matches (if values are given) and no not-value does."""
    if values and not any(match(value) for value in values):
        return False
    return not (not_values and any(match(value) for value in not_values))


def _host_matches(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower(), host.lower()
    if string_matches(pattern, host):
        return True
    name = _without_port(host)
    return name != host and _without_port(pattern) == pattern and string_matches(pattern, name)


def _without_port(host: str) -> str:
    """``example.com`` for ``example.com:8080``, ``[::1]`` for ``[::1]:80``; otherwise ``host``."""
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 and host[end + 1 : end + 2] == ":" else host
    name, sep, port = host.rpartition(":")
    return name if sep and port.isdigit() and ":" not in name else host


def _ips(blocks: Sequence[str], not_blocks: Sequence[str], address: str) -> bool:
    ip = _address(address)
    return _field(blocks, not_blocks, lambda block: ip is not None and _in_block(ip, block))


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _in_block(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, block: str) -> bool:
    try:
        return ip in ipaddress.ip_network(block, strict=False)
    except ValueError:
        return False


# === PeerAuthentication ===


@dataclass(frozen=True, slots=True)
class NamedPeerAuthentication:
    namespace: str
    name: str
    spec: PeerAuthenticationSpec

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class MtlsDecision:
    mode: str  # STRICT, PERMISSIVE or DISABLE
    policy: str | None  # "namespace/name" of the policy that set it; None for the default
    port_level: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "policy": self.policy, "port_level": self.port_level, "reason": self.reason}


def resolve_mtls_mode(
    policies: Iterable[NamedPeerAuthentication],
    namespace: str,
    labels: Labels,
    port: int | None = None,
    *,
    root_namespace: str = ROOT_NAMESPACE,
) -> MtlsDecision:
    """The inbound mTLS mode of a workload (on ``port`` when given). ``policies`` come oldest first:
    when several policies share a level, the oldest wins, as in Istio."""
    given = list(policies)
    workload = next(
        (p for p in given if p.namespace == namespace and p.spec.selector and selects(p.spec.selector, labels)), None
    )
    namespace_wide = next((p for p in given if p.namespace == namespace and not p.spec.selector), None)
    mesh_wide = next((p for p in given if p.namespace == root_namespace and not p.spec.selector), None)
    if workload is not None and port is not None:
        port_mode = dict(workload.spec.port_modes).get(port, "UNSET")
        if port_mode != "UNSET":
            return MtlsDecision(port_mode, workload.id, True, f"port {port} of workload policy {workload.id}")
    for level, policy in (("workload", workload), ("namespace", namespace_wide), ("mesh-wide", mesh_wide)):
        if policy is not None and policy.spec.mode != "UNSET":
            return MtlsDecision(policy.spec.mode, policy.id, False, f"{level} policy {policy.id}")
    return MtlsDecision(DEFAULT_MTLS_MODE, None, False, "no PeerAuthentication sets a mode: Istio's default")


__all__ = [
    "DEFAULT_MTLS_MODE",
    "ROOT_NAMESPACE",
    "Decision",
    "MtlsDecision",
    "NamedPeerAuthentication",
    "NamedPolicy",
    "RequestAttributes",
    "evaluate",
    "policies_for_workload",
    "resolve_mtls_mode",
    "rule_matches",
    "selects",
    "string_matches",
]
