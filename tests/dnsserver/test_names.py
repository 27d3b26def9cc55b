"""Query-name parsing: every Consul, Kubernetes and reverse form, case-insensitively."""

from __future__ import annotations

import pytest
from dnslib import DNSLabel
from hypothesis import given
from hypothesis import strategies as st

from dnsserver.config import DnsConfig
from dnsserver.names import (
    Apex,
    ConsulAddr,
    ConsulNode,
    ConsulService,
    DnsVersion,
    Empty,
    K8sEndpoint,
    K8sNamespace,
    K8sPort,
    K8sService,
    NameServer,
    NxDomain,
    Query,
    Reverse,
    Zone,
    decode_hex_ip,
    encode_hex_ip,
    parse_name,
)

CONFIG = DnsConfig()


def parsed(name: str, config: DnsConfig = CONFIG) -> Query | None:
    result = parse_name(name, config)
    return None if result is None else result.query


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("consul.", Apex()),
        ("ns.dns.consul.", NameServer()),
        ("dns.consul.", Empty()),
        ("service.consul.", Empty()),
        ("node.consul.", Empty()),
        ("addr.consul.", Empty()),
        ("service.dc1.consul.", Empty()),
        ("web.service.consul.", ConsulService("web")),
        ("web.service.dc1.consul.", ConsulService("web")),
        ("web.service.dc1.dc.consul.", ConsulService("web")),
        ("primary.web.service.consul.", ConsulService("web", "primary")),
        ("primary.web.service.dc1.consul.", ConsulService("web", "primary")),
        ("_web._tcp.service.consul.", ConsulService("web")),
        ("_web._udp.service.dc1.consul.", ConsulService("web")),
        ("_web._v1.service.consul.", ConsulService("web", "v1")),
        ("_web._tcp.consul.", ConsulService("web")),
        ("_web._v2.dc1.consul.", ConsulService("web", "v2")),
        ("node1.node.consul.", ConsulNode("node1")),
        ("node1.node.dc1.consul.", ConsulNode("node1")),
        ("c000020a.addr.dc1.consul.", ConsulAddr("192.0.2.10")),
        ("20010db8000000000000000000000001.addr.dc1.consul.", ConsulAddr("2001:db8::1")),
        ("c000020a.addr.consul.", ConsulAddr("192.0.2.10")),
    ],
)
def test_consul_forms(name: str, expected: Query) -> None:
    assert parsed(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "web.service.dc2.consul.",  # another datacenter
        "web.service.dc2.dc.consul.",
        "node1.node.dc2.consul.",
        "_web._tcp.dc2.consul.",
        "foo.consul.",
        "a.b.web.service.consul.",
        "a.b.node.consul.",
        "xyz.addr.dc1.consul.",
        "c000020.addr.dc1.consul.",
        "geo.query.consul.",
        "web.connect.consul.",
        "web.ingress.consul.",
        "_._tcp.service.consul.",
    ],
)
def test_consul_nxdomain_forms(name: str) -> None:
    assert parsed(name) == NxDomain()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cluster.local.", Apex()),
        ("ns.dns.cluster.local.", NameServer()),
        ("dns-version.cluster.local.", DnsVersion()),
        ("svc.cluster.local.", Empty()),
        ("pod.cluster.local.", Empty()),
        ("prod.svc.cluster.local.", K8sNamespace("prod")),
        ("web.prod.svc.cluster.local.", K8sService("web", "prod")),
        ("web-0.web.prod.svc.cluster.local.", K8sEndpoint("web-0", "web", "prod")),
        ("_http._tcp.web.prod.svc.cluster.local.", K8sPort("http", "tcp", "web", "prod")),
        ("a.b.c.d.e.svc.cluster.local.", NxDomain()),
        ("_http.x.web.prod.svc.cluster.local.", NxDomain()),
        ("web.prod.cluster.local.", NxDomain()),
        ("10-0-0-1.prod.pod.cluster.local.", NxDomain()),
    ],
)
def test_kubernetes_forms(name: str, expected: Query) -> None:
    assert parsed(name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("1.2.0.10.in-addr.arpa.", Reverse("10.0.2.1")),
        ("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", Reverse("2001:db8::1")),
        ("2.0.10.in-addr.arpa.", None),  # partial reverse names fall through
        ("256.2.0.10.in-addr.arpa.", None),
        ("in-addr.arpa.", None),
        ("1.ip6.arpa.", None),
        ("example.com.", None),
        ("consul.example.com.", None),
        ("local.", None),
    ],
)
def test_reverse_and_foreign(name: str, expected: Query | None) -> None:
    assert parsed(name) == expected


def test_case_insensitive_and_origin_keeps_case() -> None:
    result = parse_name("Primary.WEB.Service.DC1.Consul.", CONFIG)
    assert result is not None
    assert result.query == ConsulService("web", "primary")
    assert result.zone is Zone.CONSUL
    assert result.zone_name == "consul"
    assert str(result.origin) == "Consul."
    result = parse_name(DNSLabel("Web.Prod.SVC.Cluster.Local"), CONFIG)
    assert result is not None
    assert result.query == K8sService("web", "prod")
    assert str(result.origin) == "Cluster.Local."


def test_custom_domains_and_nested_zone_wins() -> None:
    config = DnsConfig(domain="mesh.example", cluster_domain="k8s.mesh.example", datacenter="East")
    assert parsed("web.service.east.mesh.example.", config) == ConsulService("web")
    assert parsed("web.service.consul.", config) is None
    result = parse_name("web.prod.svc.k8s.mesh.example.", config)
    assert result is not None
    assert result.zone is Zone.CLUSTER
    assert result.query == K8sService("web", "prod")


def test_extra_datacenters() -> None:
    assert parse_name("web.service.other.consul", CONFIG, ["dc1", "Other"]) is not None
    result = parse_name("web.service.other.consul", CONFIG, ["dc1", "Other"])
    assert result is not None
    assert result.query == ConsulService("web")


def test_hex_ip_round_trip() -> None:
    assert encode_hex_ip("192.0.2.10") == "c000020a"
    assert encode_hex_ip("2001:db8::1") == "20010db8000000000000000000000001"
    assert encode_hex_ip("db.example") is None
    assert decode_hex_ip("c000020a") == "192.0.2.10"
    assert decode_hex_ip("C000020A".lower()) == "192.0.2.10"
    assert decode_hex_ip("zz00020a") is None


@given(st.lists(st.binary(min_size=0, max_size=70), max_size=10))
def test_parse_never_raises(labels: list[bytes]) -> None:
    parse_name(DNSLabel([*labels, b"consul"]), CONFIG)
    parse_name(DNSLabel([*labels, b"cluster", b"local"]), CONFIG)
    parse_name(DNSLabel([*labels, b"in-addr", b"arpa"]), CONFIG)
    parse_name(DNSLabel(labels), CONFIG)


@given(st.ip_addresses())
def test_reverse_round_trip(address: object) -> None:
    import ipaddress

    ip = ipaddress.ip_address(str(address))
    result = parse_name(ip.reverse_pointer, CONFIG)
    assert result is not None
    assert result.query == Reverse(str(ip))
