"""The security section of a sidecar's snapshot (``mesh.model.security``), from the rules in force (pure).

- **Inbound mTLS mode**: ``resolve_mtls_mode`` over the ``PeerAuthentication`` resources for the
  sidecar's namespace and labels (workload selector, namespace, mesh-wide; PERMISSIVE by default).
  A ``portLevelMtls`` entry names the *workload's* port (the app port, as in Istio): it applies to
  every inbound listener whose local cluster forwards to that port.
- **Authorization**: the ``AuthorizationPolicy`` resources selecting the workload (its namespace
  and the root namespace, narrowed by selector), with their specs as applied.
- **End-user authentication**: the ``RequestAuthentication`` resources selecting the workload (the
  same selection), each JWT rule's keys inline: a ``jwksUri`` (or the issuer's OpenID discovery)
  is replaced by the key set the control plane fetched (``key_sets``); a rule whose keys are not
  known (the fetch failed) goes without, and the sidecar rejects its tokens, as Envoy does.
- **Mesh endpoints** (Istio's auto-mTLS): an upstream endpoint gets mTLS when its registry instance
  says a sidecar fronts it: the label ``security.istio.io/tlsMode=istio`` (a registry tag
  ``key=value``) or the Consul Meta ``mesh-tls-mode: istio``. A DestinationRule's
  ``trafficPolicy.tls.mode`` overrides that for its host: ``ISTIO_MUTUAL`` sends mTLS to every
  endpoint, ``DISABLE`` to none (``SIMPLE``/``MUTUAL`` origination with user certificates is not
  built: those endpoints get plaintext). The server of a registry service's endpoint must present
  that service's identity (``mtls_identities``: ``ns/<namespace>/sa/<service>``).

Within one level Istio lets the oldest PeerAuthentication win; the rule set carries no creation
order, so here the first by ``namespace/name`` wins (``mesh explain`` uses the creation order).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from mesh.model.hosts import endpoint_key
from mesh.model.security import PolicyEntry, RequestAuthEntry, SecurityConfig, is_mesh_endpoint, local_ports
from mesh.model.snapshot import Cluster, Listener, RouteTable
from mesh.rules.request_authentication import RequestAuthenticationSpec
from mesh.rules.resource import Resource
from mesh.rules.security import AuthorizationPolicySpec, PeerAuthenticationSpec
from mesh.security.authz import (
    ROOT_NAMESPACE,
    NamedPeerAuthentication,
    NamedPolicy,
    policies_for_workload,
    resolve_mtls_mode,
    selects,
)

Labels = tuple[tuple[str, str], ...]


def security_section(
    namespace: str,
    labels: Labels,
    resources: Iterable[Resource],
    listeners: Iterable[Listener],
    route_tables: Mapping[str, RouteTable],
    clusters: Mapping[str, Cluster],
    client_tls_mode: Callable[[str], str | None],
    expected_identity: Callable[[str], str],
    *,
    trust_domain: str,
    key_sets: Mapping[str, str],
) -> SecurityConfig:
    """``client_tls_mode(cluster_name)``: the DestinationRule's ``tls.mode`` for that cluster (None: unset);
    ``expected_identity(cluster_name)``: ``ns/<namespace>/sa/<service>`` of its workloads ("" unknown)."""
    peers: list[NamedPeerAuthentication] = []
    policies: list[tuple[NamedPolicy, Resource]] = []
    authentication: list[RequestAuthEntry] = []
    for resource in sorted(resources, key=lambda r: r.key.id):
        spec = resource.spec
        if isinstance(spec, PeerAuthenticationSpec):
            peers.append(NamedPeerAuthentication(resource.key.namespace, resource.key.name, spec))
        elif isinstance(spec, AuthorizationPolicySpec):
            policies.append((NamedPolicy(resource.key.namespace, resource.key.name, spec), resource))
        elif isinstance(spec, RequestAuthenticationSpec) and _selected(resource, spec, namespace, labels):
            authentication.append(_with_keys(resource, spec, key_sets))
    mode = resolve_mtls_mode(peers, namespace, labels).mode
    port_modes: dict[int, str] = {}
    for listener in listeners:
        if listener.direction != "inbound":
            continue
        for app_port in local_ports(listener, route_tables, clusters):
            decision = resolve_mtls_mode(peers, namespace, labels, app_port)
            if decision.port_level:
                port_modes[listener.port] = decision.mode
    selected = {named.id for named in policies_for_workload((p for p, _ in policies), namespace, labels)}
    entries = tuple(
        PolicyEntry(named.namespace, named.name, named.spec, resource.document().get("spec") or {})
        for named, resource in policies
        if named.id in selected
    )
    endpoints = _mesh_endpoints(clusters, client_tls_mode)
    expected = {
        key: identity
        for name, cluster in clusters.items()
        if (identity := expected_identity(name))
        for endpoint in cluster.endpoints
        if (key := endpoint_key(endpoint.host, endpoint.port)) in endpoints
    }
    return SecurityConfig(True, mode, port_modes, entries, endpoints, trust_domain, expected, tuple(authentication))


def _selected(resource: Resource, spec: RequestAuthenticationSpec, namespace: str, labels: Labels) -> bool:
    return resource.key.namespace in (namespace, ROOT_NAMESPACE) and selects(spec.selector, labels)


def _with_keys(resource: Resource, spec: RequestAuthenticationSpec, key_sets: Mapping[str, str]) -> RequestAuthEntry:
    """The resource for the snapshot: each rule's ``jwksUri`` replaced by the fetched key set."""
    data: dict[str, Any] = dict(resource.document().get("spec") or {})
    rules_data = [dict(item) for item in data.get("jwtRules") or []]
    rules = []
    for rule, rule_data in zip(spec.jwt_rules, rules_data, strict=True):
        source = rule.key_source
        if source:
            rule_data.pop("jwksUri", None)
            keys = key_sets.get(source, "")
            if keys:
                rule_data["jwks"] = keys
            rule = replace(rule, jwks_uri="", jwks=keys)
        rules.append(rule)
    if rules_data:
        data["jwtRules"] = rules_data
    return RequestAuthEntry(resource.key.namespace, resource.key.name, replace(spec, jwt_rules=tuple(rules)), data)


def _mesh_endpoints(clusters: Mapping[str, Cluster], client_tls_mode: Callable[[str], str | None]) -> frozenset[str]:
    found: set[str] = set()
    for name, cluster in clusters.items():
        mode = client_tls_mode(name)
        if mode == "DISABLE" or mode in ("SIMPLE", "MUTUAL"):
            continue
        for endpoint in cluster.endpoints:
            if mode == "ISTIO_MUTUAL" or is_mesh_endpoint(endpoint.metadata):
                found.add(endpoint_key(endpoint.host, endpoint.port))
    return frozenset(found)


__all__ = ["security_section"]
