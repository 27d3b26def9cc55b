"""All rules in force, indexed for the lookups translation and checks need (pure, immutable).

Visibility follows Istio's ``exportTo``: empty or ``*`` is every namespace, ``.`` the resource's
own, other entries name namespaces. Lookups for a sidecar in namespace ``ns``:

- ``virtual_service_for(host, ns)``: the VirtualService (applying to sidecars, i.e. its
  ``gateways`` empty or holding ``mesh``) whose hosts name ``host`` exactly, else the one with
  the longest matching wildcard; the check layer guarantees at most one per exact host.
- ``destination_rule_for(host, ns)``: Istio's order: a rule in the client's namespace, then in
  the service's namespace, then any other exported one; an exact host before a wildcard.
- ``service_entry_for(name, ns)``: the ServiceEntry listing ``name`` (exact before wildcard).

Two things are not in the rules themselves but translation needs them: ``key_sets``, the JSON
Web Key Sets the control plane fetched for ``RequestAuthentication`` rules, by key source (a
``jwksUri`` or ``openid:<issuer>``; ``mesh.control.jwks``), and ``outbound_traffic_policy``, the
mesh-wide ``ALLOW_ANY`` / ``REGISTRY_ONLY`` (``mesh control --outbound-traffic-policy``);
``vips`` maps service virtual IPs to (namespace, service) (``mesh.control.vips``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from mesh.model.snapshot import OutboundPolicy
from mesh.rules.destination_rule import DestinationRuleSpec
from mesh.rules.hosts import HostRef, resolve_host
from mesh.rules.resource import Resource, ResourceKey
from mesh.rules.service_entry import ServiceEntrySpec
from mesh.rules.virtual_service import VirtualServiceSpec


@dataclass(frozen=True, slots=True)
class VirtualServiceRule:
    resource: Resource
    spec: VirtualServiceSpec
    hosts: tuple[HostRef, ...]


@dataclass(frozen=True, slots=True)
class DestinationRuleRule:
    resource: Resource
    spec: DestinationRuleSpec
    host: HostRef


@dataclass(frozen=True, slots=True)
class ServiceEntryRule:
    resource: Resource
    spec: ServiceEntrySpec
    hosts: tuple[HostRef, ...]


def visible(export_to: tuple[str, ...], own_namespace: str, client_namespace: str) -> bool:
    if "~" in export_to:
        return False
    if not export_to or "*" in export_to:
        return True
    if "." in export_to and own_namespace == client_namespace:
        return True
    return client_namespace in export_to


def visible_anywhere_together(a: tuple[str, ...], a_ns: str, b: tuple[str, ...], b_ns: str) -> bool:
    """Whether some namespace sees both resources (so both would apply to one sidecar)."""
    if "~" in a or "~" in b:
        return False
    if not a or "*" in a or not b or "*" in b:
        return True
    seen_a = {a_ns if entry == "." else entry for entry in a}
    seen_b = {b_ns if entry == "." else entry for entry in b}
    return bool(seen_a & seen_b)


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The resources in force, by key, plus typed views of the networking kinds."""

    resources: dict[ResourceKey, Resource] = field(default_factory=dict)
    virtual_services: tuple[VirtualServiceRule, ...] = ()
    destination_rules: tuple[DestinationRuleRule, ...] = ()
    service_entries: tuple[ServiceEntryRule, ...] = ()
    key_sets: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    outbound_traffic_policy: OutboundPolicy = "REGISTRY_ONLY"
    vips: Mapping[str, tuple[str, str]] = field(default_factory=lambda: MappingProxyType({}))

    def with_context(
        self,
        key_sets: Mapping[str, str],
        outbound_traffic_policy: OutboundPolicy,
        vips: Mapping[str, tuple[str, str]] | None = None,
    ) -> RuleSet:
        vips = self.vips if vips is None else vips
        if (key_sets, outbound_traffic_policy, vips) == (self.key_sets, self.outbound_traffic_policy, self.vips):
            return self
        return replace(
            self,
            key_sets=MappingProxyType(dict(key_sets)),
            outbound_traffic_policy=outbound_traffic_policy,
            vips=MappingProxyType(dict(vips)),
        )

    @classmethod
    def build(cls, resources: Iterable[Resource]) -> RuleSet:
        by_key = {resource.key: resource for resource in sorted(resources, key=lambda r: r.key.id)}
        vs: list[VirtualServiceRule] = []
        dr: list[DestinationRuleRule] = []
        se: list[ServiceEntryRule] = []
        for resource in by_key.values():
            spec = resource.spec
            namespace = resource.key.namespace
            if isinstance(spec, VirtualServiceSpec):
                vs.append(VirtualServiceRule(resource, spec, tuple(resolve_host(h, namespace) for h in spec.hosts)))
            elif isinstance(spec, DestinationRuleSpec):
                dr.append(DestinationRuleRule(resource, spec, resolve_host(spec.host, namespace)))
            elif isinstance(spec, ServiceEntrySpec):
                se.append(ServiceEntryRule(resource, spec, tuple(resolve_host(h, namespace) for h in spec.hosts)))
        return cls(by_key, tuple(vs), tuple(dr), tuple(se))

    def virtual_service_for(self, host: HostRef, namespace: str) -> VirtualServiceRule | None:
        best: VirtualServiceRule | None = None
        best_length = -1
        for rule in self.virtual_services:
            if not rule.spec.applies_to_sidecars:
                continue
            if not visible(rule.spec.export_to, rule.resource.key.namespace, namespace):
                continue
            for ref in rule.hosts:
                if ref.kind != "wildcard" and ref.fqdn == host.fqdn:
                    return rule
                if ref.kind == "wildcard" and ref.matches(host) and len(ref.fqdn) > best_length:
                    best, best_length = rule, len(ref.fqdn)
        return best

    def destination_rule_for(
        self, host: HostRef, namespace: str, labels: tuple[tuple[str, str], ...] = ()
    ) -> DestinationRuleRule | None:
        """``labels`` are the client sidecar's: rules with a matching workloadSelector come first."""

        def rank(rule: DestinationRuleRule) -> tuple[int, int, int, str]:
            own = rule.resource.key.namespace
            place = 0 if own == namespace else 1 if own == host.namespace else 2
            selected = 1 if rule.spec.workload_selector.empty else 0
            exact = 0 if rule.host.kind != "wildcard" else 1
            return (place, selected, exact, rule.resource.key.id)

        candidates = [
            rule
            for rule in self.destination_rules
            if rule.host.matches(host)
            and (
                rule.resource.key.namespace == namespace
                or visible(rule.spec.export_to, rule.resource.key.namespace, namespace)
            )
            and _selects(rule, namespace, labels)
        ]
        return min(candidates, key=rank) if candidates else None

    def service_entry_for(self, name: str, namespace: str) -> ServiceEntryRule | None:
        wildcard: ServiceEntryRule | None = None
        wildcard_length = -1
        target = HostRef("external", name)
        for rule in self.service_entries:
            if not visible(rule.spec.export_to, rule.resource.key.namespace, namespace):
                continue
            for ref in rule.hosts:
                if ref.kind == "wildcard":
                    if ref.matches(target) and len(ref.fqdn) > wildcard_length:
                        wildcard, wildcard_length = rule, len(ref.fqdn)
                elif ref.fqdn == name or (ref.kind == "service" and name == ref.fqdn):
                    return rule
        return wildcard

    def of_kind(self, kind: str) -> list[Resource]:
        return [resource for key, resource in self.resources.items() if key.kind == kind]


def _selects(rule: DestinationRuleRule, namespace: str, labels: tuple[tuple[str, str], ...]) -> bool:
    """A DestinationRule with a workloadSelector applies only to matching workloads of its own namespace."""
    selector = rule.spec.workload_selector
    if selector.empty:
        return True
    return rule.resource.key.namespace == namespace and selector.matches(dict(labels))


__all__ = [
    "DestinationRuleRule",
    "RuleSet",
    "ServiceEntryRule",
    "VirtualServiceRule",
    "visible",
    "visible_anywhere_together",
]
