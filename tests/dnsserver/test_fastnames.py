"""``fastpath.FastNames`` agrees with ``names.parse_name`` whenever it classifies a name."""

from __future__ import annotations

from dnslib import DNSLabel
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsserver.config import DnsConfig
from dnsserver.fastpath import FastNames
from dnsserver.names import ConsulService, K8sService, NxDomain, parse_name

WORDS = ["service", "svc", "SVC", "Service", "dc1", "DC2", "dc", "node", "consul", "cluster", "local", "_web", "_tcp"]
WORDS += ["web", "db", "ns", "dns", "in-addr", "arpa", "default", "a.b", "x\x06consul", "caf\xe9"]
label = st.one_of(st.sampled_from(WORDS), st.text(alphabet="abcAB_-.\x06\xe9", min_size=1, max_size=8))
zone = st.sampled_from(["consul", "Consul", "cluster.local", "svc.cluster.local", "arpa", "example.com", ""])


def wire(labels: list[str]) -> bytes:
    raw = [x.encode("utf-8")[:63] for x in labels]
    return b"".join(bytes([len(x)]) + x for x in raw if x) + b"\x00"


@settings(max_examples=1500, deadline=None)
@given(
    prefix=st.lists(label, max_size=5),
    domain=zone,
    cluster=zone,
    dc=st.sampled_from(["dc1", "DC2", "dc", "service"]),
    view_dc=st.sampled_from(["dc1", "dc2", "other"]),
    in_zone=st.sampled_from(["domain", "cluster", "none"]),
)
def test_classify_agrees_with_parse_name(
    prefix: list[str], domain: str, cluster: str, dc: str, view_dc: str, in_zone: str
) -> None:
    config = DnsConfig(domain=domain, cluster_domain=cluster, datacenter=dc)
    tail = {"domain": domain, "cluster": cluster, "none": ""}[in_zone]
    name = wire(prefix + [x for x in tail.split(".") if x])
    fast = FastNames(config, view_dc).classify(name.lower())
    if fast is None:
        return
    parsed = parse_name(DNSLabel(wire_labels(name)), config, (config.datacenter, view_dc))
    assert parsed is not None
    query, zone_name, origin_len = fast
    assert query == parsed.query
    assert zone_name == parsed.zone_name
    assert origin_len == len(parsed.origin.label)


def wire_labels(name: bytes) -> tuple[bytes, ...]:
    out, pos = [], 0
    while name[pos]:
        out.append(name[pos + 1 : pos + 1 + name[pos]])
        pos += 1 + name[pos]
    return tuple(out)


def test_common_names_are_classified() -> None:
    names = FastNames(DnsConfig(), "dc2")
    assert names.classify(wire(["web", "service", "consul"])) == (ConsulService("web"), "consul", 1)
    assert names.classify(wire(["v1", "web", "service", "dc2", "consul"])) == (ConsulService("web", "v1"), "consul", 1)
    assert names.classify(wire(["web", "service", "dc9", "consul"])) == (NxDomain(), "consul", 1)
    assert names.classify(wire(["web", "default", "svc", "cluster", "local"])) == (
        K8sService("web", "default"),
        "cluster.local",
        2,
    )
    assert names.classify(wire(["_web", "_tcp", "service", "consul"])) is None  # RFC 2782: parse_name decides
    assert names.classify(wire(["web", "node", "consul"])) is None
    assert names.classify(wire(["x\x06consul"])) is None  # suffix inside a label
