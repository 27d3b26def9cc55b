"""``fastnames.FastNames`` agrees with ``names.parse_name`` whenever it classifies a name."""

from __future__ import annotations

import ipaddress
from typing import Any

from dnslib import DNSLabel
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsserver.config import DnsConfig
from dnsserver.fastnames import CONSUL, K8S_ENDPOINT, K8S_PORT, K8S_SERVICE, NX, REVERSE, FastNames
from dnsserver.names import ConsulService, K8sEndpoint, K8sPort, K8sService, NxDomain, Query, Reverse, parse_name

WORDS = ["service", "svc", "SVC", "Service", "dc1", "DC2", "dc", "node", "consul", "cluster", "local", "_web", "_tcp"]
WORDS += ["web", "db", "ns", "dns", "in-addr", "arpa", "default", "a.b", "x\x06consul", "caf\xe9", "pod", "_", "ip6"]
WORDS += ["dns-version", "10", "255", "256", "010", "1", "0", "a", "F", "ff"]
label = st.one_of(st.sampled_from(WORDS), st.text(alphabet="abcAB_-.019\x06\xe9", min_size=1, max_size=8))
zone = st.sampled_from(["consul", "Consul", "cluster.local", "svc.cluster.local", "arpa", "example.com", ""])


def wire(labels: list[str]) -> bytes:
    raw = [x.encode("utf-8")[:63] for x in labels]
    return b"".join(bytes([len(x)]) + x for x in raw if x) + b"\x00"


def as_query(kind: int, args: tuple[Any, ...]) -> Query:
    """The ``names`` query a classification stands for."""
    if kind == CONSUL:
        return ConsulService(*args)
    if kind == K8S_SERVICE:
        return K8sService(*args)
    if kind == K8S_ENDPOINT:
        return K8sEndpoint(*args)
    if kind == K8S_PORT:
        return K8sPort(*args)
    if kind == REVERSE:
        return Reverse(str(ipaddress.ip_address(args[0])))
    assert kind == NX
    assert args == ()
    return NxDomain()


def agrees(name: bytes, config: DnsConfig, view_dc: str) -> bool:
    """Assert classify == parse_name when classify answers; True when it did."""
    fast = FastNames(config, view_dc).classify(name.lower())
    if fast is None:
        return False
    parsed = parse_name(DNSLabel(wire_labels(name)), config, (config.datacenter, view_dc))
    assert parsed is not None
    kind, (zone_name, origin_len), args = fast
    assert as_query(kind, args) == parsed.query
    assert zone_name == parsed.zone_name
    assert origin_len == len(parsed.origin.label)
    return True


@settings(max_examples=1500, deadline=None)
@given(
    prefix=st.lists(label, max_size=7),
    domain=zone,
    cluster=zone,
    dc=st.sampled_from(["dc1", "DC2", "dc", "service"]),
    view_dc=st.sampled_from(["dc1", "dc2", "other"]),
    in_zone=st.sampled_from(["domain", "cluster", "none", "in-addr.arpa", "ip6.arpa"]),
)
def test_classify_agrees_with_parse_name(
    prefix: list[str], domain: str, cluster: str, dc: str, view_dc: str, in_zone: str
) -> None:
    config = DnsConfig(domain=domain, cluster_domain=cluster, datacenter=dc)
    tail = {"domain": domain, "cluster": cluster, "none": ""}.get(in_zone, in_zone)
    agrees(wire(prefix + [x for x in tail.split(".") if x]), config, view_dc)


@settings(max_examples=300, deadline=None)
@given(
    address=st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
    respell=st.integers(0, 2**32),
    mangle=st.sampled_from(["none", "drop", "extra", "pad", "big"]),
    domain=zone,
)
def test_reverse_names_agree_with_parse_name(address: Any, respell: int, mangle: str, domain: str) -> None:
    """Full reverse names classify to their address (any case); near misses agree with parse_name too."""
    labels = address.reverse_pointer.split(".")
    labels = [x.upper() if respell >> (i % 32) & 1 else x for i, x in enumerate(labels)]
    if mangle == "drop":
        labels = labels[1:]
    elif mangle == "extra":
        labels = ["1", *labels]
    elif mangle == "pad":
        labels[0] = "0" + labels[0]
    elif mangle == "big":
        labels[0] = "999"
    config = DnsConfig(domain=domain)
    answered = agrees(wire(labels), config, "dc1")
    usable = domain not in ("arpa", "cluster.local", "svc.cluster.local")  # nested zones: parse_name arbitrates
    if mangle == "none" and usable:
        assert answered


def wire_labels(name: bytes) -> tuple[bytes, ...]:
    out, pos = [], 0
    while name[pos]:
        out.append(name[pos + 1 : pos + 1 + name[pos]])
        pos += 1 + name[pos]
    return tuple(out)


def test_common_names_are_classified() -> None:
    names = FastNames(DnsConfig(), "dc2")
    consul, cluster = ("consul", 1), ("cluster.local", 2)
    assert names.classify(wire(["web", "service", "consul"])) == (CONSUL, consul, ("web", None))
    assert names.classify(wire(["v1", "web", "service", "dc2", "consul"])) == (CONSUL, consul, ("web", "v1"))
    assert names.classify(wire(["web", "service", "dc9", "consul"])) == (NX, consul, ())
    assert names.classify(wire(["web", "default", "svc", "cluster", "local"])) == (
        K8S_SERVICE,
        cluster,
        ("web", "default"),
    )
    assert names.classify(wire(["web-0", "web", "default", "svc", "cluster", "local"])) == (
        K8S_ENDPOINT,
        cluster,
        ("web-0", "web", "default"),
    )
    assert names.classify(wire(["_http", "_tcp", "web", "default", "svc", "cluster", "local"])) == (
        K8S_PORT,
        cluster,
        ("http", "tcp", "web", "default"),
    )
    junk = ["web", "service", "consul", "default", "svc", "cluster", "local"]  # ndots:5 search-path walk
    assert names.classify(wire(junk)) == (NX, cluster, ())
    assert names.classify(wire(["4", "3", "2", "1", "in-addr", "arpa"])) == (
        REVERSE,
        ("in-addr.arpa", 2),
        (b"\x01\x02\x03\x04",),
    )
    v6 = ipaddress.ip_address("2001:db8::1")
    assert names.classify(wire(v6.reverse_pointer.split("."))) == (REVERSE, ("ip6.arpa", 2), (v6.packed,))
    assert names.classify(wire(["_web", "_tcp", "service", "consul"])) is None  # RFC 2782: parse_name decides
    assert names.classify(wire(["web", "node", "consul"])) is None
    assert names.classify(wire(["default", "svc", "cluster", "local"])) is None  # a namespace: the core decides
    assert names.classify(wire(["x\x06consul"])) is None  # suffix inside a label
    assert names.classify(wire(["3", "2", "1", "in-addr", "arpa"])) is None  # partial reverse name: not ours
