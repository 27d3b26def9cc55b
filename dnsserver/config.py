"""Settings of the DNS server (immutable; built once from flags)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

DEFAULT_DNS_ADDR: Final = "127.0.0.1:8600"
DEFAULT_METRICS_ADDR: Final = "127.0.0.1:9153"


@dataclass(frozen=True, slots=True)
class DnsConfig:
    domain: str = "consul"  # Consul names: <service>.service.<domain>
    cluster_domain: str = "cluster.local"  # Kubernetes names: <svc>.<ns>.svc.<cluster_domain>
    datacenter: str = "dc1"
    # Consul's only_passing: False drops only critical instances (warning still answered).
    only_passing: bool = False
    consul_ttl: int = 0  # Consul's default for service and node answers
    node_ttl: int = 0
    cluster_ttl: int = 5  # CoreDNS kubernetes plugin default
    # Per-service TTL overrides by lower-cased service name (Consul's service_ttl).
    service_ttls: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    # Other zones go to these "host:port" resolvers; empty means answer REFUSED.
    upstreams: tuple[str, ...] = ()
    max_udp_size: int = 4096  # the largest EDNS0 payload we honour
    # Address served for ns.dns.<zone>, the NS target of every zone apex (the server's advertised address).
    ns_address: str = "127.0.0.1"
