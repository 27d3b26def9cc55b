"""Shared pieces of answer building: the per-query context, results and record builders."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import permutations
from operator import itemgetter
from typing import Final, TypeVar

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
_T = TypeVar("_T")

# Every order of 2..5 items, as itemgetters: a shuffle of up to 5 records (nearly every answer)
# is one ``rng.random()`` and one C call instead of ``Random.shuffle``'s per-item Python loop.
_SMALL_SHUFFLE: Final = 5
_ORDERS: Final = tuple(
    tuple(itemgetter(*order) for order in permutations(range(n))) if n >= 2 else () for n in range(_SMALL_SHUFFLE + 1)
)


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


def shuffled(rng: random.Random, items: Sequence[_T]) -> Sequence[_T]:
    """``items`` in a uniformly random order (a new sequence; ``items`` is not changed).

    Both answer paths (this core and ``fastpath``) shuffle only through here, so with the same
    random state they pick the same order. Up to 5 items: one draw picks one of the n! orders
    (bias below n!/2**53); more: ``Random.shuffle``. Fewer than 2 items draw nothing.
    """
    n = len(items)
    if n < 2:
        return items
    if n <= _SMALL_SHUFFLE:
        orders = _ORDERS[n]
        return orders[int(rng.random() * len(orders))](items)  # type: ignore[no-any-return]
    out = list(items)
    rng.shuffle(out)
    return out


# Sized for a large registry (one entry per instance, node and cluster address: 30,000 instances
# thrashed the former 8,192 entries on every pass over the view); still bounded, because query
# names (reverse and ``.addr`` names) reach ``ip_of`` too. About 10 MB when full.
_ADDRESS_CACHE: Final = 1 << 16


@lru_cache(maxsize=_ADDRESS_CACHE)
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


@lru_cache(maxsize=_ADDRESS_CACHE)
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
            records.extend(address_record(owner, ip, ttl) for ip in shuffled(ctx.rng, list(found)))
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
        keys = shuffled(rng, list(self._srv))
        answer = [
            RR(self.owner, TYPE_SRV, ttl=self.ttl, rdata=SRV(prio, w if weight is None else weight, port, target))
            for prio, w, port, target in keys
        ]
        order = {key[3]: i for i, key in enumerate(keys)}
        extra = sorted(self._extra, key=lambda item: order[item[0]])
        additional = [address_record(target, ip, self.ttl) for target, ip in extra]
        return Result(answer=answer, additional=additional)
