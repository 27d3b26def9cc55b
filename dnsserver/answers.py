"""Build the authoritative reply to one DNS query from a ``RegistryView`` (pure: no I/O, no clock).

``answer()`` returns ``None`` when the query name is in none of our zones, and for reverse names
of addresses we don't know (like CoreDNS ``fallthrough in-addr.arpa ip6.arpa``): the caller then
forwards or answers REFUSED. Otherwise it returns a complete reply: ID, opcode, RD and CD copied,
the question echoed exactly as received, QR set, RA clear, AA set on answers from our data.
EDNS (OPT) and truncation are the transport's business.

Decisions:
- Opcode other than QUERY -> NOTIMP; a question count other than 1 -> FORMERR (RFC 9619).
- QCLASS other than IN or ANY (CH, HS, NONE) in our zones -> REFUSED (not-ours names -> None first).
- AXFR/IXFR -> REFUSED (no zone transfers, as CoreDNS without the *transfer* plugin).
- ANY (RFC 8482 minimal answer): names with addresses return their A and AAAA records; names whose
  data is of one other type return that RRset (SOA at an apex, TXT for ``dns-version``, SRV for
  ``_<port>._<proto>`` names, PTR for reverse names); other names -> NODATA. No HINFO synthesis.
- NXDOMAIN and NODATA carry the zone SOA in AUTHORITY, TTL = that zone's TTL = SOA MINIMUM (RFC 2308).
  Reverse zones (``in-addr.arpa``/``ip6.arpa``) use the smallest of the Consul, node and cluster TTLs.
- Before the registry's first full read (``view.synced`` false), an NXDOMAIN result becomes SERVFAIL
  (CoreDNS does this before informer sync) so resolvers don't negatively cache names that may exist.
- SRV on a service name returns SRV records (the additional section carries the targets' addresses);
  A/AAAA/ANY return addresses; any other type on an existing name -> NODATA.
"""

from __future__ import annotations

import random

from dnslib import NS, OPCODE, QTYPE, RCODE, RR, SOA, DNSHeader, DNSLabel, DNSRecord

from dnsserver import answers_consul, answers_k8s
from dnsserver.answers_base import (
    TYPE_ANY,
    TYPE_NS,
    TYPE_SOA,
    Context,
    Result,
    address_record,
    address_records,
    clamp_ttl,
    ip_of,
    make_name,
    nxdomain,
)
from dnsserver.answers_reverse import reverse
from dnsserver.config import DnsConfig
from dnsserver.names import (
    Apex,
    ConsulAddr,
    ConsulNode,
    ConsulService,
    DnsVersion,
    Empty,
    K8sEndpoint,
    K8sNamespace,
    K8sPort,
    K8sService,
    NameServer,
    NxDomain,
    ParsedName,
    Reverse,
    Zone,
    parse_name,
)
from dnsserver.view import RegistryView

CLASS_IN = 1
CLASS_ANY = 255  # dnslib spells it CLASS['*']
SOA_REFRESH = 7200
SOA_RETRY = 1800
SOA_EXPIRE = 86400
_REFUSED_TYPES = frozenset({QTYPE.AXFR, QTYPE.IXFR})


def answer(view: RegistryView, request: DNSRecord, config: DnsConfig, rng: random.Random) -> DNSRecord | None:
    """The reply to ``request`` from ``view``, or None when the name is not ours (see module doc)."""
    if request.header.opcode != OPCODE.QUERY:
        return _reply(request, RCODE.NOTIMP, authoritative=False)
    if len(request.questions) != 1:
        return _reply(request, RCODE.FORMERR, authoritative=False)
    question = request.questions[0]
    parsed = parse_name(question.qname, config, (config.datacenter, view.datacenter))
    if parsed is None:
        return None
    if question.qclass not in (CLASS_IN, CLASS_ANY) or question.qtype in _REFUSED_TYPES:
        return _reply(request, RCODE.REFUSED, authoritative=False)
    ctx = Context(view, config, rng, question.qname, question.qtype)
    result = _resolve(ctx, parsed)
    if result is None:
        return None
    if not result.exists and not view.synced:
        return _reply(request, RCODE.SERVFAIL, authoritative=False)
    reply = _reply(request, RCODE.NOERROR if result.exists else RCODE.NXDOMAIN, authoritative=True)
    if result.answer:
        reply.add_answer(*result.answer)
    else:
        reply.add_auth(soa_record(ctx, parsed))
    if result.additional:
        reply.add_ar(*result.additional)
    return reply


def _reply(request: DNSRecord, rcode: int, *, authoritative: bool) -> DNSRecord:
    header = request.header
    return DNSRecord(
        DNSHeader(
            id=header.id,
            qr=1,
            opcode=header.opcode,
            aa=int(authoritative),
            rd=header.rd,
            ra=0,
            cd=header.cd,
            rcode=rcode,
        ),
        questions=list(request.questions),
    )


def _resolve(ctx: Context, parsed: ParsedName) -> Result | None:
    query = parsed.query
    match query:
        case ConsulService():
            return answers_consul.service(ctx, query)
        case K8sService():
            return answers_k8s.service(ctx, query)
        case K8sEndpoint():
            return answers_k8s.endpoint(ctx, query)
        case K8sPort():
            return answers_k8s.port(ctx, query)
        case ConsulNode():
            return answers_consul.node(ctx, query)
        case ConsulAddr():
            return answers_consul.addr(ctx, query)
        case Reverse():
            return reverse(ctx, query)
        case K8sNamespace():
            return answers_k8s.namespace(ctx, query)
        case DnsVersion():
            return answers_k8s.dns_version(ctx)
        case Apex():
            return _apex(ctx, parsed)
        case NameServer():
            return Result(answer=address_records(ctx, ctx.qname, (ctx.config.ns_address,), zone_ttl(ctx, parsed)))
        case Empty():
            return Result()
        case NxDomain():
            return nxdomain()
    return nxdomain()  # pragma: no cover - every query kind is matched above


def zone_ttl(ctx: Context, parsed: ParsedName) -> int:
    config = ctx.config
    if parsed.zone is Zone.CONSUL:
        return clamp_ttl(config.consul_ttl)
    if parsed.zone is Zone.CLUSTER:
        return clamp_ttl(config.cluster_ttl)
    return clamp_ttl(min(config.consul_ttl, config.node_ttl, config.cluster_ttl))


def _ns_name(parsed: ParsedName) -> DNSLabel:
    return make_name("ns", "dns", zone=parsed.zone_name) or DNSLabel(("ns", "dns"))


def soa_record(ctx: Context, parsed: ParsedName) -> RR:
    """The zone's SOA, owned by the zone as written in the query."""
    ttl = zone_ttl(ctx, parsed)
    rname = make_name("hostmaster", zone=parsed.zone_name) or DNSLabel("hostmaster")
    times = (ctx.view.version % 2**32, SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, ttl)
    return RR(parsed.origin, TYPE_SOA, ttl=ttl, rdata=SOA(_ns_name(parsed), rname, times))


def _apex(ctx: Context, parsed: ParsedName) -> Result:
    if ctx.qtype in (TYPE_SOA, TYPE_ANY):
        return Result(answer=[soa_record(ctx, parsed)])
    if ctx.qtype == TYPE_NS:
        ttl = zone_ttl(ctx, parsed)
        ns = _ns_name(parsed)
        ip = ip_of(ctx.config.ns_address)
        glue = [address_record(ns, ip, ttl)] if ip is not None else []
        return Result(answer=[RR(ctx.qname, TYPE_NS, ttl=ttl, rdata=NS(ns))], additional=glue)
    return Result()
