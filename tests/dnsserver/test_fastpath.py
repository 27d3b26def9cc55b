"""The wire fast path is equivalent to the answer core + ``wire.finish``; lazy cache variants.

Equivalence is checked two ways on generated views, configs and queries (hypothesis):
- same random state: the fast path's bytes equal the core's, byte for byte (same shuffles);
- independent random states: both replies parsed with dnslib agree on header flags, rcode,
  question, the answer RRset as a set (TTLs included), authority, additional (as a set) and TC,
  over UDP without EDNS (512), with EDNS 512/1232/4096, and TCP.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import random
import struct
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import pytest
from dnslib import QTYPE, DNSError, DNSRecord
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dnsserver import wire
from dnsserver.answers import answer
from dnsserver.cache import VARIANTS, CacheEntry
from dnsserver.config import DnsConfig
from dnsserver.fastpath import FastPath
from dnsserver.handler import DnsHandler
from dnsserver.metrics import Series
from dnsserver.view import Endpoint, RegistryView
from tests.dnsserver.helpers import ep, k8s, make_view, node

A, AAAA, SRV, PTR, TXT = QTYPE.A, QTYPE.AAAA, QTYPE.SRV, QTYPE.PTR, QTYPE.TXT
SIZES: list[tuple[bool, int | None]] = [(False, None), (False, 512), (False, 1232), (False, 4096), (True, None)]


def packet(
    name: bytes | str, qtype: int = A, *, edns: int | None = None, do: bool = False, flags: int = 0x0100
) -> bytes:
    raw = name.encode() if isinstance(name, str) else name
    labels = [label for label in raw.rstrip(b".").split(b".") if label]
    qname = b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"
    data = struct.pack("!6H", 0xBEEF, flags, 1, 0, 0, 1 if edns is not None else 0) + qname
    data += struct.pack("!HH", qtype, 1)
    if edns is not None:
        data += b"\x00" + struct.pack("!HHIH", 41, edns, 0x8000 if do else 0, 0)
    return data


def sizes(q: wire.Query, tcp: bool, max_udp: int = 4096) -> tuple[int, int]:
    payload = wire.udp_payload(q.edns, max_udp)
    return (wire.MAX_TCP if tcp else payload), payload


def core_bytes(view: RegistryView, q: wire.Query, config: DnsConfig, rng: random.Random, tcp: bool) -> bytes | None:
    """What the handler sends without the fast path (answer core + _finish_ours + wire.finish)."""
    request = wire.request_record(q)
    reply = answer(view, request, config, rng)
    if reply is None:
        return None
    reply.header.id = request.header.id
    reply.header.qr = 1
    reply.questions = [request.q]
    max_size, payload = sizes(q, tcp, config.max_udp_size)
    return wire.finish(reply, max_size=max_size, edns=q.edns, payload=payload)


def fast_bytes(view: RegistryView, q: wire.Query, config: DnsConfig, rng: random.Random, tcp: bool) -> bytes | None:
    max_size, payload = sizes(q, tcp, config.max_udp_size)
    built = FastPath(config).reply(view, q, rng, max_size=max_size, payload=payload)
    return None if built is None else built[0]


def records(section: list[Any]) -> list[tuple[str, int, int, int, str]]:
    return sorted((str(r.rname).lower(), r.rtype, r.rclass, r.ttl, str(r.rdata)) for r in section)


def assert_same_reply(fast: bytes, core: bytes) -> None:
    """Parsed comparison that does not depend on the shuffle."""
    try:
        c = DNSRecord.parse(core)
    except DNSError:  # dnslib's parser rejects some label bytes (both replies echo the same question)
        with pytest.raises(DNSError):
            DNSRecord.parse(fast)
        return
    f = DNSRecord.parse(fast)
    assert f.header.bitmap == c.header.bitmap  # QR, opcode, AA, TC, RD, RA, Z, AD, CD, rcode
    assert f.header.id == c.header.id
    assert f.questions == c.questions
    assert [str(q.qname) for q in f.questions] == [str(q.qname) for q in c.questions]  # case kept
    # Which records survive truncation depends on the shuffle; how many does not when all have one size.
    fixed_size = len({len(str(r.rdata)) for r in f.rr + c.rr}) <= 1
    if not f.header.tc:
        assert records(f.rr) == records(c.rr)
        assert records(f.ar) == records(c.ar)
    else:
        assert [r.rtype for r in f.ar] == [r.rtype for r in c.ar] == [41] * len(c.ar)
    if fixed_size or not f.header.tc:
        assert len(f.rr) == len(c.rr)
        assert len(fast) == len(core)
    assert records(f.auth) == records(c.auth)
    assert [(r.rclass, r.ttl) for r in f.ar if r.rtype == 41] == [(r.rclass, r.ttl) for r in c.ar if r.rtype == 41]


def check(view: RegistryView, config: DnsConfig, data: bytes, tcp: bool, seed: int) -> bool:
    """Compare both ways; True when the fast path answered (False: it declined, the core answers)."""
    q = wire.parse_query(data)
    fast = fast_bytes(view, q, config, random.Random(seed), tcp)
    if fast is None:
        return False
    core = core_bytes(view, q, config, random.Random(seed), tcp)
    assert core is not None, "fast path answered a name the core says is not ours"
    assert fast == core
    other = core_bytes(view, q, config, random.Random(seed + 1), tcp)
    assert other is not None
    assert_same_reply(fast, other)
    return True


# --- fixed cases: coverage and truncation ----------------------------------------------------

VIEW = make_view(
    ep("web", "10.0.0.1", node="n1", tags=("Primary",), port=8080, weight_passing=10),
    ep("web", "10.0.0.2", node="n2", status="warning", port=8081, weight_warning=3),
    ep("web", "10.0.0.3", node="n1", status="critical", port=8082),
    ep("web", "2001:db8::1", node="n1", port=8083),
    ep("web", "10.0.0.1", node="n4", port=8084),  # same address twice: one A record
    ep("db", "10.1.0.3", node="n3", own_address=False, port=5432),
    ep("hosted", "db.example.com", node="n3", port=3306),
    ep("dead", "10.0.9.9", status="critical"),
    *(ep("big", f"10.3.{i // 250}.{i % 250 + 1}", node=f"n{i}", port=1000 + i) for i in range(300)),
    *(ep("big6", f"2001:db8::{i + 1:x}", port=2000 + i) for i in range(100)),
    k8s("api", "10.2.0.1", namespace="prod"),
    k8s("api", "10.2.0.2", namespace="prod"),
    k8s("api", "10.2.0.3", namespace="prod", status="critical"),
    k8s("front", "10.2.1.1", namespace="prod", cluster_ip="10.96.0.10"),
    k8s("lonely", "10.2.2.1", namespace="prod", cluster_ip="10.96.0.11", status="critical"),
    k8s("empty", "10.2.3.1", namespace="prod", status="critical"),
    k8s("six", "fd00::1", namespace="prod", cluster_ip="fd00::10"),
    k8s("hl", "10.4.0.1", namespace="prod", hostname="hl-0", ports={"http": "tcp", "dns": "53/udp"}),
    k8s("hl", "10.4.0.2", namespace="prod", hostname="HL-1", ports={"http": "tcp", "dns": "53/udp"}),
    k8s("hl", "10.4.0.3", namespace="prod", ports={"http": "tcp"}),
    k8s("hl", "10.4.0.4", namespace="prod", hostname="hl-down", ports={"http": "tcp"}, status="critical"),
    k8s("hl", "2001:db8::44", namespace="prod", hostname="hl-six", ports={"http": "8443/tcp"}),
    k8s("hl", "10.4.0.5", namespace="prod", hostname="bad.name", ports={"http": "tcp"}),  # no valid target
    k8s("cip", "10.4.1.1", namespace="prod", cluster_ip="10.96.1.1", ports={"http": "tcp", "metrics": "9090/tcp"}),
    k8s("cip", "10.4.1.2", namespace="prod", cluster_ip="10.96.1.1", ports={"http": "tcp"}, status="critical"),
    k8s("noports", "10.4.2.1", namespace="prod"),
    *(k8s("wide", f"10.6.{i // 250}.{i % 250 + 1}", namespace="prod", ports={"http": "tcp"}) for i in range(60)),
    nodes=[node("n1", "10.9.0.1"), node("n2", "10.0.0.2"), node("dup", "10.9.0.1"), node("v6", "2001:db8::99")],
)
COVERED = [
    ("web.service.consul", A),
    ("web.service.consul", AAAA),
    ("web.service.consul", SRV),
    ("WEB.Service.dc1.CONSUL", A),
    ("web.service.dc1.dc.consul", A),
    ("primary.web.service.consul", A),
    ("primary.web.service.dc1.consul", SRV),
    ("nope.web.service.consul", A),  # no instance with the tag: NXDOMAIN
    ("db.service.consul", SRV),  # target: the node name
    ("hosted.service.consul", A),  # host-name address: NODATA
    ("hosted.service.consul", SRV),  # target: the host name itself, no additional
    ("dead.service.consul", A),  # no healthy instance: NXDOMAIN
    ("missing.service.consul", AAAA),
    ("web.service.dc9.consul", A),  # other datacenter: NXDOMAIN
    ("big.service.consul", A),
    ("big.service.consul", SRV),
    ("big6.service.consul", AAAA),
    ("api.prod.svc.cluster.local", A),
    ("api.prod.svc.cluster.local", AAAA),  # NODATA
    ("front.prod.svc.cluster.local", A),
    ("lonely.prod.svc.cluster.local", A),  # cluster IP answered without ready endpoints
    ("empty.prod.svc.cluster.local", A),  # headless, none ready: NXDOMAIN
    ("six.prod.svc.cluster.local", AAAA),
    ("six.prod.svc.cluster.local", A),
    ("api.other.svc.cluster.local", A),
    ("a.b.c.d.e.f.svc.cluster.local", A),  # NxDomain shape
    ("web.service.consul.default.svc.cluster.local", AAAA),  # search-path junk: NXDOMAIN
    ("foo.bar.consul", 65),  # NxDomain answers any type
    ("foo.bar.consul", QTYPE.ANY),
    ("web.service.consul", TXT),  # NODATA
    ("primary.web.service.consul", TXT),
    ("_web._tcp.service.consul", SRV),  # RFC 2782, classified by parse_name
    ("_web._primary.service.consul", A),
    ("api.prod.svc.cluster.local", SRV),  # headless, no named ports: NODATA
    ("api.prod.svc.cluster.local", TXT),
    ("hl.prod.svc.cluster.local", SRV),  # endpoints x named ports, targets in Additional
    ("HL.Prod.svc.Cluster.local", SRV),
    ("hl.prod.svc.cluster.local", A),
    ("hl.prod.svc.cluster.local", AAAA),
    ("cip.prod.svc.cluster.local", SRV),  # cluster IP: one SRV per named port, target the service
    ("cip.prod.svc.cluster.local", TXT),
    ("noports.prod.svc.cluster.local", SRV),
    ("wide.prod.svc.cluster.local", SRV),  # truncated over UDP
    ("wide.prod.svc.cluster.local", A),
    ("_http._tcp.hl.prod.svc.cluster.local", SRV),
    ("_HTTP._TCP.hl.prod.svc.cluster.local", SRV),
    ("_dns._udp.hl.prod.svc.cluster.local", SRV),
    ("_dns._tcp.hl.prod.svc.cluster.local", SRV),  # wrong protocol: NXDOMAIN
    ("_http._tcp.hl.prod.svc.cluster.local", A),  # exists: NODATA (the shuffle is drawn anyway)
    ("_http._tcp.cip.prod.svc.cluster.local", SRV),
    ("_metrics._tcp.cip.prod.svc.cluster.local", SRV),
    ("_metrics._tcp.cip.prod.svc.cluster.local", AAAA),
    ("_nope._tcp.cip.prod.svc.cluster.local", SRV),
    ("_http._tcp.api.prod.svc.cluster.local", SRV),  # no named ports: NXDOMAIN
    ("_http._tcp.wide.prod.svc.cluster.local", SRV),
    ("hl-0.hl.prod.svc.cluster.local", A),
    ("hl-1.hl.prod.svc.cluster.local", A),  # hostnames compare case-insensitively
    ("hl-0.hl.prod.svc.cluster.local", SRV),
    ("hl-0.hl.prod.svc.cluster.local", AAAA),  # NODATA
    ("hl-six.hl.prod.svc.cluster.local", AAAA),
    ("hl-six.hl.prod.svc.cluster.local", SRV),
    ("10-4-0-3.hl.prod.svc.cluster.local", A),  # default hostname: the dashed IP
    ("hl-down.hl.prod.svc.cluster.local", A),  # not ready: NXDOMAIN
    ("api-0.api.prod.svc.cluster.local", A),
    ("x.y.hl.prod.svc.cluster.local", A),  # six labels: NXDOMAIN
    ("_x.y.hl.prod.svc.cluster.local", A),
    ("1.0.0.10.in-addr.arpa", PTR),  # an instance's own address: its Consul service name
    ("1.0.9.10.in-addr.arpa", PTR),  # two nodes
    ("2.0.0.10.in-addr.arpa", PTR),  # a node and a (warning) instance
    ("1.0.4.10.in-addr.arpa", PTR),  # Consul and K8s endpoint names
    ("1.1.96.10.in-addr.arpa", PTR),  # a cluster IP
    ("1.0.2.10.IN-ADDR.ARPA", PTR),
    ("1.0.0.10.in-addr.arpa", A),  # known address, other type: NODATA
    ("1.0.0.10.in-addr.arpa", TXT),
    (ipaddress.ip_address("2001:db8::44").reverse_pointer, PTR),
    (ipaddress.ip_address("2001:db8::99").reverse_pointer, PTR),
    (ipaddress.ip_address("fd00::10").reverse_pointer.upper(), PTR),
]
NOT_COVERED = [
    ("web.service.consul", QTYPE.ANY),
    ("hl.prod.svc.cluster.local", QTYPE.ANY),
    ("_http._tcp.hl.prod.svc.cluster.local", QTYPE.ANY),
    ("1.0.0.10.in-addr.arpa", QTYPE.ANY),
    ("n1.node.consul", A),
    ("consul", QTYPE.SOA),
    ("prod.svc.cluster.local", A),
    ("9.9.9.9.in-addr.arpa", PTR),  # unknown address: not ours (forwarded)
    ("3.2.1.in-addr.arpa", PTR),
    ("example.org", A),
    ("foo.bar.consul", QTYPE.AXFR),
    ("hl.prod.svc.cluster.local", QTYPE.AXFR),
]


@pytest.mark.parametrize(("name", "qtype"), COVERED)
@pytest.mark.parametrize(("tcp", "edns"), SIZES)
def test_covered_names_match_the_core(name: str, qtype: int, tcp: bool, edns: int | None) -> None:
    for do in (False, True) if edns else (False,):
        for seed in range(3):
            assert check(VIEW, DnsConfig(), packet(name, qtype, edns=edns, do=do), tcp, seed)


@pytest.mark.parametrize(("name", "qtype"), NOT_COVERED)
def test_other_queries_fall_back(name: str, qtype: int) -> None:
    assert not check(VIEW, DnsConfig(), packet(name, qtype), False, 0)


def test_not_synced_falls_back() -> None:
    view = make_view(ep("web", "10.0.0.1"), synced=False)
    assert not check(view, DnsConfig(), packet("web.service.consul"), False, 0)


@pytest.mark.parametrize(("tcp", "edns"), SIZES)
@pytest.mark.parametrize("qtype", [A, SRV])
def test_truncation_matches(tcp: bool, edns: int | None, qtype: int) -> None:
    q = wire.parse_query(packet("big.service.consul", qtype, edns=edns))
    fast = fast_bytes(VIEW, q, DnsConfig(), random.Random(1), tcp)
    assert fast is not None
    reply = DNSRecord.parse(fast)
    assert bool(reply.header.tc) == (not tcp)
    assert len(fast) <= (wire.MAX_TCP if tcp else (edns or 512))
    if qtype == SRV and edns == 4096:
        assert reply.ar == [] or reply.ar[-1].rtype == 41  # additional dropped before TC


def test_flags_copied() -> None:
    for flags in (0x0000, 0x0100, 0x0010, 0x0130, 0x0140):
        assert check(VIEW, DnsConfig(), packet("web.service.consul", flags=flags), False, 0)


# --- generated views and queries -------------------------------------------------------------

SERVICES = ["web", "api", "db", "x"]
ADDRESSES = [
    "10.0.0.1",
    "10.0.0.2",
    "10.0.0.1",
    "10.9.9.9",
    "2001:db8::1",
    "2001:DB8::1",
    "fd00::2",
    "::ffff:1.2.3.4",
    "db.example.com",
    "Host.Example",
    "",
    "fe80::1%eth0",
]


@st.composite
def endpoints(draw: st.DrawFn) -> Endpoint:
    meta: dict[str, str] = {}
    if draw(st.booleans()):
        meta["k8s-namespace"] = draw(st.sampled_from(["default", "prod", "Prod"]))
    if draw(st.integers(0, 3)) == 0:
        meta["k8s-cluster-ip"] = draw(st.sampled_from(["10.96.0.1", "fd00::10", "bogus", ""]))
    if draw(st.integers(0, 2)) == 0:
        meta["k8s-hostname"] = draw(st.sampled_from(["web-0", "Web-1", "a.b", "", "x" * 64]))
    for name in draw(st.lists(st.sampled_from(["http", "HTTP", "dns", "p"]), max_size=2)):
        meta[f"k8s-port-{name}"] = draw(st.sampled_from(["tcp", "UDP", "53/udp", "8443/tcp", "99999/tcp", "x/sctp"]))
    return ep(
        draw(st.sampled_from(SERVICES)),
        draw(st.sampled_from(ADDRESSES)),
        node=draw(st.sampled_from(["n1", "N2", "node.with.dots"])),
        own_address=draw(st.booleans()),
        port=draw(st.sampled_from([0, 53, 80, 8080, 65535])),
        status=draw(st.sampled_from(["passing", "passing", "warning", "critical"])),
        tags=draw(st.lists(st.sampled_from(["primary", "Primary", "v2", "tcp"]), max_size=2)),
        meta=meta,
        weight_passing=draw(st.sampled_from([0, 1, 10, 70000])),
        weight_warning=draw(st.sampled_from([1, 3])),
    )


CONFIGS = st.builds(
    DnsConfig,
    domain=st.sampled_from(["consul", "Consul.", "mesh.example"]),
    cluster_domain=st.sampled_from(["cluster.local", "k8s"]),
    datacenter=st.sampled_from(["dc1", "DC2"]),
    only_passing=st.booleans(),
    consul_ttl=st.sampled_from([0, 30, -5]),
    cluster_ttl=st.sampled_from([5, 0, 2**40]),
    service_ttls=st.sampled_from([MappingProxyType({}), MappingProxyType({"web": 7, "api": 2**33})]),
    max_udp_size=st.sampled_from([512, 1232, 4096]),
)
LABEL = st.one_of(
    st.sampled_from(
        (
            b"web WEB api db x nope service node addr dc dc1 DC2 dc3 primary v2 _web _tcp prod default svc query ns dns"
            b" _http _dns _udp _p web-0 WEB-1 10-0-0-1 10-0-0-2 pod"
        ).split()
    ),
    st.binary(min_size=1, max_size=5),
)


def zone_labels(config: DnsConfig, cluster: bool) -> list[bytes]:
    zone = config.cluster_domain if cluster else config.domain
    return [label.encode() for label in zone.strip(".").split(".")]


def respell(raw: bytes, flips: int) -> bytes:
    return bytes(c ^ 0x20 if 65 <= c ^ 0x20 <= 90 and (flips >> (i % 30)) & 1 else c for i, c in enumerate(raw))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(endpoints(), max_size=8),
    CONFIGS,
    st.sampled_from(["dc1", "dc3"]),
    st.lists(LABEL, min_size=1, max_size=5),
    st.booleans(),
    st.sampled_from([A, AAAA, SRV, PTR, TXT, QTYPE.ANY, 65, QTYPE.AXFR]),
    st.sampled_from(SIZES),
    st.booleans(),
    st.integers(0, 2**30),
    st.integers(0, 2**30),
)
def test_generated_views_and_queries(
    eps: list[Endpoint],
    config: DnsConfig,
    view_dc: str,
    prefix: list[bytes],
    cluster: bool,
    qtype: int,
    size: tuple[bool, int | None],
    do: bool,
    flips: int,
    seed: int,
) -> None:
    view = make_view(*eps, datacenter=view_dc)
    name = respell(b".".join([*prefix, *zone_labels(config, cluster)]), flips)
    tcp, edns = size
    event("fast path" if check(view, config, packet(name, qtype, edns=edns, do=do), tcp, seed) else "core")


@settings(max_examples=150, deadline=None)
@given(st.lists(endpoints(), min_size=1, max_size=8), CONFIGS, st.sampled_from(SIZES), st.integers(0, 2**30))
def test_generated_views_common_names_are_covered(
    eps: list[Endpoint], config: DnsConfig, size: tuple[bool, int | None], seed: int
) -> None:
    view = make_view(*eps)
    tcp, edns = size
    consul = b".".join(zone_labels(config, False))
    cluster = b".".join(zone_labels(config, True))
    for service in SERVICES:
        svc = service.encode()
        k8s_svc = svc + b".prod.svc." + cluster
        names = [(svc + b".service." + consul, qtype) for qtype in (A, AAAA, SRV, TXT)]
        names += [(b"primary." + svc + b".service." + consul, A), (b"_" + svc + b"._tcp.service." + consul, SRV)]
        names += [(k8s_svc, qtype) for qtype in (A, AAAA, SRV, TXT)]
        names += [(b"web-0." + k8s_svc, qtype) for qtype in (A, AAAA, SRV)]
        names += [(b"_http._tcp." + k8s_svc, qtype) for qtype in (SRV, A)] + [(b"_dns._udp." + k8s_svc, SRV)]
        for name, qtype in names:
            has_scoped = any("%" in e.address or "%" in e.cluster_ip for e in eps if e.service == service)
            bad_port = any(not 0 <= e.port <= 65535 for e in eps if e.service == service)
            answered = check(view, config, packet(name, qtype, edns=edns), tcp, seed)
            assert answered or has_scoped or bad_port  # only data dnslib cannot pack sends these to the core


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(endpoints(), max_size=8),
    st.lists(st.tuples(st.sampled_from(["n1", "N2", "n3"]), st.sampled_from(ADDRESSES)), max_size=3),
    CONFIGS,
    st.data(),
    st.sampled_from([PTR, PTR, PTR, A, TXT, QTYPE.ANY]),
    st.sampled_from(SIZES),
    st.integers(0, 2**32),
    st.integers(0, 2**30),
)
def test_generated_reverse_queries(
    eps: list[Endpoint],
    nodes: list[tuple[str, str]],
    config: DnsConfig,
    data: st.DataObject,
    qtype: int,
    size: tuple[bool, int | None],
    flips: int,
    seed: int,
) -> None:
    """PTR names of addresses the view has (nodes, instances, cluster IPs) and of others."""
    view = make_view(*eps, nodes=[node(name, addr) for name, addr in nodes])
    known = [e.address for e in eps] + [e.cluster_ip for e in eps] + [addr for _, addr in nodes]
    address = data.draw(st.sampled_from([*known, "10.0.0.1", "fd00::10", "192.0.2.1"]))
    try:
        pointer = ipaddress.ip_address(address).reverse_pointer
    except ValueError:  # host names, "", and scoped IPv6 (no reverse name)
        return
    name = respell(pointer.encode(), flips)
    tcp, edns = size
    answered = check(view, config, packet(name, qtype, edns=edns), tcp, seed)
    event("fast path" if answered else "core")
    if qtype == PTR and answered:
        fast = fast_bytes(view, wire.parse_query(packet(name, qtype)), config, random.Random(0), False)
        assert fast is not None
        assert DNSRecord.parse(fast).rr


def test_memos_follow_the_question_layout() -> None:
    """Remembered PTR and SOA bytes hold compression pointers: same record, other question lengths and spellings."""
    spellings = [
        ("1.0.9.10.in-addr.arpa", PTR),  # two node names: the second points into the first
        ("001.000.009.010.in-addr.arpa", PTR),
        ("01.0.9.10.IN-ADDR.arpa", PTR),
        ("1.0.9.10.in-addr.arpa", A),  # NODATA: SOA of in-addr.arpa
        ("001.0.9.10.in-addr.arpa", A),
        ("nope.service.consul", A),
        ("longer-nope.service.consul", A),
        ("x.dns.consul", A),  # "dns.consul" in the question: MNAME ns.dns.consul points into it
        ("x.abc.consul", A),  # same length, nothing to point at
        ("xyz.dns.consul", A),
        ("x.ns.dns.consul", A),  # MNAME ns.dns.consul is all in the question
        ("x.nx.dns.consul", A),
        ("x.hostmaster.consul", A),  # RNAME hostmaster.consul is in the question
        ("x.hostmastex.consul", A),
        ("x.dns.CONSUL", A),  # the zone in another case: nothing to point at but the owner
        ("x.dns.cluster.Local", A),
        ("x.dns.clusteR.local", A),  # "local" still points into the question
        ("x.dns.cluster.local", A),
        ("a.b.c.d.e.f.svc.cluster.local", A),
        ("a.b.c.d.e.ff.svc.cluster.local", A),
        ("a.b.c.d.e.f.svc.Cluster.local", A),
        ("ns.dns.cluster.local.ns.svc.cluster.local", AAAA),
        # SRV Additional sections: owners point into the question and at each other
        ("db.service.consul", SRV),
        ("db.service.dc1.consul", SRV),
        ("DB.service.DC1.consul", SRV),
        ("web.service.consul", SRV),
        ("web.service.dc1.consul", SRV),
        ("web.service.dc1.CONSUL", SRV),
        ("hl.prod.svc.cluster.local", SRV),
        ("HL.prod.svc.cluster.local", SRV),
        ("hl.prod.svc.Cluster.local", SRV),
        ("_http._tcp.hl.prod.svc.cluster.local", SRV),
        ("_http._tcp.HL.prod.svc.cluster.local", SRV),
        ("hl-0.hl.prod.svc.cluster.local", SRV),
        ("cip.prod.svc.cluster.local", SRV),
        ("cip.PROD.svc.cluster.local", SRV),
    ]
    fast_path = FastPath(DnsConfig())
    answered = 0
    for seed, (name, qtype) in enumerate(spellings * 4):
        q = wire.parse_query(packet(name, qtype))
        built = fast_path.reply(VIEW, q, random.Random(seed % 5), max_size=wire.MAX_TCP, payload=512)
        if built is not None:
            answered += 1
            assert built[0] == core_bytes(VIEW, q, DnsConfig(), random.Random(seed % 5), True), name
    assert answered == 4 * len(spellings)


def test_client_chosen_names_do_not_grow_the_memos() -> None:
    """Memos hold only what the view has: unknown tags, namespaces, ports, hosts and addresses are not kept."""
    fast_path = FastPath(DnsConfig())
    rng = random.Random(3)

    def ask(name: str, qtype: int) -> None:
        fast_path.reply(VIEW, wire.parse_query(packet(name, qtype)), rng, max_size=512, payload=512)

    for qtype in (A, AAAA, SRV):  # every kind of name the view has, once: the memos' full size
        for name, _ in COVERED:
            ask(name, qtype)
    sizes_before = (len(fast_path._sets), len(fast_path._ptr), len(fast_path._ptr_answers), len(fast_path._members))
    soa_before = len(fast_path._soa_records)
    for i in range(300):
        ask(f"tag{i}.web.service.consul", A)
        ask(f"svc{i}.service.consul", SRV)
        ask(f"hl.ns{i}.svc.cluster.local", A)
        ask(f"host{i}.hl.prod.svc.cluster.local", A)
        ask(f"_p{i}._tcp.hl.prod.svc.cluster.local", SRV)
        ask(f"{i % 250}.{i // 250}.77.10.in-addr.arpa", PTR)
        ask("web.service.consul", 1000 + i)  # rare types are answered but not remembered
    after = (len(fast_path._sets), len(fast_path._ptr), len(fast_path._ptr_answers), len(fast_path._members))
    assert after == sizes_before
    # SOA bytes are remembered by zone, question length and a few flags, not by labels: the 1,800
    # negative answers above add at most one entry per pattern and length (1-3 digits): 6 x 3, + 3.
    assert len(fast_path._soa_records) - soa_before <= 21


def structured_names(config: DnsConfig, eps: list[Endpoint]) -> list[bytes]:
    """Names of every kind the fast path serves, for the services and addresses of ``eps``."""
    consul = b".".join(zone_labels(config, False))
    cluster = b".".join(zone_labels(config, True))
    names = []
    for service in SERVICES:
        svc = service.encode()
        k8s_svc = svc + b".prod.svc." + cluster
        names += [
            svc + b".service." + consul,
            svc + b".service.dc1." + consul,
            b"primary." + svc + b".service." + consul,
        ]
        names += [k8s_svc, svc + b".default.svc." + cluster, b"web-0." + k8s_svc, b"10-0-0-1." + k8s_svc]
        names += [
            b"_http._tcp." + k8s_svc,
            b"_dns._udp." + k8s_svc,
            svc + b".service." + consul + b".prod.svc." + cluster,
        ]
    for e in eps:
        with contextlib.suppress(ValueError):
            names.append(ipaddress.ip_address(e.address).reverse_pointer.encode())
    return names


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(endpoints(), min_size=1, max_size=8),
    CONFIGS,
    st.lists(
        st.tuples(
            st.integers(0, 10**6),
            st.sampled_from([A, AAAA, SRV, PTR, TXT]),
            st.sampled_from(SIZES),
            st.integers(0, 2**30),
            st.integers(0, 2**30),
        ),
        min_size=5,
        max_size=40,
    ),
)
def test_one_fast_path_across_many_queries(
    eps: list[Endpoint], config: DnsConfig, asks: list[tuple[int, int, Any, int, int]]
) -> None:
    """The per-view memos (record sets, SOA and PTR bytes) never leak one question's bytes into another's."""
    view = make_view(*eps)
    names = structured_names(config, eps)
    fast_path = FastPath(config)
    for pick, qtype, (tcp, edns), flips, seed in asks:
        name = respell(names[pick % len(names)], flips)
        q = wire.parse_query(packet(name, qtype, edns=edns))
        max_size, payload = sizes(q, tcp, config.max_udp_size)
        built = fast_path.reply(view, q, random.Random(seed), max_size=max_size, payload=payload)
        event("fast path" if built is not None else "core")
        if built is not None:
            assert built[0] == core_bytes(view, q, config, random.Random(seed), tcp)


# --- handler integration and lazy variants -----------------------------------------------------


def handler(view: RegistryView, *, fast_path: bool = True, answer_fn: Callable[..., Any] = answer) -> DnsHandler:
    return DnsHandler(DnsConfig(), lambda: view, None, rng=random.Random(5), answer_fn=answer_fn, fast_path=fast_path)


def test_handler_fast_and_core_send_the_same_bytes() -> None:
    """Same seed, same sequence of misses, hits and lazily built variants: same bytes."""
    queries = [packet(n, t, edns=e) for n, t in COVERED for e in (None, 1232)] * 6
    fast, core = handler(VIEW), handler(VIEW, fast_path=False)
    assert fast._fast is not None
    assert core._fast is None
    for data in queries:
        assert fast.respond(data, False) == core.respond(data, False)
    distinct = {(name.lower(), qtype) for name, qtype in COVERED}  # other spellings hit the cache
    assert fast.metrics.cache_misses == core.metrics.cache_misses == len(distinct) * 2


def test_miss_builds_one_variant_hits_build_the_rest() -> None:
    calls = []

    def counting(*args: Any) -> Any:
        calls.append(1)
        return answer(*args)

    h = handler(VIEW, answer_fn=counting)
    data = packet("web.service.consul")
    h.respond(data, False)
    assert len(calls) == 1  # the miss: one build, not VARIANTS
    for hit in range(1, VARIANTS):
        h.respond(data, False)
        assert len(calls) == 1 + hit  # each early hit: at most one more build
    for _ in range(10):
        h.respond(data, False)
    assert len(calls) == VARIANTS  # then plain hits
    entry = next(iter(h.cache.udp_raw.values()))
    assert entry.more is None
    assert 1 <= len(entry.variants) <= VARIANTS


def test_single_record_answers_build_once() -> None:
    calls = []

    def counting(*args: Any) -> Any:
        calls.append(1)
        return answer(*args)

    h = handler(VIEW, answer_fn=counting)
    for _ in range(5):
        h.respond(packet("front.prod.svc.cluster.local"), False)
    assert len(calls) == 1


def a_order(data: object) -> tuple[str, ...]:
    assert isinstance(data, bytes)  # answered at once (not Pending, not dropped)
    return tuple(str(r.rdata) for r in DNSRecord.parse(data).rr)


@pytest.mark.parametrize("fast_path", [True, False])
def test_consecutive_hits_see_different_orders(fast_path: bool) -> None:
    view = make_view(*(ep("many", f"10.5.0.{i}") for i in range(1, 9)))
    h = handler(view, fast_path=fast_path)
    orders = [a_order(h.respond(packet("many.service.consul", qtype=A), False)) for _ in range(3 * VARIANTS)]
    assert all(sorted(o) == sorted(orders[0]) for o in orders)
    assert all(a != b for a, b in itertools.pairwise(orders))  # 8! orders: repeats are ~impossible
    assert len(set(orders)) == VARIANTS


def test_entry_growth_skips_repeated_orders_and_survives_errors() -> None:
    series = Series("udp", "A", "consul.", 0)
    built = iter([b"v0", b"v1"])
    entry = CacheEntry((b"v0",), b"\x00", series, lambda: next(built))
    assert entry.take() == b"v0"  # a repeat: not kept, served round-robin
    assert entry.take() == b"v1"
    assert entry.take() == b"v0"  # the builder raised StopIteration: growth stops, no error
    assert entry.more is None
    assert entry.variants == (b"v0", b"v1")
    assert [entry.take() for _ in range(4)] == [b"v1", b"v0", b"v1", b"v0"]
