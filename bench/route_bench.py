#!/usr/bin/env python3
"""In-process micro-benchmark of route selection: µs per ``select_route`` on a 100-vhost table.

    flock /tmp/mesh-bench.lock .venv/bin/python bench/route_bench.py
    .venv/bin/python bench/route_bench.py --rounds 9 --count 50000

No sockets: ``mesh.model.routing.select_route`` is called in a loop, which is what the sidecar
does once per request. The table (parsed from config text, as a sidecar gets it) has 100 virtual
hosts, each with 4 domains (``svcN``, ``svcN.service.consul``, ``svcN.default.svc.cluster.local``,
``*.svcN.example.com``) and 6 routes (exact path, path prefixes, a regex, a header match, a method
match, a catch-all), plus a ``*`` virtual host. Each round times ``--count`` calls in CPU time of
this process (``time.process_time``: time taken by other processes on a shared machine is not
counted); the best round is reported, with the median alongside.

The peer is the obvious implementation of the same rules (``naive_select``): scan every domain of
every virtual host with ``fnmatch``-style checks, rank the matches, then try routes in order. It
shows what the precomputed domain index buys; the ratio is naive / ours.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchlib import cpu_model, table
from mesh.model.parse import parse_snapshot_text
from mesh.model.routing import first_matching_route, select_route
from mesh.model.snapshot import RouteTable, VirtualHost, classify_domain, domain_has_port

VHOSTS = 100


def build_config(vhosts: int) -> str:
    lines = ["route_tables:", "  - name: out", "    virtual_hosts:"]
    for i in range(vhosts):
        lines += [
            f"      - name: svc{i}",
            f"        domains: [svc{i}, svc{i}.service.consul, svc{i}.default.svc.cluster.local,"
            f" '*.svc{i}.example.com']",
            "        routes:",
            "          - {match: {path: /healthz}, cluster: c}",
            "          - {match: {prefix: /api/v2/}, cluster: c}",
            "          - {match: {regex: '/items/[0-9]+'}, cluster: c}",
            "          - {match: {prefix: /admin/, headers: [{name: x-role, exact: admin}]}, cluster: c}",
            "          - {match: {prefix: /upload, methods: [POST, PUT]}, cluster: c}",
            "          - {match: {prefix: /}, cluster: c}",
        ]
    lines += [
        "      - name: any",
        "        domains: ['*']",
        "        routes: [{cluster: c}]",
        "clusters: [{name: c}]",
    ]
    return "\n".join(lines) + "\n"


Request = tuple[str, str, str, str, Mapping[str, str]]

CASES: dict[str, Callable[[random.Random], Request]] = {
    "short name, first route (exact path)": lambda r: (f"svc{r.randrange(VHOSTS)}", "GET", "/healthz", "", {}),
    "k8s name:port, prefix route": lambda r: (
        f"svc{r.randrange(VHOSTS)}.default.svc.cluster.local:8080",
        "GET",
        "/api/v2/users",
        "",
        {},
    ),
    "suffix wildcard, regex route": lambda r: (
        f"www.svc{r.randrange(VHOSTS)}.example.com",
        "GET",
        "/items/12345",
        "",
        {},
    ),
    "consul name, last route (falls through 5)": lambda r: (
        f"svc{r.randrange(VHOSTS)}.service.consul",
        "GET",
        "/index.html",
        "q=1",
        {"x-role": "user", "user-agent": "curl"},
    ),
    "unknown host → catch-all": lambda r: (f"other{r.randrange(VHOSTS)}.example.org", "GET", "/", "", {}),
}


def naive_select(rt: RouteTable, host: str, method: str, path: str, query: str, headers: Mapping[str, str]) -> object:
    """The same rules without an index: rank every domain of every virtual host."""
    full = host.lower()
    bare, _, port = full.partition(":")
    best: tuple[tuple[int, int, int], VirtualHost] | None = None
    for vhost in rt.virtual_hosts:
        for domain in vhost.domains:
            if domain == "*":
                rank = (3, 0, 0)
            else:
                ported = domain_has_port(domain)
                if ported and not port:
                    continue
                target = full if ported else bare
                kind, fixed = classify_domain(domain)
                if kind == "exact" and target == fixed:
                    rank = (0, 0, 0)
                elif kind == "suffix" and target.endswith(fixed) and len(target) > len(fixed):
                    rank = (1, 0, -len(fixed))
                elif kind == "prefix" and target.startswith(fixed) and len(target) > len(fixed):
                    rank = (2, 0, -len(fixed))
                else:
                    continue
            if best is None or rank < best[0]:
                best = (rank, vhost)
    if best is None:
        return None
    return first_matching_route(best[1], method, path, query, headers)


def time_round(fn: Callable[..., object], rt: RouteTable, requests: list[Request]) -> float:
    """CPU µs per call over ``requests``."""
    started = time.process_time()
    for host, method, path, query, headers in requests:
        fn(rt, host, method, path, query, headers)
    return (time.process_time() - started) / len(requests) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--count", type=int, default=20_000)
    args = parser.parse_args()

    snapshot = parse_snapshot_text(build_config(VHOSTS))
    rt = snapshot.route_tables["out"]
    rng = random.Random(7)
    rows = []
    ours_all: list[float] = []
    figures: dict[str, dict[str, float]] = {}
    for name, make in CASES.items():
        requests = [make(rng) for _ in range(args.count)]
        for host, method, path, query, headers in requests[:50]:  # same answers as the peer
            selection = select_route(rt, host, method, path, query, headers)
            assert selection is not None
            assert selection.route is naive_select(rt, host, method, path, query, headers)
        ours = [time_round(select_route, rt, requests) for _ in range(args.rounds)]
        naive = [time_round(naive_select, rt, requests) for _ in range(max(3, args.rounds // 2))]
        ours_all.append(min(ours))
        figures[name] = {"ours_us": min(ours), "ours_median_us": statistics.median(ours), "naive_us": min(naive)}
        rows.append(
            [
                name,
                f"{min(ours):.2f} (median {statistics.median(ours):.2f})",
                f"{min(naive):.1f}",
                f"{min(naive) / min(ours):.0f}x",
            ]
        )
    print(f"select_route on {VHOSTS} virtual hosts x 4 domains x 6 routes; CPU: {cpu_model()}")
    print(f"best of {args.rounds} rounds of {args.count} calls, CPU time per call\n")
    print(table(rows, ["case", "ours µs/call", "naive scan µs/call", "naive / ours"]))
    print(f"\nmean over cases: {statistics.mean(ours_all):.2f} µs per select_route")
    summary = {"mean_us": statistics.mean(ours_all), "rounds": args.rounds, "count": args.count}
    print(json.dumps({"bench": "route", "vhosts": VHOSTS, "cases": figures, **summary}))  # last line: every figure


if __name__ == "__main__":
    main()
