"""Parse a DNS query name into a typed query (pure; no registry access).

Comparisons are ASCII case-insensitive (RFC 4343): labels are lower-cased before matching, and
every name field of a parsed query is lower-case. ``ParsedName.origin`` keeps the zone labels as
they were written in the query so that answers can echo the query's case.

Recognised names (``<domain>`` = ``config.domain``, ``<zone>`` = ``config.cluster_domain``):

Consul (``Zone.CONSUL``), where ``[.<dc>]`` is optional and may also be written ``.<dc>.dc``:
  ``<domain>`` -> ``Apex``; ``ns.dns.<domain>`` -> ``NameServer``;
  ``service|node|addr[.<dc>].<domain>`` and ``dns.<domain>`` -> ``Empty`` (exist, hold no data);
  ``<service>.service[.<dc>]``, ``<tag>.<service>.service[.<dc>]`` -> ``ConsulService``;
  ``_<service>._<tag|tcp|udp>[.service][.<dc>]`` (RFC 2782; ``_tcp``/``_udp`` mean no tag) -> ``ConsulService``;
  ``<node>.node[.<dc>]`` -> ``ConsulNode``; ``<hex-ip>.addr[.<dc>]`` -> ``ConsulAddr``;
  anything else, prepared queries (``.query``), mesh forms (``.connect``/``.ingress``/``.virtual``)
  and a datacenter other than ours -> ``NxDomain``.
Kubernetes (``Zone.CLUSTER``):
  ``<zone>`` -> ``Apex``; ``ns.dns.<zone>`` -> ``NameServer``; ``dns-version.<zone>`` -> ``DnsVersion``;
  ``svc|pod|dns.<zone>`` -> ``Empty``; ``<ns>.svc`` -> ``K8sNamespace``; ``<svc>.<ns>.svc`` -> ``K8sService``;
  ``<hostname>.<svc>.<ns>.svc`` -> ``K8sEndpoint``; ``_<port>._<proto>.<svc>.<ns>.svc`` -> ``K8sPort``;
  anything else (pod records included: ``pods disabled``) -> ``NxDomain``.
Reverse (``Zone.REVERSE``): a full ``<d>.<c>.<b>.<a>.in-addr.arpa`` or 32-nibble ``ip6.arpa`` name
  -> ``Reverse``; partial or malformed reverse names are not parsed (``None``: not ours).
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from dnslib import DNSLabel

from dnsserver.config import DnsConfig

REVERSE_V4: Final = ("in-addr", "arpa")
REVERSE_V6: Final = ("ip6", "arpa")
_HEX: Final = frozenset("0123456789abcdef")
_CONSUL_KINDS: Final = frozenset({"service", "node", "addr", "query", "connect", "ingress", "virtual"})
_NO_TAG: Final = frozenset({"tcp", "udp"})


class Zone(enum.Enum):
    CONSUL = "consul"
    CLUSTER = "cluster"
    REVERSE = "reverse"


@dataclass(frozen=True, slots=True)
class Apex:
    """The zone apex itself: SOA and NS live here."""


@dataclass(frozen=True, slots=True)
class NameServer:
    """``ns.dns.<zone>``: the target of the apex NS record."""


@dataclass(frozen=True, slots=True)
class Empty:
    """A name that exists but owns no records (empty non-terminal): NODATA for every type."""


@dataclass(frozen=True, slots=True)
class NxDomain:
    """In one of our zones, but nothing is (or can be) there."""


@dataclass(frozen=True, slots=True)
class ConsulService:
    service: str
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class ConsulNode:
    node: str


@dataclass(frozen=True, slots=True)
class ConsulAddr:
    address: str  # canonical IPv4/IPv6 text


@dataclass(frozen=True, slots=True)
class DnsVersion:
    pass


@dataclass(frozen=True, slots=True)
class K8sNamespace:
    namespace: str


@dataclass(frozen=True, slots=True)
class K8sService:
    service: str
    namespace: str


@dataclass(frozen=True, slots=True)
class K8sEndpoint:
    hostname: str
    service: str
    namespace: str


@dataclass(frozen=True, slots=True)
class K8sPort:
    port: str  # the port's name, without the leading underscore
    protocol: str  # without the leading underscore
    service: str
    namespace: str


@dataclass(frozen=True, slots=True)
class Reverse:
    address: str  # canonical IPv4/IPv6 text


Query = (
    Apex
    | NameServer
    | Empty
    | NxDomain
    | ConsulService
    | ConsulNode
    | ConsulAddr
    | DnsVersion
    | K8sNamespace
    | K8sService
    | K8sEndpoint
    | K8sPort
    | Reverse
)


@dataclass(frozen=True, slots=True)
class ParsedName:
    zone: Zone
    origin: DNSLabel  # the zone's labels as written in the query (case kept)
    zone_name: str  # the zone, lower-case, no trailing dot (e.g. "consul", "in-addr.arpa")
    query: Query


@lru_cache(maxsize=64)
def _zones(domain: str, cluster_domain: str) -> tuple[tuple[Zone, tuple[str, ...]], ...]:
    """Our zones, longest first, so that a zone nested in another one wins."""
    zones = [
        (Zone.CONSUL, _split(domain)),
        (Zone.CLUSTER, _split(cluster_domain)),
        (Zone.REVERSE, REVERSE_V4),
        (Zone.REVERSE, REVERSE_V6),
    ]
    return tuple(sorted((z for z in zones if z[1]), key=lambda z: -len(z[1])))


def _split(name: str) -> tuple[str, ...]:
    name = name.strip(".").lower()
    return tuple(name.split(".")) if name else ()


def _label_text(label: bytes) -> str:
    return label.lower().decode("utf-8", "replace")


def parse_name(qname: DNSLabel | str, config: DnsConfig, datacenters: Iterable[str] | None = None) -> ParsedName | None:
    """Parse ``qname``; ``None`` when it is in none of our zones (or is an unparseable reverse name).

    ``datacenters`` are the datacenter labels accepted as ours (default: ``config.datacenter``).
    """
    raw = qname.label if isinstance(qname, DNSLabel) else DNSLabel(qname).label
    labels = tuple(_label_text(label) for label in raw)
    for zone, suffix in _zones(config.domain, config.cluster_domain):
        n = len(suffix)
        if len(labels) < n or labels[len(labels) - n :] != suffix:
            continue
        rest = labels[: len(labels) - n]
        origin = DNSLabel(raw[len(raw) - n :])
        zone_name = ".".join(suffix)
        query: Query | None
        if zone is Zone.CONSUL:
            dcs = {config.datacenter.lower()} if datacenters is None else {dc.lower() for dc in datacenters}
            query = _parse_consul(rest, dcs)
        elif zone is Zone.CLUSTER:
            query = _parse_cluster(rest)
        else:
            query = _parse_reverse(rest, v6=suffix == REVERSE_V6)
        return None if query is None else ParsedName(zone, origin, zone_name, query)
    return None


def _parse_consul(labels: tuple[str, ...], datacenters: set[str]) -> Query:
    if not labels:
        return Apex()
    if labels == ("ns", "dns"):
        return NameServer()
    if labels == ("dns",):
        return Empty()
    n = len(labels)
    dc: str | None = None
    if labels[-1] in _CONSUL_KINDS:
        kind_at = n - 1
    elif n >= 2 and labels[-2] in _CONSUL_KINDS:
        kind_at, dc = n - 2, labels[-1]
    elif n >= 3 and labels[-1] == "dc" and labels[-3] in _CONSUL_KINDS:
        kind_at, dc = n - 3, labels[-2]
    elif n in (2, 3) and labels[0].startswith("_") and labels[1].startswith("_"):
        # RFC 2782 without the ".service" label: _<service>._<tag>[.<dc>]
        if n == 3 and labels[2] not in datacenters:
            return NxDomain()
        return _rfc2782(labels[0], labels[1])
    else:
        return NxDomain()
    if dc is not None and dc not in datacenters:
        return NxDomain()
    kind, prefix = labels[kind_at], labels[:kind_at]
    if not prefix:
        return Empty() if kind in ("service", "node", "addr") else NxDomain()
    if kind == "service":
        if len(prefix) == 1:
            return ConsulService(prefix[0]) if prefix[0] else NxDomain()
        if len(prefix) == 2:
            if prefix[0].startswith("_") and prefix[1].startswith("_"):
                return _rfc2782(prefix[0], prefix[1])
            return ConsulService(prefix[1], prefix[0]) if prefix[0] and prefix[1] else NxDomain()
        return NxDomain()
    if kind == "node":
        return ConsulNode(prefix[0]) if len(prefix) == 1 and prefix[0] else NxDomain()
    if kind == "addr" and len(prefix) == 1:
        address = decode_hex_ip(prefix[0])
        return NxDomain() if address is None else ConsulAddr(address)
    return NxDomain()  # prepared queries and mesh forms are not served


def _rfc2782(service_label: str, tag_label: str) -> Query:
    service, tag = service_label[1:], tag_label[1:]
    if not service or not tag:
        return NxDomain()
    return ConsulService(service, None if tag in _NO_TAG else tag)


def _parse_cluster(labels: tuple[str, ...]) -> Query:
    n = len(labels)
    if n == 0:
        return Apex()
    if labels == ("dns-version",):
        return DnsVersion()
    if labels == ("ns", "dns"):
        return NameServer()
    if labels in (("svc",), ("pod",), ("dns",)):
        return Empty()
    if labels[-1] != "svc" or n > 5 or not all(labels):
        return NxDomain()
    if n == 2:
        return K8sNamespace(labels[0])
    if n == 3:
        return K8sService(labels[0], labels[1])
    if n == 4:
        return K8sEndpoint(labels[0], labels[1], labels[2])
    port, proto = labels[0], labels[1]
    if port.startswith("_") and proto.startswith("_") and len(port) > 1 and len(proto) > 1:
        return K8sPort(port[1:], proto[1:], labels[2], labels[3])
    return NxDomain()


def _parse_reverse(labels: tuple[str, ...], *, v6: bool) -> Reverse | None:
    if v6:
        if len(labels) != 32 or not all(len(x) == 1 and x in _HEX for x in labels):
            return None
        packed = bytes.fromhex("".join(reversed(labels)))
        return Reverse(str(ipaddress.IPv6Address(packed)))
    if len(labels) != 4 or not all(x.isascii() and x.isdigit() and len(x) <= 3 for x in labels):
        return None
    octets = [int(x) for x in reversed(labels)]
    if any(o > 255 for o in octets):
        return None
    return Reverse(str(ipaddress.IPv4Address(bytes(octets))))


def decode_hex_ip(label: str) -> str | None:
    """``c000020a`` -> ``192.0.2.10``; 32 hex digits -> IPv6; anything else -> None."""
    if len(label) not in (8, 32) or not all(c in _HEX for c in label):
        return None
    packed = bytes.fromhex(label)
    return str(ipaddress.IPv4Address(packed) if len(packed) == 4 else ipaddress.IPv6Address(packed))


def encode_hex_ip(address: str) -> str | None:
    """The ``<hex-ip>`` label of ``<hex-ip>.addr.<dc>.<domain>`` for an IP address; None if not an IP."""
    try:
        return ipaddress.ip_address(address).packed.hex()
    except ValueError:
        return None
