"""Checks across resources, run on the whole configuration an apply or delete would produce (pure).

1. **One VirtualService per host for sidecars.** Istio merges VirtualServices only when they are
   bound to a gateway; for sidecars two of them claiming one host is undefined behaviour (Istio
   then uses the oldest, and ``istioctl analyze`` reports IST0109
   ConflictingMeshGatewayVirtualServiceHosts). We refuse the change instead, naming both
   resources: merge them, or separate them with ``exportTo``.
2. **One DestinationRule per host and namespace** (and workload selector). Istio merges such
   rules only partly (subsets merged, the oldest one's traffic policy wins, later duplicates
   dropped), which silently loses settings; we refuse and ask for one resource.
3. **Subsets must exist.** A destination naming a subset needs a DestinationRule, visible from
   the VirtualService's namespace, that defines it (Istio would accept it and answer 503 at run
   time; ``istioctl analyze`` reports IST0101). Changing or deleting a DestinationRule is checked
   against the VirtualServices that use its subsets.

Only problems involving a changed resource are reported, so an old inconsistency never blocks an
unrelated change.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator

from mesh.rules.documents import RuleError
from mesh.rules.gateway import GatewaySpec, overlap
from mesh.rules.hosts import HostRef, resolve_host
from mesh.rules.resource import Resource, ResourceKey
from mesh.rules.ruleset import DestinationRuleRule, RuleSet, VirtualServiceRule, visible_anywhere_together
from mesh.rules.virtual_service import Destination


def check_rules(rules: RuleSet, changed: Collection[ResourceKey], deleted: Collection[ResourceKey] = ()) -> None:
    """Raise ``RuleError`` (with ``resource`` set) for the first cross-resource problem."""
    changed_set = set(changed)
    order = {key: i for i, key in enumerate(changed)}  # of two changed rivals, the later one is at fault
    for rule in sorted(rules.virtual_services, key=lambda r: order.get(r.resource.key, -1)):
        if rule.resource.key in changed_set:
            _check_host_conflicts(rules, rule, order)
    for dr in sorted(rules.destination_rules, key=lambda r: order.get(r.resource.key, -1)):
        if dr.resource.key in changed_set:
            _check_destination_rule_conflicts(rules, dr, order)
    gateways = [r for r in rules.resources.values() if isinstance(r.spec, GatewaySpec)]
    for resource in sorted(gateways, key=lambda r: order.get(r.key, -1)):
        if resource.key in changed_set:
            _check_gateway_conflicts(gateways, resource, order)
    touched_hosts = _subset_hosts_touched(rules, changed_set, deleted)
    for rule in rules.virtual_services:
        if rule.resource.key in changed_set:
            _check_subsets(rules, rule, cause="")
        elif touched_hosts:
            _check_subsets(rules, rule, cause="after this change, ", only_hosts=touched_hosts)


def _later(other: ResourceKey, own: ResourceKey, order: dict[ResourceKey, int]) -> bool:
    return order.get(other, -1) > order.get(own, -1)


def _check_host_conflicts(rules: RuleSet, rule: VirtualServiceRule, order: dict[ResourceKey, int]) -> None:
    if not rule.spec.applies_to_sidecars:
        return
    own = rule.resource.key
    for other in rules.virtual_services:
        if other.resource.key == own or not other.spec.applies_to_sidecars or _later(other.resource.key, own, order):
            continue
        if not visible_anywhere_together(
            rule.spec.export_to, own.namespace, other.spec.export_to, other.resource.key.namespace
        ):
            continue
        for i, host in enumerate(rule.hosts):
            if any(host.fqdn == theirs.fqdn for theirs in other.hosts):
                raise RuleError(
                    f"spec.hosts[{i}]",
                    f"host {host.fqdn!r} is already routed by VirtualService {other.resource.key.namespace}/"
                    f"{other.resource.key.name}; Istio does not merge VirtualServices for sidecars "
                    "(istioctl analyze IST0109: undefined behaviour), so merge the routes into one resource "
                    "or separate them with exportTo",
                    resource=str(own),
                )


def _check_gateway_conflicts(gateways: list[Resource], resource: Resource, order: dict[ResourceKey, int]) -> None:
    """Two Gateways selecting the same proxies may not both serve a host on one port (Istio: IST0145)."""
    own = resource.key
    spec = resource.spec
    assert isinstance(spec, GatewaySpec)
    for other in gateways:
        theirs = other.spec
        assert isinstance(theirs, GatewaySpec)
        if other.key == own or _later(other.key, own, order) or theirs.selector != spec.selector:
            continue
        for i, server in enumerate(spec.servers):
            for their_server in theirs.servers:
                if their_server.number != server.number:
                    continue
                clash = overlap(server.hosts, their_server.hosts)
                if clash:
                    raise RuleError(
                        f"spec.servers[{i}].hosts",
                        f"{clash} on port {server.number} is already served by Gateway {other.key.namespace}/"
                        f"{other.key.name} for the same proxies (selector); Istio reports this as IST0145",
                        resource=str(own),
                    )


def _check_destination_rule_conflicts(rules: RuleSet, dr: DestinationRuleRule, order: dict[ResourceKey, int]) -> None:
    own = dr.resource.key
    for other in rules.destination_rules:
        if other.resource.key == own or other.resource.key.namespace != own.namespace:
            continue
        if _later(other.resource.key, own, order):
            continue
        if other.host.fqdn == dr.host.fqdn and other.spec.workload_selector == dr.spec.workload_selector:
            raise RuleError(
                "spec.host",
                f"host {dr.host.fqdn!r} already has DestinationRule {own.namespace}/{other.resource.key.name} "
                "in this namespace; Istio merges such rules only partly (the oldest one's trafficPolicy wins, "
                "duplicate subsets are dropped), so put the subsets and policies in one DestinationRule",
                resource=str(own),
            )


def _subset_hosts_touched(
    rules: RuleSet, changed: Collection[ResourceKey], deleted: Collection[ResourceKey]
) -> list[HostRef]:
    """Hosts whose subset definitions a change or delete may have altered."""
    hosts = [dr.host for dr in rules.destination_rules if dr.resource.key in changed]
    if any(key.kind == "DestinationRule" for key in deleted):
        hosts.append(HostRef("wildcard", "*"))  # the deleted rule's host is gone from ``rules``: check all
    return hosts


def destinations_of(rule: VirtualServiceRule) -> Iterator[tuple[str, Destination]]:
    """Every destination the VirtualService names, with its path."""
    for i, http in enumerate(rule.spec.http):
        for j, target in enumerate(http.route):
            yield f"spec.http[{i}].route[{j}].destination", target.destination
        for j, mirror in enumerate(http.mirrors):
            yield f"spec.http[{i}].mirrors[{j}].destination", mirror.destination
    for i, tcp in enumerate(rule.spec.tcp):
        for j, target in enumerate(tcp.route):
            yield f"spec.tcp[{i}].route[{j}].destination", target.destination


def _check_subsets(
    rules: RuleSet, rule: VirtualServiceRule, *, cause: str, only_hosts: list[HostRef] | None = None
) -> None:
    namespace = rule.resource.key.namespace
    for path, destination in destinations_of(rule):
        if not destination.subset:
            continue
        host = resolve_host(destination.host, namespace)
        if only_hosts is not None and not any(touched.matches(host) for touched in only_hosts):
            continue
        dr = rules.destination_rule_for(host, namespace)
        if dr is None:
            raise RuleError(
                f"{path}.subset",
                f"{cause}subset {destination.subset!r} of {host.fqdn} is not defined: no DestinationRule for that host "
                f"is visible from namespace {namespace!r} (apply the DestinationRule in the same request, or first)",
                resource=str(rule.resource.key),
            )
        if dr.spec.subset(destination.subset) is None:
            known = ", ".join(s.name for s in dr.spec.subsets) or "none"
            raise RuleError(
                f"{path}.subset",
                f"{cause}subset {destination.subset!r} is not defined by DestinationRule "
                f"{dr.resource.key.namespace}/{dr.resource.key.name} for {host.fqdn} (it defines: {known})",
                resource=str(rule.resource.key),
            )


__all__ = ["check_rules", "destinations_of"]
