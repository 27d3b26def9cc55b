"""PTR answers for addresses we know: nodes, service instances' own addresses and cluster IPs."""

from __future__ import annotations

from dnslib import PTR, RR, DNSLabel

from dnsserver.answers_base import TYPE_ANY, TYPE_PTR, Context, IPAddress, Result, clamp_ttl, ip_of
from dnsserver.answers_consul import consul_node_name, consul_service_name
from dnsserver.answers_index import index_for
from dnsserver.answers_k8s import endpoint_name, service_name
from dnsserver.names import Reverse
from dnsserver.view import Endpoint


def _has_k8s_meta(endpoint: Endpoint) -> bool:
    return any(key.startswith("k8s-") for key in endpoint.meta)


def reverse(ctx: Context, query: Reverse) -> Result | None:
    """PTR records for a known address; None when nothing is known there (the caller may forward)."""
    ip = ip_of(query.address)
    if ip is None:
        return None
    targets = ptr_targets(ctx, ip)
    if not targets:
        return None
    if ctx.qtype not in (TYPE_PTR, TYPE_ANY):
        return Result()
    ttl = min(targets.values())  # one RRset, one TTL (RFC 2181 section 5.2)
    return Result(answer=[RR(ctx.qname, TYPE_PTR, ttl=ttl, rdata=PTR(name)) for name in targets])


def ptr_targets(ctx: Context, ip: IPAddress) -> dict[DNSLabel, int]:
    """The names that ``ip`` points back to, in answer order, each with its TTL (empty: none known).

    Shared with the wire fast path (``fastpath.py``), so both answer PTR queries alike.
    """
    index = index_for(ctx.view)
    config = ctx.config
    targets: dict[DNSLabel, int] = {}

    def add(name: DNSLabel | None, ttl: int) -> None:
        if name is not None:
            targets[name] = min(ttl, targets.get(name, ttl))

    for node in index.nodes.get(ip, ()):
        add(consul_node_name(ctx, node.name), clamp_ttl(config.node_ttl))
    for ep in index.instances.get(ip, ()):
        if not ctx.healthy(ep):
            continue
        add(consul_service_name(ctx, ep.service), ctx.service_ttl(ep.service))
        if _has_k8s_meta(ep) and not ep.cluster_ip:
            add(endpoint_name(ctx, ep, ep.service, ep.namespace), clamp_ttl(config.cluster_ttl))
    for svc, ns in index.cluster_ips.get(ip, {}):
        add(service_name(ctx, svc, ns), clamp_ttl(config.cluster_ttl))
    return targets
