"""Per-view lookup tables that need a scan of the whole view: reverse addresses and namespaces.

Built lazily on the first query that needs them and kept for the last view seen (views are
immutable and replaced whole, so identity is the key). A race between threads builds twice at worst.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dnsserver.answers_base import IPAddress, ip_of
from dnsserver.view import Endpoint, NodeInfo, RegistryView


@dataclass(slots=True)
class ViewIndex:
    nodes: dict[IPAddress, list[NodeInfo]] = field(default_factory=dict)
    # instances that registered an address of their own, by that address
    instances: dict[IPAddress, list[Endpoint]] = field(default_factory=dict)
    # (service, namespace) pairs that own a cluster IP, by that IP (lower-case names)
    cluster_ips: dict[IPAddress, dict[tuple[str, str], None]] = field(default_factory=dict)
    namespaces: set[str] = field(default_factory=set)


_last: tuple[RegistryView, ViewIndex] | None = None


def index_for(view: RegistryView) -> ViewIndex:
    global _last
    last = _last
    if last is not None and last[0] is view:
        return last[1]
    index = _build(view)
    _last = (view, index)
    return index


def _build(view: RegistryView) -> ViewIndex:
    index = ViewIndex()
    for node in view.nodes.values():
        ip = ip_of(node.address)
        if ip is not None:
            index.nodes.setdefault(ip, []).append(node)
    for name, endpoints in view.services.items():
        for ep in endpoints:
            namespace = ep.namespace.lower()
            index.namespaces.add(namespace)
            if ep.own_address:
                ip = ip_of(ep.address)
                if ip is not None:
                    index.instances.setdefault(ip, []).append(ep)
            cluster_ip = ip_of(ep.cluster_ip) if ep.cluster_ip else None
            if cluster_ip is not None:
                index.cluster_ips.setdefault(cluster_ip, {})[(name.lower(), namespace)] = None
    return index
