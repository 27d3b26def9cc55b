#!/usr/bin/env python3
"""In-process micro-benchmark of the sidecar's HTTP/1.1 request path: Python cost per proxied request.

    .venv/bin/python bench/sidecar_micro.py              # µs per request (CPU time, best and median of 5 rounds)
    .venv/bin/python bench/sidecar_micro.py --opcodes    # bytecodes and Python calls per request, by function

No sockets: a real ``SidecarServer`` (the same config shape as bench/sidecar_bench.py: one HTTP
listener, one route, one cluster) gets a ``DownstreamConnection`` and an idle
``UpstreamConnection`` whose transports only collect what is written. Each request feeds a wrk-like
request head to the client side and an nginx-like 1 KB response to the upstream side, so the whole
exchange runs: parse, route, pick, pool, re-serialise, relay, metrics. What this leaves out is what
bench/sidecar_bench.py adds on top: uvloop's transport work and the system calls (a bare
uvloop+httptools pass-through costs ~8 µs user + ~24 µs system per request there).

``--opcodes`` counts the bytecodes each Python function executes per request with
``sys.settrace`` opcode events: a deterministic measure, unlike time on a shared machine, for
telling whether a change to the request path removed work.
"""

from __future__ import annotations

import argparse
import collections
import gc
import statistics
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop

from mesh.model.parse import parse_snapshot
from sidecar.http1.downstream import DownstreamConnection
from sidecar.http1.upstream import UpstreamConnection
from sidecar.server import SidecarConfig, SidecarServer

SNAPSHOT = {
    "version": "micro",
    "listeners": [{"name": "out", "protocol": "http", "host": "127.0.0.1", "port": 0, "route_table": "rt"}],
    "route_tables": [
        {
            "name": "rt",
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{"name": "all", "match": {"prefix": "/"}, "cluster": "nginx"}],
                }
            ],
        }
    ],
    "clusters": [{"name": "nginx", "endpoints": [{"host": "127.0.0.1", "port": 9}]}],
}
REQUEST = b"GET /1k.txt HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 23 Nov 2026 19:00:00 GMT\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 1024\r\nLast-Modified: Mon, 23 Nov 2026 18:00:00 GMT\r\nConnection: keep-alive\r\n"
    b'ETag: "abc-400"\r\nAccept-Ranges: bytes\r\n\r\n' + b"x" * 1023 + b"\n"
)


class CollectingTransport:
    """Just enough of an asyncio transport for the proxy's protocols: writes are kept, the rest is a no-op."""

    def __init__(self) -> None:
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def writelines(self, data: list[bytes]) -> None:
        self.out.extend(data)

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5555) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass


async def proxied_request(**options: Any) -> tuple[Any, CollectingTransport, CollectingTransport, SidecarServer]:
    """A function that runs one request through the proxy, and the transports it writes to (``options``:
    more ``SidecarServer`` arguments, e.g. an access log)."""
    server = SidecarServer(SidecarConfig(serve_admin=False, drain_timeout_s=0.0), **options)
    outcome = server.apply(parse_snapshot(SNAPSHOT))
    assert outcome.ok, outcome.error
    await server.settle()
    context = next(iter(server._listeners.values())).context
    pool = server.pools.pool("127.0.0.1", 9)
    upstream = UpstreamConnection(pool, server.config.http.limits)
    up_transport = CollectingTransport()
    upstream.connection_made(up_transport)  # type: ignore[arg-type]
    pool.live.add(upstream)
    pool.size += 1
    pool.idle.append(upstream)
    client = DownstreamConnection(context)  # type: ignore[arg-type]
    down_transport = CollectingTransport()
    client.connection_made(down_transport)  # type: ignore[arg-type]

    def one() -> None:
        client.data_received(REQUEST)
        upstream.data_received(RESPONSE)

    return one, down_transport, up_transport, server


def count_opcodes(one: Any, requests: int) -> None:
    ops: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()

    def tracer(frame: FrameType, event: str, _: object) -> Any:
        frame.f_trace_opcodes = True
        if event == "call":
            calls[frame.f_code.co_qualname] += 1
        elif event == "opcode":
            ops[frame.f_code.co_qualname] += 1
        return tracer

    sys.settrace(tracer)
    for _ in range(requests):
        one()
    sys.settrace(None)
    own = "one"
    total_ops = sum(n for name, n in ops.items() if name != own) / requests
    total_calls = sum(n for name, n in calls.items() if name != own) / requests
    print(f"bytecodes per request: {total_ops:.0f}; Python calls per request: {total_calls:.1f}")
    print(f"{'bytecodes':>10} {'calls':>6}  function")
    for name, n in ops.most_common(40):
        if name != own:
            print(f"{n / requests:10.1f} {calls[name] / requests:6.1f}  {name}")


def time_requests(one: Any, requests: int, rounds: int) -> None:
    samples = []
    for _ in range(rounds):
        gc.collect()
        start = time.process_time()
        for _ in range(requests):
            one()
        samples.append((time.process_time() - start) / requests * 1e6)
    print(f"µs per request (process CPU time): best {min(samples):.2f}, median {statistics.median(samples):.2f}")


async def run(args: argparse.Namespace) -> None:
    one, down, up, server = await proxied_request()
    for _ in range(2000):  # warm caches (route cache, pools, id batches)
        one()
    assert down.out[-2].startswith(b"HTTP/1.1 200 OK"), down.out[-2:]
    assert up.out[-1].startswith(b"GET /1k.txt HTTP/1.1\r\n"), up.out[-1]
    if args.opcodes:
        count_opcodes(one, 100)
    else:
        time_requests(one, args.count, args.rounds)
    await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--opcodes", action="store_true", help="count bytecodes and calls per request instead")
    parser.add_argument("--count", type=int, default=20_000, help="requests per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    uvloop.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
