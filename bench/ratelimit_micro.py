#!/usr/bin/env python3
"""CPU per rate-limit decision on the inbound request path: a token bucket by header, and a shared window.

    flock /tmp/mesh-bench.lock .venv/bin/python bench/ratelimit_micro.py [--count 200000] [--rounds 5]

``sidecar.ratelimit.limiter.InboundLimiter.check`` as ``GuardedDownstream`` calls it (method, path,
the request head's header lookup, client IP), over 1,000 client keys: ``token bucket`` is one
``tokenBucket`` limit keyed by a header; ``shared`` one ``shared`` limit (the per-request part:
the KV sync runs on its own every 100 ms and is not on the request path, so no registry is needed
here; the window is large enough that nothing is refused). Process CPU time per decision, best and
median of the rounds, in ns. A sidecar without limits runs none of this (its inbound listener
accepts with the plain protocol).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchlib import table
from mesh.model.ratelimit import RateLimitEntry
from mesh.rules.fields import Reader
from mesh.rules.ratelimit import parse_rate_limit_policy
from sidecar.ratelimit.limiter import InboundLimiter, RateLimitState

LIMITS: dict[str, dict[str, Any]] = {
    "token bucket": {
        "name": "per-user",
        "key": {"header": "x-user"},
        "tokenBucket": {"maxTokens": 1000000000, "fillInterval": "1s"},
    },
    "shared": {
        "name": "everyone",
        "key": {"header": "x-user"},
        "shared": {"requestsPerUnit": 1000000000, "unit": "DAY"},
    },
}


def limiter(limit: dict[str, Any]) -> InboundLimiter:
    spec = parse_rate_limit_policy(Reader({"limits": [limit]}, "spec"))
    compiled = RateLimitState().compile([RateLimitEntry("default", "bench", spec, {})])
    assert compiled is not None
    return compiled


async def per_decision_ns(check: InboundLimiter, count: int) -> float:
    headers = [{b"x-user": f"user-{i % 1000}".encode()} for i in range(1000)]
    lookups = [h.get for h in headers]
    started = time.process_time()
    for i in range(count):
        assert check.check("GET", "/api/items", lookups[i % 1000], "127.0.0.1") is None
    return (time.process_time() - started) / count * 1e9


async def main_async(count: int, rounds: int) -> dict[str, dict[str, float]]:
    figures: dict[str, dict[str, float]] = {}
    for label, limit in LIMITS.items():
        runs = [await per_decision_ns(limiter(limit), count) for _ in range(rounds)]
        figures[label] = {"best": min(runs), "median": statistics.median(runs)}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200_000, help="decisions per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    figures = asyncio.run(main_async(args.count, args.rounds))
    rows = [[label, f"{f['best']:.0f}", f"{f['median']:.0f}"] for label, f in figures.items()]
    print(table(rows, ["limit", "best ns/decision", "median ns/decision"]))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
