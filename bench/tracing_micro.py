#!/usr/bin/env python3
"""CPU per proxied request with OpenTelemetry export off, and on at 1 % and 100 % sampling.

    flock /tmp/mesh-bench.lock .venv/bin/python bench/tracing_micro.py [--count 20000] [--rounds 5]

The request path of bench/sidecar_micro.py (a real ``SidecarServer``, no sockets on the client
side) with the span exporter of ``sidecar.tracing`` sending real OTLP/HTTP protobuf batches to a
receiver in another process (so its CPU is not counted). Per request, two figures:
- ``loop``: CPU of the event loop's thread alone (what requests pay on the request path);
- ``total``: the whole process's CPU from the first request until every span of the round has
  been exported, the exporter thread included (what the sidecar pays in all);
and, from one more round, the p99 and the longest wall time of a single request (a request waits
while the exporter thread holds the interpreter lock).
Needs opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop

from bench.benchlib import free_port
from bench.sidecar_micro import proxied_request
from sidecar.access_log import AccessLog, AccessLogSettings
from sidecar.tracing import TracingSettings

RECEIVER = """
import sys
from aiohttp import web
async def traces(request):
    await request.read()
    return web.Response(body=b"", content_type="application/x-protobuf")
app = web.Application(client_max_size=64 * 1024**2)
app.router.add_post("/v1/traces", traces)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def wait_exported(log: AccessLog, timeout_s: float = 60.0) -> None:
    """Until the exporter thread has handled every recorded span (sleeping: no CPU of ours)."""
    tracer = log.tracer
    assert tracer is not None
    tracer.flush()
    deadline = time.monotonic() + timeout_s
    while tracer.exported + tracer.failed + tracer.dropped < tracer.sampled and time.monotonic() < deadline:
        time.sleep(0.005)


async def measure(label: str, ratio: float | None, url: str, count: int, rounds: int) -> dict[str, Any]:
    log = None
    if ratio is not None:
        # A queue as large as a round, so the figure includes exporting every span (none dropped).
        settings = TracingSettings(url, ratio, service="bench", max_queue_spans=count + 1024)
        log = AccessLog(AccessLogSettings(0.0, tracing=settings), lambda data: None)
    one, down, _up, server = await proxied_request(access_log=log)
    for _ in range(2000):
        one()
    if log is not None:
        wait_exported(log)
    assert down.out[-2].startswith(b"HTTP/1.1 200 OK"), down.out[-2:]
    loop_us, total_us = [], []
    for _ in range(rounds):
        gc.collect()
        thread0, process0 = time.thread_time(), time.process_time()
        for _ in range(count):
            one()
        loop_us.append((time.thread_time() - thread0) / count * 1e6)
        if log is not None:
            wait_exported(log)
        total_us.append((time.process_time() - process0) / count * 1e6)
    # One more round timing each request: how long a request can wait while the exporter thread
    # holds the interpreter lock (Python hands it over at most every sys.getswitchinterval()).
    walls = []
    clock = time.perf_counter
    for _ in range(count):
        start = clock()
        one()
        walls.append(clock() - start)
    if log is not None:
        wait_exported(log)
    walls.sort()
    result: dict[str, Any] = {
        "label": label,
        "loop_us": statistics.median(loop_us),
        "total_us": statistics.median(total_us),
        "p99_us": walls[int(0.99 * len(walls))] * 1e6,
        "max_us": walls[-1] * 1e6,
    }
    if log is not None and log.tracer is not None:
        tracer = log.tracer
        result.update(sampled=tracer.sampled, exported=tracer.exported, dropped=tracer.dropped, failed=tracer.failed)
    await server.stop()
    return result


async def run(args: argparse.Namespace, url: str) -> None:
    results = [
        await measure(label, ratio, url, args.count, args.rounds)
        for label, ratio in (("off", None), ("on, 1 %", 0.01), ("on, 100 %", 1.0))
    ]
    base = results[0]
    print(
        f"{'tracing':<12} {'loop µs/req':>12} {'total µs/req':>13} {'x off (total)':>14} "
        f"{'p99 wall µs':>12} {'max wall µs':>12}  spans"
    )
    for r in results:
        spans = (
            "" if "sampled" not in r else f"{r['sampled']} sampled, {r['exported']} exported, {r['dropped']} dropped"
        )
        ratio = r["total_us"] / base["total_us"]
        print(
            f"{r['label']:<12} {r['loop_us']:12.2f} {r['total_us']:13.2f} {ratio:14.2f} "
            f"{r['p99_us']:12.1f} {r['max_us']:12.1f}  {spans}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20_000, help="requests per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    try:
        time.sleep(1.0)
        uvloop.run(run(args, f"http://127.0.0.1:{port}/v1/traces"))
    finally:
        receiver.terminate()
        receiver.wait()


if __name__ == "__main__":
    main()
