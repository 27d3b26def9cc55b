"""Helpers for wire / cache / handler / transport / forward tests.

The handler is exercised with ``stand_in_answer``, a tiny answer function for
``<svc>.<ns>.svc.cluster.local`` (A records, one per endpoint, shuffled; NXDOMAIN + SOA otherwise;
``None`` outside ``cluster.local``), so these tests do not depend on the real answer core.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import Any

from dnslib import QTYPE, RCODE, RR, SOA, A, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from dnsserver.config import DnsConfig
from dnsserver.forward import Forwarder
from dnsserver.handler import DnsHandler
from dnsserver.listeners import Listeners, start_listeners
from dnsserver.view import Endpoint, RegistryView

ZONE = "cluster.local"
CONFIG = DnsConfig()


def endpoints(service: str, count: int, *, base: str = "10.1") -> tuple[Endpoint, ...]:
    return tuple(
        Endpoint(
            service=service,
            service_id=f"{service}-{i}",
            node="node1",
            address=f"{base}.{i // 250}.{i % 250 + 1}",
            own_address=True,
            port=80,
            status="passing",
        )
        for i in range(count)
    )


def make_view(services: Mapping[str, int] | None = None, *, version: int = 1, synced: bool = True) -> RegistryView:
    """A view with ``name -> endpoint count`` services (default: web=1, api=3, big=300)."""
    services = {"web": 1, "api": 3, "big": 300} if services is None else services
    return RegistryView(
        version=version,
        services=MappingProxyType({name: endpoints(name, n) for name, n in services.items()}),
        synced=synced,
    )


def stand_in_answer(view: RegistryView, request: DNSRecord, config: DnsConfig, rng: random.Random) -> DNSRecord | None:
    labels = [label.lower() for label in request.q.qname.label]
    zone = [z.encode() for z in config.cluster_domain.split(".")]
    if labels[-len(zone) :] != zone:
        return None
    reply = DNSRecord(DNSHeader(id=request.header.id, bitmap=request.header.bitmap, qr=1, aa=1, ra=0), q=request.q)
    rest = labels[: -len(zone)]
    found = view.services.get(rest[0].decode("ascii", "replace")) if len(rest) == 3 and rest[2] == b"svc" else None
    if not found:
        reply.header.rcode = RCODE.NXDOMAIN
        reply.add_auth(
            RR(
                config.cluster_domain,
                QTYPE.SOA,
                ttl=5,
                rdata=SOA(
                    "ns.dns." + config.cluster_domain, "hostmaster." + config.cluster_domain, (1, 7200, 1800, 86400, 5)
                ),
            )
        )
        return reply
    if request.q.qtype in (QTYPE.A, QTYPE.ANY):
        records = [RR(request.q.qname, QTYPE.A, ttl=5, rdata=A(e.address)) for e in found]
        rng.shuffle(records)
        for rr in records:
            reply.add_answer(rr)
    return reply


def exploding_answer(view: RegistryView, request: DNSRecord, config: DnsConfig, rng: random.Random) -> DNSRecord:
    raise RuntimeError("boom")


def make_handler(
    view: RegistryView | None = None,
    *,
    forwarder: Forwarder | None = None,
    config: DnsConfig = CONFIG,
    answer_fn: Any = stand_in_answer,
    **kwargs: Any,
) -> DnsHandler:
    the_view = view or make_view()
    return DnsHandler(config, lambda: the_view, forwarder, answer_fn=answer_fn, rng=random.Random(7), **kwargs)


def query_bytes(
    name: str,
    qtype: int = QTYPE.A,
    *,
    qid: int = 0x1234,
    edns: int | None = None,
    do: bool = False,
    rd: bool = True,
) -> bytes:
    """A query packet built by hand (dnslib), optionally with an OPT RR of payload ``edns``."""
    header = DNSHeader(id=qid, q=1)
    header.rd = int(rd)
    packet = DNSRecord(header, q=DNSQuestion(DNSLabel(name), qtype))
    data = bytes(packet.pack())
    if edns is not None:
        ttl = 0x8000 if do else 0
        data = data[:10] + b"\x00\x01" + data[12:] + b"\x00" + struct.pack("!HHIH", 41, edns, ttl, 0)
    return data


def svc(name: str) -> str:
    return f"{name}.default.svc.{ZONE}."


class CountingHandler(DnsHandler):
    """A handler that counts the packets it is asked (for upstream tests)."""

    packets = 0

    def respond(self, packet: bytes, tcp: bool) -> Any:
        self.packets += 1
        return super().respond(packet, tcp)


@asynccontextmanager
async def serving(handler: DnsHandler, **kwargs: Any) -> AsyncIterator[Listeners]:
    listeners = await start_listeners(handler, "127.0.0.1", 0, **kwargs)
    try:
        yield listeners
    finally:
        await listeners.close()


def upstream_answer(view: RegistryView, request: DNSRecord, config: DnsConfig, rng: random.Random) -> DNSRecord:
    """An 'internet' for forward tests: ``example.`` names; ``big.example.`` has 200 A records."""
    name = str(request.q.qname).lower()
    reply = DNSRecord(DNSHeader(id=request.header.id, bitmap=request.header.bitmap, qr=1, aa=1, ra=1), q=request.q)
    soa = RR("example.", QTYPE.SOA, ttl=60, rdata=SOA("ns.example.", "root.example.", (1, 60, 60, 60, 30)))
    if name == "fail.example.":
        reply.header.rcode = RCODE.SERVFAIL
    elif name.startswith("missing"):
        reply.header.rcode = RCODE.NXDOMAIN
        reply.add_auth(soa)
    elif request.q.qtype != QTYPE.A:
        reply.add_auth(soa)
    else:
        count = 200 if name == "big.example." else 1
        ttl = 0 if name == "nottl.example." else 300
        for i in range(count):
            reply.add_answer(RR(request.q.qname, QTYPE.A, ttl=ttl, rdata=A(f"192.0.2.{i % 250 + 1}")))
    return reply


def upstream_handler() -> CountingHandler:
    config = DnsConfig(cluster_domain="example")
    return CountingHandler(config, lambda: make_view({}), None, answer_fn=upstream_answer, rng=random.Random(1))


def free_udp_port() -> int:
    """A loopback UDP port with nothing listening (ICMP port unreachable on send)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class BlackHole(asyncio.DatagramProtocol):
    """A UDP endpoint that reads queries and never answers (an upstream that times out)."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append(data)


def parse(data: bytes | None) -> DNSRecord:
    assert data is not None
    return DNSRecord.parse(data)


def rcode(data: bytes | None) -> str:
    return str(RCODE[parse(data).header.rcode])


def a_records(data: bytes | None) -> list[str]:
    return [str(rr.rdata) for rr in parse(data).rr if rr.rtype == QTYPE.A]


def tcp_frames(*messages: bytes) -> bytes:
    return b"".join(len(m).to_bytes(2, "big") + m for m in messages)


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    (length,) = struct.unpack("!H", await reader.readexactly(2))
    return await reader.readexactly(length)


def mutate(data: bytes, rng: random.Random, rounds: int = 3) -> bytes:
    """Flip, drop, insert or duplicate random bytes of a valid packet."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, rounds)):
        op = rng.randrange(5)
        pos = rng.randrange(len(buf)) if buf else 0
        if op == 0 and buf:
            buf[pos] = rng.randrange(256)
        elif op == 1 and buf:
            del buf[pos : pos + rng.randint(1, 4)]
        elif op == 2:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif op == 3 and buf:
            buf[pos] ^= 1 << rng.randrange(8)
        else:
            buf = buf[: rng.randrange(len(buf) + 1)]
    return bytes(buf)


SEEDS: Sequence[bytes] = (
    query_bytes(svc("web")),
    query_bytes(svc("api"), edns=1232),
    query_bytes(svc("big"), edns=4096, do=True),
    query_bytes("WeB.DeFault.SVC.cluster.LOCAL.", QTYPE.AAAA),
    query_bytes("nothing.default.svc.cluster.local.", QTYPE.SRV, edns=512),
    query_bytes("example.org.", QTYPE.A),
)
