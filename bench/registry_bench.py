#!/usr/bin/env python3
"""Benchmarks of the embedded Consul-compatible registry (`mesh registry`) as a real subprocess.

    python bench/registry_bench.py            # full run (a few minutes)
    python bench/registry_bench.py --quick    # smaller counts, for a smoke check

Three measurements, each against a fresh `mesh registry` started on a free loopback port
with a fresh data directory, pinned to CPU 0 with taskset; the load generator runs on CPU 1:

1. Registration throughput: concurrent keep-alive clients PUT /v1/agent/service/register with
   distinct IDs, each with a TTL check; registrations/s, latency, registry CPU per 1000 (median
   of 3 runs, a fresh registry per run).
2. Scale: 10k services x 10 instances on 1,000 nodes loaded with PUT /v1/catalog/register,
   then the registry's RSS and the latency of sequential reads.
3. Fan-out: 1,000 blocking watchers parked on /v1/health/service/<svc>; one TTL flip wakes
   them all; per watcher, time from the write's send to its response fully read (client-side
   processing included). Runs on the registry loaded by 2.

There is no peer to compare against: no Consul binary on these machines, so the figures are
checked against the absolute targets of bench/README.md. Only processes this script started
are stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import functools
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchlib import (
    REPO,
    Proc,
    can_pin,
    cpu_model,
    free_port,
    median,
    percentile,
    process_cpu_seconds,
    run_pool,
    table,
)

REGISTRY_CPU = 0
LOADGEN_CPU = 1
AGENT_NODE = "bench-agent"

TARGET_REG_RATE = 2000.0  # registrations/s on one core
TARGET_RSS_MB = 1024.0  # at 100k instances
TARGET_FANOUT_P99_MS = 50.0  # 1,000 watchers


# === small helpers ===


def machine_facts(data_root: Path, pinned: bool) -> dict[str, Any]:
    model = cpu_model()
    fs = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["df", "-T", str(data_root)], capture_output=True, text=True, check=True, timeout=10
        ).stdout.splitlines()
        fs = out[-1].split()[1]
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "kernel": platform.release(),
        "data_dir_fs": fs,
        "pinning": f"registry taskset -c {REGISTRY_CPU}, load generator CPU {LOADGEN_CPU}" if pinned else "none",
        "peer": "none: no Consul binary on this machine"
        if shutil.which("consul") is None
        else "consul present, unused",
    }


# === the registry under test ===


class RegistryProcess(Proc):
    """One `mesh registry` subprocess with its own data directory; stops only itself."""

    def __init__(self, data_root: Path, pin: bool, label: str) -> None:
        self.pin = pin
        self.dir = Path(tempfile.mkdtemp(prefix=f"registry-bench-{label}-", dir=data_root))
        super().__init__(label, self.dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        mesh = REPO / ".venv" / "bin" / "mesh"
        exe = str(mesh) if mesh.exists() else (shutil.which("mesh") or "mesh")
        argv = [exe, "registry", "--data-dir", str(self.dir / "data"), "--http-addr", f"127.0.0.1:{self.port}"]
        argv += ["--node", AGENT_NODE, "--log-level", "warning"]
        self.spawn(argv, REGISTRY_CPU if self.pin else None)
        assert self.proc is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"registry exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            time.sleep(0.05)
        raise RuntimeError(f"registry did not listen within 30 s:\n{self.log_tail()}")

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def new_session(limit: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, ttl_dns_cache=None)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None, sock_read=120))


# === 1. registration throughput ===


def agent_registration(run: int, i: int) -> bytes:
    """A realistic agent registration: tags, meta, address, port and one TTL check."""
    sid = f"api-r{run}-{i:06d}"
    body = {
        "ID": sid,
        "Name": f"api-{i % 100:03d}",
        "Tags": ["v2", "http", f"zone-{'abc'[i % 3]}"],
        "Address": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
        "Port": 8000 + i % 1000,
        "Meta": {"version": "2.4.1", "team": "payments", "commit": f"{i * 2654435761 % 2**32:08x}"},
        "EnableTagOverride": False,
        "Check": {
            "Name": f"ttl heartbeat of {sid}",
            "TTL": "120s",  # longer than one run: no expiry writes disturb the measurement
            "DeregisterCriticalServiceAfter": "10m",
            "Notes": "the instance heartbeats every 30s",
        },
    }
    return json.dumps(body).encode()


async def registration_run(reg: RegistryProcess, run: int, count: int, concurrency: int) -> dict[str, Any]:
    url = f"{reg.url}/v1/agent/service/register"
    bodies = [agent_registration(run, i) for i in range(count)]
    warm = [agent_registration(run + 1000, i) for i in range(max(concurrency * 4, 200))]
    latencies: list[float] = []
    errors = 0
    headers = {"Content-Type": "application/json"}

    async with new_session(concurrency) as session:

        async def put(body: bytes, record: bool) -> None:
            nonlocal errors
            started = time.perf_counter()
            async with session.put(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
            if record:
                latencies.append(time.perf_counter() - started)

        # Warm-up (not counted): opens the keep-alive connections, warms the code paths.
        await run_pool(len(warm), concurrency, lambda i: put(warm[i], False))
        cpu0, t0 = reg.cpu_seconds(), time.perf_counter()
        await run_pool(count, concurrency, lambda i: put(bodies[i], True))
        elapsed, cpu1 = time.perf_counter() - t0, reg.cpu_seconds()
    return {
        "count": count,
        "seconds": elapsed,
        "rate": count / elapsed,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "cpu_s_per_1000": (cpu1 - cpu0) / count * 1000,
        "cpu_share": (cpu1 - cpu0) / elapsed,
        "errors": errors,
    }


def bench_registration(args: argparse.Namespace, pin: bool) -> dict[str, Any]:
    runs = []
    for run in range(args.runs):
        reg = RegistryProcess(args.data_root, pin, f"reg{run}")
        try:
            reg.start()
            result = asyncio.run(registration_run(reg, run, args.registrations, args.concurrency))
        finally:
            reg.stop()
        print(
            f"  run {run + 1}/{args.runs}: {result['rate']:,.0f} reg/s, p50 {result['p50_ms']:.2f} ms, "
            f"p99 {result['p99_ms']:.2f} ms, {result['cpu_s_per_1000']:.3f} CPU s/1000, "
            f"registry CPU {result['cpu_share']:.2f} core, errors {result['errors']}",
            flush=True,
        )
        runs.append(result)
    keys = ("rate", "p50_ms", "p99_ms", "cpu_s_per_1000", "cpu_share")
    summary: dict[str, Any] = {k: median([r[k] for r in runs]) for k in keys}
    summary.update(
        runs=runs,
        count=args.registrations,
        concurrency=args.concurrency,
        errors=sum(r["errors"] for r in runs),
    )
    return summary


# === 2. 10k services / 100k instances ===


def node_address(n: int) -> str:
    return f"10.20.{n // 250}.{n % 250 + 1}"


def catalog_registration(svc: int, inst: int, nodes: int) -> bytes:
    n = (svc * 10 + inst) % nodes
    node = f"node-{n:04d}"
    name = f"svc-{svc:05d}"
    sid = f"{name}-{inst}"
    port = 20000 + inst
    body = {
        "Node": node,
        "ID": f"00000000-0000-4000-8000-{n:012d}",
        "Address": node_address(n),
        "NodeMeta": {"rack": f"r{n % 40:02d}", "pool": "general"},
        "Service": {
            "ID": sid,
            "Service": name,
            "Tags": ["v1", f"shard-{svc % 8}"],
            "Port": port,
            "Meta": {"version": "1.9.0", "owner": f"team-{svc % 50}"},
        },
        "Check": {
            "CheckID": f"service:{sid}",
            "Name": f"Service '{name}' check",
            "Status": "passing",
            "ServiceID": sid,
            "Output": "HTTP GET: 200 OK",
            "Definition": {"HTTP": f"http://{node_address(n)}:{port}/health", "Interval": "10s", "Timeout": "2s"},
        },
    }
    return json.dumps(body).encode()


async def load_catalog(reg: RegistryProcess, services: int, per_service: int, nodes: int, concurrency: int) -> float:
    url = f"{reg.url}/v1/catalog/register"
    headers = {"Content-Type": "application/json"}
    errors = 0
    async with new_session(concurrency) as session:

        async def put(i: int) -> None:
            nonlocal errors
            body = catalog_registration(i // per_service, i % per_service, nodes)
            async with session.put(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1

        t0 = time.perf_counter()
        await run_pool(services * per_service, concurrency, put)
        elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{errors} catalog registrations failed:\n{reg.log_tail()}")
    return elapsed


async def read_latencies(reg: RegistryProcess, services: int, samples: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    names = [f"svc-{rng.randrange(services):05d}" for _ in range(samples)]
    base = reg.url
    # Cached: the registry keeps rendered bodies per (query, index); a repeated query with no
    # write in between is served from that cache. Uncached: a query parameter the registry
    # ignores makes every request a new cache key, so each is rendered (as after each write).
    cases: list[tuple[str, str, Callable[[int], str]]] = [
        ("GET /v1/catalog/services", "cached", lambda i: "/v1/catalog/services"),
        ("GET /v1/catalog/services", "rendered", lambda i: f"/v1/catalog/services?bench={i}"),
        ("GET /v1/catalog/service/<name>", "rendered", lambda i: f"/v1/catalog/service/{names[i]}"),
        ("GET /v1/health/service/<name>?passing", "rendered", lambda i: f"/v1/health/service/{names[i]}?passing"),
        ("GET /v1/catalog/nodes", "cached", lambda i: "/v1/catalog/nodes"),
        ("GET /v1/catalog/nodes", "rendered", lambda i: f"/v1/catalog/nodes?bench={i}"),
    ]
    out = []
    async with new_session(1) as session:
        for label, mode, path_of in cases:
            latencies, sizes, first_ms = [], [], math.nan
            for i in range(samples):
                started = time.perf_counter()
                async with session.get(base + path_of(i)) as resp:
                    body = await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"{label}: HTTP {resp.status}: {body[:200]!r}")
                elapsed = time.perf_counter() - started
                if i == 0:
                    first_ms = elapsed * 1e3
                latencies.append(elapsed)
                sizes.append(len(body))
            out.append(
                {
                    "endpoint": label,
                    "mode": mode,
                    "n": samples,
                    "p50_ms": percentile(latencies, 50) * 1e3,
                    "p99_ms": percentile(latencies, 99) * 1e3,
                    "first_ms": first_ms,
                    "bytes": int(median(sizes)),
                }
            )
    return out


# === 3. fan-out to blocking watchers ===


@dataclass
class FanoutConfig:
    url: str
    service: str
    start_index: int
    watchers: int
    rounds: int
    client: str = "aiohttp"  # or "raw"
    sessions: int = 4


def watcher_process(conn: multiprocessing.connection.Connection, cfg: FanoutConfig) -> None:
    """Entry point of one watcher process: ``cfg.watchers`` blocking loops on one service."""
    import uvloop

    uvloop.run(_watchers(conn, cfg))


class _RoundLog:
    """Per-round completion times and indexes of this process's watchers; sent when a round is full."""

    def __init__(self, conn: multiprocessing.connection.Connection, watchers: int, rounds: int) -> None:
        self.conn = conn
        self.watchers = watchers
        self.times = [[0] * watchers for _ in range(rounds)]
        self.indexes = [[0] * watchers for _ in range(rounds)]
        self.errors: list[list[str]] = [[] for _ in range(rounds)]
        self.finished = [0] * rounds

    def record(self, r: int, i: int, t: int, index: int, error: str | None) -> None:
        self.times[r][i], self.indexes[r][i] = t, index
        if error:
            self.errors[r].append(error)
        self.finished[r] += 1
        if self.finished[r] == self.watchers:
            self.conn.send((r, self.times[r], self.indexes[r], self.errors[r]))


async def _watchers(conn: multiprocessing.connection.Connection, cfg: FanoutConfig) -> None:
    log = _RoundLog(conn, cfg.watchers, cfg.rounds)
    try:
        if cfg.client == "raw":
            await _raw_watchers(cfg, log)
        else:
            await _aiohttp_watchers(cfg, log)
    finally:
        conn.close()


async def _aiohttp_watchers(cfg: FanoutConfig, log: _RoundLog) -> None:
    per_session = math.ceil(cfg.watchers / cfg.sessions)
    sessions = [new_session(per_session + 8) for _ in range(cfg.sessions)]

    async def watch(i: int) -> None:
        session = sessions[i % len(sessions)]
        index = cfg.start_index
        for r in range(cfg.rounds):
            new_index, error = index, None
            try:
                async with session.get(f"{cfg.url}/v1/health/service/{cfg.service}?index={index}&wait=60s") as resp:
                    await resp.read()  # body read in full; not JSON-decoded (not part of the fan-out)
                    t = time.monotonic_ns()
                    new_index = int(resp.headers.get("X-Consul-Index", index))
                    if resp.status != 200:
                        error = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                t, error = time.monotonic_ns(), repr(exc)
            log.record(r, i, t, new_index, error)
            index = new_index

    try:
        await asyncio.gather(*(watch(i) for i in range(cfg.watchers)))
    finally:
        for session in sessions:
            await session.close()


class _RawWatcher(asyncio.Protocol):
    """Minimal HTTP/1.1 keep-alive client of one blocking query (attribution only: near-zero client cost)."""

    def __init__(self, cfg: FanoutConfig, i: int, log: _RoundLog, done: asyncio.Future[None]) -> None:
        self.cfg, self.i, self.log, self.done = cfg, i, log, done
        self.index, self.round = cfg.start_index, 0
        self.buf = bytearray()
        self.need = -1  # total bytes of the current response, once its head is parsed
        self.new_index, self.status = 0, 0
        self.transport: asyncio.Transport | None = None
        host = cfg.url.removeprefix("http://")
        self.request = f"GET /v1/health/service/{cfg.service}?index={{}}&wait=60s HTTP/1.1\r\nHost: {host}\r\n\r\n"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.transport.write(self.request.format(self.index).encode())

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.need < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            self.status = int(lines[0].split()[1])
            head = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
            self.new_index = int(head.get("x-consul-index", self.index))
            self.need = end + 4 + int(head["content-length"])
        if len(self.buf) < self.need:
            return
        t = time.monotonic_ns()
        del self.buf[: self.need]
        self.need = -1
        self.log.record(self.round, self.i, t, self.new_index, None if self.status == 200 else f"HTTP {self.status}")
        self.index, self.round = self.new_index, self.round + 1
        if self.round < self.cfg.rounds:
            self._send()
        elif not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"watcher {self.i}: connection lost ({exc})"))


async def _raw_watchers(cfg: FanoutConfig, log: _RoundLog) -> None:
    loop = asyncio.get_running_loop()
    host, _, port = cfg.url.removeprefix("http://").rpartition(":")
    dones = [loop.create_future() for _ in range(cfg.watchers)]
    transports = []
    for i, done in enumerate(dones):
        transport, _ = await loop.create_connection(functools.partial(_RawWatcher, cfg, i, log, done), host, int(port))
        transports.append(transport)
    try:
        await asyncio.gather(*dones)
    finally:
        for transport in transports:
            transport.close()


async def blocking_in_flight(session: aiohttp.ClientSession, url: str) -> float:
    async with session.get(f"{url}/metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith("mesh_registry_blocking_queries "):
            return float(line.split()[1])
    return math.nan


async def wait_parked(
    session: aiohttp.ClientSession, url: str, wanted: int, timeout: float, children: Sequence[Any]
) -> tuple[float, float]:
    """Poll /metrics until ``wanted`` blocking queries wait; returns (count, seconds waited)."""
    t0 = time.monotonic()
    count = math.nan
    while time.monotonic() - t0 < timeout:
        if any(not c.is_alive() for c in children):
            raise RuntimeError("a watcher process exited early (see its traceback above)")
        count = await blocking_in_flight(session, url)
        if count >= wanted:
            break
        await asyncio.sleep(0.05)  # each scrape costs the registry ~1 ms: do not poll harder
    return count, time.monotonic() - t0


async def fanout(
    reg: RegistryProcess, watchers: int, procs: int, rounds: int, instances: int, client: str
) -> dict[str, Any]:
    service = "fanout-web"
    ctx = multiprocessing.get_context("spawn")
    async with new_session(4) as session:
        for k in range(instances):
            sid = f"{service}-{k}"
            body = {
                "ID": sid,
                "Name": service,
                "Tags": ["v3", "canary" if k == 0 else "stable"],
                "Address": f"10.30.0.{k + 1}",
                "Port": 9090,
                "Meta": {"version": "3.0.0"},
                "Check": {"TTL": "10m", "DeregisterCriticalServiceAfter": "30m"},
            }
            async with session.put(f"{reg.url}/v1/agent/service/register", json=body) as resp:
                assert resp.status == 200, await resp.text()
            async with session.put(f"{reg.url}/v1/agent/check/pass/service:{sid}") as resp:
                assert resp.status == 200, await resp.text()
        async with session.get(f"{reg.url}/v1/health/service/{service}") as resp:
            payload = await resp.read()
            start_index = int(resp.headers["X-Consul-Index"])

        shares = [watchers // procs + (1 if p < watchers % procs else 0) for p in range(procs)]
        pipes: list[Any] = []
        children: list[multiprocessing.process.BaseProcess] = []
        for share in shares:
            parent, child = ctx.Pipe(duplex=False)
            cfg = FanoutConfig(reg.url, service, start_index, share, rounds, client)
            proc = ctx.Process(target=watcher_process, args=(child, cfg), daemon=True)
            proc.start()
            child.close()
            pipes.append(parent)
            children.append(proc)
        try:
            round_results = []
            all_latencies: list[float] = []
            parked, parked_s = await wait_parked(session, reg.url, watchers, 90, children)
            print(f"  {parked:.0f} watchers parked after {parked_s:.1f} s", flush=True)
            for r in range(rounds):
                if r:
                    parked, parked_s = await wait_parked(session, reg.url, watchers, 30, children)
                await asyncio.sleep(0.2)  # let re-arm traffic settle
                action = "fail" if r % 2 == 0 else "pass"
                cpu0 = reg.cpu_seconds()
                client0 = sum(process_cpu_seconds(c.pid or 0) for c in children)
                t_send = time.monotonic_ns()
                async with session.put(
                    f"{reg.url}/v1/agent/check/{action}/service:{service}-0?note=bench-round-{r}"
                ) as resp:
                    await resp.read()
                    write_ms = (time.monotonic_ns() - t_send) / 1e6
                    if resp.status != 200:
                        raise RuntimeError(f"TTL {action}: HTTP {resp.status}")
                try:  # wait=60s plus up to 1/16 jitter: a round that takes longer is broken
                    got = await asyncio.wait_for(asyncio.gather(*(asyncio.to_thread(p.recv) for p in pipes)), 75)
                except TimeoutError:
                    raise RuntimeError(f"fan-out round {r + 1}: not every watcher answered within 75 s") from None
                cpu1 = reg.cpu_seconds()
                client1 = sum(process_cpu_seconds(c.pid or 0) for c in children)
                lat = [(t - t_send) / 1e6 for _, times, _, _ in got for t in times]
                idx = [i for _, _, indexes, _ in got for i in indexes]
                errs = [e for _, _, _, errors in got for e in errors]
                all_latencies += lat
                result = {
                    "round": r + 1,
                    "parked": parked,
                    "write_ack_ms": write_ms,
                    "p50_ms": percentile(lat, 50),
                    "p99_ms": percentile(lat, 99),
                    "max_ms": max(lat),
                    "registry_cpu_ms": (cpu1 - cpu0) * 1e3,
                    "client_cpu_ms": (client1 - client0) * 1e3,
                    "stale_index": sum(1 for i in idx if i <= start_index),
                    "errors": len(errs),
                }
                start_index = max(idx)
                round_results.append(result)
                print(
                    f"  round {r + 1}/{rounds}: parked {parked:.0f}, write ack {write_ms:.1f} ms, "
                    f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, max {result['max_ms']:.1f} ms, "
                    f"CPU ms registry {result['registry_cpu_ms']:.0f} / clients {result['client_cpu_ms']:.0f}, "
                    f"errors {len(errs)}",
                    flush=True,
                )
        finally:
            for child_proc in children:
                child_proc.join(timeout=5)
            for child_proc in children:
                if child_proc.is_alive():
                    child_proc.terminate()  # still parked on the next round's blocking query
                child_proc.join(timeout=10)
    return {
        "client": client,
        "watchers": watchers,
        "watcher_processes": procs,
        "rounds": rounds,
        "response_bytes": len(payload),
        "instances": instances,
        # Pooled over every watcher of every round (rounds x watchers samples).
        "p50_ms": percentile(all_latencies, 50),
        "p99_ms": percentile(all_latencies, 99),
        "max_ms": max(all_latencies),
        "round_p99_ms": sorted(r["p99_ms"] for r in round_results),
        "errors": sum(r["errors"] for r in round_results),
        "round_results": round_results,
    }


def bench_scale_and_fanout(args: argparse.Namespace, pin: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    reg = RegistryProcess(args.data_root, pin, "scale")
    try:
        reg.start()
        idle = reg.memory_mb()
        instances = args.services * args.per_service
        print(
            f"  loading {args.services:,} services x {args.per_service} instances on {args.nodes:,} nodes ...",
            flush=True,
        )
        cpu0 = reg.cpu_seconds()
        load_s = asyncio.run(load_catalog(reg, args.services, args.per_service, args.nodes, args.concurrency))
        load_cpu = reg.cpu_seconds() - cpu0
        after_load = reg.memory_mb()
        print(
            f"  loaded {instances:,} instances in {load_s:.1f} s ({instances / load_s:,.0f}/s), "
            f"RSS {after_load['VmRSS']:.0f} MB",
            flush=True,
        )
        reads = asyncio.run(read_latencies(reg, args.services, args.read_samples))
        after_reads = reg.memory_mb()
        scale = {
            "services": args.services,
            "instances": instances,
            "nodes": args.nodes,
            "load_s": load_s,
            "load_rate": instances / load_s,
            "load_cpu_s": load_cpu,
            "rss_idle_mb": idle["VmRSS"],
            "rss_loaded_mb": after_load["VmRSS"],
            "rss_after_reads_mb": after_reads["VmRSS"],
            "rss_peak_mb": after_reads["VmHWM"],
            "reads": reads,
        }
        fans = []
        for client in args.fanout_clients:
            # The raw client keeps up in one process; more processes on the same core only add switching.
            procs = args.watcher_procs if client == "aiohttp" else 1
            print(f"  fan-out: {args.watchers} watchers, {client} client, in {procs} process(es) ...", flush=True)
            fan = asyncio.run(fanout(reg, args.watchers, procs, args.rounds, args.fanout_instances, client))
            fan["rss_after_mb"] = reg.memory_mb()["VmRSS"]
            fans.append(fan)
    finally:
        reg.stop()
    return scale, fans


# === report ===


def rss_max(scale: dict[str, Any], fans: list[dict[str, Any]]) -> float:
    return float(max([scale["rss_loaded_mb"], scale["rss_after_reads_mb"], *(f["rss_after_mb"] for f in fans)]))


def report(facts: dict[str, Any], reg: dict[str, Any], scale: dict[str, Any], fans: list[dict[str, Any]]) -> None:
    def met(ok: bool) -> str:
        return "yes" if ok else "NO"

    rss = rss_max(scale, fans)
    rows = [
        [
            f"registrations/s ({reg['count']:,} agent PUTs w/ TTL check, {reg['concurrency']} conns, median of "
            f"{len(reg['runs'])})",
            f"{reg['rate']:,.0f}",
            f">= {TARGET_REG_RATE:,.0f}",
            met(reg["rate"] >= TARGET_REG_RATE),
        ],
        ["registration latency p50 / p99", f"{reg['p50_ms']:.2f} / {reg['p99_ms']:.2f} ms", "-", "-"],
        ["registry CPU per 1000 registrations", f"{reg['cpu_s_per_1000']:.3f} s", "-", "-"],
        ["registration HTTP errors (all runs)", str(reg["errors"]), "0", met(reg["errors"] == 0)],
        [
            f"RSS at {scale['services']:,} services / {scale['instances']:,} instances on {scale['nodes']:,} nodes, "
            "right after the load",
            f"{scale['rss_loaded_mb']:.0f} MB",
            f"< {TARGET_RSS_MB:,.0f} MB",
            met(scale["rss_loaded_mb"] < TARGET_RSS_MB),
        ],
        [
            "  RSS max seen (after reads and fan-out; includes the rendered-body cache the reads filled)",
            f"{rss:.0f} MB",
            f"< {TARGET_RSS_MB:,.0f} MB",
            met(rss < TARGET_RSS_MB),
        ],
        [
            "catalog load via /v1/catalog/register (64 conns)",
            f"{scale['load_s']:.1f} s ({scale['load_rate']:,.0f}/s)",
            "-",
            "-",
        ],
    ]
    for r in scale["reads"]:
        rows.append(
            [f"{r['endpoint']} ({r['mode']}, {r['bytes']:,} B)", f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f} ms", "-", "-"]
        )
    for n, fan in enumerate(fans):
        cpu_reg = median([r["registry_cpu_ms"] for r in fan["round_results"]])
        cpu_cli = median([r["client_cpu_ms"] for r in fan["round_results"]])
        p99s = fan["round_p99_ms"]
        name = f"{fan['client']} client, {fan['watcher_processes']} proc"
        rows += [
            [
                f"fan-out to {fan['watchers']:,} watchers ({name}): p99 of each write's fan-out, median over "
                f"{fan['rounds']} rounds (pooled p50 / p99)",
                f"{median(p99s):.1f} ms ({fan['p50_ms']:.1f} / {fan['p99_ms']:.1f})",
                f"p99 <= {TARGET_FANOUT_P99_MS:.0f} ms" if n == 0 else "(attribution)",
                met(median(p99s) <= TARGET_FANOUT_P99_MS) if n == 0 else "-",
            ],
            [
                f"  {fan['client']}: max; p99 per round min / median / max",
                f"{fan['max_ms']:.1f}; {p99s[0]:.1f} / {median(p99s):.1f} / {p99s[-1]:.1f} ms",
                "-",
                "-",
            ],
            [
                f"  {fan['client']}: CPU per round, registry / watcher clients (median)",
                f"{cpu_reg:.0f} / {cpu_cli:.0f} ms",
                "-",
                "-",
            ],
            [
                f"  {fan['client']}: TTL write ack (median); errors; stale wake-ups",
                f"{median([r['write_ack_ms'] for r in fan['round_results']]):.1f} ms; {fan['errors']}; "
                f"{sum(r['stale_index'] for r in fan['round_results'])}",
                "-",
                "-",
            ],
        ]
    print()
    print("## Machine")
    for k, v in facts.items():
        print(f"- {k}: {v}")
    print()
    print("## Summary (latencies p50 / p99)")
    print(table(rows, ["metric", "value", "target", "met?"]))
    print()
    fan = fans[0]
    notes = [
        f"Fan-out: {fan['watchers']:,} watchers, each on its own keep-alive connection, all on the load-generator "
        f"core, against a registry holding {scale['instances']:,} instances. One TTL pass/fail flip per round wakes "
        f"every watcher ({fan['response_bytes']:,}-byte bodies); watchers then re-arm with the new index. Latency "
        "runs from the write's send to each watcher's response fully read, so client-side processing is included. "
        "'raw' (a minimal asyncio.Protocol HTTP client) is the measurement checked against the target: in a real "
        "deployment each watcher is a process on its own machine, while here all of them share one core, and with "
        "'aiohttp' clients (~150 us of client CPU per response, 4 processes) the figure mostly measures the load "
        "generator; it is printed for comparison. Each round is one write fanned out to every watcher; the "
        "checked figure is that round's p99, the median over rounds, because on this shared machine a round "
        "that coincides with other processes' CPU bursts shows up as a registry CPU spike and would otherwise "
        "set the pooled p99 alone (it is printed too).",
        "Reads: sequential, one keep-alive connection. 'cached' = same query and index, answered from the registry's "
        "rendered-body cache; 'rendered' = each request a new cache key (an ignored query parameter), so the body is "
        "built every time, as after each write.",
        "Peer: none (no Consul binary on this machine); the targets are the absolute ones from the issue.",
    ]
    for note in notes:
        print(textwrap.fill(note, width=118))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller counts: 3k registrations, 1k services/10k instances")
    p.add_argument("--registrations", type=int, help="registrations per run [20000; quick 3000]")
    p.add_argument("--runs", type=int, help="registration runs, median reported [3]")
    p.add_argument("--concurrency", type=int, default=64, help="client connections for writes [64]")
    p.add_argument("--services", type=int, help="services loaded [10000; quick 1000]")
    p.add_argument("--per-service", type=int, default=10, help="instances per service [10]")
    p.add_argument("--nodes", type=int, help="nodes the instances spread over [1000; quick 100]")
    p.add_argument("--read-samples", type=int, default=200, help="sequential requests per read endpoint [200]")
    p.add_argument("--watchers", type=int, default=1000, help="blocking watchers [1000]")
    p.add_argument(
        "--watcher-procs", type=int, default=4, help="processes holding the aiohttp watchers (raw: always 1) [4]"
    )
    p.add_argument("--rounds", type=int, help="fan-out rounds [9; quick 3]")
    p.add_argument("--fanout-instances", type=int, default=10, help="instances of the watched service [10]")
    p.add_argument(
        "--fanout-clients",
        default="raw,aiohttp",
        type=lambda v: [c for c in v.split(",") if c],
        help="watcher clients to run, in order; the first is checked against the target [raw,aiohttp]",
    )
    p.add_argument("--data-root", type=Path, default=Path(tempfile.gettempdir()), help="parent of the data dirs")
    p.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    args = p.parse_args(argv)
    if not args.fanout_clients or set(args.fanout_clients) - {"aiohttp", "raw"}:
        p.error("--fanout-clients: a comma-separated list of aiohttp and raw")
    defaults = {
        "registrations": (20000, 3000),
        "runs": (3, 3),
        "services": (10000, 1000),
        "nodes": (1000, 100),
        "rounds": (9, 3),
    }
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def _interrupted(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through the finally blocks that stop the registry


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupted)
    pin = can_pin() and not args.no_pin
    if pin:
        os.sched_setaffinity(0, {LOADGEN_CPU})  # this process and its watcher children
    facts = machine_facts(args.data_root, pin)
    started = time.monotonic()
    print("# Registry benchmarks" + (" (--quick)" if args.quick else ""))
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    for k, v in facts.items():
        print(f"{k}: {v}")
    print(f"\n[1/3] registration throughput: {args.runs} runs x {args.registrations:,}, {args.concurrency} connections")
    reg = bench_registration(args, pin)
    print(f"\n[2/3] scale: {args.services:,} services x {args.per_service} instances, then [3/3] fan-out")
    scale, fans = bench_scale_and_fanout(args, pin)
    report(facts, reg, scale, fans)
    result = {
        "bench": "registry",
        "quick": args.quick,
        "machine": facts,
        "registration": reg,
        "scale": scale,
        "fanout": fans,
        "targets_met": {
            "registration_rate": reg["rate"] >= TARGET_REG_RATE,
            "rss": rss_max(scale, fans) < TARGET_RSS_MB,  # the stricter reading: max seen, not just after load
            "fanout_p99": median(fans[0]["round_p99_ms"]) <= TARGET_FANOUT_P99_MS,
        },
        "wall_s": time.monotonic() - started,
    }
    print()
    print(json.dumps(result, separators=(",", ":")))  # the last line: machine-readable results
    return 0


if __name__ == "__main__":
    sys.exit(main())
