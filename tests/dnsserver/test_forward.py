"""forward: an in-process upstream on loopback (never the internet)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import pytest
from dnslib import QTYPE, DNSHeader, DNSQuestion, DNSRecord

from dnsserver.forward import Forwarder, parse_upstream
from dnsserver.listeners import Listeners
from tests.dnsserver.transport_helpers import (
    BlackHole,
    CountingHandler,
    free_udp_port,
    make_handler,
    query_bytes,
    rcode,
    serving,
    upstream_handler,
)

HOST = "127.0.0.1"


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[CountingHandler, Listeners]]:
    handler = upstream_handler()
    async with serving(handler) as listeners:
        yield handler, listeners


@pytest.fixture
async def black_hole() -> AsyncIterator[tuple[BlackHole, int]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(BlackHole, local_addr=(HOST, 0))
    yield protocol, transport.get_extra_info("sockname")[1]
    transport.close()


class FirstFirst(random.Random):
    """Starts with the first upstream."""

    def randrange(self, *args: Any, **kwargs: Any) -> int:
        return 0


def request(name: str, qtype: int = QTYPE.A) -> DNSRecord:
    return DNSRecord(DNSHeader(id=1), q=DNSQuestion(name, qtype))


async def ask(port: int, name: str, *, tcp: bool = False, payload: int | None = None) -> dns.message.Message:
    kwargs: dict[str, Any] = {} if payload is None else {"use_edns": 0, "payload": payload}
    query = dns.message.make_query(name, "A", **kwargs)
    if tcp:
        return await dns.asyncquery.tcp(query, HOST, port=port, timeout=3)
    return await dns.asyncquery.udp(query, HOST, port=port, timeout=3)


def test_parse_upstream() -> None:
    assert parse_upstream("10.0.0.1").label == "10.0.0.1:53"
    assert parse_upstream("10.0.0.1:5353").port == 5353
    assert parse_upstream("[::1]:54").label == "[::1]:54"
    assert parse_upstream("::1").port == 53
    with pytest.raises(ValueError, match="upstream"):
        parse_upstream(":99999")


async def test_forwarded_and_cached(upstream: tuple[CountingHandler, Listeners]) -> None:
    up, up_listeners = upstream
    forwarder = Forwarder((f"{HOST}:{up_listeners.port}",))
    handler = make_handler(forwarder=forwarder)
    async with serving(handler) as listeners:
        first = await ask(listeners.port, "www.example.")
        assert [r.to_text() for r in first.answer[0]] == ["192.0.2.1"]
        assert first.flags & dns.flags.RA
        assert up.packets == 1
        second = await ask(listeners.port, "WWW.Example.")
        assert second.question[0].name.to_text() == "WWW.Example."
        assert second.answer[0].ttl <= 300
        assert up.packets == 1  # served from the forward cache
        # our own zone is still answered locally
        ours = await ask(listeners.port, "web.default.svc.cluster.local.")
        assert ours.answer
        assert up.packets == 1
    assert handler.metrics.forward_requests[(f"{HOST}:{up_listeners.port}", "NOERROR")] == 1
    assert handler.metrics.responses()[("NOERROR", ".")] == 2


async def test_tc_falls_back_to_tcp(upstream: tuple[CountingHandler, Listeners]) -> None:
    up, up_listeners = upstream
    handler = make_handler(forwarder=Forwarder((f"{HOST}:{up_listeners.port}",)))
    async with serving(handler) as listeners:
        udp = await ask(listeners.port, "big.example.")
        assert udp.flags & dns.flags.TC  # our client has 512 bytes
        assert up.packets == 2  # upstream: UDP (truncated at 1232), then TCP
        tcp = await ask(listeners.port, "big.example.", tcp=True)
        assert len(tcp.answer[0]) == 200
        edns = await ask(listeners.port, "big.example.", payload=4096)
        assert len(edns.answer[0]) == 200
        assert not edns.flags & dns.flags.TC
        assert up.packets == 2  # the full answer was cached


async def test_negative_answers_cached_servfail_not(upstream: tuple[CountingHandler, Listeners]) -> None:
    up, up_listeners = upstream
    forwarder = Forwarder((f"{HOST}:{up_listeners.port}",))
    for _ in range(2):
        reply = await forwarder.query(request("missing.example."))
        assert reply.header.rcode == 3
    assert up.packets == 1
    for _ in range(2):
        reply = await forwarder.query(request("fail.example."))
        assert reply.header.rcode == 2
    assert up.packets == 3
    for _ in range(2):
        await forwarder.query(request("nottl.example."))
    assert up.packets == 5  # TTL 0: not cached


async def test_cache_ttl_ages_and_expires(upstream: tuple[CountingHandler, Listeners]) -> None:
    _up, up_listeners = upstream
    now = [1000.0]
    forwarder = Forwarder((f"{HOST}:{up_listeners.port}",), clock=lambda: now[0])
    await forwarder.query(request("www.example."))
    now[0] += 100
    cached = forwarder.lookup(request("www.example."))
    assert cached is not None
    assert cached.rr[0].ttl == 200
    now[0] += 201
    assert forwarder.lookup(request("www.example.")) is None
    missing = await forwarder.query(request("missing.example."))
    assert missing.header.rcode == 3
    now[0] += 29
    assert forwarder.lookup(request("missing.example.")) is not None
    now[0] += 2  # negative TTL: min(SOA TTL 60, MINIMUM 30)
    assert forwarder.lookup(request("missing.example.")) is None


async def test_upstream_down_is_servfail() -> None:
    handler = make_handler(forwarder=Forwarder((f"{HOST}:{free_udp_port()}",), timeout=0.5))
    async with serving(handler) as listeners:
        reply = await ask(listeners.port, "www.example.")
        assert reply.rcode() == dns.rcode.SERVFAIL
    assert sum(handler.metrics.forward_errors.values()) == 1


async def test_timeout_then_next_upstream(
    upstream: tuple[CountingHandler, Listeners], black_hole: tuple[BlackHole, int]
) -> None:
    hole, hole_port = black_hole
    _, up_listeners = upstream
    forwarder = Forwarder((f"{HOST}:{hole_port}", f"{HOST}:{up_listeners.port}"), timeout=0.3, rng=FirstFirst())
    reply = await forwarder.query(request("www.example."))
    assert reply.header.rcode == 0
    assert len(hole.received) == 1
    # only a timeout on every upstream gives SERVFAIL
    alone = Forwarder((f"{HOST}:{hole_port}",), timeout=0.2)
    assert (await alone.query(request("www.example."))).header.rcode == 2


async def test_max_concurrent_refuses(black_hole: tuple[BlackHole, int]) -> None:
    _, hole_port = black_hole
    forwarder = Forwarder((f"{HOST}:{hole_port}",), timeout=0.5, max_concurrent=1)
    handler = make_handler(forwarder=forwarder)
    pending = handler.respond(query_bytes("a.example."), False)
    assert not isinstance(pending, bytes | None)
    task = asyncio.create_task(pending.result())
    await asyncio.sleep(0.05)
    assert forwarder.busy
    assert rcode(handler.respond(query_bytes("b.example."), False)) == "REFUSED"  # type: ignore[arg-type]
    assert rcode(await task) == "SERVFAIL"
    assert handler.metrics.forward_rejects == 1


async def test_identical_queries_share_one_exchange(upstream: tuple[CountingHandler, Listeners]) -> None:
    up, up_listeners = upstream
    forwarder = Forwarder((f"{HOST}:{up_listeners.port}",))
    replies = await asyncio.gather(*(forwarder.query(request("www.example.")) for _ in range(10)))
    assert all(r.header.rcode == 0 for r in replies)
    assert up.packets == 1


class Spoofer(asyncio.DatagramProtocol):
    """Answers with a wrong ID, then a wrong question, then correctly."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.ids: list[int] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        query = DNSRecord.parse(data)
        self.ids.append(query.header.id)
        wrong_id = query.reply()
        wrong_id.header.id ^= 1
        wrong_id.add_answer(*DNSRecord.question("x").replyZone("www.example. 60 A 6.6.6.6").rr)
        self.transport.sendto(bytes(wrong_id.pack()), addr)
        wrong_q = DNSRecord(DNSHeader(id=query.header.id, qr=1), q=DNSQuestion("evil.example."))
        self.transport.sendto(bytes(wrong_q.pack()), addr)
        good = query.reply()
        good.add_answer(*DNSRecord.question("x").replyZone("www.example. 60 A 192.0.2.7").rr)
        self.transport.sendto(bytes(good.pack()), addr)


async def test_replies_validated_and_ids_random() -> None:
    loop = asyncio.get_running_loop()
    transport, spoofer = await loop.create_datagram_endpoint(Spoofer, local_addr=(HOST, 0))
    try:
        forwarder = Forwarder((f"{HOST}:{transport.get_extra_info('sockname')[1]}",), cache_size=8)
        for name in ("www.example.", "WWW.example."):
            forwarder._cache.clear()
            reply = await forwarder.query(request(name))
            assert [str(rr.rdata) for rr in reply.rr] == ["192.0.2.7"]
        assert len(set(spoofer.ids)) == 2
    finally:
        transport.close()


async def test_refused_without_upstream_over_udp() -> None:
    async with serving(make_handler()) as listeners:
        reply = await ask(listeners.port, "www.example.")
        assert reply.rcode() == dns.rcode.REFUSED
