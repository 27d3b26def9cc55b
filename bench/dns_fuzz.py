"""Fuzz the DNS handler: random and mutated packets, in process and over real UDP.

    .venv/bin/python bench/dns_fuzz.py [--packets 100000] [--udp 20000] [--seed 1] [--stand-in]

A "crash" is an exception escaping ``DnsHandler.respond`` (must never happen), an internal error
it caught and answered SERVFAIL (``mesh_dns_panics_total``), a reply that is not a DNS message
with the query's ID, a UDP reply over the size limit, or the server not answering a valid query
after the run. Uses the real answer core (and so the wire fast path) unless ``--stand-in``.
Mutations start from the transport tests' seed queries plus one of every kind the wire fast path
answers (Consul A/AAAA/SRV, Kubernetes service/endpoint/port names, PTR, NXDOMAIN), against a view
whose services also carry Kubernetes Meta (named ports, hostnames, a cluster IP).
Prints a final line ``N packets, M crashes``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from types import MappingProxyType

import dns.message
from dnslib import QTYPE

from dnsserver.answers import answer as real_answer
from dnsserver.handler import DnsHandler, Pending
from dnsserver.listeners import start_listeners
from dnsserver.view import Endpoint, RegistryView
from tests.dnsserver.transport_helpers import (
    CONFIG,
    SEEDS,
    make_view,
    mutate,
    query_bytes,
    stand_in_answer,
    svc,
)

FAST_PATH_SEEDS = (
    query_bytes("hl.service.consul.", QTYPE.SRV, edns=1232),
    query_bytes("HL.service.dc1.consul.", QTYPE.AAAA),
    query_bytes("primary.hl.service.consul.", QTYPE.A),
    query_bytes("_hl._tcp.service.consul.", QTYPE.SRV),
    query_bytes("hl.default.svc.cluster.local.", QTYPE.SRV),
    query_bytes("_http._tcp.hl.default.svc.cluster.local.", QTYPE.SRV, edns=4096, do=True),
    query_bytes("hl-0.hl.default.svc.cluster.local.", QTYPE.A),
    query_bytes("_dns._udp.cip.default.svc.cluster.local.", QTYPE.SRV),
    query_bytes("cip.default.svc.cluster.local.", QTYPE.A),
    query_bytes("1.0.2.10.in-addr.arpa.", QTYPE.PTR),
    query_bytes("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", QTYPE.PTR),
    query_bytes("web.service.consul.default.svc.cluster.local.", QTYPE.A),
    query_bytes("big.default.svc.cluster.local.", QTYPE.SRV),
)


def fuzz_view() -> RegistryView:
    """``make_view()`` plus services with Kubernetes Meta, so every fast-path kind has data."""
    base = make_view()

    def k8s(service: str, i: int, address: str, **meta: str) -> Endpoint:
        full = {"k8s-namespace": "default", "k8s-port-http": "tcp", "k8s-port-dns": "53/udp", **meta}
        return Endpoint(
            service, f"{service}-{i}", f"n{i}", address, True, 80, "passing", ("primary",), MappingProxyType(full)
        )

    services = dict(base.services)
    services["hl"] = (
        k8s("hl", 0, "10.2.0.1", **{"k8s-hostname": "hl-0"}),
        k8s("hl", 1, "10.2.0.2"),
        k8s("hl", 2, "2001:db8::1"),
    )
    services["cip"] = (k8s("cip", 0, "10.2.1.1", **{"k8s-cluster-ip": "10.96.0.1"}),)
    return RegistryView(version=base.version, services=MappingProxyType(services), synced=True)


def packets(rng: random.Random, count: int) -> list[bytes]:
    out = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            out.append(rng.randbytes(rng.randrange(0, 80)))
        elif kind == 1:  # a plausible header, random rest
            out.append(rng.randbytes(2) + b"\x01\x00\x00\x01" + rng.randbytes(rng.randrange(0, 60)))
        else:
            out.append(mutate(rng.choice((*SEEDS, *FAST_PATH_SEEDS)), rng, rounds=4))
    return out


def check_reply(packet: bytes, reply: bytes, limit: int) -> str | None:
    if len(reply) > limit:
        return f"reply of {len(reply)} bytes over limit {limit}"
    if reply[:2] != packet[:2]:
        return "reply ID differs"
    try:
        dns.message.from_wire(reply)  # dnspython: accepts binary labels, unlike dnslib
    except Exception as exc:
        return f"unparseable reply: {exc}"
    return None


def make(stand_in: bool) -> DnsHandler:
    view = fuzz_view()
    answer = stand_in_answer if stand_in else real_answer
    return DnsHandler(CONFIG, lambda: view, None, answer_fn=answer, rng=random.Random(3))


def fuzz_in_process(handler: DnsHandler, batch: list[bytes]) -> int:
    crashes = 0
    for i, packet in enumerate(batch):
        tcp = bool(i & 1)
        try:
            result = handler.respond(packet, tcp)
        except Exception:
            crashes += 1
            traceback.print_exc()
            continue
        if isinstance(result, Pending):
            crashes += 1
            print("unexpected Pending without a forwarder")
        elif isinstance(result, bytes):
            problem = check_reply(packet, result, 65535 if tcp else 4096)
            if problem:
                crashes += 1
                print(f"{problem}: {packet.hex()}")
    return crashes


async def fuzz_udp(handler: DnsHandler, batch: list[bytes]) -> int:
    listeners = await start_listeners(handler, "127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    crashes = 0
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.connect(("127.0.0.1", listeners.port))
            for start in range(0, len(batch), 64):  # windows of 64 in flight
                for packet in batch[start : start + 64]:
                    await loop.sock_sendall(sock, packet)
                await asyncio.sleep(0)
                while True:
                    try:
                        await asyncio.wait_for(loop.sock_recv(sock, 65535), 0.02)
                    except TimeoutError:
                        break
            # the server must still answer a valid query
            await loop.sock_sendall(sock, query_bytes(svc("web"), qid=4321))
            deadline = time.monotonic() + 2
            answered = False
            while time.monotonic() < deadline and not answered:
                try:
                    reply = await asyncio.wait_for(loop.sock_recv(sock, 65535), 0.5)
                except TimeoutError:
                    continue
                answered = reply[:2] == b"\x10\xe1"
            if not answered:
                crashes += 1
                print("server stopped answering over UDP")
    finally:
        await listeners.close()
    return crashes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packets", type=int, default=100_000, help="in-process packets")
    parser.add_argument("--udp", type=int, default=20_000, help="packets sent over real UDP")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stand-in", action="store_true", help="use the test stand-in answer function")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    handler = make(args.stand_in)
    started = time.perf_counter()
    crashes = fuzz_in_process(handler, packets(rng, args.packets))
    elapsed = time.perf_counter() - started
    print(f"in process: {args.packets} packets in {elapsed:.1f} s, {crashes} crashes, panics={handler.metrics.panics}")

    udp_handler = make(args.stand_in)
    udp_crashes = asyncio.run(fuzz_udp(udp_handler, packets(rng, args.udp)))
    print(f"over UDP: {args.udp} packets, {udp_crashes} crashes, panics={udp_handler.metrics.panics}")

    total = args.packets + args.udp
    failures = crashes + udp_crashes + handler.metrics.panics + udp_handler.metrics.panics
    print(f"{total} packets, {failures} crashes")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
