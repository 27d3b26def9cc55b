"""The security section of a sidecar snapshot: its inbound mTLS mode, the authorization policies
and JWT rules selecting it, and which upstream endpoints speak mTLS (pure; parse and dump here too).

The control plane computes it per sidecar (``mesh.control.translate``): the mode from the
``PeerAuthentication`` resources (``resolve_mtls_mode``), the ``AuthorizationPolicy`` resources
selecting the workload, and the mesh endpoints (registry instances fronted by a sidecar: see
``is_mesh_endpoint``). A static ``--config`` file may carry the same section::

    security:
      trust_domain: cluster.local
      mtls: {mode: STRICT, ports: {"8080": PERMISSIVE}}
      mtls_endpoints: ["127.0.0.1:9080"]
      mtls_identities: {"127.0.0.1:9080": ns/default/sa/ratings}   # optional: the server must be this one
      authorization:
        - namespace: default
          name: deny-delete
          spec: {action: DENY, rules: [{to: [{operation: {methods: [DELETE]}}]}]}
      request_authentication:     # RequestAuthentication specs; keys inline (jwks), never jwksUri
        - namespace: default
          name: jwt-example
          spec: {jwtRules: [{issuer: "https://issuer.example", jwks: '{"keys": [...]}'}]}

A snapshot without the section (``DISABLED``) serves plaintext only and enforces nothing, as
before mesh security existed. Policy specs keep their source data so the snapshot can be sent
to the sidecar as JSON and read back unchanged. A sidecar never fetches keys: the control plane
resolves ``jwksUri`` (and OpenID discovery) and sends the key set inline; a JWT rule without
``jwks`` has no keys (its fetch failed), so its tokens are rejected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from mesh.model.reader import ConfigError, Fields, show
from mesh.rules.fields import named_spec_to_dict, parse_named_spec
from mesh.rules.request_authentication import JwtRule, RequestAuthenticationSpec, parse_request_authentication
from mesh.rules.security import AuthorizationPolicySpec, parse_authorization_policy
from mesh.security.authz import NamedPolicy
from mesh.security.identity import DEFAULT_TRUST_DOMAIN

if TYPE_CHECKING:
    from mesh.model.snapshot import Cluster, Listener, RouteTable

MODES = ("STRICT", "PERMISSIVE", "DISABLE")
# How an endpoint says a sidecar fronts it: Istio's endpoint label (as a registry tag
# ``security.istio.io/tlsMode=istio``), or the Consul-safe Meta key ``mesh-tls-mode: istio``
# (Consul Meta keys may not contain ``.`` or ``/``). The sidecar registrar sets the latter.
TLS_MODE_LABELS = ("security.istio.io/tlsMode", "mesh-tls-mode")
TLS_MODE_META = "mesh-tls-mode"  # what the mesh's own registrations set (sidecar, demo, deploy/k8s)
TLS_MODE_MESH = "istio"
_IDENTITY = re.compile(r"ns/[A-Za-z0-9._-]+/sa/[A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    """One ``AuthorizationPolicy`` selecting the workload, with its source spec (for the dump)."""

    namespace: str
    name: str
    spec: AuthorizationPolicySpec
    data: Mapping[str, Any] = field(compare=False, repr=False)

    def named(self) -> NamedPolicy:
        return NamedPolicy(self.namespace, self.name, self.spec)


@dataclass(frozen=True, slots=True)
class RequestAuthEntry:
    """One ``RequestAuthentication`` selecting the workload, keys inline, with its source spec."""

    namespace: str
    name: str
    spec: RequestAuthenticationSpec
    data: Mapping[str, Any] = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    """``mtls_mode``/``port_modes``: the inbound listeners' mode (a port's own mode wins);
    ``policies``: the authorization policies selecting this workload; ``mtls_endpoints``:
    ``host:port`` keys of upstream endpoints to originate mTLS to; ``enabled``: the section is present."""

    enabled: bool = False
    mtls_mode: str = "DISABLE"
    port_modes: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))
    policies: tuple[PolicyEntry, ...] = ()
    mtls_endpoints: frozenset[str] = frozenset()
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    # endpoint key → the identity its server must present, as ``ns/<namespace>/sa/<service>`` (when known)
    expected_identities: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    request_authentication: tuple[RequestAuthEntry, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.port_modes, MappingProxyType):
            object.__setattr__(self, "port_modes", MappingProxyType(dict(self.port_modes)))
        if not isinstance(self.expected_identities, MappingProxyType):
            object.__setattr__(self, "expected_identities", MappingProxyType(dict(self.expected_identities)))

    def mode_for(self, port: int) -> str:
        return self.port_modes.get(port, self.mtls_mode)

    def named_policies(self) -> tuple[NamedPolicy, ...]:
        return tuple(entry.named() for entry in self.policies)

    def jwt_rules(self) -> tuple[JwtRule, ...]:
        """Every JWT rule of the policies selecting the workload (Istio merges them; the first rule
        for an issuer wins)."""
        return tuple(rule for entry in self.request_authentication for rule in entry.spec.jwt_rules)


DISABLED = SecurityConfig()


def is_mesh_endpoint(labels: Mapping[str, str] | tuple[tuple[str, str], ...]) -> bool:
    """Whether a registry instance with these labels/Meta is fronted by a sidecar (auto-mTLS)."""
    found = dict(labels)
    return any(found.get(key) == TLS_MODE_MESH for key in TLS_MODE_LABELS)


def local_ports(listener: Listener, tables: Mapping[str, RouteTable], clusters: Mapping[str, Cluster]) -> set[int]:
    """The ports an inbound listener forwards to (the workload's ports, which policies name)."""
    names = {listener.cluster} if listener.protocol == "tcp" else set()
    table = tables.get(listener.route_table)
    if table is not None:
        for host in table.virtual_hosts:
            for route in host.routes:
                names.update(weighted.name for weighted in route.clusters)
    return {endpoint.port for name in names if (c := clusters.get(name)) is not None for endpoint in c.endpoints}


# === parse and dump ===


def parse_security(data: object, path: str = "security") -> SecurityConfig:
    obj = Fields(data, path)
    trust_domain = obj.string("trust_domain", DEFAULT_TRUST_DOMAIN)
    mode = "PERMISSIVE"
    ports: dict[int, str] = {}
    mtls = obj.take("mtls", None)
    if mtls is not None:
        m = Fields(mtls, obj.at("mtls"))
        mode = m.choice("mode", MODES, "PERMISSIVE")
        raw_ports = m.take("ports", {})
        if not isinstance(raw_ports, Mapping):
            raise ConfigError(m.at("ports"), f"must be a mapping port → mode, got {show(raw_ports)}")
        for key, value in raw_ports.items():
            at = f"{m.at('ports')}.{key}"
            if not str(key).isdigit() or not 1 <= int(key) <= 65535:
                raise ConfigError(at, f"must be keyed by a port number 1..65535, got {key!r}")
            if value not in MODES:
                raise ConfigError(at, f"must be one of {', '.join(MODES)}, got {show(value)}")
            ports[int(key)] = str(value)
        m.finish()
    endpoints = obj.take("mtls_endpoints", [])
    if not isinstance(endpoints, list) or not all(isinstance(e, str) and ":" in e for e in endpoints):
        raise ConfigError(obj.at("mtls_endpoints"), f"must be a list of 'host:port' strings, got {show(endpoints)}")
    identities = obj.take("mtls_identities", {})
    if not isinstance(identities, Mapping) or not all(
        isinstance(value, str) and _IDENTITY.fullmatch(value) for value in identities.values()
    ):
        raise ConfigError(
            obj.at("mtls_identities"), f"must map 'host:port' to 'ns/<namespace>/sa/<service>', got {show(identities)}"
        )
    policies = obj.list_of("authorization", _parse_policy)
    request_authentication = obj.list_of("request_authentication", _parse_request_authentication)
    obj.finish()
    return SecurityConfig(
        True,
        mode,
        ports,
        tuple(policies),
        frozenset(endpoints),
        trust_domain,
        {str(k): v for k, v in identities.items()},
        tuple(request_authentication),
    )


def _parse_policy(data: object, path: str) -> PolicyEntry:
    return PolicyEntry(*parse_named_spec(data, path, parse_authorization_policy))


def _parse_request_authentication(data: object, path: str) -> RequestAuthEntry:
    entry = RequestAuthEntry(*parse_named_spec(data, path, parse_request_authentication))
    for i, rule in enumerate(entry.spec.jwt_rules):
        if rule.jwks_uri:
            raise ConfigError(
                f"{path}.spec.jwtRules[{i}].jwksUri",
                "a sidecar does not fetch keys: give the key set inline (jwks); the control plane does this for you",
            )
    return entry


def security_to_dict(security: SecurityConfig) -> dict[str, Any]:
    return {
        "trust_domain": security.trust_domain,
        "mtls": {"mode": security.mtls_mode, "ports": {str(p): m for p, m in sorted(security.port_modes.items())}},
        "mtls_endpoints": sorted(security.mtls_endpoints),
        "mtls_identities": dict(sorted(security.expected_identities.items())),
        "authorization": [named_spec_to_dict(e.namespace, e.name, e.data) for e in security.policies],
        "request_authentication": [
            named_spec_to_dict(e.namespace, e.name, e.data) for e in security.request_authentication
        ],
    }


__all__ = [
    "DISABLED",
    "MODES",
    "TLS_MODE_LABELS",
    "PolicyEntry",
    "RequestAuthEntry",
    "SecurityConfig",
    "is_mesh_endpoint",
    "local_ports",
    "parse_security",
    "security_to_dict",
]
