"""Small builders for pure answer tests: views, queries, and reply inspection."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from dnslib import CLASS, QTYPE, RCODE, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from dnsserver.answers import answer
from dnsserver.config import DnsConfig
from dnsserver.view import Endpoint, NodeInfo, RegistryView

CONFIG = DnsConfig()


def ep(
    service: str,
    address: str = "10.0.0.1",
    *,
    node: str = "node1",
    own_address: bool = True,
    port: int = 80,
    status: str = "passing",
    tags: Iterable[str] = (),
    meta: Mapping[str, str] | None = None,
    weight_passing: int = 1,
    weight_warning: int = 1,
    service_id: str | None = None,
) -> Endpoint:
    return Endpoint(
        service=service,
        service_id=service_id or f"{service}-{address}-{port}",
        node=node,
        address=address,
        own_address=own_address,
        port=port,
        status=status,
        tags=tuple(tags),
        meta=MappingProxyType(dict(meta or {})),
        weight_passing=weight_passing,
        weight_warning=weight_warning,
    )


def k8s(
    service: str,
    address: str,
    *,
    namespace: str = "default",
    cluster_ip: str | None = None,
    hostname: str | None = None,
    ports: Mapping[str, str] | None = None,
    status: str = "passing",
    port: int = 80,
) -> Endpoint:
    meta = {"k8s-namespace": namespace}
    if cluster_ip:
        meta["k8s-cluster-ip"] = cluster_ip
    if hostname:
        meta["k8s-hostname"] = hostname
    for name, value in (ports or {}).items():
        meta[f"k8s-port-{name}"] = value
    return ep(service, address, meta=meta, status=status, port=port, node=f"n-{address}")


def node(name: str, address: str, meta: Mapping[str, str] | None = None) -> NodeInfo:
    return NodeInfo(name=name, address=address, meta=MappingProxyType(dict(meta or {})))


def make_view(
    *endpoints: Endpoint,
    nodes: Iterable[NodeInfo] = (),
    version: int = 7,
    datacenter: str = "dc1",
    synced: bool = True,
) -> RegistryView:
    services: dict[str, list[Endpoint]] = {}
    for e in endpoints:
        services.setdefault(e.service.lower(), []).append(e)
    return RegistryView(
        version=version,
        datacenter=datacenter,
        services=MappingProxyType({k: tuple(v) for k, v in services.items()}),
        nodes=MappingProxyType({n.name.lower(): n for n in nodes}),
        synced=synced,
    )


def query(name: str | DNSLabel, qtype: int | str = "A", *, qclass: int = CLASS.IN, qid: int = 4242) -> DNSRecord:
    rtype = getattr(QTYPE, qtype) if isinstance(qtype, str) else qtype
    return DNSRecord(DNSHeader(id=qid, rd=1), q=DNSQuestion(DNSLabel(name), rtype, qclass))


def ask(
    view: RegistryView,
    name: str | DNSLabel,
    qtype: int | str = "A",
    config: DnsConfig = CONFIG,
    seed: int = 0,
    **kwargs: int,
) -> DNSRecord:
    """Answer a query; asserts it is ours and that the reply survives a wire round trip."""
    reply = answer(view, query(name, qtype, **kwargs), config, random.Random(seed))
    assert reply is not None, f"{name} not ours"
    return DNSRecord.parse(reply.pack())


def rrs(reply: DNSRecord, rtype: str | None = None, section: str = "rr") -> list[str]:
    """Rdata texts of one section, optionally only one type."""
    records = getattr(reply, section)
    return [str(r.rdata) for r in records if rtype is None or r.rtype == getattr(QTYPE, rtype)]


def rcode(reply: DNSRecord) -> str:
    return str(RCODE.get(reply.header.rcode))
