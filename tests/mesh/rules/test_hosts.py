"""How rule hosts and request hosts resolve to registry services or external names."""

from __future__ import annotations

import pytest

from mesh.rules.hosts import HostRef, resolve_host, resolve_request_host


@pytest.mark.parametrize(
    ("host", "kind", "fqdn"),
    [
        ("reviews", "service", "reviews.prod.svc.cluster.local"),
        ("reviews.default.svc.cluster.local", "service", "reviews.default.svc.cluster.local"),
        ("reviews.default.svc", "service", "reviews.default.svc.cluster.local"),
        ("reviews.service.consul", "service", "reviews.prod.svc.cluster.local"),
        ("reviews.default", "external", "reviews.default"),  # Istio does not expand dotted names
        ("api.example.com", "external", "api.example.com"),
        ("*.example.com", "wildcard", "*.example.com"),
        ("*", "wildcard", "*"),
    ],
)
def test_rule_hosts(host: str, kind: str, fqdn: str) -> None:
    ref = resolve_host(host, "prod")
    assert (ref.kind, ref.fqdn) == (kind, fqdn)


def test_request_hosts_read_kubernetes_short_forms() -> None:
    ref = resolve_request_host("reviews.default:9080", "prod")
    assert ref == HostRef("service", "reviews.default.svc.cluster.local", "reviews", "default")
    assert resolve_request_host("10.0.0.1", "prod") is None
    external = resolve_request_host("api.example.com", "prod")
    assert external is not None
    assert external.kind == "external"


def test_wildcards_match_at_least_one_label_character() -> None:
    wild = resolve_host("*.example.com", "default")
    assert wild.matches(HostRef("external", "a.example.com"))
    assert not wild.matches(HostRef("external", "example.com"))
    assert resolve_host("*", "default").matches(HostRef("external", "x"))
