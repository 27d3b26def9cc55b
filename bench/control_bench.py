#!/usr/bin/env python3
"""Benchmark of the control plane's push path: one `PUT /v1/mesh/config` → every sidecar ACKed.

    flock /tmp/mesh-bench.lock .venv/bin/python bench/control_bench.py            # 100 sidecars, 30 applies
    flock /tmp/mesh-bench.lock .venv/bin/python bench/control_bench.py --quick    # 20 sidecars, 5 applies

Real processes on loopback: `mesh registry` (fresh data dir) with two `reviews` instances
(Meta version v1/v2); `mesh control` (fresh data dir) pinned to CPU 0; the sidecar clients in
``--procs`` processes on CPU 1 (with the registry), each running its share of ``--sidecars``
``ControlPlaneSource`` tasks — the real sync protocol: register, ask for ``reviews``, long-poll,
parse and validate each snapshot with ``mesh.model.parse``, ACK — with an apply that accepts
and prints the time it applied.

Each apply flips the ``reviews`` VirtualService between 90/10 and 10/90 over subsets v1/v2, so
every sidecar's snapshot changes. Measured per apply: from just before the PUT is sent to the
last ACK the control plane recorded (its ``/v1/mesh/status`` ``last_ack.at``, read once after
every client reported the new version; wall clock, ms resolution), and per sidecar, the time to
its own ACK. Also: control-plane CPU (utime+stime) per apply and its RSS. No peer: no Istio
here, so figures are checked against the issue's target (p99 ≤ 200 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchlib import REPO, Proc, can_pin, cpu_model, free_port, median, percentile, process_cpu_seconds, table

TARGET_P99_MS = 200.0
CONTROL_CPU = 0
LOAD_CPU = 1
MESH = str(REPO / ".venv" / "bin" / "mesh")
SELF = str(Path(__file__).resolve())
PYTHON = str(REPO / ".venv" / "bin" / "python")


def rules(first_weight: int) -> bytes:
    subsets = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "reviews"},
        "spec": {
            "host": "reviews",
            "subsets": [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}],
        },
    }
    route = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews"},
        "spec": {
            "hosts": ["reviews"],
            "http": [
                {
                    "route": [
                        {"destination": {"host": "reviews", "subset": "v1"}, "weight": first_weight},
                        {"destination": {"host": "reviews", "subset": "v2"}, "weight": 100 - first_weight},
                    ]
                }
            ],
        },
    }
    return yaml.safe_dump_all([subsets, route]).encode()


# === the client processes ===


async def run_clients(address: str, first: int, count: int, distinct: bool) -> None:
    """``count`` sidecar sources; prints ``applied <id> <version> <wall time>`` per accepted snapshot."""
    from mesh.model.snapshot import Snapshot
    from sidecar.sources.base import APPLIED, ApplyResult
    from sidecar.sources.control_plane import ControlPlaneSource
    from sidecar.sources.defaults import SidecarSettings

    def make_apply(sidecar_id: str) -> Any:
        def apply(snapshot: Snapshot) -> ApplyResult:
            print(f"applied {sidecar_id} {snapshot.version} {time.time():.6f}", flush=True)
            return APPLIED

        return apply

    sources = []
    tasks = []
    for i in range(first, first + count):
        sidecar_id = f"productpage-{i}"
        source = ControlPlaneSource(
            # distinct: each sidecar its own listener layout, so no two share a computed snapshot
            SidecarSettings(
                service="productpage", outbound_addr=f"127.0.0.1:{20000 + i}" if distinct else "127.0.0.1:15001"
            ),
            address,
            sidecar_id=sidecar_id,
            wait=60.0,
        )
        sources.append(source)
        tasks.append(asyncio.create_task(source.run(make_apply(sidecar_id))))
    for source in sources:
        for _ in range(100):  # the first tries may come before the source has registered
            if await source.demand("reviews"):
                break
            await asyncio.sleep(0.1)
    print("ready", flush=True)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*tasks)


# === the driver ===


class Clients:
    """The client processes and what they printed."""

    def __init__(self) -> None:
        self.applied: dict[str, dict[str, float]] = {}  # version -> sidecar -> wall time
        self.ready = 0
        self.changed = asyncio.Event()
        self.procs: list[asyncio.subprocess.Process] = []
        self._readers: list[asyncio.Task[None]] = []

    async def start(self, address: str, sidecars: int, procs: int, pin: bool, distinct: bool) -> None:
        share = [sidecars // procs + (1 if i < sidecars % procs else 0) for i in range(procs)]
        first = 0
        for count in share:
            argv = [
                PYTHON,
                SELF,
                "client",
                address,
                str(first),
                str(count),
                str(int(distinct)),
            ]
            if pin:
                argv = ["taskset", "-c", str(LOAD_CPU), *argv]
            proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, cwd=REPO)
            self.procs.append(proc)
            self._readers.append(asyncio.create_task(self._read(proc)))
            first += count

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            parts = raw.decode().split()
            if parts[:1] == ["ready"]:
                self.ready += 1
            elif parts[:1] == ["applied"]:
                self.applied.setdefault(parts[2], {})[parts[1]] = float(parts[3])
            self.changed.set()

    async def until(self, condition: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("clients did not get there in time")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    def cpu_seconds(self) -> float:
        return sum(process_cpu_seconds(proc.pid) for proc in self.procs)

    async def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in self.procs:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)


def ack_time(stamp: str) -> float:
    """``2026-11-23T16:01:49.109Z`` → epoch seconds."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + float(f"0.{fraction or '0'}")


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    pin = can_pin() and not args.no_pin
    work = Path(tempfile.mkdtemp(prefix="control-bench-"))
    registry_port, control_port = free_port(), free_port()
    registry = Proc("registry", work)
    control = Proc("control", work)
    clients = Clients()
    env = {**os.environ, "CONSUL_HTTP_ADDR": f"http://127.0.0.1:{registry_port}", "MESH_LOG_LEVEL": "warning"}
    try:
        registry.spawn(
            [MESH, "registry", "--http-addr", f"127.0.0.1:{registry_port}", "--data-dir", str(work / "registry")],
            LOAD_CPU if pin else None,
            env,
        )
        registry_url = f"http://127.0.0.1:{registry_port}"
        await wait_http(registry_url + "/readyz")
        async with aiohttp.ClientSession(base_url=registry_url) as http:
            for version, port in (("v1", 9081), ("v2", 9082)):
                body = {
                    "Name": "reviews",
                    "ID": f"reviews-{version}",
                    "Port": port,
                    "Address": "127.0.0.1",
                    "Meta": {"version": version},
                }
                async with http.put("/v1/agent/service/register", json=body) as r:
                    assert r.status == 200, await r.text()
        control.spawn(
            [MESH, "control", "--http-addr", f"127.0.0.1:{control_port}", "--data-dir", str(work / "control")],
            CONTROL_CPU if pin else None,
            env,
        )
        control_url = f"http://127.0.0.1:{control_port}"
        await wait_http(control_url + "/readyz")
        async with aiohttp.ClientSession(base_url=control_url) as http:
            async with http.put("/v1/mesh/config", data=rules(50)) as r:
                assert r.status == 200, await r.text()
            await clients.start(control_url, args.sidecars, args.procs, pin, args.distinct)
            await clients.until(lambda: clients.ready == args.procs, 120)
            print(f"{args.sidecars} sidecars ready in {args.procs} processes", file=sys.stderr)
            rss_before = control.memory_mb().get("VmRSS", 0.0)
            cpu_before = control.cpu_seconds()
            clients_before = clients.cpu_seconds()
            all_acks: list[float] = []
            per_apply: list[float] = []
            put_times: list[float] = []
            for i in range(args.applies):
                await asyncio.sleep(args.pause)
                rule_text = rules(90 if i % 2 == 0 else 10)
                sent = time.time()
                async with http.put("/v1/mesh/config", data=rule_text) as r:
                    result = await r.json()
                    assert r.status == 200, result
                put_times.append(time.time() - sent)
                version = result["version"]
                prefix = f"{version}."
                await clients.until(
                    lambda p=prefix: (
                        sum(len(v) for k, v in clients.applied.items() if k.startswith(p)) >= args.sidecars
                    ),
                    60,
                )
                acks = await acked_after(http, prefix, sent, args.sidecars)
                all_acks.extend(acks)
                per_apply.append(max(acks))
                print(
                    f"apply {i + 1}: config {version}, PUT answered after {put_times[-1] * 1000:.1f} ms, "
                    f"first ACK {min(acks) * 1000:.1f} ms, all {len(acks)} ACKed after {max(acks) * 1000:.1f} ms",
                    file=sys.stderr,
                )
            cpu = control.cpu_seconds() - cpu_before
            clients_cpu = clients.cpu_seconds() - clients_before
            memory = control.memory_mb()
        return {
            "sidecars": args.sidecars,
            "procs": args.procs,
            "applies": args.applies,
            "pinned": pin,
            "distinct_profiles": args.distinct,
            "all_acked_p50_ms": median(per_apply) * 1000,
            "all_acked_p99_ms": percentile(per_apply, 99) * 1000,
            "all_acked_max_ms": max(per_apply) * 1000,
            "sidecar_ack_p50_ms": median(all_acks) * 1000,
            "sidecar_ack_p99_ms": percentile(all_acks, 99) * 1000,
            "put_p50_ms": median(put_times) * 1000,
            "put_p99_ms": percentile(put_times, 99) * 1000,
            "control_cpu_ms_per_apply": cpu / args.applies * 1000,
            "clients_cpu_ms_per_apply": clients_cpu / args.applies * 1000,
            "control_rss_mb_before": rss_before,
            "control_rss_mb": memory.get("VmRSS", 0.0),
            "control_hwm_mb": memory.get("VmHWM", 0.0),
            "cpu_model": cpu_model(),
            "python": platform.python_version(),
        }
    finally:
        await clients.stop()
        control.stop()
        registry.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


async def acked_after(http: aiohttp.ClientSession, prefix: str, sent: float, sidecars: int) -> list[float]:
    """Seconds from ``sent`` to each sidecar's ACK of the version starting with ``prefix``, as the
    control plane recorded them (the last ACK POSTs may still be in flight when the clients say
    they applied: read the status until all are there)."""
    deadline = time.monotonic() + 30
    while True:
        async with http.get("/v1/mesh/status") as r:
            status = await r.json()
        acks = [
            ack_time(s["last_ack"]["at"]) - sent
            for s in status["sidecars"]
            if s["last_ack"] and s["last_ack"]["version"].startswith(prefix)
        ]
        if len(acks) == sidecars:
            return acks
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(acks)} of {sidecars} ACKed {prefix}")
        await asyncio.sleep(0.01)


async def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as r:
                    if r.status == 200:
                        return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} never answered")
            await asyncio.sleep(0.05)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        import uvloop

        _, _, address, first, count, distinct = sys.argv
        uvloop.run(run_clients(address, int(first), int(count), distinct == "1"))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sidecars", type=int, default=100)
    parser.add_argument("--procs", type=int, default=4, help="client processes (1-4)")
    parser.add_argument("--applies", type=int, default=30)
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between applies")
    parser.add_argument("--quick", action="store_true", help="20 sidecars, 2 processes, 5 applies")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    parser.add_argument(
        "--distinct",
        action="store_true",
        help="give every sidecar its own listener layout: 100 snapshot computations per apply instead of one",
    )
    args = parser.parse_args()
    if args.quick:
        args.sidecars, args.procs, args.applies = 20, 2, 5
    import uvloop

    result = uvloop.run(drive(args))
    rows = [
        [
            "PUT → every sidecar ACKed, p50 / p99 / max",
            f"{result['all_acked_p50_ms']:.1f} / {result['all_acked_p99_ms']:.1f} / "
            f"{result['all_acked_max_ms']:.1f} ms",
            f"p99 ≤ {TARGET_P99_MS:.0f} ms",
            "yes" if result["all_acked_p99_ms"] <= TARGET_P99_MS else "**no**",
        ],
        [
            "PUT answered (validated, committed with fsync), p50 / p99",
            f"{result['put_p50_ms']:.1f} / {result['put_p99_ms']:.1f} ms",
            "-",
            "-",
        ],
        [
            "PUT → one sidecar's ACK, p50 / p99",
            f"{result['sidecar_ack_p50_ms']:.1f} / {result['sidecar_ack_p99_ms']:.1f} ms",
            "-",
            "-",
        ],
        ["control-plane CPU per apply", f"{result['control_cpu_ms_per_apply']:.1f} ms", "-", "-"],
        [
            f"sidecar clients' CPU per apply (all {result['sidecars']}, one core)",
            f"{result['clients_cpu_ms_per_apply']:.1f} ms",
            "-",
            "-",
        ],
        [
            "control-plane RSS (before / after / peak)",
            f"{result['control_rss_mb_before']:.0f} / {result['control_rss_mb']:.0f} / "
            f"{result['control_hwm_mb']:.0f} MB",
            "-",
            "-",
        ],
    ]
    print(
        f"\n{result['sidecars']} sidecars in {result['procs']} processes, {result['applies']} applies, "
        f"distinct profiles={result['distinct_profiles']}, pinned={result['pinned']}, {result['cpu_model']}"
    )
    print(table(rows, ["what", "result", "target", "met"]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
