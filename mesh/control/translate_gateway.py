"""What a gateway proxy serves: the ``Gateway`` resources selecting it and the VirtualServices bound to them (pure).

A proxy registered as a gateway (``mesh gateway``) gets, per port of the servers of the Gateways
whose ``selector`` its labels satisfy, one listener (``<protocol>.<port>``, HTTPS listeners with
the servers' certificates, picked by SNI) and one route table of the same name. Its virtual
hosts come from the VirtualServices that name one of those Gateways in ``gateways`` (``name`` in
the VirtualService's namespace, or ``namespace/name``): each VirtualService host that a server
host admits (equal, under its wildcard, or ``*``; a ``namespace/`` prefix narrows which
VirtualServices may bind) becomes a domain, routed by the VirtualService's ``http`` routes. A Host
nothing admits gets 404 (Envoy's ``NR``). An HTTP server with ``httpsRedirect`` answers every
request with a 301 to ``https`` (on the HTTPS server's port of the same Gateway when it has one).
A ``TLS`` server (``PASSTHROUGH``) becomes a TCP listener routing by the client's SNI: the
``sniHosts`` of the bound VirtualServices' ``tls`` routes that the server's hosts admit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mesh.model.snapshot import ServerCertificate
from mesh.rules.gateway import GatewayHost, GatewaySpec, Server
from mesh.rules.resource import Resource
from mesh.rules.ruleset import VirtualServiceRule
from mesh.rules.virtual_service import TlsRoute
from mesh.security.authz import selects

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class BoundServer:
    gateway: str  # "namespace/name" of the Gateway
    namespace: str  # the Gateway's namespace
    server: Server
    https_port: int | None  # the Gateway's HTTPS port, for an httpsRedirect


@dataclass(frozen=True, slots=True)
class PortPlan:
    """One listener of the gateway: its port, protocol, servers, and the (host, VirtualService) pairs it routes."""

    number: int
    protocol: str
    servers: tuple[BoundServer, ...]
    hosts: tuple[tuple[str, VirtualServiceRule | None, BoundServer], ...]  # None: an httpsRedirect domain
    sni: tuple[tuple[str, VirtualServiceRule, TlsRoute], ...] = ()  # a TLS server's: (SNI host, VS, route)

    @property
    def name(self) -> str:
        return f"{self.protocol.lower()}.{self.number}"

    def certificates(self) -> tuple[ServerCertificate, ...]:
        return tuple(
            ServerCertificate(
                tuple(h.host for h in bound.server.hosts),
                bound.server.tls.server_certificate,
                bound.server.tls.private_key,
                bound.server.tls.ca_certificates,
            )
            for bound in self.servers
            if bound.server.protocol == "HTTPS"
        )


def gateways_for(resources: Iterable[Resource], labels: Labels) -> list[tuple[Resource, GatewaySpec]]:
    """The Gateways whose selector the proxy's labels satisfy (in any namespace, as Istio's default)."""
    return [
        (resource, resource.spec)
        for resource in sorted(resources, key=lambda r: r.key.id)
        if isinstance(resource.spec, GatewaySpec) and selects(resource.spec.selector, labels)
    ]


def gateway_ref(name: str, namespace: str) -> str:
    """``namespace/name`` for a ``gateways`` entry (``name`` alone is in the referring resource's namespace)."""
    return name if "/" in name else f"{namespace}/{name}"


def plan_ports(
    gateways: list[tuple[Resource, GatewaySpec]], virtual_services: Iterable[VirtualServiceRule]
) -> list[PortPlan]:
    bound: dict[int, list[BoundServer]] = {}
    for resource, spec in gateways:
        https = next((s.number for s in spec.servers if s.protocol == "HTTPS"), None)
        for server in spec.servers:
            bound.setdefault(server.number, []).append(
                BoundServer(f"{resource.key.namespace}/{resource.key.name}", resource.key.namespace, server, https)
            )
    services = list(virtual_services)
    plans: list[PortPlan] = []
    for number in sorted(bound):
        servers = bound[number]
        hosts: list[tuple[str, VirtualServiceRule | None, BoundServer]] = []
        seen: set[str] = set()
        sni: list[tuple[str, VirtualServiceRule, TlsRoute]] = []
        for entry in servers:
            if entry.server.protocol == "TLS":
                sni.extend(_sni_routes(entry, services, seen))
                continue
            if entry.server.tls.https_redirect:
                for host in entry.server.hosts:
                    if host.host not in seen:
                        seen.add(host.host)
                        hosts.append((host.host, None, entry))
                continue
            for rule in services:
                vs_namespace = rule.resource.key.namespace
                if entry.gateway not in {gateway_ref(g, vs_namespace) for g in rule.spec.gateways}:
                    continue
                for vs_host in rule.spec.hosts:
                    domain = _admitted(vs_host, vs_namespace, entry)
                    if domain is not None and domain not in seen:
                        seen.add(domain)
                        hosts.append((domain, rule, entry))
        plans.append(PortPlan(number, servers[0].server.protocol, tuple(servers), tuple(hosts), tuple(sni)))
    return plans


def _sni_routes(
    entry: BoundServer, services: list[VirtualServiceRule], seen: set[str]
) -> list[tuple[str, VirtualServiceRule, TlsRoute]]:
    out: list[tuple[str, VirtualServiceRule, TlsRoute]] = []
    for rule in services:
        vs_namespace = rule.resource.key.namespace
        if entry.gateway not in {gateway_ref(g, vs_namespace) for g in rule.spec.gateways}:
            continue
        for route in rule.spec.tls:
            for match in route.match:
                if match.gateways and entry.gateway not in {gateway_ref(g, vs_namespace) for g in match.gateways}:
                    continue
                for host in match.sni_hosts:
                    domain = _admitted(host, vs_namespace, entry)
                    if domain is not None and domain not in seen:
                        seen.add(domain)
                        out.append((domain, rule, route))
    return out


def _admitted(vs_host: str, vs_namespace: str, entry: BoundServer) -> str | None:
    """The domain a server admits for a VirtualService host (the narrower of the two), or None."""
    for host in entry.server.hosts:
        if not _namespace_allows(host, vs_namespace, entry.namespace):
            continue
        if host.matches(vs_host):
            return vs_host if vs_host != "*" else host.host
        if vs_host == "*" or (vs_host.startswith("*.") and GatewayHost("*", vs_host).matches(host.host)):
            return host.host
    return None


def _namespace_allows(host: GatewayHost, vs_namespace: str, gateway_namespace: str) -> bool:
    return (
        host.namespace == "*"
        or host.namespace == vs_namespace
        or (host.namespace == "." and vs_namespace == gateway_namespace)
    )


__all__ = ["BoundServer", "PortPlan", "gateway_ref", "gateways_for", "plan_ports"]
