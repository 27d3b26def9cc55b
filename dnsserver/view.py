"""The DNS server's picture of the registry: an immutable snapshot, swapped whole on change.

The watcher (``dnsserver/watcher.py``) builds a new ``RegistryView`` from the registry
client's results and replaces the server's reference in one assignment; answer building
and the answer cache only ever read a view. ``version`` increases with every new view,
so cached wire answers keyed by it become stale at once.

Kubernetes-style data lives in service Meta (keys allowed by Consul's Meta rules):
- ``k8s-namespace``: the namespace (default ``default``);
- ``k8s-cluster-ip``: a virtual IP; present means a ClusterIP service, absent means headless;
- ``k8s-hostname``: the endpoint's hostname (default: its IP with dots/colons as dashes);
- ``k8s-port-<name>``: a named port, value ``<proto>`` or ``<port>/<proto>`` (port defaults
  to the instance's port), e.g. ``k8s-port-http: "tcp"``, ``k8s-port-dns: "53/udp"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

META_NAMESPACE: Final = "k8s-namespace"
META_CLUSTER_IP: Final = "k8s-cluster-ip"
META_HOSTNAME: Final = "k8s-hostname"
META_PORT_PREFIX: Final = "k8s-port-"
DEFAULT_NAMESPACE: Final = "default"

_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class NamedPort:
    name: str
    protocol: str  # "tcp" | "udp" | "sctp"
    port: int


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One service instance as DNS sees it."""

    service: str
    service_id: str
    node: str
    address: str  # where to connect: the service address, else the node's
    own_address: bool  # True when the service registered an address of its own
    port: int
    status: str  # aggregated health: "passing" | "warning" | "critical"
    tags: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    weight_passing: int = 1
    weight_warning: int = 1

    @property
    def namespace(self) -> str:
        return self.meta.get(META_NAMESPACE) or DEFAULT_NAMESPACE

    @property
    def hostname(self) -> str:
        return self.meta.get(META_HOSTNAME) or self.address.replace(".", "-").replace(":", "-")

    @property
    def cluster_ip(self) -> str:
        return self.meta.get(META_CLUSTER_IP, "")

    def named_ports(self) -> tuple[NamedPort, ...]:
        """Named ports from ``k8s-port-<name>`` Meta; malformed values are skipped."""
        ports = []
        for key, value in self.meta.items():
            if not key.startswith(META_PORT_PREFIX) or len(key) == len(META_PORT_PREFIX):
                continue
            number, _, proto = value.rpartition("/")
            port = int(number) if number.isdigit() else self.port
            if proto.lower() in ("tcp", "udp", "sctp") and 0 < port < 65536:
                ports.append(NamedPort(key[len(META_PORT_PREFIX) :], proto.lower(), port))
        return tuple(sorted(ports, key=lambda p: p.name))


@dataclass(frozen=True, slots=True)
class NodeInfo:
    name: str
    address: str
    meta: Mapping[str, str] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class RegistryView:
    """Everything DNS answers from. Keys of ``services`` and ``nodes`` are lower-cased names."""

    version: int = 0
    datacenter: str = "dc1"
    services: Mapping[str, tuple[Endpoint, ...]] = field(default_factory=lambda: MappingProxyType({}))
    nodes: Mapping[str, NodeInfo] = field(default_factory=lambda: MappingProxyType({}))
    synced: bool = False  # False until the first full read from the registry succeeded
