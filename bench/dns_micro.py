#!/usr/bin/env python3
"""In-process micro-benchmark of the DNS handler: ns per query for a cache hit and for cache misses.

    .venv/bin/python bench/dns_micro.py            # all cases, best of 5 rounds
    .venv/bin/python bench/dns_micro.py --rounds 9 --count 20000
    .venv/bin/python bench/dns_micro.py --no-fast  # misses through the answer core only (no wire fast path)

No sockets: ``DnsHandler.respond(packet, tcp=False)`` is called in a loop, so the figures are the
CPU cost of the handler itself (what bounds one core's QPS, minus the transport's ~10-20 µs).
Misses are forced by cycling over more distinct names than the cache holds (the cache evicts its
oldest eighth when full, so a cyclic stream of N > cache_size keys never hits), as bench/dns_bench.py
does with real load. Each round times ``--count`` queries in CPU time of this process
(``time.process_time``: time lost to other processes on a shared machine is not counted); the
best round is reported, with the median alongside.

Cases:
- hit: one `<svc>.service.consul` A query repeated (raw-bytes cache: dict lookup + ID patch);
- consul A miss: `<svc>.service.consul` A, 3 passing instances each;
- SRV miss: the same names, SRV (3 records + 3 additional addresses);
- NXDOMAIN miss: `<svc>-nope.service.consul` A (no such service: NXDOMAIN + SOA);
- k8s A miss: `<svc>.default.svc.cluster.local` A, a headless service with 3 ready endpoints;
- miss incl. insert, distinct names: `<svc>.service.consul` A cycling over 20,000 distinct real
  services (3 passing instances each) with the handler's default cache size (10,000): every query
  misses, is answered, inserted in the cache (and evicts), and is timed in the metrics, as under
  a dnsperf run over unique names.
"""

from __future__ import annotations

import argparse
import random
import statistics
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dnsserver.config import DnsConfig
from dnsserver.handler import DnsHandler
from dnsserver.view import Endpoint, RegistryView

SERVICES = 4000
CACHE_SIZE = 1000  # < SERVICES: a cyclic stream over SERVICES names always misses
DISTINCT = 20_000  # the "distinct names" row: services in its view (> the default cache size)
TYPE_A, TYPE_SRV = 1, 33


def make_view(services: int) -> RegistryView:
    table: dict[str, tuple[Endpoint, ...]] = {}
    for s in range(services):
        name = f"svc{s}"
        table[name] = tuple(
            Endpoint(
                service=name,
                service_id=f"{name}-{i}",
                node=f"node{i}",
                address=f"10.{s // 250 % 250}.{s % 250}.{i + 1}",
                own_address=True,
                port=8000 + i,
                status="passing",
                meta=MappingProxyType({"k8s-namespace": "default"}),
            )
            for i in range(3)
        )
    return RegistryView(version=1, services=MappingProxyType(table), synced=True)


def query(name: str, qtype: int, qid: int = 0x1234) -> bytes:
    wire = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\x00"
    return struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0) + wire + struct.pack("!HH", qtype, 1)


def time_loop(handler: DnsHandler, packets: list[bytes], count: int) -> float:
    """CPU seconds for ``count`` calls of ``respond``, cycling through ``packets``."""
    respond = handler.respond
    n = len(packets)
    start = time.process_time()
    for i in range(count):
        respond(packets[i % n], False)
    return time.process_time() - start


def measure(make: Callable[[], DnsHandler], packets: list[bytes], count: int, rounds: int) -> tuple[float, float]:
    """(best, median) ns per query over ``rounds`` rounds; each round starts with a fresh handler."""
    per_op = []
    for _ in range(rounds):
        handler = make()
        time_loop(handler, packets, min(count, len(packets)))  # warm: fills caches (or, for misses, evicts)
        per_op.append(time_loop(handler, packets, count) / count * 1e9)
    return min(per_op), statistics.median(per_op)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20_000, help="queries per round (default 20000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per case (default 5)")
    parser.add_argument("--no-fast", action="store_true", help="disable the wire fast path (answer core only)")
    args = parser.parse_args()

    view = make_view(SERVICES)
    config = DnsConfig()
    kwargs: dict[str, object] = {}
    if args.no_fast:
        kwargs["fast_path"] = False

    def make() -> DnsHandler:
        return DnsHandler(
            config,
            lambda: view,
            None,
            rng=random.Random(1),
            cache_size=CACHE_SIZE,
            **kwargs,  # type: ignore[arg-type]
        )

    names = [f"svc{s}" for s in range(SERVICES)]
    cases = [
        ("cache hit (raw bytes)", [query("svc1.service.consul", TYPE_A)]),
        ("miss: consul A, 3 instances", [query(f"{n}.service.consul", TYPE_A) for n in names]),
        ("miss: consul SRV, 3 instances", [query(f"{n}.service.consul", TYPE_SRV) for n in names]),
        ("miss: NXDOMAIN (no such service)", [query(f"{n}-nope.service.consul", TYPE_A) for n in names]),
        ("miss: k8s A, headless, 3 ready", [query(f"{n}.default.svc.cluster.local", TYPE_A) for n in names]),
    ]
    big_view = make_view(DISTINCT)

    def make_big() -> DnsHandler:  # the handler's default cache size, as in production
        return DnsHandler(config, lambda: big_view, None, rng=random.Random(1), **kwargs)  # type: ignore[arg-type]

    distinct = [query(f"svc{s}.service.consul", TYPE_A) for s in range(DISTINCT)]
    runs = [(label, make, packets) for label, packets in cases]
    runs.append(("miss incl. insert, distinct names", make_big, distinct))
    rows = []
    for label, maker, packets in runs:
        best, median = measure(maker, packets, args.count, args.rounds)
        rows.append((label, best, median))
        handler = maker()  # sanity: every query of a miss case really misses
        time_loop(handler, packets, min(args.count, len(packets)) * 2)
        if len(packets) > 1 and handler.metrics.cache_hits_total():
            print(f"warning: {label}: {handler.metrics.cache_hits_total()} cache hits", file=sys.stderr)

    mode = "answer core only (--no-fast)" if args.no_fast else "default"
    print(f"DnsHandler.respond, in process, {mode}; Python {sys.version.split()[0]}; best / median of {args.rounds}")
    print(f"| {'case':<34} | {'ns/op best':>10} | {'ns/op median':>12} | {'QPS-equiv':>9} |")
    print(f"|{'-' * 36}|{'-' * 12}:|{'-' * 14}:|{'-' * 10}:|")
    for label, best, median in rows:
        print(f"| {label:<34} | {best:>10,.0f} | {median:>12,.0f} | {1e9 / best:>9,.0f} |")


if __name__ == "__main__":
    main()
