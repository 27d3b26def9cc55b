"""Fuzz the DNS handler: random and mutated packets, in process and over real UDP.

    .venv/bin/python bench/dns_fuzz.py [--packets 100000] [--udp 20000] [--seed 1] [--stand-in]

A "crash" is an exception escaping ``DnsHandler.respond`` (must never happen), an internal error
it caught and answered SERVFAIL (``mesh_dns_panics_total``), a reply that is not a DNS message
with the query's ID, a UDP reply over the size limit, or the server not answering a valid query
after the run. Uses the real answer core unless ``--stand-in`` (or it is not importable).
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

import dns.message

from dnsserver.handler import DnsHandler, Pending
from dnsserver.listeners import start_listeners
from tests.dnsserver.transport_helpers import (
    CONFIG,
    SEEDS,
    make_view,
    mutate,
    query_bytes,
    stand_in_answer,
    svc,
)


def packets(rng: random.Random, count: int) -> list[bytes]:
    out = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            out.append(rng.randbytes(rng.randrange(0, 80)))
        elif kind == 1:  # a plausible header, random rest
            out.append(rng.randbytes(2) + b"\x01\x00\x00\x01" + rng.randbytes(rng.randrange(0, 60)))
        else:
            out.append(mutate(rng.choice(SEEDS), rng, rounds=4))
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
    view = make_view()
    answer = None
    if stand_in:
        answer = stand_in_answer
    else:
        try:
            from dnsserver.answers import answer as real
        except ImportError:
            real = None
        answer = real or stand_in_answer
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
