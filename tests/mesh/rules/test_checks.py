"""Cross-resource checks: one VirtualService per host for sidecars, one DestinationRule per host, subsets exist."""

from __future__ import annotations

import pytest

from mesh.rules.checks import check_rules
from mesh.rules.documents import RuleError
from mesh.rules.resource import Resource
from mesh.rules.ruleset import RuleSet
from tests.mesh.rules.helpers import dr, parse, vs


def _rules(*resources: Resource) -> RuleSet:
    return RuleSet.build(resources)


def test_two_virtual_services_for_one_host_conflict() -> None:
    first = parse(vs("reviews"))
    second = parse(vs("reviews-b", hosts=["reviews.default.svc.cluster.local"]))
    with pytest.raises(RuleError) as info:
        check_rules(_rules(first, second), [second.key])
    assert info.value.path == "spec.hosts[0]"
    assert info.value.resource == "VirtualService default/reviews-b"
    assert "VirtualService default/reviews" in info.value.message
    assert "IST0109" in info.value.message


def test_export_to_separates_namespaces_and_gateway_only_services_do_not_conflict() -> None:
    a = parse(vs("reviews", "team-a", hosts=["reviews.default.svc.cluster.local"], exportTo=["."]))
    b = parse(vs("reviews", "team-b", hosts=["reviews.default.svc.cluster.local"], exportTo=["."]))
    check_rules(_rules(a, b), [a.key, b.key])
    c = parse(vs("edge", hosts=["reviews"], gateways=["ingress"]))
    check_rules(_rules(parse(vs("reviews")), c), [c.key])
    d = parse(vs("reviews", "team-c", hosts=["reviews.default.svc.cluster.local"]))
    with pytest.raises(RuleError):
        check_rules(_rules(a, d), [d.key])


def test_two_destination_rules_for_one_host_in_one_namespace_conflict() -> None:
    first = parse(dr("reviews"))
    second = parse(dr("reviews-2", host="reviews"))
    with pytest.raises(RuleError) as info:
        check_rules(_rules(first, second), [second.key])
    assert info.value.path == "spec.host"
    other_namespace = parse(dr("reviews", "prod", host="reviews.default.svc.cluster.local"))
    check_rules(_rules(first, other_namespace), [other_namespace.key])


def test_undefined_subsets_are_flagged() -> None:
    route = parse(vs(http=[{"route": [{"destination": {"host": "reviews", "subset": "v9"}}]}]))
    with pytest.raises(RuleError) as info:
        check_rules(_rules(route), [route.key])
    assert info.value.path == "spec.http[0].route[0].destination.subset"
    assert "no DestinationRule" in info.value.message
    with pytest.raises(RuleError) as info:
        check_rules(_rules(route, parse(dr())), [route.key])
    assert "defines: v1" in info.value.message


def test_mirror_and_tcp_subsets_are_checked_too() -> None:
    mirror = parse(
        vs(http=[{"route": [{"destination": {"host": "reviews"}}], "mirror": {"host": "reviews", "subset": "shadow"}}])
    )
    with pytest.raises(RuleError) as info:
        check_rules(_rules(mirror, parse(dr())), [mirror.key])
    assert info.value.path == "spec.http[0].mirrors[0].destination.subset"


def test_changing_a_destination_rule_is_checked_against_its_users() -> None:
    route = parse(vs(http=[{"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]))
    ok_rule = parse(dr())
    check_rules(_rules(route, ok_rule), [route.key, ok_rule.key])
    shrunk = parse(dr(subsets=[{"name": "v2", "labels": {"version": "v2"}}]))
    with pytest.raises(RuleError) as info:
        check_rules(_rules(route, shrunk), [shrunk.key])
    assert info.value.resource == "VirtualService default/reviews"
    assert info.value.message.startswith("after this change")
    with pytest.raises(RuleError):
        check_rules(_rules(route), [], [ok_rule.key])  # deleting the rule


def test_destination_rule_lookup_prefers_the_client_namespace() -> None:
    local = parse(dr("reviews", "prod", host="reviews.default.svc.cluster.local", subsets=[{"name": "p"}]))
    home = parse(dr("reviews", "default"))
    rules = _rules(local, home)
    host = rules.virtual_services  # no VirtualService: lookups only
    assert host == ()
    from mesh.rules.hosts import resolve_host

    target = resolve_host("reviews", "default")
    found = rules.destination_rule_for(target, "prod")
    assert found is not None
    assert found.resource.key.namespace == "prod"
    found = rules.destination_rule_for(target, "other")
    assert found is not None
    assert found.resource.key.namespace == "default"
