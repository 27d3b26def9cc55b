"""Query handling: bytes in, bytes out, for both transports; the transports only move bytes.

``DnsHandler.respond(packet, tcp)`` is synchronous and returns

- ``bytes``: the reply (cache hits, our zones, errors, REFUSED, cached upstream answers);
- ``None``: drop the packet (no full header, or QR set);
- a ``Pending``: the name needs an upstream; ``await pending.result()`` gives bytes or None.

so a UDP ``datagram_received`` answers everything but real forwards without creating a task.

Path of a packet:
1. raw cache (``packet[2:]`` → entry): patch the ID, done. No parsing.
2. ``wire.parse_query``; malformed → FORMERR/BADVERS/NOTIMP or drop (``wire`` lists the rules).
3. normalised cache (lower-cased name, type, class, flags, transport, EDNS size, DO): respell the
   question in the client's case, patch the ID. The first repeat of a miss finds a first-sight
   stub there and gives it its ``CacheEntry`` (metrics series, variant builder) and its raw key.
4. miss: the wire fast path (``fastpath.py``) writes the reply bytes directly for nearly every
   name in our zones (Consul service, Kubernetes service/endpoint/port, known PTR names,
   NXDOMAIN; ANY and zone transfers excepted) when the answer core is the real one; otherwise
   build the request ``DNSRecord`` from the parsed question (no second parse) and call the answer
   core; ``None`` means not our zone → forward (or REFUSED without upstreams). Our replies are
   finished (OPT, truncation) and cached as a first-sight stub (plain bytes in the normalised map,
   ``cache.py``). One shuffle is built per miss; when the answer has two or more records the entry
   builds up to ``VARIANTS - 1`` more, one per later hit. The question section is always the
   client's, as received (RFC 1035, 0x20).
5. Before the registry view is synced, names in our zones get SERVFAIL (CoreDNS before informer
   sync), and nothing is cached.
Any exception is answered SERVFAIL and counted in ``mesh_dns_panics_total``; none escapes.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from functools import partial
from typing import Final

from dnslib import DNSHeader, DNSRecord

from dnsserver import wire
from dnsserver.answers import answer
from dnsserver.cache import AnswerCache, CacheEntry, CacheKey, cache_key
from dnsserver.config import DnsConfig
from dnsserver.fastpath import FastPath
from dnsserver.forward import Forwarder
from dnsserver.metrics import NO_RESPONSE, DnsMetrics
from dnsserver.view import RegistryView

log = logging.getLogger(__name__)

AnswerFn = Callable[[RegistryView, DNSRecord, DnsConfig, random.Random], DNSRecord | None]
ZONE_FORWARD: Final = "."
ZONE_DROPPED: Final = "dropped"
_REVERSE_ZONES: Final = ("in-addr.arpa", "ip6.arpa")
_LAZY_FAST: Final = 1  # CacheEntry.lazy: more variants come from the wire fast path
_LAZY_CORE: Final = 2  # ... from the answer core


def _wire_name(name: str) -> bytes:
    labels = [label for label in name.strip(".").lower().split(".") if label]
    return b"".join(bytes([len(label)]) + label.encode("ascii") for label in labels) + b"\x00"


class Pending:
    """A query waiting for an upstream answer."""

    __slots__ = ("_handler", "do", "packet", "query", "request", "started", "tcp")

    def __init__(
        self, handler: DnsHandler, packet: bytes, query: wire.Query, request: DNSRecord, tcp: bool, started: float
    ) -> None:
        self._handler = handler
        self.packet = packet
        self.query = query
        self.request = request
        self.tcp = tcp
        self.started = started
        self.do = bool(query.edns and query.edns.do)

    async def result(self) -> bytes | None:
        """The reply bytes for the client; never raises (other than cancellation)."""
        return await self._handler._forward(self)


class DnsHandler:
    def __init__(
        self,
        config: DnsConfig,
        view_provider: Callable[[], RegistryView],
        forwarder: Forwarder | None,
        *,
        answer_fn: AnswerFn = answer,
        rng: random.Random | None = None,
        metrics: DnsMetrics | None = None,
        cache_size: int = 10_000,
        fast_path: bool = True,
    ) -> None:
        self.config = config
        self.metrics = metrics or DnsMetrics()
        self.cache = AnswerCache(cache_size)
        self.metrics.cache_entries = lambda: len(self.cache)
        self._view_provider = view_provider
        self._forwarder = forwarder
        if forwarder is not None:
            forwarder.use_metrics(self.metrics)
        self._answer_fn = answer_fn
        # The fast path reproduces the real answer core only; a stand-in answer_fn (tests) gets no fast path.
        self._fast = FastPath(config) if fast_path and answer_fn is answer else None
        self._rng = rng or random.Random()
        self._max_udp = max(wire.MIN_UDP, min(config.max_udp_size, wire.MAX_TCP))
        zones = [config.cluster_domain, config.domain, *_REVERSE_ZONES]
        self._zones = tuple((_wire_name(z), z.strip(".").lower() + ".") for z in zones if z.strip("."))

    # === synchronous path ===

    def respond(self, packet: bytes, tcp: bool) -> bytes | Pending | None:
        """Answer one query packet (see the module doc for the three kinds of result)."""
        try:
            cache = self.cache
            view = self._view_provider()
            if view.version != cache.version:
                cache.reset(view.version)
            entry = (cache.tcp_raw if tcp else cache.udp_raw).get(packet[2:])
            if entry is not None:
                entry.series.hits += 1
                return packet[:2] + entry.take()
            return self._miss(packet, tcp, view)
        except Exception:
            return self._panic(packet, tcp)

    async def respond_async(self, packet: bytes, tcp: bool) -> bytes | None:
        """``respond`` with the forwarding (if any) awaited."""
        result = self.respond(packet, tcp)
        if isinstance(result, Pending):
            return await result.result()
        return result

    def _miss(self, packet: bytes, tcp: bool, view: RegistryView) -> bytes | Pending | None:
        started = time.perf_counter()
        proto = "tcp" if tcp else "udp"
        metrics = self.metrics
        try:
            q = wire.parse_query(packet)
        except wire.QueryError as exc:
            data = wire.error_from(packet, exc)
            rcode = NO_RESPONSE if data is None else exc.rcode
            metrics.observe(metrics.series(proto, 0, ZONE_DROPPED, rcode), time.perf_counter() - started)
            return data

        edns = q.edns
        if edns is None:
            payload, key_payload, do = wire.MIN_UDP, 0, False
        else:
            payload = key_payload = wire.udp_payload(edns, self._max_udp)
            do = edns.do
        max_size = wire.MAX_TCP if tcp else payload
        key = cache_key(q.qname_lower, q.qtype, q.qclass, q.flags, tcp, key_payload, do)
        cache = self.cache
        found = cache.get(key)
        if found is not None:
            return self._hit(packet, q, tcp, view, key, found, max_size, payload)

        metrics.cache_misses += 1
        fast = self._fast
        if fast is not None:
            built = fast.reply(view, q, self._rng, max_size=max_size, payload=payload)
            if built is not None:
                data, count = built
                return self._store(q, tcp, key, data, _LAZY_FAST if count >= 2 else 0, started)

        request = wire.request_record(q)
        reply = self._answer_fn(view, request, self.config, self._rng)
        if reply is None:
            return self._not_ours(packet, q, request, tcp, key, started)

        if not view.synced:
            reply = _reply(request, wire.SERVFAIL, recursion=self._forwarder is not None)
            data = wire.finish(reply, max_size=max_size, edns=edns, payload=payload)
            zone = self._zone_of(q.qname_lower)
            metrics.observe(metrics.series(proto, q.qtype, zone, wire.SERVFAIL), time.perf_counter() - started)
            return data

        lazy = _LAZY_CORE if len(reply.rr) >= 2 else 0
        data = self._finish_ours(reply, request, max_size, edns, payload)
        return self._store(q, tcp, key, data, lazy, started)

    def _hit(
        self,
        packet: bytes,
        q: wire.Query,
        tcp: bool,
        view: RegistryView,
        key: CacheKey,
        found: CacheEntry | bytes,
        max_size: int,
        payload: int,
    ) -> bytes:
        """A hit in the normalised map: serve it in the client's spelling; remember the raw bytes."""
        cache = self.cache
        if isinstance(found, bytes):  # first repeat of a miss: give it its entry (see cache.py)
            proto = "tcp" if tcp else "udp"
            series = self.metrics.series(proto, q.qtype, self._zone_of(q.qname_lower), cache.stub_rcode(found))
            entry = cache.promote(key, found, len(q.qname), series)
        else:
            entry = found
        entry.series.hits += 1
        if entry.lazy:
            self._attach(entry, q, view, max_size, payload)
        tail = entry.take()
        if entry.qname != q.qname:  # same name, other case: answer in the client's spelling
            tail = tail[:10] + q.qname + tail[10 + len(q.qname) :]
        else:
            cache.remember_raw(packet[2:], tcp, entry)
        return packet[:2] + tail

    def _store(self, q: wire.Query, tcp: bool, key: CacheKey, data: bytes, lazy: int, started: float) -> bytes:
        """Cache our reply ``data`` and count it; ``lazy``: which builder makes more shuffles (``_attach``)."""
        metrics = self.metrics
        series = metrics.series("tcp" if tcp else "udp", q.qtype, self._zone_of(q.qname_lower), data[3] & 0x0F)
        # A first-sight stub in the normalised map only: the first repeat promotes it (see cache.py).
        self.cache.put_first(key, data, lazy)
        metrics.observe(series, time.perf_counter() - started)
        return data

    def _attach(self, entry: CacheEntry, q: wire.Query, view: RegistryView, max_size: int, payload: int) -> None:
        """Give ``entry`` (hit for the first time) its variant builder, for the question it was built for.

        Same key, so same type, class, flags, transport, payload and DO; only the spelling may differ.
        """
        if q.qname != entry.qname:
            q = q._replace(qname=entry.qname)
        fast = self._fast
        if entry.lazy == _LAZY_FAST and fast is not None:
            entry.more = partial(self._fast_variant, fast, view, q, max_size, payload)
        else:
            entry.more = partial(self._core_variant, view, q, max_size, payload)
        entry.lazy = 0

    def _fast_variant(self, fast: FastPath, view: RegistryView, q: wire.Query, max_size: int, payload: int) -> bytes:
        """Another shuffle of a fast-path reply, without its ID (for ``CacheEntry.more``)."""
        built = fast.reply(view, q, self._rng, max_size=max_size, payload=payload)
        if built is None:  # pragma: no cover - the fast path decides from (view, q) alone
            raise RuntimeError("fast path declined a query it answered before")
        return built[0][2:]

    def _core_variant(self, view: RegistryView, q: wire.Query, max_size: int, payload: int) -> bytes:
        """Another shuffle from the answer core, without its ID (for ``CacheEntry.more``)."""
        request = wire.request_record(q)
        reply = self._answer_fn(view, request, self.config, self._rng)
        if reply is None:  # pragma: no cover - the answer core is deterministic about what is ours
            raise RuntimeError("answer core declined a query it answered before")
        return self._finish_ours(reply, request, max_size, q.edns, payload)[2:]

    def _finish_ours(
        self, reply: DNSRecord, request: DNSRecord, max_size: int, edns: wire.Edns | None, payload: int
    ) -> bytes:
        reply.header.id = request.header.id
        reply.header.qr = 1
        reply.questions = [request.q]  # echo the question exactly as received
        return wire.finish(reply, max_size=max_size, edns=edns, payload=payload)

    def _not_ours(
        self, packet: bytes, q: wire.Query, request: DNSRecord, tcp: bool, key: CacheKey, started: float
    ) -> bytes | Pending:
        metrics = self.metrics
        proto = "tcp" if tcp else "udp"
        edns = q.edns
        payload = wire.udp_payload(edns, self._max_udp)
        max_size = wire.MAX_TCP if tcp else payload
        forwarder = self._forwarder
        if forwarder is None:
            # Deterministic for this view and config: cache it like our own answers.
            data = wire.finish(
                _reply(request, wire.REFUSED, recursion=False), max_size=max_size, edns=edns, payload=payload
            )
            series = metrics.series(proto, q.qtype, ZONE_FORWARD, wire.REFUSED)
            entry = CacheEntry((data[2:],), q.qname, series)
            self.cache.put(key, entry)
            self.cache.remember_raw(packet[2:], tcp, entry)
            metrics.observe(series, time.perf_counter() - started)
            return data
        do = bool(edns and edns.do)
        cached = forwarder.lookup(request, do=do)
        if cached is None and forwarder.busy:
            metrics.forward_rejects += 1
            cached = _reply(request, wire.REFUSED, recursion=True)
        if cached is None:
            return Pending(self, packet, q, request, tcp, started)
        data = self._adapt_upstream(cached, request, q, tcp)
        metrics.observe(
            metrics.series(proto, q.qtype, ZONE_FORWARD, wire.rcode_of(data)), time.perf_counter() - started
        )
        return data

    def _adapt_upstream(self, reply: DNSRecord, request: DNSRecord, q: wire.Query, tcp: bool) -> bytes:
        reply.header.id = q.id
        reply.header.qr = 1
        reply.header.rd = request.header.rd
        reply.questions = [request.q]
        payload = wire.udp_payload(q.edns, self._max_udp)
        return wire.finish(reply, max_size=wire.MAX_TCP if tcp else payload, edns=q.edns, payload=payload)

    def _zone_of(self, qname_lower: bytes) -> str:
        for suffix, label in self._zones:
            if qname_lower.endswith(suffix):
                return label
        return ZONE_FORWARD

    def _panic(self, packet: bytes, tcp: bool) -> bytes | None:
        self.metrics.panics += 1
        log.exception("internal error answering a DNS query")
        try:
            q = wire.parse_query(packet)
            question = packet[wire.HEADER_LEN : q.question_end]
            data = wire.error_reply(packet, wire.SERVFAIL, question=question, edns=q.edns)
            qtype = q.qtype
        except Exception:
            data, qtype = wire.error_reply(packet, wire.SERVFAIL), 0
        try:
            rcode = NO_RESPONSE if data is None else wire.SERVFAIL
            self.metrics.observe(self.metrics.series("tcp" if tcp else "udp", qtype, ZONE_DROPPED, rcode), 0.0)
        except Exception:  # pragma: no cover - metrics must never turn a SERVFAIL into a crash
            pass
        return data

    def overloaded(self, packet: bytes) -> bytes | None:
        """REFUSED for a query the transport has no room for (too many queries waiting)."""
        self.metrics.forward_rejects += 1
        try:
            q = wire.parse_query(packet)
        except Exception:
            return None
        return wire.error_reply(packet, wire.REFUSED, question=packet[wire.HEADER_LEN : q.question_end], edns=q.edns)

    # === asynchronous path ===

    async def _forward(self, pending: Pending) -> bytes | None:
        forwarder = self._forwarder
        q = pending.query
        try:
            assert forwarder is not None
            upstream = await forwarder.query(pending.request, do=pending.do)
            data = self._adapt_upstream(upstream, pending.request, q, pending.tcp)
        except Exception:
            return self._panic(pending.packet, pending.tcp)
        proto = "tcp" if pending.tcp else "udp"
        series = self.metrics.series(proto, q.qtype, ZONE_FORWARD, wire.rcode_of(data))
        self.metrics.observe(series, time.perf_counter() - pending.started)
        return data


def _reply(request: DNSRecord, rcode: int, *, recursion: bool) -> DNSRecord:
    """An empty reply to ``request`` with ``rcode``; RA only when a forwarder offers recursion."""
    header = DNSHeader(id=request.header.id, bitmap=request.header.bitmap, qr=1, ra=int(recursion), rcode=rcode)
    header.aa = 0
    return DNSRecord(header, q=request.q)
