#!/usr/bin/env python3
"""Open-loop HTTP/1.1 load generator: a fixed request rate, latency measured from the intended send time.

    python bench/loadgen.py --url http://127.0.0.1:15001/1k.txt --host web --rate 1000 --duration 20

Request i is due at ``start + i / rate`` whether or not earlier requests have been answered
(open loop), and its latency runs from that due time to the last byte of its response. A slow
server therefore shows up as queueing in the figures instead of quietly lowering the sending
rate (coordinated omission, the flaw of closed-loop tools like wrk). Requests go out on a pool
of keep-alive connections; when none is idle a new one is opened (up to ``--max-connections``),
beyond that requests wait for a connection, and that wait counts in their latency.

The client is a bare asyncio Protocol with httptools on uvloop, so its own overhead per request
is a few tens of µs. Output: one JSON object (percentiles in ms, counts, errors, achieved rate).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections import deque
from urllib.parse import urlsplit

import httptools
import uvloop


class Conn(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, gen: LoadGen) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.due = 0.0
        self.status = 0
        self.busy = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.ready.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.gen.finish(self, ok=False)
            if self.transport is not None:
                self.transport.close()

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_message_complete(self) -> None:
        self.gen.finish(self, ok=200 <= self.status < 300)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gen.lost(self)

    def send(self, request: bytes, due: float) -> None:
        # Latency runs from the due time, or from the actual send when the timer woke a bit early.
        self.due = min(due, time.perf_counter())
        self.busy = True
        assert self.transport is not None
        self.transport.write(request)


class LoadGen:
    def __init__(self, host: str, port: int, request: bytes, max_connections: int) -> None:
        self.host = host
        self.port = port
        self.request = request
        self.max_connections = max_connections
        self.idle: list[Conn] = []
        self.conns: set[Conn] = set()
        self.connecting = 0
        self.waiting: deque[float] = deque()
        self.latencies: list[float] = []
        self.errors = 0
        self.sent = 0
        self.outstanding = 0
        self.done = asyncio.Event()
        self.all_sent = False
        self.measure_from = math.inf  # due time of the first measured request (warm-up ones are not counted)

    def finish(self, conn: Conn, ok: bool) -> None:
        if not conn.busy:
            return
        conn.busy = False
        self.outstanding -= 1
        if conn.due < self.measure_from:
            pass
        elif ok:
            self.latencies.append(time.perf_counter() - conn.due)
        else:
            self.errors += 1
        self._give(conn)

    def lost(self, conn: Conn) -> None:
        self.conns.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.busy:
            conn.busy = False
            self.outstanding -= 1
            self.errors += 1
        self._check_done()

    def _give(self, conn: Conn) -> None:
        if self.waiting:
            conn.send(self.request, self.waiting.popleft())
        else:
            self.idle.append(conn)
        self._check_done()

    def _check_done(self) -> None:
        if self.all_sent and self.outstanding == 0 and not self.waiting:
            self.done.set()

    def submit(self, due: float) -> None:
        self.sent += 1
        self.outstanding += 1
        if self.idle:
            self.idle.pop().send(self.request, due)
            return
        self.waiting.append(due)
        if len(self.conns) + self.connecting < self.max_connections:
            self.connecting += 1
            asyncio.get_running_loop().create_task(self._open())

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(lambda: Conn(self), self.host, self.port)
        except OSError:
            self.connecting -= 1
            if self.waiting:
                self.waiting.popleft()
                self.outstanding -= 1
                self.errors += 1
            self._check_done()
            return
        self.connecting -= 1
        self.conns.add(conn)
        self._give(conn)


async def run(
    url: str, host_header: str | None, rate: float, duration: float, max_connections: int, warmup: float
) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request = f"GET {path} HTTP/1.1\r\nHost: {host_header or parts.netloc}\r\nUser-Agent: mesh-loadgen\r\n\r\n".encode()
    total = int(rate * duration)
    warm = int(rate * warmup)
    gen = LoadGen(host, port, request, max_connections)
    interval = 1.0 / rate
    start = time.perf_counter() + 0.05
    for i in range(warm + total):
        due = start + i * interval
        if i == warm:
            gen.measure_from = due
            measured_start = time.perf_counter()
        delay = due - time.perf_counter()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        gen.submit(due)
    gen.all_sent = True
    gen._check_done()
    try:
        async with asyncio.timeout(30):
            await gen.done.wait()
    except TimeoutError:
        gen.errors += gen.outstanding
    elapsed = time.perf_counter() - measured_start
    for conn in list(gen.conns):
        if conn.transport is not None:
            conn.transport.close()
    values = sorted(gen.latencies)

    def pct(p: float) -> float:
        if not values:
            return math.nan
        return values[max(0, math.ceil(p / 100 * len(values)) - 1)] * 1000

    return {
        "rate": rate,
        "requests": total,
        "completed": len(values),
        "errors": gen.errors,
        "achieved_rps": round(len(values) / elapsed, 1) if elapsed > 0 else 0.0,
        "connections": len(gen.conns),
        "p50_ms": round(pct(50), 4),
        "p90_ms": round(pct(90), 4),
        "p99_ms": round(pct(99), 4),
        "p999_ms": round(pct(99.9), 4),
        "max_ms": round(values[-1] * 1000, 4) if values else math.nan,
        "mean_ms": round(sum(values) / len(values) * 1000, 4) if values else math.nan,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--host", default=None, help="Host header (default: the URL's authority)")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds sent first and not measured")
    parser.add_argument("--max-connections", type=int, default=64)
    args = parser.parse_args()
    result = uvloop.run(run(args.url, args.host, args.rate, args.duration, args.max_connections, args.warmup))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
