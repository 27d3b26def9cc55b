"""The pure answer core: records, health filtering, negative answers, PTR, TTLs, shuffling."""

from __future__ import annotations

import ipaddress
import random
from types import MappingProxyType

import pytest
from dnslib import CLASS, OPCODE, QTYPE, DNSHeader, DNSLabel, DNSQuestion, DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsserver.answers import answer
from dnsserver.config import DnsConfig
from tests.dnsserver.helpers import CONFIG, ask, ep, k8s, make_view, node, query, rcode, rrs

WEB = [
    ep("web", "10.0.0.1", node="n1", tags=("primary",), port=8080, weight_passing=10),
    ep("web", "10.0.0.2", node="n2", status="warning", port=8081, weight_passing=5, weight_warning=2),
    ep("web", "10.0.0.3", node="n1", status="critical", port=8082),
]
VIEW = make_view(
    *WEB,
    ep("v6svc", "2001:db8::5", node="n6", port=443),
    ep("db", "10.1.0.3", node="n3", own_address=False, port=5432),
    ep("hosted", "db.example.com", node="n3", port=3306),
    ep("dead", "10.0.9.9", status="critical"),
    k8s("api", "10.2.0.1", namespace="prod", hostname="api-0", ports={"http": "tcp", "metrics": "9090/tcp"}),
    k8s("api", "10.2.0.2", namespace="prod", hostname="api-1", ports={"http": "tcp", "metrics": "9090/tcp"}),
    k8s("api", "10.2.0.3", namespace="prod", hostname="api-2", status="critical", ports={"http": "tcp"}),
    k8s("front", "10.2.1.1", namespace="prod", cluster_ip="10.96.0.10", ports={"http": "8080/tcp", "dns": "53/udp"}),
    k8s("lonely", "10.2.2.1", namespace="prod", cluster_ip="10.96.0.11", status="critical"),
    k8s("empty", "10.2.3.1", namespace="prod", status="critical"),
    k8s("six", "fd00::1", namespace="prod", cluster_ip="fd00::10", ports={"https": "443/tcp"}),
    k8s("plain", "10.2.4.1"),  # default namespace, dashed-IP hostname
    nodes=[
        node("n1", "10.1.0.1", {"rack": "r1", "rfc1035-note": "hello"}),
        node("n2", "10.1.0.2"),
        node("n3", "10.1.0.3"),
        node("n6", "2001:db8::99"),
    ],
)


def authority_soa(reply: DNSRecord) -> str:
    assert len(reply.auth) == 1
    assert reply.auth[0].rtype == QTYPE.SOA
    return str(reply.auth[0].rname)


# --- header and question --------------------------------------------------------------------------


def test_header_and_question_echo() -> None:
    request = DNSRecord(DNSHeader(id=777, rd=1, cd=1), q=DNSQuestion("WeB.SeRvIcE.CoNsUl", QTYPE.A))
    reply = answer(VIEW, request, CONFIG, random.Random(1))
    assert reply is not None
    h = reply.header
    assert (h.id, h.qr, h.aa, h.rd, h.ra, h.cd, h.opcode, h.tc) == (777, 1, 1, 1, 0, 1, OPCODE.QUERY, 0)
    assert reply.questions[0].qname.label == (b"WeB", b"SeRvIcE", b"CoNsUl")
    wire = DNSRecord.parse(reply.pack())
    assert wire.q.qname.label == (b"WeB", b"SeRvIcE", b"CoNsUl")
    assert {r.rname.label for r in wire.rr} == {(b"WeB", b"SeRvIcE", b"CoNsUl")}


def test_rd_clear_is_copied() -> None:
    request = DNSRecord(DNSHeader(id=1, rd=0), q=DNSQuestion("web.service.consul", QTYPE.A))
    reply = answer(VIEW, request, CONFIG, random.Random(0))
    assert reply is not None
    assert reply.header.rd == 0


def test_not_our_zone_is_none() -> None:
    assert answer(VIEW, query("example.com"), CONFIG, random.Random(0)) is None
    assert answer(VIEW, query("version.bind", "TXT", qclass=CLASS.CH), CONFIG, random.Random(0)) is None


def test_notimp_formerr_refused() -> None:
    request = DNSRecord(DNSHeader(id=5, opcode=OPCODE.NOTIFY), q=DNSQuestion("consul", QTYPE.SOA))
    reply = answer(VIEW, request, CONFIG, random.Random(0))
    assert reply is not None
    assert rcode(reply) == "NOTIMP"
    assert reply.header.id == 5
    two = DNSRecord(DNSHeader(id=6), questions=[DNSQuestion("consul"), DNSQuestion("consul")])
    reply = answer(VIEW, two, CONFIG, random.Random(0))
    assert reply is not None
    assert rcode(reply) == "FORMERR"
    assert rcode(ask(VIEW, "web.service.consul", "A", qclass=CLASS.CH)) == "REFUSED"
    assert rcode(ask(VIEW, "consul", "AXFR")) == "REFUSED"
    assert rcode(ask(VIEW, "cluster.local", "IXFR")) == "REFUSED"


def test_class_any_is_answered() -> None:
    reply = ask(VIEW, "web.service.consul", "A", qclass=255)
    assert sorted(rrs(reply, "A")) == ["10.0.0.1", "10.0.0.2"]
    assert all(r.rclass == CLASS.IN for r in reply.rr)


def test_unsynced_nxdomain_becomes_servfail() -> None:
    unsynced = make_view(*WEB, synced=False)
    assert rcode(ask(unsynced, "nope.service.consul")) == "SERVFAIL"
    assert sorted(rrs(ask(unsynced, "web.service.consul"))) == ["10.0.0.1", "10.0.0.2"]


# --- Consul services ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("only_passing", "expected"),
    [(False, ["10.0.0.1", "10.0.0.2"]), (True, ["10.0.0.1"])],
)
def test_service_health_filter(only_passing: bool, expected: list[str]) -> None:
    reply = ask(VIEW, "web.service.consul", "A", DnsConfig(only_passing=only_passing))
    assert rcode(reply) == "NOERROR"
    assert reply.header.aa == 1
    assert sorted(rrs(reply, "A")) == expected


def test_only_critical_and_unknown_service_are_nxdomain_with_soa() -> None:
    for name in ("dead.service.consul", "nope.service.consul", "nope.service.dc1.consul"):
        reply = ask(VIEW, name)
        assert rcode(reply) == "NXDOMAIN"
        assert reply.rr == []
        assert authority_soa(reply) == "consul."


def test_only_passing_with_only_warning_is_nxdomain() -> None:
    view = make_view(ep("w", "10.0.0.1", status="warning"))
    assert rcode(ask(view, "w.service.consul", "A", DnsConfig(only_passing=True))) == "NXDOMAIN"
    assert rrs(ask(view, "w.service.consul")) == ["10.0.0.1"]


def test_other_datacenter_is_nxdomain() -> None:
    assert rcode(ask(VIEW, "web.service.dc2.consul")) == "NXDOMAIN"
    assert rcode(ask(VIEW, "web.service.dc1.consul")) == "NOERROR"


def test_tag_filter_and_rfc2782() -> None:
    assert rrs(ask(VIEW, "primary.web.service.consul")) == ["10.0.0.1"]
    assert rrs(ask(VIEW, "PRIMARY.Web.service.dc1.consul")) == ["10.0.0.1"]
    assert rcode(ask(VIEW, "secondary.web.service.consul")) == "NXDOMAIN"
    srv = ask(VIEW, "_web._primary.service.consul", "SRV")
    assert rrs(srv, "SRV") == ["1 10 8080 0a000001.addr.dc1.consul."]
    srv = ask(VIEW, "_web._tcp.service.consul", "SRV")
    assert len(rrs(srv, "SRV")) == 2


def test_aaaa_and_txt_on_v4_service_are_nodata() -> None:
    for qtype in ("AAAA", "TXT", "MX"):
        reply = ask(VIEW, "web.service.consul", qtype)
        assert rcode(reply) == "NOERROR"
        assert reply.rr == []
        assert authority_soa(reply) == "consul."


def test_v6_service() -> None:
    assert rrs(ask(VIEW, "v6svc.service.consul", "AAAA")) == ["2001:db8::5"]
    assert ask(VIEW, "v6svc.service.consul", "A").rr == []
    srv = ask(VIEW, "v6svc.service.consul", "SRV")
    assert rrs(srv, "SRV") == ["1 1 443 20010db8000000000000000000000005.addr.dc1.consul."]
    assert rrs(srv, "AAAA", "ar") == ["2001:db8::5"]


def test_service_srv_weights_targets_and_additional() -> None:
    reply = ask(VIEW, "web.service.consul", "SRV")
    assert sorted(rrs(reply, "SRV")) == [
        "1 10 8080 0a000001.addr.dc1.consul.",
        "1 2 8081 0a000002.addr.dc1.consul.",
    ]
    extra = {(str(r.rname), str(r.rdata)) for r in reply.ar}
    assert extra == {("0a000001.addr.dc1.consul.", "10.0.0.1"), ("0a000002.addr.dc1.consul.", "10.0.0.2")}


def test_srv_target_is_node_without_own_address() -> None:
    reply = ask(VIEW, "db.service.consul", "SRV")
    assert rrs(reply, "SRV") == ["1 1 5432 n3.node.dc1.consul."]
    assert [(str(r.rname), str(r.rdata)) for r in reply.ar] == [("n3.node.dc1.consul.", "10.1.0.3")]
    assert rrs(ask(VIEW, "db.service.consul")) == ["10.1.0.3"]


def test_srv_target_for_hostname_address() -> None:
    reply = ask(VIEW, "hosted.service.consul", "SRV")
    assert rrs(reply, "SRV") == ["1 1 3306 db.example.com."]
    assert reply.ar == []
    assert ask(VIEW, "hosted.service.consul", "A").rr == []  # exists, but no IP: NODATA
    assert rcode(ask(VIEW, "hosted.service.consul", "A")) == "NOERROR"


def test_duplicate_addresses_are_collapsed() -> None:
    view = make_view(ep("x", "10.0.0.1", port=1), ep("x", "10.0.0.1", port=2))
    assert rrs(ask(view, "x.service.consul")) == ["10.0.0.1"]
    assert len(rrs(ask(view, "x.service.consul", "SRV"), "SRV")) == 2


# --- Consul nodes and addr ----------------------------------------------------------------------


def test_node_records() -> None:
    assert rrs(ask(VIEW, "n1.node.consul")) == ["10.1.0.1"]
    assert rrs(ask(VIEW, "N1.NODE.DC1.CONSUL")) == ["10.1.0.1"]
    assert ask(VIEW, "n1.node.consul", "AAAA").rr == []
    assert rrs(ask(VIEW, "n6.node.consul", "AAAA")) == ["2001:db8::99"]
    assert rrs(ask(VIEW, "n1.node.consul", "TXT")) == ['"rack=r1"', '"hello"']
    reply = ask(VIEW, "n2.node.consul", "TXT")
    assert (rcode(reply), reply.rr) == ("NOERROR", [])
    assert rcode(ask(VIEW, "n9.node.consul")) == "NXDOMAIN"


def test_long_node_meta_is_split_into_strings() -> None:
    view = make_view(nodes=[node("n", "10.0.0.1", {"k": "v" * 600})])
    reply = ask(view, "n.node.consul", "TXT")
    assert [len(s) for s in reply.rr[0].rdata.data] == [255, 255, 92]


def test_addr_records() -> None:
    assert rrs(ask(VIEW, "c000020a.addr.dc1.consul")) == ["192.0.2.10"]
    assert ask(VIEW, "c000020a.addr.dc1.consul", "AAAA").rr == []
    assert rrs(ask(VIEW, "20010db8000000000000000000000001.addr.dc1.consul", "AAAA")) == ["2001:db8::1"]


# --- apexes, name servers, empty non-terminals ----------------------------------------------------


@pytest.mark.parametrize(("zone", "ttl"), [("consul", 0), ("cluster.local", 5)])
def test_apex_soa_and_ns(zone: str, ttl: int) -> None:
    config = DnsConfig(ns_address="192.0.2.53")
    view = make_view(version=42)
    soa = ask(view, zone, "SOA", config)
    assert len(soa.rr) == 1
    record = soa.rr[0]
    assert record.ttl == ttl
    assert str(record.rdata.mname) == f"ns.dns.{zone}."
    assert str(record.rdata.rname) == f"hostmaster.{zone}."
    assert record.rdata.times == (42, 7200, 1800, 86400, ttl)
    ns = ask(view, zone, "NS", config)
    assert rrs(ns, "NS") == [f"ns.dns.{zone}."]
    assert [(str(r.rname), str(r.rdata)) for r in ns.ar] == [(f"ns.dns.{zone}.", "192.0.2.53")]
    assert rrs(ask(view, f"ns.dns.{zone}", "A", config)) == ["192.0.2.53"]


@pytest.mark.parametrize(
    ("name", "qtype"),
    [
        ("consul", "A"),
        ("service.consul", "A"),
        ("node.consul", "A"),
        ("service.dc1.consul", "SRV"),
        ("cluster.local", "A"),
        ("svc.cluster.local", "A"),
        ("prod.svc.cluster.local", "A"),
        ("default.svc.cluster.local", "SRV"),
        ("dns-version.cluster.local", "A"),
    ],
)
def test_nodata_names(name: str, qtype: str) -> None:
    reply = ask(VIEW, name, qtype)
    assert rcode(reply) == "NOERROR"
    assert reply.rr == []
    zone = "consul." if "consul" in name else "cluster.local."
    assert authority_soa(reply) == zone
    assert reply.header.aa == 1


def test_soa_authority_ttls_and_owner_case() -> None:
    config = DnsConfig(consul_ttl=30, cluster_ttl=9)
    reply = ask(VIEW, "nope.service.CONSUL", "A", config)
    assert reply.auth[0].ttl == 30
    assert reply.auth[0].rdata.times[4] == 30
    assert reply.auth[0].rname.label == (b"CONSUL",)
    reply = ask(VIEW, "nope.prod.svc.Cluster.Local", "A", config)
    assert reply.auth[0].ttl == 9
    assert reply.auth[0].rname.label == (b"Cluster", b"Local")


@pytest.mark.parametrize(
    "name",
    [
        "nope.svc.cluster.local",
        "nope.prod.svc.cluster.local",
        "x.nope.prod.svc.cluster.local",
        "web.prod.cluster.local",
        "a.b.c.d.e.svc.cluster.local",
        "10-0-0-1.default.pod.cluster.local",
        "foo.consul",
        "geo.query.consul",
    ],
)
def test_nxdomain_names(name: str) -> None:
    reply = ask(VIEW, name)
    assert rcode(reply) == "NXDOMAIN"
    assert reply.rr == []
    assert reply.auth[0].rtype == QTYPE.SOA


# --- Kubernetes ---------------------------------------------------------------------------------


def test_dns_version() -> None:
    reply = ask(VIEW, "dns-version.cluster.local", "TXT")
    assert rrs(reply) == ['"1.1.0"']
    assert reply.rr[0].ttl == 5


def test_headless_service() -> None:
    reply = ask(VIEW, "api.prod.svc.cluster.local")
    assert sorted(rrs(reply)) == ["10.2.0.1", "10.2.0.2"]
    assert reply.rr[0].ttl == 5
    assert rrs(ask(VIEW, "api-0.api.prod.svc.cluster.local")) == ["10.2.0.1"]
    assert rcode(ask(VIEW, "api-2.api.prod.svc.cluster.local")) == "NXDOMAIN"  # not ready
    assert rcode(ask(VIEW, "api-9.api.prod.svc.cluster.local")) == "NXDOMAIN"
    assert ask(VIEW, "api.prod.svc.cluster.local", "AAAA").rr == []
    assert rcode(ask(VIEW, "api.prod.svc.cluster.local", "TXT")) == "NOERROR"


def test_headless_without_ready_endpoints_is_nxdomain() -> None:
    reply = ask(VIEW, "empty.prod.svc.cluster.local")
    assert rcode(reply) == "NXDOMAIN"
    assert authority_soa(reply) == "cluster.local."


def test_default_hostname_is_dashed_ip() -> None:
    assert rrs(ask(VIEW, "plain.default.svc.cluster.local")) == ["10.2.4.1"]
    assert rrs(ask(VIEW, "10-2-4-1.plain.default.svc.cluster.local")) == ["10.2.4.1"]
    assert rcode(ask(VIEW, "plain.prod.svc.cluster.local")) == "NXDOMAIN"


def test_headless_srv() -> None:
    reply = ask(VIEW, "_http._tcp.api.prod.svc.cluster.local", "SRV")
    assert sorted(rrs(reply, "SRV")) == [
        "0 50 80 api-0.api.prod.svc.cluster.local.",
        "0 50 80 api-1.api.prod.svc.cluster.local.",
    ]
    assert sorted((str(r.rname), str(r.rdata)) for r in reply.ar) == [
        ("api-0.api.prod.svc.cluster.local.", "10.2.0.1"),
        ("api-1.api.prod.svc.cluster.local.", "10.2.0.2"),
    ]
    every = ask(VIEW, "api.prod.svc.cluster.local", "SRV")
    assert sorted(rrs(every, "SRV")) == [
        "0 25 80 api-0.api.prod.svc.cluster.local.",
        "0 25 80 api-1.api.prod.svc.cluster.local.",
        "0 25 9090 api-0.api.prod.svc.cluster.local.",
        "0 25 9090 api-1.api.prod.svc.cluster.local.",
    ]
    one = ask(VIEW, "api-1.api.prod.svc.cluster.local", "SRV")
    assert sorted(rrs(one, "SRV")) == [
        "0 50 80 api-1.api.prod.svc.cluster.local.",
        "0 50 9090 api-1.api.prod.svc.cluster.local.",
    ]


def test_port_names_negative_answers() -> None:
    assert rcode(ask(VIEW, "_http._udp.api.prod.svc.cluster.local", "SRV")) == "NXDOMAIN"
    assert rcode(ask(VIEW, "_nope._tcp.api.prod.svc.cluster.local", "SRV")) == "NXDOMAIN"
    reply = ask(VIEW, "_http._tcp.api.prod.svc.cluster.local", "A")
    assert (rcode(reply), reply.rr) == ("NOERROR", [])
    assert authority_soa(reply) == "cluster.local."
    assert rcode(ask(VIEW, "_HTTP._TCP.Api.Prod.svc.cluster.local", "SRV")) == "NOERROR"


def test_cluster_ip_service() -> None:
    reply = ask(VIEW, "front.prod.svc.cluster.local")
    assert rrs(reply) == ["10.96.0.10"]
    assert ask(VIEW, "front.prod.svc.cluster.local", "AAAA").rr == []
    srv = ask(VIEW, "front.prod.svc.cluster.local", "SRV")
    assert sorted(rrs(srv, "SRV")) == [
        "0 50 53 front.prod.svc.cluster.local.",
        "0 50 8080 front.prod.svc.cluster.local.",
    ]
    assert [(str(r.rname), str(r.rdata)) for r in srv.ar] == [("front.prod.svc.cluster.local.", "10.96.0.10")]
    one = ask(VIEW, "_dns._udp.front.prod.svc.cluster.local", "SRV")
    assert rrs(one, "SRV") == ["0 100 53 front.prod.svc.cluster.local."]


def test_cluster_ip_without_ready_endpoints_still_answers() -> None:
    assert rrs(ask(VIEW, "lonely.prod.svc.cluster.local")) == ["10.96.0.11"]


def test_cluster_ip_v6() -> None:
    assert rrs(ask(VIEW, "six.prod.svc.cluster.local", "AAAA")) == ["fd00::10"]
    assert ask(VIEW, "six.prod.svc.cluster.local", "A").rr == []
    srv = ask(VIEW, "_https._tcp.six.prod.svc.cluster.local", "SRV")
    assert rrs(srv, "AAAA", "ar") == ["fd00::10"]


# --- PTR ----------------------------------------------------------------------------------------


def ptr(address: str, qtype: str = "PTR", config: DnsConfig = CONFIG) -> DNSRecord:
    return ask(VIEW, ipaddress.ip_address(address).reverse_pointer, qtype, config)


def test_ptr_node_address() -> None:
    assert rrs(ptr("10.1.0.1")) == ["n1.node.dc1.consul."]
    assert rrs(ptr("2001:db8::99")) == ["n6.node.dc1.consul."]
    # a service without its own address is found through its node
    assert rrs(ptr("10.1.0.3")) == ["n3.node.dc1.consul."]


def test_ptr_service_instance_and_cluster_names() -> None:
    assert rrs(ptr("10.0.0.1")) == ["web.service.dc1.consul."]
    assert sorted(rrs(ptr("10.2.0.1"))) == ["api-0.api.prod.svc.cluster.local.", "api.service.dc1.consul."]
    assert rrs(ptr("10.96.0.10")) == ["front.prod.svc.cluster.local."]
    assert rrs(ptr("fd00::10")) == ["six.prod.svc.cluster.local."]
    # ClusterIP endpoints get only the Consul name
    assert rrs(ptr("10.2.1.1")) == ["front.service.dc1.consul."]


def test_ptr_unknown_or_unhealthy_falls_through() -> None:
    for address in ("192.0.2.1", "10.0.0.3", "2001:db8::1234"):
        name = ipaddress.ip_address(address).reverse_pointer
        assert answer(VIEW, query(name, "PTR"), CONFIG, random.Random(0)) is None
    assert answer(VIEW, query("2.0.10.in-addr.arpa", "PTR"), CONFIG, random.Random(0)) is None


def test_ptr_skips_names_that_are_not_dns_names() -> None:
    view = make_view(ep("x.y", "10.8.0.1"), ep("ok", "10.8.0.1"), ep("z" * 64, "10.8.0.1"))
    assert rrs(ask(view, "1.0.8.10.in-addr.arpa", "PTR")) == ["ok.service.dc1.consul."]


def test_ptr_other_type_is_nodata() -> None:
    reply = ptr("10.1.0.1", "A")
    assert (rcode(reply), reply.rr) == ("NOERROR", [])
    assert authority_soa(reply) == "in-addr.arpa."
    assert str(reply.auth[0].rdata.mname) == "ns.dns.in-addr.arpa."


def test_ptr_ttl_is_smallest_of_its_names() -> None:
    config = DnsConfig(consul_ttl=60, cluster_ttl=20, node_ttl=90)
    reply = ptr("10.2.0.1", config=config)
    assert {r.ttl for r in reply.rr} == {20}
    assert {r.ttl for r in ptr("10.1.0.1", config=config).rr} == {90}


def test_reverse_index_follows_the_view() -> None:
    first = make_view(ep("a", "10.9.0.1"), version=1)
    second = make_view(ep("b", "10.9.0.1"), version=1)
    name = "1.0.9.10.in-addr.arpa"
    assert rrs(ask(first, name, "PTR")) == ["a.service.dc1.consul."]
    assert rrs(ask(second, name, "PTR")) == ["b.service.dc1.consul."]


# --- TTLs ---------------------------------------------------------------------------------------


def test_ttls() -> None:
    config = DnsConfig(consul_ttl=11, node_ttl=22, cluster_ttl=33, service_ttls=MappingProxyType({"web": 44}))
    assert {r.ttl for r in ask(VIEW, "web.service.consul", "A", config).rr} == {44}
    assert {r.ttl for r in ask(VIEW, "WEB.service.consul", "SRV", config).rr} == {44}
    assert {r.ttl for r in ask(VIEW, "WEB.service.consul", "SRV", config).ar} == {44}
    assert {r.ttl for r in ask(VIEW, "db.service.consul", "A", config).rr} == {11}
    assert {r.ttl for r in ask(VIEW, "n1.node.consul", "A", config).rr} == {22}
    assert {r.ttl for r in ask(VIEW, "api.prod.svc.cluster.local", "A", config).rr} == {33}
    assert {r.ttl for r in ask(VIEW, "front.prod.svc.cluster.local", "SRV", config).rr} == {33}
    assert ask(VIEW, "nope.node.consul", "A", config).auth[0].ttl == 11


def test_out_of_range_ttls_are_clamped() -> None:
    config = DnsConfig(consul_ttl=-5, cluster_ttl=2**40)
    assert {r.ttl for r in ask(VIEW, "web.service.consul", "A", config).rr} == {0}
    assert {r.ttl for r in ask(VIEW, "api.prod.svc.cluster.local", "A", config).rr} == {2**31 - 1}


# --- ANY ----------------------------------------------------------------------------------------


def test_any_is_minimal() -> None:
    reply = ask(VIEW, "web.service.consul", "ANY")
    assert {r.rtype for r in reply.rr} == {QTYPE.A}
    mixed = make_view(ep("m", "10.0.0.1"), ep("m", "2001:db8::1"))
    assert {r.rtype for r in ask(mixed, "m.service.consul", "ANY").rr} == {QTYPE.A, QTYPE.AAAA}
    assert [r.rtype for r in ask(VIEW, "consul", "ANY").rr] == [QTYPE.SOA]
    assert rrs(ask(VIEW, "dns-version.cluster.local", "ANY")) == ['"1.1.0"']
    assert len(ask(VIEW, "_http._tcp.api.prod.svc.cluster.local", "ANY").rr) == 2
    assert rrs(ptr("10.1.0.1", "ANY")) == ["n1.node.dc1.consul."]
    assert rrs(ask(VIEW, "n1.node.consul", "ANY")) == ["10.1.0.1"]
    assert ask(VIEW, "svc.cluster.local", "ANY").rr == []


# --- shuffling ----------------------------------------------------------------------------------

MANY = make_view(*(ep("big", f"10.3.0.{i}", port=1000 + i) for i in range(1, 13)))


@pytest.mark.parametrize("qtype", ["A", "SRV"])
def test_shuffle_uses_rng(qtype: str) -> None:
    orders = {tuple(rrs(ask(MANY, "big.service.consul", qtype, seed=seed), qtype)) for seed in range(6)}
    assert len(orders) > 1
    assert len({tuple(sorted(o)) for o in orders}) == 1
    assert len(next(iter(orders))) == 12
    again = {tuple(rrs(ask(MANY, "big.service.consul", qtype, seed=3), qtype)) for _ in range(3)}
    assert len(again) == 1  # same seed, same order


def test_srv_additional_follows_srv_order() -> None:
    reply = ask(MANY, "big.service.consul", "SRV", seed=5)
    targets = [str(r.rdata.target) for r in reply.rr]
    assert [str(r.rname) for r in reply.ar] == targets


# --- properties ---------------------------------------------------------------------------------

LABELS = st.lists(
    st.one_of(
        st.sampled_from(
            [
                b"web",
                b"WEB",
                b"service",
                b"node",
                b"addr",
                b"svc",
                b"prod",
                b"api",
                b"api-0",
                b"_http",
                b"_tcp",
                b"_udp",
                b"dc1",
                b"dc2",
                b"dc",
                b"n1",
                b"c000020a",
                b"dns-version",
                b"ns",
                b"dns",
                b"front",
                b"10",
                b"1",
                b"2",
                b"0",
                b"96",
            ]
        ),
        st.binary(min_size=1, max_size=12),
    ),
    max_size=7,
)
SUFFIXES = st.sampled_from(
    [(b"consul",), (b"cluster", b"local"), (b"in-addr", b"arpa"), (b"ip6", b"arpa"), (b"Consul",), ()]
)
QTYPES = st.one_of(st.sampled_from([1, 2, 5, 6, 12, 15, 16, 28, 33, 35, 99, 252, 255]), st.integers(0, 65535))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(LABELS, SUFFIXES, QTYPES, st.sampled_from([1, 3, 255]), st.booleans(), st.integers(0, 2**32))
def test_answer_never_raises(
    labels: list[bytes], suffix: tuple[bytes, ...], qtype: int, qclass: int, only_passing: bool, seed: int
) -> None:
    name = DNSLabel([*labels, *suffix])
    request = DNSRecord(DNSHeader(id=9), q=DNSQuestion(name, qtype, qclass))
    config = DnsConfig(only_passing=only_passing)
    reply = answer(VIEW, request, config, random.Random(seed))
    if reply is None:
        return
    assert reply.header.qr == 1
    assert reply.questions == request.questions
    assert reply.header.rcode in (0, 3, 5)
    if reply.header.rcode in (0, 3) and not reply.rr:
        assert [r.rtype for r in reply.auth] == [QTYPE.SOA]
    if all(0 < len(label) <= 63 for label in name.label) and len(b".".join(name.label)) <= 253:
        assert reply.pack()  # packs (dnslib's parser rejects some label bytes, so no round trip)


HEALTHY = {
    (e.service.lower(), e.address)
    for endpoints in VIEW.services.values()
    for e in endpoints
    if e.status in ("passing", "warning")
}


@settings(max_examples=200)
@given(st.sampled_from(sorted(VIEW.services)), st.sampled_from(["", "primary.", "_x._tcp."]), st.booleans())
def test_every_consul_address_answer_is_a_healthy_instance(service: str, prefix: str, only_passing: bool) -> None:
    config = DnsConfig(only_passing=only_passing)
    name = f"{prefix}{service}.service.consul" if not prefix.startswith("_") else f"_{service}._tcp.service.consul"
    for qtype in ("A", "AAAA"):
        reply = ask(VIEW, name, qtype, config)
        for record in reply.rr:
            assert (service, str(record.rdata)) in HEALTHY
            statuses = {e.status for e in VIEW.services[service] if e.address == str(record.rdata)}
            assert "passing" in statuses or not only_passing


TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=70)
ADDRESSES = st.one_of(st.ip_addresses().map(str), st.sampled_from(["db.example.com", "", "not an ip", "x" * 80]))


@st.composite
def endpoints(draw: st.DrawFn) -> object:
    meta = draw(
        st.dictionaries(
            st.sampled_from(["k8s-namespace", "k8s-cluster-ip", "k8s-hostname", "k8s-port-http", "k8s-port-", "x"]),
            st.one_of(TEXT, ADDRESSES, st.sampled_from(["tcp", "53/udp", "99999/tcp", "prod"])),
            max_size=4,
        )
    )
    return ep(
        draw(st.sampled_from(["web", "Web", "a" * 70, "x.y"])),
        draw(ADDRESSES),
        node=draw(st.one_of(st.sampled_from(["n1", "N2"]), TEXT)),
        own_address=draw(st.booleans()),
        port=draw(st.integers(0, 65535)),
        status=draw(st.sampled_from(["passing", "warning", "critical", "weird"])),
        tags=draw(st.lists(TEXT, max_size=2)),
        meta=meta,
        weight_passing=draw(st.integers(-5, 70000)),
        weight_warning=draw(st.integers(-5, 70000)),
    )


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(endpoints(), max_size=5),
    st.lists(
        st.builds(node, st.sampled_from(["n1", "n2", "a" * 70]), ADDRESSES, st.dictionaries(TEXT, TEXT, max_size=2))
    ),
    st.sampled_from(
        [
            "web.service.consul",
            "_web._tcp.service.consul",
            "n1.node.consul",
            "web.prod.svc.cluster.local",
            "web.default.svc.cluster.local",
            "_http._tcp.web.default.svc.cluster.local",
            "prod.svc.cluster.local",
            "1.0.0.10.in-addr.arpa",
        ]
    ),
    st.sampled_from(["A", "AAAA", "SRV", "TXT", "PTR", "ANY"]),
)
def test_odd_registry_data_never_breaks_replies(eps: list[object], nodes: list[object], name: str, qtype: str) -> None:
    view = make_view(*eps, nodes=nodes)  # type: ignore[arg-type]
    reply = answer(view, query(name, qtype), CONFIG, random.Random(0))
    if reply is not None:
        assert reply.pack()
