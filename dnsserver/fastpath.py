"""Wire-level fast path for cache misses: reply bytes without dnslib objects.

Why: on a miss the answer core (``answers.answer``) plus ``wire.finish`` spends most of its time
constructing range-checked dnslib objects (header, RRs, rdata, labels): 30-200 µs per reply
against 2-10 µs here. The names that make up nearly all uncached traffic have fixed layouts, so
their replies are written directly (every type but ANY, AXFR and IXFR unless said otherwise):

- ``<svc>.service[.<dc>].<domain>``, ``<tag>.<svc>.service[.<dc>].<domain>`` and the RFC 2782
  forms (every spelling ``names.parse_name`` maps to a ``ConsulService``): A, AAAA, SRV, NODATA;
- ``<svc>.<ns>.svc.<zone>`` (``K8sService``): cluster IP or endpoint A/AAAA, SRV per named port;
- ``<hostname>.<svc>.<ns>.svc.<zone>`` (``K8sEndpoint``): the endpoint's A/AAAA and SRV;
- ``_<port>._<proto>.<svc>.<ns>.svc.<zone>`` (``K8sPort``): SRV (other types: NODATA);
- ``<d>.<c>.<b>.<a>.in-addr.arpa`` and 32-nibble ``ip6.arpa`` names we know (``Reverse``): PTR;
- any name that parses to ``NxDomain``, every type but AXFR/IXFR (ANY included, as in the core).

This module decides *what* to answer; ``fastnames.py`` classifies the name (or ``parse_name``
does) and ``fastwire.py`` writes the bytes. The decisions use the same helpers as the answer core
(``ip_of``, the rdata builder, ``make_name`` targets, ``ptr_targets``, ``soa_record``,
``shuffled``), and health filtering, deduplication, TTLs, weights and the ``shuffled`` draws
follow ``answers_consul`` / ``answers_k8s`` / ``answers_reverse`` / ``answers_base`` step by
step, so with the same random state both paths give the same bytes (tests/dnsserver/test_fastpath.py
checks exactly that, on fixed and generated views, and the dnslib parse of both).

Everything else (other names, ANY and zone transfers on them, classes other than IN/ANY,
unsynced views, services whose data the core would refuse to pack, reverse names we do not know)
returns None and goes through the answer core. Per-endpoint facts (health, lower-cased tags,
namespace, parsed address, rdata bytes, Consul SRV target) are computed once per service per view,
the records a name answers (``fastwire.RecordSet``, before the per-query shuffle) once per name
and type, PTR targets once per known address, and kept for the last view seen (views are immutable
and replaced whole, so identity is the key). Only names the view has are remembered, so memory is
bounded by the view's size, not by what clients ask.
"""

from __future__ import annotations

import ipaddress
import random
import struct
import sys
from dataclasses import dataclass
from typing import Any, Final

from dnslib import DNSLabel

from dnsserver import fastwire, wire
from dnsserver.answers import soa_record
from dnsserver.answers_base import Context, IPAddress, clamp_ttl, ip_of, shuffled
from dnsserver.answers_consul import CONSUL_SRV_PRIORITY, _srv_target
from dnsserver.answers_k8s import K8S_SRV_PRIORITY, endpoint_name, service_name
from dnsserver.answers_reverse import ptr_targets
from dnsserver.config import DnsConfig
from dnsserver.fastnames import CONSUL, K8S_ENDPOINT, K8S_PORT, K8S_SERVICE, NX, REVERSE, FastNames, Zone, from_parsed
from dnsserver.fastwire import (
    NO_NAME,
    NO_RECORDS,
    TYPE_A,
    TYPE_AAAA,
    TYPE_PTR,
    TYPE_SOA,
    TYPE_SRV,
    Found,
    RecordSet,
    additional_section,
    address_rdata,
    address_set,
    assemble,
    ptr_records,
    srv_set,
)
from dnsserver.names import parse_name
from dnsserver.view import Endpoint, RegistryView

TYPE_ANY: Final = 255
_REFUSED_TYPES: Final = frozenset({251, 252})  # IXFR, AXFR: REFUSED by the core
_DECLINED_TYPES: Final = frozenset({251, 252, TYPE_ANY})  # left to the core on names that exist
_CLASSES: Final = (1, 255)  # IN, ANY; the core REFUSES others in our zones
_AA_QR: Final = 0x8400
_RD_CD: Final = 0x0110
_TYPE_CLASS = struct.Struct("!HH")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_NS_DNS: Final = (b"ns", b"dns")
_HOSTMASTER: Final = (b"hostmaster",)
_SET_MEMO: Final = 200_000
_MEMO_TYPES: Final = frozenset({TYPE_A, TYPE_AAAA, TYPE_SRV})  # other types are rare: built each time
_NOTHING: Final[Found] = (False, [], b"", 0)  # NXDOMAIN
_NO_DATA: Final[Found] = (True, [], b"", 0)


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


_NO_TAGS: Final[frozenset[str]] = frozenset()


class FastPath:
    def __init__(self, config: DnsConfig) -> None:
        self.config = config
        self._view: RegistryView | None = None
        self._members: dict[str, tuple[Member, ...] | None] = {}
        self._soa: dict[str, tuple[int, tuple[bytes, ...], tuple[bytes, ...], tuple[int, ...]]] = {}
        self._soa_records: dict[tuple[str, int, int, bytes | None, bool], bytes] = {}
        # packed address -> (TTL, PTR target names, whether the answer can be remembered by length)
        self._ptr: dict[bytes, tuple[int, tuple[tuple[bytes, ...], ...], bool]] = {}
        self._ptr_answers: dict[tuple[bytes, int], tuple[bytes, ...]] = {}
        # (kind, names..., qtype) -> what to answer, before this query's shuffle (see ``RecordSet``)
        self._sets: dict[tuple[Any, ...], RecordSet] = {}
        self._labels: dict[bytes, bytes] = {}
        self._names = FastNames(config, config.datacenter)
        self._cluster_ttl = clamp_ttl(config.cluster_ttl)

    def reply(
        self, view: RegistryView, q: wire.Query, rng: random.Random, *, max_size: int, payload: int
    ) -> tuple[bytes, int] | None:
        """(reply bytes, answer records before truncation), or None: use the answer core."""
        if not view.synced or q.qclass not in _CLASSES:
            return None
        if view is not self._view:
            self._use(view)
        qtype = q.qtype
        classified = self._names.classify(q.qname_lower)
        if classified is None:
            classified = from_parsed(
                parse_name(_label(q.labels()), self.config, (self.config.datacenter, view.datacenter))
            )
            if classified is None:
                return None
        kind, zone, args = classified
        question = q.qname + _TYPE_CLASS.pack(qtype, q.qclass)
        found: Found | None
        if kind == NX:
            if qtype in _REFUSED_TYPES:
                return None
            found = _NOTHING
        elif qtype in _DECLINED_TYPES:
            return None
        elif kind == REVERSE:
            found = self._reverse(view, args[0], qtype, q, question)
        else:
            if kind == CONSUL:
                picked = self._consul(view, args[0], args[1], qtype)
            elif kind == K8S_SERVICE:
                picked = self._k8s_service(view, args[0], args[1], qtype)
            elif kind == K8S_PORT:
                picked = self._k8s_port(view, args, qtype)
            else:
                picked = self._k8s_endpoint(view, args[0], args[1], args[2], qtype)
            if picked is None:
                return None
            found = self._answer(picked, rng, q, question)
            if kind == K8S_PORT and qtype != TYPE_SRV and found[0]:
                found = _NO_DATA  # the SRV set exists; its shuffle was drawn all the same, as in the core
        if found is None:
            return None
        exists, answers, additional, additional_count = found
        head = _AA_QR | (q.flags & _RD_CD) | (wire.NOERROR if exists else wire.NXDOMAIN)
        opt = b""
        if q.edns is not None:
            opt = b"\x00" + _RR_FIXED.pack(wire.OPT_TYPE, payload, 0x8000 if q.edns.do else 0, 0)
        authority = b"" if answers else self._soa_bytes(view, zone, q.labels(), question)
        data = assemble(q.id, head, question, answers, authority, additional, additional_count, opt, max_size)
        return data, len(answers)

    @staticmethod
    def _answer(records: RecordSet, rng: random.Random, q: wire.Query, question: bytes) -> Found:
        """This query's answer from a record set: the core's shuffle (same draws), Additional in target order.

        The Additional section is written for each query: it is compressed against the question as
        spelled, so remembering it would mean remembering per question, i.e. a second answer cache.
        """
        rrs = records.records
        if not records.targets:  # addresses (or nothing)
            return records.exists, list(shuffled(rng, rrs)), b"", 0
        order = fastwire.order(records, rng)
        answers = [rrs[i] for i in order]
        extra = records.extra
        if not extra:
            return True, answers, b"", 0
        section = additional_section(records, order, q.labels(), question, sum(map(len, rrs)))
        return True, answers, section, len(extra)

    def _use(self, view: RegistryView) -> None:
        """Forget what was computed for the previous view."""
        self._view, self._members, self._soa, self._sets, self._ptr = view, {}, {}, {}, {}
        self._soa_records, self._ptr_answers, self._labels = {}, {}, {}
        if view.datacenter != self._names.view_dc:
            self._names = FastNames(self.config, view.datacenter)

    def _remember(self, key: tuple[Any, ...], records: RecordSet) -> None:
        """Keep a record set for this view (callers pass only keys made of the view's own names)."""
        if len(self._sets) >= _SET_MEMO:  # a bound for views with very many names; refilled on demand
            self._sets.clear()
        self._sets[key] = records

    # --- record sets, step for step as answers_consul / answers_k8s / answers_reverse ---
    # Each kind's method picks what to answer (a record set, no random draws; None: the core
    # answers), memoised per view for the address and SRV types; ``_answer`` then draws this
    # query's order exactly as the core does. Only names of the view are remembered: client-chosen
    # services, tags, namespaces, hosts, ports and types must not grow the tables.

    def _consul(self, view: RegistryView, service: str, tag: str | None, qtype: int) -> RecordSet | None:
        key = (CONSUL, service, tag, qtype)
        records = self._sets.get(key)
        if records is not None:
            return records
        members = self._members_of(view, service)
        if members is None:
            return None
        healthy = [m for m in members if m.healthy and (tag is None or tag in m.tags)]
        records = self._consul_set(service, healthy, qtype)
        if members and (tag is None or healthy) and qtype in _MEMO_TYPES:
            self._remember(key, records)
        return records

    def _consul_set(self, service: str, healthy: list[Member], qtype: int) -> RecordSet:
        if not healthy:
            return NO_NAME  # Consul: no healthy instance -> NXDOMAIN
        config = self.config
        ttl = clamp_ttl(config.service_ttls.get(service.lower(), config.consul_ttl))
        if qtype == TYPE_SRV:
            entries = [
                (m.srv_weight, m.endpoint.port, m.srv_target, m.key, m.rdata)
                for m in healthy
                if m.srv_target is not None
            ]
            return srv_set(entries, CONSUL_SRV_PRIORITY, None, ttl)
        return address_set([(m.key, m.rdata) for m in healthy], qtype, ttl)

    def _namespace_members(self, view: RegistryView, service: str, namespace: str) -> list[Member] | None:
        members = self._members_of(view, service)
        return None if members is None else [m for m in members if m.namespace == namespace]

    def _k8s_service(self, view: RegistryView, service: str, namespace: str, qtype: int) -> RecordSet | None:
        key = (K8S_SERVICE, service, namespace, qtype)
        records = self._sets.get(key)
        if records is not None:
            return records
        mine = self._namespace_members(view, service, namespace)
        if mine is None:
            return None
        built = self._k8s_service_set(mine, service, namespace, qtype)
        if built is None:
            return None
        if mine and qtype in _MEMO_TYPES:
            self._remember(key, built)
        return built

    def _k8s_service_set(self, mine: list[Member], service: str, namespace: str, qtype: int) -> RecordSet | None:
        if not mine:
            return NO_NAME
        ttl = self._cluster_ttl
        cluster_ip = _cluster_ip(mine)
        if cluster_ip is not None:  # answered even with no ready endpoint (CoreDNS)
            if qtype == TYPE_SRV:
                return self._cluster_srv_set(mine, cluster_ip, service, namespace, None)
            again = ip_of(str(cluster_ip))  # the core re-parses the text form; keep its exact value
            if again is None:  # pragma: no cover - the text form of a parsed address parses
                return None
            return address_set([(again.packed, address_rdata(again))], qtype, ttl)
        ready = [m for m in mine if m.healthy]
        if not ready:
            return NO_NAME  # headless with no ready endpoint
        if qtype == TYPE_SRV:
            return self._endpoint_srv_set(ready, service, namespace, None)
        return address_set([(m.key, m.rdata) for m in ready], qtype, ttl)

    def _k8s_endpoint(
        self, view: RegistryView, hostname: str, service: str, namespace: str, qtype: int
    ) -> RecordSet | None:
        key = (K8S_ENDPOINT, hostname, service, namespace, qtype)
        records = self._sets.get(key)
        if records is not None:
            return records
        mine = self._namespace_members(view, service, namespace)
        if mine is None:
            return None
        matching = [m for m in mine if m.healthy and m.endpoint.hostname.lower() == hostname]
        if not matching:
            return NO_NAME
        if qtype == TYPE_SRV:
            records = self._endpoint_srv_set(matching, service, namespace, None)
        else:
            records = address_set([(m.key, m.rdata) for m in matching], qtype, self._cluster_ttl)
        if qtype in _MEMO_TYPES:
            self._remember(key, records)
        return records

    def _k8s_port(self, view: RegistryView, args: tuple[str, str, str, str], qtype: int) -> RecordSet | None:
        """The SRV set of ``_<port>._<proto>.<svc>.<ns>``, whatever the type (the caller answers NODATA)."""
        key = (K8S_PORT, *args)
        records = self._sets.get(key)
        if records is not None:
            return records
        port, protocol, service, namespace = args
        mine = self._namespace_members(view, service, namespace)
        if mine is None:
            return None
        cluster_ip = _cluster_ip(mine)
        if cluster_ip is not None:
            records = self._cluster_srv_set(mine, cluster_ip, service, namespace, (port, protocol))
        else:
            ready = [m for m in mine if m.healthy]
            records = self._endpoint_srv_set(ready, service, namespace, (port, protocol))
        if not records.records:
            return NO_NAME
        self._remember(key, records)
        return records

    def _endpoint_srv_set(
        self, ready: list[Member], service: str, namespace: str, port: tuple[str, str] | None
    ) -> RecordSet:
        """One SRV per (ready endpoint x matching named port), target the endpoint's name."""
        ctx = self._context()
        entries = []
        for m in ready:
            target = endpoint_name(ctx, m.endpoint, service, namespace)
            if target is not None:
                labels = self._shared(target.label)
                entries += [(0, number, labels, m.key, m.rdata) for number in _ports(m, port)]
        return srv_set(entries, K8S_SRV_PRIORITY, _k8s_weight, self._cluster_ttl)

    def _cluster_srv_set(
        self, members: list[Member], cluster_ip: IPAddress, service: str, namespace: str, port: tuple[str, str] | None
    ) -> RecordSet:
        """One SRV per named port of the service, target the service name (``answers_k8s._cluster_srv``)."""
        target = service_name(self._context(), service, namespace)
        if target is None:
            return NO_RECORDS
        ip = ip_of(str(cluster_ip))
        if ip is None:  # pragma: no cover - the text form of a parsed address parses
            return NO_RECORDS
        labels, key, rdata = self._shared(target.label), ip.packed, address_rdata(ip)
        entries = [(0, number, labels, key, rdata) for m in members for number in _ports(m, port)]
        return srv_set(entries, K8S_SRV_PRIORITY, _k8s_weight, self._cluster_ttl)

    def _reverse(self, view: RegistryView, packed: bytes, qtype: int, q: wire.Query, question: bytes) -> Found | None:
        """PTR records of a known address (``answers_reverse.reverse``); None when unknown (not ours)."""
        known = self._ptr.get(packed)
        if known is None:
            targets = ptr_targets(self._context(view), ipaddress.ip_address(packed))
            if not targets:
                return None  # the core says "not ours" too: forward or REFUSED (client-chosen: not remembered)
            names = tuple(self._shared(name.label) for name in targets)
            # With no target in the reverse zone, nothing in the answer can point into the question,
            # so its bytes depend only on where it starts: remembered per question length too.
            known = min(targets.values()), names, all(name[-1:] != (b"arpa",) for name in names)
            self._ptr[packed] = known
        if qtype != TYPE_PTR:
            return _NO_DATA
        ttl, names, standalone = known
        memo_key = (packed, len(q.qname))
        answers = self._ptr_answers.get(memo_key) if standalone else None
        if answers is None:
            answers = ptr_records(q.labels(), question, names, ttl)
            if standalone:
                self._ptr_answers[memo_key] = answers
        return True, list(answers), b"", 0

    def _context(self, view: RegistryView | None = None) -> Context:
        """A context for the core's name helpers (no query: they read only view and config)."""
        return Context(view or self._view or RegistryView(), self.config, random.Random(0), DNSLabel(()), TYPE_SRV)

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
        ctx = self._context(view)
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
            address_rdata(cluster_ip)  # fail now (fall back) rather than while answering
        target = _srv_target(ctx, ep)
        namespace = ep.namespace.lower()
        return Member(
            endpoint=ep,
            healthy=status == "passing" or (status == "warning" and not config.only_passing),
            tags=frozenset(t.lower() for t in ep.tags) if ep.tags else _NO_TAGS,
            namespace=sys.intern(namespace),
            cluster_ip=cluster_ip,
            address=address,
            key=address.packed if address is not None else b"",
            # address_rdata raises for what dnslib cannot pack (e.g. a scoped IPv6 "fe80::1%eth0"): then the
            # whole service goes to the core, which fails or copes exactly as it always did.
            rdata=address_rdata(address) if address is not None else b"",
            srv_target=None if target is None else self._shared(target.label),
            srv_weight=max(0, min(ep.weight_warning if status == "warning" else ep.weight_passing, 65535)),
        )

    def _shared(self, labels: tuple[bytes, ...]) -> tuple[bytes, ...]:
        """``labels`` with one bytes object per distinct label (targets repeat zone and datacenter labels)."""
        table = self._labels
        return tuple([table.setdefault(label, label) for label in labels])

    def _soa_bytes(self, view: RegistryView, zone: Zone, labels: tuple[bytes, ...], question: bytes) -> bytes:
        """The zone SOA record as ``wire.pack_message`` writes it right after this question.

        The zone is ``zone`` (name, label count), owned by the question's last labels (as spelled).
        The record's bytes depend only on where the zone starts (the question's length) and on
        which of its names compress into the question: the zone or its last labels (as far as the
        question spells them in lower case), ``dns.<zone>`` or ``ns.dns.<zone>`` (for MNAME) and
        ``hostmaster.<zone>`` (RNAME) just before it. They are remembered by exactly that (a
        handful of keys per zone, whatever the names asked), so no client-chosen label is part of a key.
        """
        zone_name, origin_len = zone
        soa = self._soa.get(zone_name)
        if soa is None:
            soa = self._soa_fields(view, zone_name, labels)
        ttl, mname, rname, times = soa
        zone_labels = mname[2:]
        if mname[:2] != _NS_DNS or rname[1:] != zone_labels or rname[:1] != _HOSTMASTER:  # pragma: no cover
            return fastwire.soa_record(labels, question, origin_len, ttl, mname, rname, times)  # make_name fell back
        n = len(labels) - origin_len
        lower = 0  # how many of the zone's labels, from the right, the question spells in lower case
        while lower < origin_len and labels[-1 - lower] == zone_labels[-1 - lower]:
            lower += 1
        before = labels[n - 1] if n >= 1 else None
        memo_key = (
            zone_name,
            len(question),
            lower,
            before if before == b"dns" or before == b"hostmaster" else None,
            before == b"dns" and n >= 2 and labels[n - 2] == b"ns",
        )
        record = self._soa_records.get(memo_key)
        if record is None:
            record = fastwire.soa_record(labels, question, origin_len, ttl, mname, rname, times)
            self._soa_records[memo_key] = record
        return record

    def _soa_fields(
        self, view: RegistryView, zone_name: str, labels: tuple[bytes, ...]
    ) -> tuple[int, tuple[bytes, ...], tuple[bytes, ...], tuple[int, ...]]:
        """(TTL, MNAME, RNAME, the five times) of the zone's SOA, from the core's ``soa_record``."""
        parsed = parse_name(_label(labels), self.config, (self.config.datacenter, view.datacenter))
        if parsed is None or parsed.zone_name != zone_name:  # pragma: no cover - FastNames agrees
            raise RuntimeError("fast classifier and parse_name disagree on the zone")
        ctx = Context(view, self.config, random.Random(0), DNSLabel(labels), TYPE_SOA)
        rr = soa_record(ctx, parsed)
        fields = (rr.ttl, tuple(rr.rdata.mname.label), tuple(rr.rdata.rname.label), tuple(rr.rdata.times))
        self._soa[zone_name] = fields
        return fields


def _label(labels: tuple[bytes, ...]) -> DNSLabel:
    """A DNSLabel of already-split labels, without DNSLabel's parsing constructor."""
    name = DNSLabel.__new__(DNSLabel)
    name.label = labels
    return name


def _cluster_ip(members: list[Member]) -> IPAddress | None:
    """``answers_k8s._cluster_ip``: the first member's parsable cluster IP."""
    for m in members:
        if m.cluster_ip is not None:
            return m.cluster_ip
    return None


def _ports(member: Member, port: tuple[str, str] | None) -> list[int]:
    """Numbers of ``member``'s named ports matching ``port`` (name, protocol); all of them for None."""
    return [p.port for p in member.endpoint.named_ports() if port is None or (p.name.lower(), p.protocol) == port]


def _k8s_weight(count: int) -> int:
    """CoreDNS weights: floor(100 / number of SRV records)."""
    return 100 // count if count else 0
