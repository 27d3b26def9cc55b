"""Answers for Kubernetes names under the cluster domain (DNS spec 1.1.0, CoreDNS behaviour).

A service ``<svc>.<ns>`` is every instance of registry service ``<svc>`` whose namespace (Meta
``k8s-namespace``, default ``default``) is ``<ns>``. It is a ClusterIP service when an instance
carries ``k8s-cluster-ip``, else headless. "Ready" means healthy under the DNS health filter.
"""

from __future__ import annotations

from dnslib import RR, TXT, DNSLabel

from dnsserver.answers_base import (
    TYPE_ANY,
    TYPE_SRV,
    TYPE_TXT,
    Context,
    IPAddress,
    Result,
    SrvBuilder,
    address_records,
    clamp_ttl,
    ip_of,
    make_name,
    nxdomain,
)
from dnsserver.answers_index import index_for
from dnsserver.names import K8sEndpoint, K8sNamespace, K8sPort, K8sService
from dnsserver.view import Endpoint

SCHEMA_VERSION = "1.1.0"
K8S_SRV_PRIORITY = 0


def service_name(ctx: Context, service: str, namespace: str) -> DNSLabel | None:
    """``<svc>.<ns>.svc.<zone>.``"""
    return make_name(service.lower(), namespace.lower(), "svc", zone=ctx.config.cluster_domain.lower())


def endpoint_name(ctx: Context, endpoint: Endpoint, service: str, namespace: str) -> DNSLabel | None:
    """``<hostname>.<svc>.<ns>.svc.<zone>.``"""
    return make_name(
        endpoint.hostname.lower(), service.lower(), namespace.lower(), "svc", zone=ctx.config.cluster_domain.lower()
    )


def _members(ctx: Context, service: str, namespace: str) -> list[Endpoint]:
    return [ep for ep in ctx.view.services.get(service, ()) if ep.namespace.lower() == namespace]


def _cluster_ip(members: list[Endpoint]) -> IPAddress | None:
    for ep in members:
        if ep.cluster_ip:
            ip = ip_of(ep.cluster_ip)
            if ip is not None:
                return ip
    return None


def _ttl(ctx: Context) -> int:
    return clamp_ttl(ctx.config.cluster_ttl)


def _srv_result(ctx: Context, srv: SrvBuilder) -> Result:
    """CoreDNS weights: floor(100 / number of SRV records)."""
    return srv.result(ctx.rng, weight=100 // len(srv) if len(srv) else 0)


def _endpoint_srv(ctx: Context, ready: list[Endpoint], svc: str, ns: str, port: K8sPort | None) -> Result:
    """One SRV per (ready endpoint x matching named port), target the endpoint's name."""
    srv = SrvBuilder(ctx.qname, _ttl(ctx))
    for ep in ready:
        target = endpoint_name(ctx, ep, svc, ns)
        if target is None:
            continue
        for named in ep.named_ports():
            if port is None or (named.name.lower() == port.port and named.protocol == port.protocol):
                srv.add(K8S_SRV_PRIORITY, 0, named.port, target, ep.address)
    return _srv_result(ctx, srv)


def _cluster_srv(
    ctx: Context, members: list[Endpoint], cluster_ip: IPAddress, svc: str, ns: str, port: K8sPort | None
) -> Result:
    """One SRV per named port of the service, target the service name."""
    srv = SrvBuilder(ctx.qname, _ttl(ctx))
    target = service_name(ctx, svc, ns)
    if target is None:
        return Result()
    for ep in members:
        for named in ep.named_ports():
            if port is None or (named.name.lower() == port.port and named.protocol == port.protocol):
                srv.add(K8S_SRV_PRIORITY, 0, named.port, target, str(cluster_ip))
    return _srv_result(ctx, srv)


def service(ctx: Context, query: K8sService) -> Result:
    members = _members(ctx, query.service, query.namespace)
    if not members:
        return nxdomain()
    cluster_ip = _cluster_ip(members)
    if cluster_ip is not None:  # answered even with no ready endpoint (CoreDNS)
        if ctx.qtype == TYPE_SRV:
            return _cluster_srv(ctx, members, cluster_ip, query.service, query.namespace, None)
        return Result(answer=address_records(ctx, ctx.qname, (str(cluster_ip),), _ttl(ctx)))
    ready = [ep for ep in members if ctx.healthy(ep)]
    if not ready:
        return nxdomain()  # headless with no ready endpoint
    if ctx.qtype == TYPE_SRV:
        return _endpoint_srv(ctx, ready, query.service, query.namespace, None)
    return Result(answer=address_records(ctx, ctx.qname, (ep.address for ep in ready), _ttl(ctx)))


def endpoint(ctx: Context, query: K8sEndpoint) -> Result:
    matching = [
        ep
        for ep in _members(ctx, query.service, query.namespace)
        if ctx.healthy(ep) and ep.hostname.lower() == query.hostname
    ]
    if not matching:
        return nxdomain()
    if ctx.qtype == TYPE_SRV:
        return _endpoint_srv(ctx, matching, query.service, query.namespace, None)
    return Result(answer=address_records(ctx, ctx.qname, (ep.address for ep in matching), _ttl(ctx)))


def port(ctx: Context, query: K8sPort) -> Result:
    members = _members(ctx, query.service, query.namespace)
    cluster_ip = _cluster_ip(members)
    if cluster_ip is not None:
        found = _cluster_srv(ctx, members, cluster_ip, query.service, query.namespace, query)
    else:
        ready = [ep for ep in members if ctx.healthy(ep)]
        found = _endpoint_srv(ctx, ready, query.service, query.namespace, query)
    if not found.answer:
        return nxdomain()
    return found if ctx.qtype in (TYPE_SRV, TYPE_ANY) else Result()


def namespace(ctx: Context, query: K8sNamespace) -> Result:
    return Result() if query.namespace in index_for(ctx.view).namespaces else nxdomain()


def dns_version(ctx: Context) -> Result:
    if ctx.qtype not in (TYPE_TXT, TYPE_ANY):
        return Result()
    return Result(answer=[RR(ctx.qname, TYPE_TXT, ttl=_ttl(ctx), rdata=TXT(SCHEMA_VERSION))])
