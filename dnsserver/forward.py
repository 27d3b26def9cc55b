"""Forwarding of names outside our zones to upstream resolvers (CoreDNS ``forward`` + ``cache``).

- Each exchange uses a fresh UDP socket (random source port) and a random 16-bit ID; a datagram is
  accepted only if it is a response with that ID and the same question (case-insensitive), so
  stray or spoofed packets are ignored until the timeout (2 s by default).
- A reply with TC set is fetched again over TCP from the same upstream.
- Network errors and timeouts move on to the next upstream (starting at a random one, each tried
  once); when all fail the client gets SERVFAIL. Upstream RCODEs (SERVFAIL, REFUSED...) are passed
  through as they are.
- At most ``max_concurrent`` upstream exchanges at once; beyond that queries get REFUSED at once
  (CoreDNS ``max_concurrent``). Identical questions already in flight share one exchange.
- Replies are cached by (name lower-cased, type, class, DO, CD) for the smallest TTL in Answer and
  Authority (capped at ``max_ttl``); negative answers (NXDOMAIN / NODATA) for min(SOA TTL, SOA
  MINIMUM) capped at ``max_negative_ttl``, and not at all without an SOA. SERVFAIL, other errors and
  truncated replies are never cached. Cached replies are served with their TTLs decreased by their
  age. The cache holds at most ``cache_size`` answers (oldest eighth evicted when full).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import Final

from dnslib import EDNS0, RCODE, DNSError, DNSHeader, DNSQuestion, DNSRecord

from dnsserver.metrics import DnsMetrics

DEFAULT_TIMEOUT: Final = 2.0
_OPT: Final = 41
_SOA: Final = 6
_TTL_MAX: Final = 0x7FFFFFFF  # RFC 2181 §8: TTLs with the top bit set read as 0

ForwardKey = tuple[tuple[bytes, ...], int, int, bool, bool]


@dataclass(frozen=True, slots=True)
class Upstream:
    host: str
    port: int

    @property
    def label(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_upstream(text: str) -> Upstream:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address (port 53 by default)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    else:
        host, port = text, 53
    if not host or not 0 < port < 65536:
        raise ValueError(f"bad upstream address: {text!r}")
    return Upstream(host, port)


class _Cached:
    __slots__ = ("data", "expires", "stored")

    def __init__(self, data: bytes, stored: float, expires: float) -> None:
        self.data = data
        self.stored = stored
        self.expires = expires


class _UdpExchange(asyncio.DatagramProtocol):
    """Waits for the one datagram that answers our question."""

    def __init__(self, qid: bytes, key: ForwardKey, done: asyncio.Future[bytes]) -> None:
        self._qid = qid
        self._key = key
        self._done = done

    def datagram_received(self, data: bytes, addr: object) -> None:
        if self._done.done() or data[:2] != self._qid or not _answers(data, self._key):
            return
        self._done.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self._done.done():
            self._done.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_exception(exc or ConnectionError("socket closed"))


def _answers(data: bytes, key: ForwardKey) -> bool:
    """True when ``data`` is a response whose question is ``key``'s (name compared case-insensitively)."""
    if len(data) < 12 or not data[2] & 0x80:
        return False
    try:
        reply = DNSRecord.parse(data)
    except Exception:
        return False
    if len(reply.questions) != 1:
        return False
    q = reply.questions[0]
    return bool(q.qtype == key[1] and q.qclass == key[2] and tuple(x.lower() for x in q.qname.label) == key[0])


def _ttl(value: int) -> int:
    return 0 if value > _TTL_MAX else value


class Forwarder:
    def __init__(
        self,
        upstreams: tuple[str, ...],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_concurrent: int = 1000,
        cache_size: int = 10_000,
        max_ttl: int = 3600,
        max_negative_ttl: int = 1800,
        udp_payload: int = 1232,
        metrics: DnsMetrics | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not upstreams:
            raise ValueError("Forwarder needs at least one upstream")
        self.upstreams = tuple(parse_upstream(u) for u in upstreams)
        self.timeout = timeout
        self.max_concurrent = max_concurrent
        self.max_ttl = max_ttl
        self.max_negative_ttl = max_negative_ttl
        self._udp_payload = udp_payload
        self._cache_size = max(8, cache_size)
        self._metrics = metrics or DnsMetrics()
        self._metrics.forward_cache_entries = lambda: len(self._cache)
        self._rng = rng or random.SystemRandom()
        self._clock = clock
        self._cache: dict[ForwardKey, _Cached] = {}
        self._pending: dict[ForwardKey, asyncio.Future[bytes | None]] = {}
        self.inflight = 0

    @property
    def busy(self) -> bool:
        """True when a new exchange would exceed ``max_concurrent``."""
        return self.inflight >= self.max_concurrent

    def use_metrics(self, metrics: DnsMetrics) -> None:
        self._metrics = metrics
        metrics.forward_cache_entries = lambda: len(self._cache)

    @staticmethod
    def key(request: DNSRecord, do: bool) -> ForwardKey:
        q = request.q
        return (tuple(x.lower() for x in q.qname.label), q.qtype, q.qclass, do, bool(request.header.cd))

    # === cache ===

    def lookup(self, request: DNSRecord, *, do: bool = False) -> DNSRecord | None:
        """A cached upstream reply for ``request`` with TTLs aged, or None. Never blocks."""
        key = self.key(request, do)
        hit = self._cache.get(key)
        if hit is None:
            return None
        now = self._clock()
        if now >= hit.expires:
            del self._cache[key]
            return None
        reply = DNSRecord.parse(hit.data)
        age = int(now - hit.stored)
        if age:
            for rr in (*reply.rr, *reply.auth, *reply.ar):
                if rr.rtype != _OPT:
                    rr.ttl = max(0, _ttl(rr.ttl) - age)
        return reply

    def _cache_ttl(self, reply: DNSRecord) -> int:
        if reply.header.tc:
            return 0
        rcode = reply.header.rcode
        records = [rr for rr in (*reply.rr, *reply.auth) if rr.rtype != _OPT]
        if rcode == RCODE.NOERROR and reply.rr:
            return min(min(_ttl(rr.ttl) for rr in records), self.max_ttl)
        if rcode in (RCODE.NOERROR, RCODE.NXDOMAIN):
            soas = [rr for rr in reply.auth if rr.rtype == _SOA]
            if not soas:
                return 0
            soa = soas[0]
            return min(_ttl(soa.ttl), _ttl(soa.rdata.times[-1]), self.max_negative_ttl)
        return 0

    def _store(self, key: ForwardKey, data: bytes, reply: DNSRecord) -> None:
        ttl = self._cache_ttl(reply)
        if ttl <= 0:
            return
        if len(self._cache) >= self._cache_size and key not in self._cache:
            for old in list(islice(self._cache, max(1, self._cache_size // 8))):
                del self._cache[old]
        now = self._clock()
        self._cache[key] = _Cached(data, now, now + ttl)

    # === exchanges ===

    async def query(self, request: DNSRecord, *, do: bool = False) -> DNSRecord:
        """The upstream reply for ``request`` (cached, shared or fetched); SERVFAIL/REFUSED when none.

        Never raises (other than cancellation). The reply still carries the upstream's OPT and ID.
        """
        cached = self.lookup(request, do=do)
        if cached is not None:
            return cached
        key = self.key(request, do)
        shared = self._pending.get(key)
        if shared is not None:
            data = await asyncio.shield(shared)
        elif self.busy:
            self._metrics.forward_rejects += 1
            return _error(request, RCODE.REFUSED)
        else:
            done: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
            self._pending[key] = done
            self.inflight += 1
            try:
                data = await self._exchange(request, key, do)
                done.set_result(data)
            except BaseException:
                done.set_result(None)
                raise
            finally:
                self.inflight -= 1
                del self._pending[key]
        if data is None:
            return _error(request, RCODE.SERVFAIL)
        return DNSRecord.parse(data)

    async def _exchange(self, request: DNSRecord, key: ForwardKey, do: bool) -> bytes | None:
        q = request.q
        qid = self._rng.getrandbits(16)
        message = DNSRecord(DNSHeader(id=qid, rd=1, cd=request.header.cd), q=DNSQuestion(q.qname, q.qtype, q.qclass))
        message.add_ar(EDNS0(udp_len=self._udp_payload, flags="do" if do else ""))
        wire = message.pack()
        qid_bytes = struct.pack("!H", qid)
        start = self._rng.randrange(len(self.upstreams))
        for i in range(len(self.upstreams)):
            upstream = self.upstreams[(start + i) % len(self.upstreams)]
            try:
                data = await self._udp(upstream, wire, qid_bytes, key)
                if data[2] & 0x02:  # TC: the full answer over TCP
                    data = await self._tcp(upstream, wire, qid_bytes, key)
                reply = DNSRecord.parse(data)
            except (OSError, TimeoutError, DNSError, ValueError, EOFError, asyncio.IncompleteReadError):
                self._metrics.forward_error(upstream.label)
                continue
            self._metrics.forward_result(upstream.label, reply.header.rcode)
            self._store(key, data, reply)
            return data
        return None

    async def _udp(self, upstream: Upstream, wire: bytes, qid: bytes, key: ForwardKey) -> bytes:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bytes] = loop.create_future()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpExchange(qid, key, done), remote_addr=(upstream.host, upstream.port)
        )
        try:
            transport.sendto(wire)
            async with asyncio.timeout(self.timeout):
                return await done
        finally:
            transport.close()
            if done.done() and not done.cancelled():
                done.exception()  # consumed: no "exception never retrieved" warning

    async def _tcp(self, upstream: Upstream, wire: bytes, qid: bytes, key: ForwardKey) -> bytes:
        writer = None
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(upstream.host, upstream.port)
                writer.write(struct.pack("!H", len(wire)) + wire)
                while True:  # skip anything that does not answer our question
                    (length,) = struct.unpack("!H", await reader.readexactly(2))
                    data = await reader.readexactly(length)
                    if data[:2] == qid and _answers(data, key):
                        return data
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    async def close(self) -> None:
        self._cache.clear()


def _error(request: DNSRecord, rcode: int) -> DNSRecord:
    return DNSRecord(DNSHeader(id=request.header.id, qr=1, rd=request.header.rd, ra=1, rcode=rcode), q=request.q)


__all__ = ["DEFAULT_TIMEOUT", "Forwarder", "Upstream", "parse_upstream"]
