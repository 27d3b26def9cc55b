"""Wire-level fast path for the commonest cache misses: reply bytes without dnslib objects.

Why: on a miss the answer core (``answers.answer``) plus ``wire.finish`` spends most of its time
constructing range-checked dnslib objects (header, RRs, rdata, labels). For the names that make
up nearly all uncached traffic the reply is a fixed layout, so it is written here directly:

- ``<svc>.service[.<dc>].<domain>`` and ``<tag>.<svc>.service[.<dc>].<domain>`` (every spelling
  ``names.parse_name`` maps to a ``ConsulService``): A, AAAA and SRV;
- ``<svc>.<ns>.svc.<zone>`` (``K8sService``): A and AAAA;
- any name that parses to ``NxDomain``: every type (the answer core ignores the type there).

Names are classified by ``names.parse_name`` itself, and records come from the same helpers the
answer core uses (``ip_of``, the rdata builder, ``make_name`` targets, ``soa_record``), so the
two paths cannot disagree about *what* to answer; this module only replaces the packing. Health
filtering, deduplication, TTLs and the ``rng.shuffle`` calls follow ``answers_consul`` /
``answers_k8s`` / ``answers_base`` step by step, so with the same random state both paths give
the same bytes (tests/dnsserver/test_fastpath.py checks exactly that, and the dnslib parse).

Layout and rules mirror ``wire.finish`` over ``wire.pack_message``: header (ID, QR, AA, RD and CD
copied, RA clear), the question as received, answers owned by the question name (pointer 0xC00C),
SOA in Authority for NXDOMAIN/NODATA, SRV targets' addresses in Additional, then the OPT RR when
the query had one. Too large: drop Additional (keep OPT) without TC; still too large: set TC,
empty Authority, keep the longest prefix of answers that fits.

Everything else (other names and types, ANY, classes other than IN/ANY, unsynced views, services
whose data the core would refuse to pack) returns None and goes through the answer core.
Per-endpoint facts (health, lower-cased tags, namespace, parsed address, rdata bytes, SRV target)
are computed once per service per view and kept for the last view seen (views are immutable and
replaced whole, so identity is the key; memory is bounded by the view's size).
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import Final

from dnslib import DNSLabel

from dnsserver import wire
from dnsserver.answers import soa_record
from dnsserver.answers_base import Context, IPAddress, _address_rdata, clamp_ttl, ip_of
from dnsserver.answers_consul import CONSUL_SRV_PRIORITY, _srv_target
from dnsserver.config import DnsConfig
from dnsserver.names import _CONSUL_KINDS, ConsulService, K8sService, NxDomain, _split, _zones, parse_name
from dnsserver.view import Endpoint, RegistryView

TYPE_A: Final = 1
TYPE_SOA: Final = 6
TYPE_AAAA: Final = 28
TYPE_SRV: Final = 33
_REFUSED_TYPES: Final = frozenset({251, 252})  # IXFR, AXFR: REFUSED by the core
_CLASSES: Final = (1, 255)  # IN, ANY; the core REFUSES others in our zones
_AA_QR: Final = 0x8400
_RD_CD: Final = 0x0110
_TC: Final = 0x0200
_HEADER = struct.Struct("!6H")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_SRV_FIXED = struct.Struct("!HHH")
_TYPE_CLASS = struct.Struct("!HH")
_SOA_TIMES = struct.Struct("!IIIII")
_OWNER_IS_QNAME: Final = b"\xc0\x0c"  # compression pointer to the question name (offset 12)


@dataclass(frozen=True, slots=True)
class Member:
    """What the fast path needs of one endpoint, computed once per view."""

    endpoint: Endpoint
    healthy: bool
    tags: frozenset[str]  # lower-cased
    namespace: str  # lower-cased
    cluster_ip: IPAddress | None  # parsed ``k8s-cluster-ip`` (None: absent or not an IP)
    address: IPAddress | None  # parsed ``address`` (None: a host name)
    key: bytes  # ``address.packed`` (4 or 16 bytes; empty when None): equal keys <=> equal addresses
    rdata: bytes  # A/AAAA rdata of ``address`` (empty when it is None)
    srv_target: tuple[bytes, ...] | None  # Consul SRV target labels (None: no valid target)
    srv_weight: int


class FastPath:
    def __init__(self, config: DnsConfig) -> None:
        self.config = config
        self._view: RegistryView | None = None
        self._members: dict[str, tuple[Member, ...] | None] = {}
        self._soa: dict[str, tuple[int, tuple[bytes, ...], tuple[bytes, ...], tuple[int, ...]]] = {}
        self._names = FastNames(config, config.datacenter)
        # (service, qtype) -> (name exists, records before the shuffle) for untagged Consul A/AAAA
        self._records: dict[tuple[str, int], tuple[bool, tuple[bytes, ...]]] = {}

    def reply(
        self, view: RegistryView, q: wire.Query, rng: random.Random, *, max_size: int, payload: int
    ) -> tuple[bytes, int] | None:
        """(reply bytes, answer records before truncation), or None: use the answer core."""
        if not view.synced or q.qclass not in _CLASSES:
            return None
        qtype = q.qtype
        if view is not self._view:
            self._view, self._members, self._soa, self._records = view, {}, {}, {}
            if view.datacenter != self._names.view_dc:
                self._names = FastNames(self.config, view.datacenter)
        labels = q.labels()
        fast = self._names.classify(q.qname_lower)
        if fast is None:
            qname = DNSLabel.__new__(DNSLabel)
            qname.label = labels
            parsed = parse_name(qname, self.config, (self.config.datacenter, view.datacenter))
            if parsed is None:
                return None
            query: object = parsed.query
        else:
            query, parsed = fast[0], None
        if isinstance(query, ConsulService) and qtype in (TYPE_A, TYPE_AAAA, TYPE_SRV):
            found = self._consul(view, query, qtype, rng)
        elif isinstance(query, K8sService) and qtype in (TYPE_A, TYPE_AAAA):
            found = self._k8s(view, query, qtype, rng)
        elif isinstance(query, NxDomain) and qtype not in _REFUSED_TYPES:
            found = (False, [], [])
        else:
            return None
        if found is None:
            return None
        exists, answers, additional = found
        head = _AA_QR | (q.flags & _RD_CD) | (wire.NOERROR if exists else wire.NXDOMAIN)
        question = q.qname + _TYPE_CLASS.pack(qtype, q.qclass)
        opt = b""
        if q.edns is not None:
            opt = b"\x00" + _RR_FIXED.pack(wire.OPT_TYPE, payload, 0x8000 if q.edns.do else 0, 0)
        if answers:
            authority = b""
        elif parsed is not None:
            authority = self._soa_bytes(view, parsed.zone_name, len(parsed.origin.label), labels, question)
        else:
            assert fast is not None
            authority = self._soa_bytes(view, fast[1], fast[2], labels, question)
        data = _assemble(q.id, head, labels, question, answers, authority, additional, opt, max_size)
        return data, len(answers)

    # --- record sets, step for step as answers_consul.service / answers_k8s.service ---

    def _consul(
        self, view: RegistryView, query: ConsulService, qtype: int, rng: random.Random
    ) -> tuple[bool, list[bytes], list[tuple[tuple[bytes, ...], bytes]]] | None:
        tag = query.tag
        if tag is None and qtype != TYPE_SRV:  # the commonest miss: the records come from a per-view memo
            memo_key = (query.service, qtype)
            memo = self._records.get(memo_key)
            if memo is None:
                members = self._members_of(view, query.service)
                if members is None:
                    return None
                memo = self._untagged(query.service, members, qtype)
                if members:  # only services the view has: client-chosen names must not grow the table
                    self._records[memo_key] = memo
            records = list(memo[1])
            if len(records) > 1:  # shuffling fewer draws nothing from rng, as in the core
                rng.shuffle(records)
            return memo[0], records, []
        members = self._members_of(view, query.service)
        if members is None:
            return None
        healthy = [m for m in members if m.healthy and (tag is None or tag in m.tags)]
        if not healthy:
            return False, [], []
        config = self.config
        ttl = clamp_ttl(config.service_ttls.get(query.service.lower(), config.consul_ttl))
        if qtype == TYPE_SRV:
            return True, *_srv(healthy, ttl, rng)
        return True, _addresses([(m.key, m.rdata) for m in healthy], qtype, ttl, rng), []

    def _untagged(self, service: str, members: tuple[Member, ...], qtype: int) -> tuple[bool, tuple[bytes, ...]]:
        """(name exists, A/AAAA records before the shuffle) of an untagged Consul service query."""
        healthy = [m for m in members if m.healthy]
        if not healthy:
            return False, ()
        config = self.config
        ttl = clamp_ttl(config.service_ttls.get(service.lower(), config.consul_ttl))
        return True, tuple(_address_records([(m.key, m.rdata) for m in healthy], qtype, ttl))

    def _k8s(
        self, view: RegistryView, query: K8sService, qtype: int, rng: random.Random
    ) -> tuple[bool, list[bytes], list[tuple[tuple[bytes, ...], bytes]]] | None:
        members = self._members_of(view, query.service)
        if members is None:
            return None
        mine = [m for m in members if m.namespace == query.namespace]
        if not mine:
            return False, [], []
        ttl = clamp_ttl(self.config.cluster_ttl)
        cluster_ip = next((m.cluster_ip for m in mine if m.cluster_ip is not None), None)
        if cluster_ip is not None:  # answered even with no ready endpoint (CoreDNS)
            again = ip_of(str(cluster_ip))  # the core re-parses the text form; keep its exact value
            if again is None:
                return None
            return True, _addresses([(again.packed, _rdata(again))], qtype, ttl, rng), []
        ready = [m for m in mine if m.healthy]
        if not ready:
            return False, [], []
        return True, _addresses([(m.key, m.rdata) for m in ready], qtype, ttl, rng), []

    def _members_of(self, view: RegistryView, service: str) -> tuple[Member, ...] | None:
        """Members of ``service`` (empty when unknown); None when the core must answer it."""
        try:
            return self._members[service]
        except KeyError:
            pass
        endpoints = view.services.get(service)
        if not endpoints:
            return ()  # not remembered: client-chosen names must not grow the table
        members: tuple[Member, ...] | None
        ctx = Context(view, self.config, random.Random(0), DNSLabel(()), TYPE_SRV)  # for _srv_target only
        try:
            members = tuple(self._member(ctx, ep) for ep in endpoints)
        except Exception:  # data the core would fail on (e.g. an address dnslib cannot pack)
            members = None
        self._members[service] = members
        return members

    def _member(self, ctx: Context, ep: Endpoint) -> Member:
        config = self.config
        status = ep.status
        if not 0 <= ep.port <= 65535:
            raise ValueError("port out of range")  # dnslib's SRV would refuse it: let the core answer
        address = ip_of(ep.address)
        cluster_ip = ip_of(ep.cluster_ip) if ep.cluster_ip else None
        if cluster_ip is not None:
            _rdata(cluster_ip)  # fail now (fall back) rather than while answering
        target = _srv_target(ctx, ep)
        return Member(
            endpoint=ep,
            healthy=status == "passing" or (status == "warning" and not config.only_passing),
            tags=frozenset(t.lower() for t in ep.tags),
            namespace=ep.namespace.lower(),
            cluster_ip=cluster_ip,
            address=address,
            key=address.packed if address is not None else b"",
            # _rdata raises for what dnslib cannot pack (e.g. a scoped IPv6 "fe80::1%eth0"): then the
            # whole service goes to the core, which fails or copes exactly as it always did.
            rdata=_rdata(address) if address is not None else b"",
            srv_target=None if target is None else tuple(target.label),
            srv_weight=max(0, min(ep.weight_warning if status == "warning" else ep.weight_passing, 65535)),
        )

    def _soa_bytes(
        self, view: RegistryView, zone_name: str, origin_len: int, labels: tuple[bytes, ...], question: bytes
    ) -> bytes:
        """The zone SOA record as ``wire.pack_message`` writes it right after this question.

        The zone is ``zone_name``, owned by the last ``origin_len`` labels of the question (as spelled).
        """
        cached = self._soa.get(zone_name)
        if cached is None:
            qname = DNSLabel.__new__(DNSLabel)
            qname.label = labels
            parsed = parse_name(qname, self.config, (self.config.datacenter, view.datacenter))
            if parsed is None or parsed.zone_name != zone_name:  # pragma: no cover - FastNames agrees
                raise RuntimeError("fast classifier and parse_name disagree on the zone")
            ctx = Context(view, self.config, random.Random(0), DNSLabel(labels), TYPE_SOA)
            rr = soa_record(ctx, parsed)
            cached = (rr.ttl, tuple(rr.rdata.mname.label), tuple(rr.rdata.rname.label), tuple(rr.rdata.times))
            self._soa[zone_name] = cached
        ttl, mname, rname, times = cached
        data = bytearray(wire.HEADER_LEN)
        names = _question_names(data, labels, question)
        start = len(data)
        wire._encode_name(data, names, labels[len(labels) - origin_len :])
        data += _RR_FIXED.pack(TYPE_SOA, 1, ttl, 0)
        rdata_at = len(data)
        wire._encode_name(data, names, mname)
        wire._encode_name(data, names, rname)
        data += _SOA_TIMES.pack(*times)
        struct.pack_into("!H", data, rdata_at - 2, len(data) - rdata_at)
        return bytes(data[start:])


_NX: Final = NxDomain()
_CONSUL_KINDS_B: Final = frozenset(k.encode() for k in _CONSUL_KINDS)
Classified = tuple[ConsulService | K8sService | NxDomain, str, int]  # (query, zone name, zone's label count)


class FastNames:
    """A quick classifier for the names the fast path serves, on the lower-cased wire name.

    ``classify`` recognises ``<svc>.service[.<dc>].<domain>``, ``<tag>.<svc>.service[.<dc>].<domain>``
    (and the NXDOMAIN of a foreign datacenter there) and ``<svc>.<ns>.svc.<cluster_domain>``; for
    anything else it returns None and the caller asks ``names.parse_name``, which stays the single
    source of truth: whenever ``classify`` answers, it is what ``parse_name`` returns for the same
    name, config and datacenters (tests/dnsserver/test_fastnames.py checks that with hypothesis).
    Built once per config and view datacenter (the datacenter set is computed here, not per query).
    """

    __slots__ = ("_cluster", "_cluster_n", "_cluster_zone", "_consul", "_consul_n", "_consul_zone", "_dcs", "view_dc")

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
        self._consul_n, self._consul_zone = len(consul), ".".join(consul)
        self._cluster_n, self._cluster_zone = len(cluster), ".".join(cluster)

    def classify(self, qname_lower: bytes) -> Classified | None:
        if not qname_lower.isascii():
            return None
        suffix = self._consul
        consul = suffix is not None and qname_lower.endswith(suffix)
        if not consul:
            suffix = self._cluster
            if suffix is None or not qname_lower.endswith(suffix):
                return None
        assert suffix is not None
        boundary = len(qname_lower) - len(suffix)  # where the zone's first length octet must be
        rest = []
        pos = 0
        while pos < boundary:
            n = qname_lower[pos]
            rest.append(qname_lower[pos + 1 : pos + 1 + n])
            pos += 1 + n
            if len(rest) > 4:
                return None
        if pos != boundary:
            return None  # the suffix match is not on a label boundary
        n = len(rest)
        if not consul:
            if n == 3 and rest[2] == b"svc":
                return K8sService(rest[0].decode(), rest[1].decode()), self._cluster_zone, self._cluster_n
            return None
        if n < 2:
            return None
        last = rest[-1]
        if last == b"service":
            prefix = rest[:-1]
        elif n >= 3 and rest[-2] == b"service" and last not in _CONSUL_KINDS_B:
            if last not in self._dcs:
                return _NX, self._consul_zone, self._consul_n
            prefix = rest[:-2]
        else:
            return None
        if len(prefix) == 1:
            return ConsulService(prefix[0].decode()), self._consul_zone, self._consul_n
        if len(prefix) == 2 and not (prefix[0][:1] == b"_" and prefix[1][:1] == b"_"):
            return ConsulService(prefix[1].decode(), prefix[0].decode()), self._consul_zone, self._consul_n
        return None


def _wire(labels: tuple[str, ...]) -> bytes:
    """``labels`` as the tail of a wire name: each length-prefixed, then the root's 0."""
    return b"".join(bytes([len(label)]) + label.encode("ascii") for label in labels) + b"\x00"


def _rdata(ip: IPAddress) -> bytes:
    """A/AAAA rdata bytes exactly as ``wire.pack_message`` writes the core's rdata object."""
    return bytes(_address_rdata(ip).data)


def _question_names(data: bytearray, labels: tuple[bytes, ...], question: bytes) -> dict[tuple[bytes, ...], int]:
    """Append the question to ``data`` (a bare header) and return the compression table it leaves."""
    names: dict[tuple[bytes, ...], int] = {}
    wire._encode_name(data, names, labels)
    data += question[-4:]
    return names


def _addresses(found: list[tuple[bytes, bytes]], qtype: int, ttl: int, rng: random.Random) -> list[bytes]:
    """``answers_base.address_records`` for A or AAAA: dedupe by address, shuffle, pack.

    ``found`` holds (packed address, rdata) pairs; the packed form's length tells the family and
    its equality is the addresses' equality (scoped IPv6 addresses never get here: see ``_member``).
    """
    records = _address_records(found, qtype, ttl)
    if len(records) > 1:  # shuffling fewer draws nothing from rng, as in the core
        rng.shuffle(records)
    return records


def _address_records(found: list[tuple[bytes, bytes]], qtype: int, ttl: int) -> list[bytes]:
    """The A or AAAA records of ``_addresses`` in their order before the shuffle."""
    size = 4 if qtype == TYPE_A else 16
    unique: dict[bytes, bytes] = {}
    for key, rdata in found:
        if len(key) == size and key not in unique:
            unique[key] = rdata
    prefix = _OWNER_IS_QNAME + _RR_FIXED.pack(qtype, 1, ttl, size)
    return [prefix + r for r in unique.values()]


def _srv(
    healthy: list[Member], ttl: int, rng: random.Random
) -> tuple[list[bytes], list[tuple[tuple[bytes, ...], bytes]]]:
    """``answers_base.SrvBuilder`` for Consul: SRV answers and the targets' (name, A/AAAA record tail)."""
    keys: dict[tuple[int, int, tuple[bytes, ...]], None] = {}
    extra: dict[tuple[tuple[bytes, ...], bytes], bytes] = {}  # (target, packed address) -> rdata
    for m in healthy:
        target = m.srv_target
        if target is None:
            continue
        keys[(m.srv_weight, m.endpoint.port, target)] = None
        if m.key:
            extra.setdefault((target, m.key), m.rdata)
    order = list(keys)
    rng.shuffle(order)
    answers = []
    for weight, port, target in order:
        rdata = _SRV_FIXED.pack(CONSUL_SRV_PRIORITY, weight, port) + _plain_name(target)
        answers.append(_OWNER_IS_QNAME + _RR_FIXED.pack(TYPE_SRV, 1, ttl, len(rdata)) + rdata)
    position = {key[2]: i for i, key in enumerate(order)}
    additional = []
    for (target, key), rdata in sorted(extra.items(), key=lambda item: position[item[0][0]]):
        rtype = TYPE_A if len(key) == 4 else TYPE_AAAA
        additional.append((target, _RR_FIXED.pack(rtype, 1, ttl, len(rdata)) + rdata))
    return answers, additional


def _plain_name(labels: tuple[bytes, ...]) -> bytes:
    """An uncompressed wire name (SRV targets are never compressed, RFC 2782)."""
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def _assemble(
    qid: int,
    flags: int,
    labels: tuple[bytes, ...],
    question: bytes,
    answers: list[bytes],
    authority: bytes,
    additional: list[tuple[tuple[bytes, ...], bytes]],
    opt: bytes,
    max_size: int,
) -> bytes:
    """The message, with ``wire.finish``'s size rules (see the module doc)."""
    arcount = 1 if opt else 0
    body = b"".join(answers)
    nscount = 1 if authority else 0
    fixed = wire.HEADER_LEN + len(question) + len(body) + len(authority) + len(opt)
    if additional:
        data = bytearray(_HEADER.pack(qid, flags, 1, len(answers), nscount, len(additional) + arcount))
        names = _question_names(data, labels, question)
        data += body
        data += authority
        for owner, tail in additional:
            wire._encode_name(data, names, owner)
            data += tail
        data += opt
        if len(data) <= max_size:
            return bytes(data)
    if fixed <= max_size:
        return _HEADER.pack(qid, flags, 1, len(answers), nscount, arcount) + question + body + authority + opt
    room = max_size - (wire.HEADER_LEN + len(question) + len(opt))
    kept = 0
    for record in answers:  # every record's bytes are independent of the ones after it
        room -= len(record)
        if room < 0:
            break
        kept += 1
    return _HEADER.pack(qid, flags | _TC, 1, kept, 0, arcount) + question + b"".join(answers[:kept]) + opt
