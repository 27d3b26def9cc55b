"""A quick classifier for the names the wire fast path serves (``fastpath.py``), on the wire name.

``names.parse_name`` is the single source of truth for what a query name means; this module only
answers faster for the common shapes (no DNSLabel, no str per label, no dataclass per query) and
returns None for everything else, which the caller then gives to ``parse_name``. Whenever
``FastNames.classify`` answers, its answer is what ``parse_name`` returns for the same name,
config and datacenters (tests/dnsserver/test_fastnames.py checks that with hypothesis).

A classification is ``(kind, zone, fields)``: one of the kinds below with its lower-cased fields,
and the zone as (name as in ``ParsedName.zone_name``, its label count).
"""

from __future__ import annotations

import ipaddress
from typing import Any, Final

from dnsserver.config import DnsConfig
from dnsserver.names import (
    _CONSUL_KINDS,
    REVERSE_V4,
    REVERSE_V6,
    ConsulService,
    K8sEndpoint,
    K8sPort,
    K8sService,
    NxDomain,
    ParsedName,
    Reverse,
    _split,
    _zones,
)

NX: Final = 0  # ()
CONSUL: Final = 1  # (service, tag or None)
K8S_SERVICE: Final = 2  # (service, namespace)
K8S_ENDPOINT: Final = 3  # (hostname, service, namespace)
K8S_PORT: Final = 4  # (port name, protocol, service, namespace)
REVERSE: Final = 5  # (packed address,)
Zone = tuple[str, int]  # (zone name as in ParsedName.zone_name, the zone's label count)
Classified = tuple[int, Zone, tuple[Any, ...]]


def from_parsed(parsed: ParsedName | None) -> Classified | None:
    """``parse_name``'s answer in ``FastNames.classify``'s form (None: not a kind served here)."""
    if parsed is None:
        return None
    query = parsed.query
    zone = (parsed.zone_name, len(parsed.origin.label))
    if isinstance(query, ConsulService):
        return CONSUL, zone, (query.service, query.tag)
    if isinstance(query, K8sService):
        return K8S_SERVICE, zone, (query.service, query.namespace)
    if isinstance(query, K8sEndpoint):
        return K8S_ENDPOINT, zone, (query.hostname, query.service, query.namespace)
    if isinstance(query, K8sPort):
        return K8S_PORT, zone, (query.port, query.protocol, query.service, query.namespace)
    if isinstance(query, Reverse):
        return REVERSE, zone, (ipaddress.ip_address(query.address).packed,)
    if isinstance(query, NxDomain):
        return NX, zone, ()
    return None


_CONSUL_KINDS_B: Final = frozenset(k.encode() for k in _CONSUL_KINDS)
_CLUSTER_SPECIAL: Final = frozenset({b"dns-version", b"svc", b"pod", b"dns"})  # one-label names parse_name keeps
_DIGITS: Final = frozenset(b"0123456789")
_NIBBLES: Final = {c: int(chr(c), 16) for c in b"0123456789abcdef"}


class FastNames:
    """A quick classifier for the names the fast path serves, on the lower-cased wire name.

    ``classify`` recognises, as (kind, zone, fields): ``<svc>.service[.<dc>].<domain>`` and
    ``<tag>.<svc>.service[.<dc>].<domain>`` (and the NXDOMAIN of a foreign datacenter there);
    under the cluster domain ``<svc>.<ns>.svc``, ``<host>.<svc>.<ns>.svc``, ``_<port>._<proto>.<svc>.<ns>.svc``
    and the shapes that are NXDOMAIN there (search-path junk like ``web.ns.svc.cluster.local.ns.svc.<zone>``);
    full ``in-addr.arpa`` / ``ip6.arpa`` names (packed address). For anything else it returns None and
    the caller asks ``names.parse_name``, which stays the single source of truth: whenever
    ``classify`` answers, it is what ``parse_name`` returns for the same name, config and
    datacenters (tests/dnsserver/test_fastnames.py checks that with hypothesis).
    Built once per config and view datacenter (the datacenter set is computed here, not per query).
    """

    __slots__ = ("_cluster", "_cluster_zone", "_consul", "_consul_zone", "_dcs", "_reverse", "view_dc")

    def __init__(self, config: DnsConfig, view_dc: str) -> None:
        self.view_dc = view_dc
        self._dcs = frozenset(dc.lower().encode("utf-8") for dc in (config.datacenter, view_dc))
        zones = [z for _, z in _zones(config.domain, config.cluster_domain)]
        consul, cluster = _split(config.domain), _split(config.cluster_domain)
        # Only when no zone is a suffix of another (no nesting to arbitrate) and all are ASCII.
        usable = all(a == b or a[len(a) - len(b) :] != b for a in zones for b in zones) and all(
            label.isascii() for z in zones for label in z
        )
        self._consul = _wire(consul) if usable and consul else None
        self._cluster = _wire(cluster) if usable and cluster else None
        self._consul_zone: Zone = (".".join(consul), len(consul))
        self._cluster_zone: Zone = (".".join(cluster), len(cluster))
        self._reverse = usable

    def classify(self, qname_lower: bytes) -> Classified | None:
        if not qname_lower.isascii():
            return None
        suffix = self._consul
        consul = suffix is not None and qname_lower.endswith(suffix)
        if not consul:
            suffix = self._cluster
            if suffix is None or not qname_lower.endswith(suffix):
                return self._classify_reverse(qname_lower) if self._reverse else None
        assert suffix is not None
        rest = _split_labels(qname_lower, len(qname_lower) - len(suffix))
        if rest is None:
            return None
        if consul:
            return self._classify_consul(rest)
        return self._classify_cluster(rest)

    def _classify_consul(self, rest: list[bytes]) -> Classified | None:
        n = len(rest)
        if n < 2 or n > 4:
            return None
        last = rest[-1]
        if last == b"service":
            prefix = rest[:-1]
        elif n >= 3 and rest[-2] == b"service" and last not in _CONSUL_KINDS_B:
            if last not in self._dcs:
                return NX, self._consul_zone, ()
            prefix = rest[:-2]
        else:
            return None
        if len(prefix) == 1:
            return CONSUL, self._consul_zone, (prefix[0].decode(), None)
        if len(prefix) == 2 and not (prefix[0][:1] == b"_" and prefix[1][:1] == b"_"):
            return CONSUL, self._consul_zone, (prefix[1].decode(), prefix[0].decode())
        return None

    def _classify_cluster(self, rest: list[bytes]) -> Classified | None:
        """``names._parse_cluster`` for the shapes served here (apex, ns.dns, namespaces: None)."""
        n = len(rest)
        zone = self._cluster_zone
        if n == 0 or (n == 1 and rest[0] in _CLUSTER_SPECIAL) or (n == 2 and rest[0] == b"ns" and rest[1] == b"dns"):
            return None
        if rest[-1] != b"svc" or n > 5:
            return NX, zone, ()
        if n == 3:
            return K8S_SERVICE, zone, (rest[0].decode(), rest[1].decode())
        if n == 4:
            return K8S_ENDPOINT, zone, (rest[0].decode(), rest[1].decode(), rest[2].decode())
        if n == 5:
            port, proto = rest[0], rest[1]
            if port[:1] == b"_" and proto[:1] == b"_" and len(port) > 1 and len(proto) > 1:
                return K8S_PORT, zone, (port[1:].decode(), proto[1:].decode(), rest[2].decode(), rest[3].decode())
            return NX, zone, ()
        return None  # n == 2: a namespace (the core knows which exist)

    @staticmethod
    def _classify_reverse(qname_lower: bytes) -> Classified | None:
        """A full ``in-addr.arpa`` / ``ip6.arpa`` name as ``names._parse_reverse`` reads it."""
        for suffix, v6 in ((_IN_ADDR, False), (_IP6, True)):
            if not qname_lower.endswith(suffix):
                continue
            rest = _split_labels(qname_lower, len(qname_lower) - len(suffix))
            if rest is None:
                return None
            if v6:
                if len(rest) != 32 or not all(len(x) == 1 and x[0] in _NIBBLES for x in rest):
                    return None
                nibbles = [_NIBBLES[x[0]] for x in reversed(rest)]
                packed = bytes(hi << 4 | lo for hi, lo in zip(nibbles[::2], nibbles[1::2], strict=True))
                return REVERSE, _IP6_ZONE, (packed,)
            if len(rest) != 4 or not all(0 < len(x) <= 3 and _DIGITS.issuperset(x) for x in rest):
                return None
            octets = [int(x) for x in reversed(rest)]
            if max(octets) > 255:
                return None
            return REVERSE, _IN_ADDR_ZONE, (bytes(octets),)
        return None


def _split_labels(name: bytes, boundary: int) -> list[bytes] | None:
    """The labels of wire name ``name`` before offset ``boundary``; None unless one starts there."""
    rest = []
    pos = 0
    while pos < boundary:
        n = name[pos]
        rest.append(name[pos + 1 : pos + 1 + n])
        pos += 1 + n
    return rest if pos == boundary else None


def _wire(labels: tuple[str, ...]) -> bytes:
    """``labels`` as the tail of a wire name: each length-prefixed, then the root's 0."""
    return b"".join(bytes([len(label)]) + label.encode("ascii") for label in labels) + b"\x00"


_IN_ADDR: Final = _wire(REVERSE_V4)
_IP6: Final = _wire(REVERSE_V6)
_IN_ADDR_ZONE: Final[Zone] = (".".join(REVERSE_V4), len(REVERSE_V4))
_IP6_ZONE: Final[Zone] = (".".join(REVERSE_V6), len(REVERSE_V6))
