"""Shared pieces of answer building: the per-query context, results and record builders."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

from dnslib import AAAA, QTYPE, RR, SRV, A, DNSLabel

from dnsserver.config import DnsConfig
from dnsserver.view import Endpoint, RegistryView

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

TYPE_A: Final[int] = QTYPE.A
TYPE_AAAA: Final[int] = QTYPE.AAAA
TYPE_ANY: Final[int] = QTYPE.ANY
TYPE_SRV: Final[int] = QTYPE.SRV
TYPE_TXT: Final[int] = QTYPE.TXT
TYPE_PTR: Final[int] = QTYPE.PTR
TYPE_NS: Final[int] = QTYPE.NS
TYPE_SOA: Final[int] = QTYPE.SOA
_MAX_TTL: Final = 2**31 - 1


@dataclass(slots=True)
class Result:
    """What a resolver found: ``exists=False`` means NXDOMAIN; an empty ``answer`` means NODATA."""

    exists: bool = True
    answer: list[RR] = field(default_factory=list)
    additional: list[RR] = field(default_factory=list)


def nxdomain() -> Result:
    return Result(exists=False)


@dataclass(frozen=True, slots=True)
class Context:
    view: RegistryView
    config: DnsConfig
    rng: random.Random
    qname: DNSLabel  # as received: answer owner names keep the query's case
    qtype: int

    def healthy(self, endpoint: Endpoint) -> bool:
        status = endpoint.status
        return status == "passing" or (status == "warning" and not self.config.only_passing)

    def service_ttl(self, service: str) -> int:
        return clamp_ttl(self.config.service_ttls.get(service.lower(), self.config.consul_ttl))

    def asks(self, rtype: int) -> bool:
        """True for the exact type, and for ANY (used for address types, which ANY answers with)."""
        return self.qtype == rtype or self.qtype == TYPE_ANY


def clamp_ttl(ttl: int) -> int:
    """TTLs are 31-bit; negative or oversized settings would not pack (RFC 2181 section 8)."""
    return max(0, min(int(ttl), _MAX_TTL))


@lru_cache(maxsize=8192)
def ip_of(address: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None


def make_name(*labels: str, zone: str = "") -> DNSLabel | None:
    """``labels`` (one label each) followed by ``zone`` (dotted), as an absolute name; None if invalid."""
    pieces = [*labels, *zone.strip(".").split(".")] if zone.strip(".") else list(labels)
    parts: list[bytes] = []
    for piece in pieces:
        raw = piece.encode("utf-8", "replace")
        if not raw or len(raw) > 63 or b"." in raw:
            return None
        parts.append(raw)
    if not parts or sum(len(p) + 1 for p in parts) - 1 > 253:
        return None
    return DNSLabel(tuple(parts))


@lru_cache(maxsize=8192)
def _address_rdata(address: IPAddress) -> A | AAAA:
    """Rdata objects are never mutated once built, so replies may share them."""
    return A(str(address)) if address.version == 4 else AAAA(str(address))


def address_record(owner: DNSLabel, address: IPAddress, ttl: int) -> RR:
    rtype = TYPE_A if address.version == 4 else TYPE_AAAA
    return RR(owner, rtype, ttl=ttl, rdata=_address_rdata(address))


def address_records(ctx: Context, owner: DNSLabel, addresses: Iterable[str], ttl: int) -> list[RR]:
    """A and/or AAAA records of ``owner`` for the IPs among ``addresses`` (deduplicated, shuffled)."""
    v4: dict[IPAddress, None] = {}
    v6: dict[IPAddress, None] = {}
    for text in addresses:
        ip = ip_of(text)
        if ip is not None:
            (v4 if ip.version == 4 else v6)[ip] = None
    records: list[RR] = []
    for wanted, found in ((TYPE_A, v4), (TYPE_AAAA, v6)):
        if found and ctx.asks(wanted):
            ips = list(found)
            ctx.rng.shuffle(ips)
            records.extend(address_record(owner, ip, ttl) for ip in ips)
    return records


@dataclass(slots=True)
class SrvBuilder:
    """Collects SRV records and their targets' addresses (for ADDITIONAL), without duplicates."""

    owner: DNSLabel
    ttl: int
    _srv: dict[tuple[int, int, int, DNSLabel], None] = field(default_factory=dict)
    _extra: dict[tuple[DNSLabel, IPAddress], None] = field(default_factory=dict)

    def add(self, priority: int, weight: int, port: int, target: DNSLabel, address: str | None = None) -> None:
        self._srv[(priority, max(0, min(weight, 65535)), port, target)] = None
        ip = ip_of(address) if address is not None else None
        if ip is not None:
            self._extra[(target, ip)] = None

    def __len__(self) -> int:
        return len(self._srv)

    def result(self, rng: random.Random, weight: int | None = None) -> Result:
        """Shuffled SRV records; ``weight`` overrides every record's weight when given."""
        keys = list(self._srv)
        rng.shuffle(keys)
        answer = [
            RR(self.owner, TYPE_SRV, ttl=self.ttl, rdata=SRV(prio, w if weight is None else weight, port, target))
            for prio, w, port, target in keys
        ]
        order = {key[3]: i for i, key in enumerate(keys)}
        extra = sorted(self._extra, key=lambda item: order[item[0]])
        additional = [address_record(target, ip, self.ttl) for target, ip in extra]
        return Result(answer=answer, additional=additional)
