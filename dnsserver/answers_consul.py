"""Answers for Consul names: ``<service>.service``, ``<node>.node`` and ``<hex-ip>.addr``."""

from __future__ import annotations

from collections.abc import Mapping

from dnslib import RR, TXT, DNSLabel

from dnsserver.answers_base import (
    TYPE_SRV,
    TYPE_TXT,
    Context,
    Result,
    SrvBuilder,
    address_records,
    clamp_ttl,
    make_name,
    nxdomain,
)
from dnsserver.names import ConsulAddr, ConsulNode, ConsulService, encode_hex_ip
from dnsserver.view import Endpoint

CONSUL_SRV_PRIORITY = 1


def consul_service_name(ctx: Context, service: str) -> DNSLabel | None:
    """``<service>.service.<dc>.<domain>.``"""
    return make_name(service.lower(), "service", ctx.config.datacenter.lower(), zone=ctx.config.domain.lower())


def consul_node_name(ctx: Context, node: str) -> DNSLabel | None:
    """``<node>.node.<dc>.<domain>.``"""
    return make_name(node.lower(), "node", ctx.config.datacenter.lower(), zone=ctx.config.domain.lower())


def _srv_target(ctx: Context, endpoint: Endpoint) -> DNSLabel | None:
    """Consul's SRV target: the node name when the instance has no own address, else ``<hex-ip>.addr``."""
    if not endpoint.own_address:
        return consul_node_name(ctx, endpoint.node)
    hex_ip = encode_hex_ip(endpoint.address)
    if hex_ip is None:  # a host name registered as the service address: point at it directly
        return make_name(zone=endpoint.address.lower())
    return make_name(hex_ip, "addr", ctx.config.datacenter.lower(), zone=ctx.config.domain.lower())


def service(ctx: Context, query: ConsulService) -> Result:
    endpoints = ctx.view.services.get(query.service, ())
    tag = query.tag
    healthy = [ep for ep in endpoints if ctx.healthy(ep) and (tag is None or any(t.lower() == tag for t in ep.tags))]
    if not healthy:
        return nxdomain()  # Consul: no healthy instance -> NXDOMAIN
    ttl = ctx.service_ttl(query.service)
    if ctx.qtype == TYPE_SRV:
        srv = SrvBuilder(ctx.qname, ttl)
        for ep in healthy:
            target = _srv_target(ctx, ep)
            if target is not None:
                weight = ep.weight_warning if ep.status == "warning" else ep.weight_passing
                srv.add(CONSUL_SRV_PRIORITY, weight, ep.port, target, ep.address)
        return srv.result(ctx.rng)
    return Result(answer=address_records(ctx, ctx.qname, (ep.address for ep in healthy), ttl))


def node(ctx: Context, query: ConsulNode) -> Result:
    info = ctx.view.nodes.get(query.node)
    if info is None:
        return nxdomain()
    ttl = clamp_ttl(ctx.config.node_ttl)
    if ctx.qtype == TYPE_TXT:
        return Result(answer=[RR(ctx.qname, TYPE_TXT, ttl=ttl, rdata=rdata) for rdata in node_txt(info.meta)])
    return Result(answer=address_records(ctx, ctx.qname, (info.address,), ttl))


def node_txt(meta: Mapping[str, str]) -> list[TXT]:
    """Consul's node-meta TXT: ``k=v``, or just ``v`` for keys starting ``rfc1035-``; sorted by key."""
    records = []
    for key, value in sorted(meta.items()):
        text = value if key.startswith("rfc1035-") else f"{key}={value}"
        raw = text.encode("utf-8", "replace")
        records.append(TXT([raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]))
    return records


def addr(ctx: Context, query: ConsulAddr) -> Result:
    return Result(answer=address_records(ctx, ctx.qname, (query.address,), clamp_ttl(ctx.config.consul_ttl)))
