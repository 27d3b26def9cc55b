#!/usr/bin/env python3
"""In-process micro-benchmark of the DNS handler: CPU per query for a cache hit and for each kind of miss.

    .venv/bin/python bench/dns_micro.py            # all cases, best of 5 rounds
    .venv/bin/python bench/dns_micro.py --rounds 9 --count 20000
    .venv/bin/python bench/dns_micro.py --case SRV # only the cases whose label contains "SRV"
    .venv/bin/python bench/dns_micro.py --no-fast  # misses through the answer core only (no wire fast path)

No sockets: ``DnsHandler.respond(packet, tcp=False)`` is called in a loop, so the figures are the
CPU cost of the handler itself (what bounds one core's QPS, minus the transport's ~8-15 µs).
Misses are forced by cycling over more distinct questions than the cache holds (the cache evicts
its oldest eighth when full, so a cyclic stream of N > cache_size keys never hits), as
bench/dns_bench.py does with real load. Each round times ``--count`` queries in CPU time of this
process (``time.process_time``: time lost to other processes on a shared machine is not counted);
the best round is reported, with the median alongside. Before the timed rounds the script checks
that every case really misses and gets the rcode it is meant to measure.

The view is bench/dns_bench.py's catalog: services ``svc-NNNNN`` with 3 passing IPv4 instances
each (own addresses), Kubernetes Meta on every instance (namespace ``default``, named port ``http``).

Cases (one question per service, 4,000 services, a 1,000-entry cache):
- hit: one `<svc>.service.consul` A query repeated (raw-bytes cache: dict lookup + ID patch);
- consul A / AAAA (NODATA + SOA) / SRV (3 records + 3 additional addresses);
- NXDOMAIN: `<svc>-nope.service.consul` (no such service) and `<svc>.service.consul.default.svc.cluster.local`
  (a search-path name, as an ndots:5 resolver asks first);
- k8s: `<svc>.default.svc.cluster.local` A (headless, 3 ready), `<dashed-ip>.<svc>...` A (an endpoint),
  SRV on `_http._tcp.<svc>...` and on the service name (3 records + 3 additional);
- PTR: `<reversed instance IP>.in-addr.arpa` (2 names: Consul service and K8s endpoint);
- with the handler's default cache size (10,000), as under a dnsperf run over unique names:
  "distinct names": `<svc>.service.consul` A over 20,000 services; "uncached mix": the 20,000
  questions of dns_bench.py's mixed run (``MIX_SLOTS``) over its 10,000-service catalog.
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

from bench.dns_bench import instance_ip, mixed_questions, service_name
from dnsserver.config import DnsConfig
from dnsserver.handler import DnsHandler
from dnsserver.view import Endpoint, RegistryView

SERVICES = 4000
PER_SERVICE = 3
CACHE_SIZE = 1000  # < SERVICES: a cyclic stream over SERVICES names always misses
DISTINCT = 20_000  # the "distinct names" row: services in its view (> the default cache size)
MIX_SERVICES = 10_000  # the "uncached mix" row: dns_bench.py's phase 2 catalog
TYPES = {"A": 1, "PTR": 12, "AAAA": 28, "SRV": 33}
NOERROR, NXDOMAIN = 0, 3


def make_view(services: int) -> RegistryView:
    table: dict[str, tuple[Endpoint, ...]] = {}
    meta = MappingProxyType({"k8s-namespace": "default", "k8s-port-http": "tcp"})
    for s in range(services):
        name = service_name(s)
        table[name] = tuple(
            Endpoint(
                service=name,
                service_id=f"{name}-{i}",
                node=f"node-{(s * PER_SERVICE + i) % 1000:04d}",
                address=instance_ip(s, i, PER_SERVICE),
                own_address=True,
                port=8080,
                status="passing",
                meta=meta,
            )
            for i in range(PER_SERVICE)
        )
    return RegistryView(version=1, services=MappingProxyType(table), synced=True)


def query(name: str, qtype: int, qid: int = 0x1234) -> bytes:
    wire = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\x00"
    return struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0) + wire + struct.pack("!HH", qtype, 1)


def reverse_name(ip: str) -> str:
    return ".".join(reversed(ip.split("."))) + ".in-addr.arpa"


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


def sanity(label: str, make: Callable[[], DnsHandler], packets: list[bytes], rcodes: set[int]) -> None:
    """Every query of a miss case misses, and the replies have the rcodes the case is about."""
    handler = make()
    seen = set()
    for data in packets * 2:
        reply = handler.respond(data, False)
        assert isinstance(reply, bytes), f"{label}: no reply"
        seen.add(reply[3] & 0x0F)
    if len(packets) > 1 and handler.metrics.cache_hits_total():
        print(f"warning: {label}: {handler.metrics.cache_hits_total()} cache hits", file=sys.stderr)
    if not seen <= rcodes:
        print(f"warning: {label}: rcodes {sorted(seen)}, expected {sorted(rcodes)}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20_000, help="queries per round (default 20000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per case (default 5)")
    parser.add_argument("--case", default="", help="only cases whose label contains this text")
    parser.add_argument("--no-fast", action="store_true", help="disable the wire fast path (answer core only)")
    args = parser.parse_args()

    config = DnsConfig()
    kwargs: dict[str, object] = {}
    if args.no_fast:
        kwargs["fast_path"] = False

    def handler_for(view: RegistryView, cache_size: int | None) -> Callable[[], DnsHandler]:
        sizes = {} if cache_size is None else {"cache_size": cache_size}  # None: the handler's default

        def make() -> DnsHandler:
            return DnsHandler(config, lambda: view, None, rng=random.Random(1), **sizes, **kwargs)  # type: ignore[arg-type]

        return make

    view = make_view(SERVICES)
    small = handler_for(view, CACHE_SIZE)
    names = [service_name(s) for s in range(SERVICES)]
    k8s = [f"{n}.default.svc.cluster.local" for n in names]
    ips = [instance_ip(s, 0, PER_SERVICE) for s in range(SERVICES)]
    a, aaaa, srv, ptr = TYPES["A"], TYPES["AAAA"], TYPES["SRV"], TYPES["PTR"]
    cases: list[tuple[str, Callable[[], Callable[[], DnsHandler]], Callable[[], list[bytes]], set[int]]] = [
        ("cache hit (raw bytes)", lambda: small, lambda: [query("svc-00001.service.consul", a)], {NOERROR}),
        ("miss: consul A, 3 instances", lambda: small, lambda: [query(f"{n}.service.consul", a) for n in names], {0}),
        ("miss: consul AAAA (NODATA)", lambda: small, lambda: [query(f"{n}.service.consul", aaaa) for n in names], {0}),
        (
            "miss: consul SRV, 3 instances",
            lambda: small,
            lambda: [query(f"{n}.service.consul", srv) for n in names],
            {0},
        ),
        (
            "miss: NXDOMAIN (no such service)",
            lambda: small,
            lambda: [query(f"{n}-nope.service.consul", a) for n in names],
            {3},
        ),
        (
            "miss: NXDOMAIN (search-path name)",
            lambda: small,
            lambda: [query(f"{n}.service.consul.{k}", a) for n, k in zip(names, k8s, strict=True)],
            {3},
        ),
        ("miss: k8s A, headless, 3 ready", lambda: small, lambda: [query(k, a) for k in k8s], {0}),
        (
            "miss: k8s endpoint A",
            lambda: small,
            lambda: [query(f"{ip.replace('.', '-')}.{k}", a) for ip, k in zip(ips, k8s, strict=True)],
            {0},
        ),
        (
            "miss: k8s SRV _http._tcp, 3 + 3 add.",
            lambda: small,
            lambda: [query(f"_http._tcp.{k}", srv) for k in k8s],
            {0},
        ),
        ("miss: k8s SRV service name", lambda: small, lambda: [query(k, srv) for k in k8s], {0}),
        ("miss: PTR (instance address)", lambda: small, lambda: [query(reverse_name(ip), ptr) for ip in ips], {0}),
        (
            "miss incl. insert, distinct names",
            lambda: handler_for(make_view(DISTINCT), None),
            lambda: [query(f"{service_name(s)}.service.consul", a) for s in range(DISTINCT)],
            {NOERROR},
        ),
        (
            "miss: uncached mix (dns_bench)",
            lambda: handler_for(make_view(MIX_SERVICES), None),
            lambda: [query(name, TYPES[qtype]) for name, qtype, _ in mixed_questions(MIX_SERVICES, PER_SERVICE)],
            {NOERROR, NXDOMAIN},
        ),
    ]
    rows = []
    for label, maker_of, packets_of, rcodes in cases:
        if args.case not in label:
            continue
        maker, packets = maker_of(), packets_of()
        sanity(label, maker, packets, rcodes)
        best, median = measure(maker, packets, args.count, args.rounds)
        rows.append((label, best, median))

    mode = "answer core only (--no-fast)" if args.no_fast else "default"
    print(f"DnsHandler.respond, in process, {mode}; Python {sys.version.split()[0]}; best / median of {args.rounds}")
    print(f"| {'case':<38} | {'µs/op best':>10} | {'µs/op median':>12} | {'QPS-equiv':>9} |")
    print(f"|{'-' * 40}|{'-' * 11}:|{'-' * 13}:|{'-' * 10}:|")
    for label, best, median in rows:
        print(f"| {label:<38} | {best / 1000:>10.2f} | {median / 1000:>12.2f} | {1e9 / best:>9,.0f} |")


if __name__ == "__main__":
    main()
