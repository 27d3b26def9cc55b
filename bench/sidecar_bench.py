#!/usr/bin/env python3
"""Benchmark of the sidecar proxy (`mesh sidecar`) against HAProxy, side by side in one run.

    flock /tmp/mesh-bench.lock .venv/bin/python bench/sidecar_bench.py            # full run (~4 minutes)
    flock /tmp/mesh-bench.lock .venv/bin/python bench/sidecar_bench.py --quick    # short runs (smoke check)

Method (bench/README.md): proxies under test are pinned to CPU 0, load generators and backends
to CPU 1 (``taskset``); everything on loopback; each measurement runs our sidecar and its peer
under the same load and pinning, one after the other, in interleaved rounds; medians are
reported with the ratio. The backend is nginx (one worker) serving a 1 KB file, so the
backend is not Python-bound. Parts:

1. L7 CPU per request: ``wrk -t1 -c32`` keep-alive, 1 KB responses, client → proxy → nginx.
   CPU µs per request = (utime+stime of the proxy process from /proc/PID/stat) ÷ requests.
   Proxies: mesh sidecar (1 worker), HAProxy (nbthread 1, http-reuse always), and for
   calibration a bare uvloop+httptools pass-through (no routing, no pooling, no metrics).
   Target: HAProxy µs/req ÷ sidecar µs/req ≥ 0.6.
2. Added latency at a fixed 1,000 rps (bench/loadgen.py, open loop, latency from the intended
   send time): client → sidecar (outbound) → sidecar (inbound) → nginx, against client → nginx
   directly, interleaved. Target: p99 increase ≤ 0.25 ms.
3. CPU share and RSS of one sidecar during part 2 (the outbound one). Targets ≤ 0.05 core, ≤ 25 MB.
4. L4: iperf3 (10 s, one stream) through the sidecar's TCP listener vs HAProxy ``mode tcp``.
   Target: ≥ 0.6 x HAProxy's throughput.
6. (``--only workers``, and by default on machines with 8+ CPUs) Throughput vs workers: ``wrk`` rps
   through ``mesh sidecar --workers N`` and HAProxy ``nbthread N`` for N = 1, 2, 4, 8 up to half
   the CPUs; proxies pinned to CPUs 0..N-1, wrk and nginx (one worker per load CPU) to the other
   half. Throughput here is the figure (the load side has as many CPUs as the proxy side).
5. Hot swaps: ``wrk -c32`` for the whole phase while the config file is rewritten and the
   sidecar sent SIGHUP 100 times (weights, routes and policies change each time). Target: 0
   failed requests (wrk's non-2xx and socket errors) and 101 applied configs.

Peers come from Debian (``apt-get install -y haproxy wrk iperf3 nginx-light``; the script
installs what is missing when run as root). Only processes this script started are stopped.
The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchlib import (
    REPO,
    Proc,
    can_pin,
    cpu_model,
    free_port,
    median,
    process_cpu_seconds,
    process_memory_mb,
    table,
)

PROXY_CPU = 0
LOAD_CPU = 1
MESH = str(REPO / ".venv" / "bin" / "mesh")
PYTHON = str(REPO / ".venv" / "bin" / "python")

TARGET_CPU_RATIO = 0.6
TARGET_ADDED_P99_MS = 0.25
TARGET_CORE_SHARE = 0.05
TARGET_RSS_MB = 25.0
TARGET_L4_RATIO = 0.6

BARE_PROXY = r"""
# Calibration only: a bare uvloop + httptools pass-through (parses both ways; one upstream
# connection per client connection; no routing, pooling, metrics or header handling).
import asyncio, sys, httptools, uvloop
UP = ("127.0.0.1", int(sys.argv[2]))
class Up(asyncio.Protocol):
    def __init__(s, down): s.down = down; s.p = httptools.HttpResponseParser(s); s.buf = []
    def connection_made(s, t): s.t = t; s.down.up_ready(s)
    def data_received(s, d): s.buf.append(d); s.p.feed_data(d)
    def on_message_complete(s): s.down.t.write(b"".join(s.buf)); s.buf = []
class Down(asyncio.Protocol):
    def connection_made(s, t):
        s.t = t; s.p = httptools.HttpRequestParser(s); s.up = None; s.pending = []; s.buf = []
        asyncio.get_running_loop().create_task(asyncio.get_running_loop().create_connection(lambda: Up(s), *UP))
    def up_ready(s, up):
        s.up = up
        for d in s.pending: up.t.write(d)
    def data_received(s, d): s.buf.append(d); s.p.feed_data(d)
    def on_url(s, u): pass
    def on_header(s, n, v): pass
    def on_message_complete(s):
        data = b"".join(s.buf); s.buf = []
        if s.up: s.up.t.write(data)
        else: s.pending.append(data)
async def main():
    await asyncio.get_running_loop().create_server(Down, "127.0.0.1", int(sys.argv[1]))
    await asyncio.Event().wait()
uvloop.run(main())
"""


# === peers ===


def ensure_peers() -> list[str]:
    missing = [tool for tool in ("haproxy", "wrk", "iperf3", "nginx") if shutil.which(tool) is None]
    if missing and os.geteuid() == 0:
        packages = {"haproxy": "haproxy", "wrk": "wrk", "iperf3": "iperf3", "nginx": "nginx-light"}
        cmd = ["apt-get", "install", "-y", *(packages[m] for m in missing)]
        if subprocess.run(cmd, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True)
            subprocess.run(cmd, capture_output=True)
    return [tool for tool in ("haproxy", "wrk", "iperf3", "nginx") if shutil.which(tool) is None]


def pin(cpu: int, pinning: bool) -> int | None:
    return cpu if pinning else None


def taskset(cpu: int, pinning: bool) -> list[str]:
    return ["taskset", "-c", str(cpu)] if pinning else []


def wait_http(url: str, timeout: float = 15.0, host: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url, headers={"Host": host} if host else {})
            with urllib.request.urlopen(request, timeout=1) as response:
                if response.status < 500:
                    return
        except Exception:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


def wait_listening(port: int, timeout: float = 10.0) -> None:
    """Until a TCP socket listens on ``port`` (read from /proc/net/tcp*, without connecting to it)."""
    wanted = f":{port:04X} "
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for sockets in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(sockets) as lines:
                next(lines)
                if any(wanted in line and line.split()[3] == "0A" for line in lines):  # 0A: LISTEN
                    return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def wait_port(port: int, timeout: float = 10.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def start_nginx(work: Path, ports: list[int], pinning: bool, workers: int = 1, cpus: str | None = None) -> Proc:
    root = work / "www"
    root.mkdir(exist_ok=True)
    (root / "1k.txt").write_bytes(b"x" * 1023 + b"\n")
    # nginx's worker runs as an unprivileged user: the temp dir (0700) must be readable.
    for path in (work, root, root / "1k.txt"):
        path.chmod(0o755)
    listens = "\n".join(f"    listen 127.0.0.1:{p};" for p in ports)
    conf = work / "nginx.conf"
    conf.write_text(
        f"""worker_processes {workers};
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  server {{
{listens}
    location / {{ root {root}; }}
  }}
}}
"""
    )
    proc = Proc("nginx", work)
    proc.spawn(["nginx", "-c", str(conf)], (cpus or LOAD_CPU) if pinning else None)
    try:
        wait_http(f"http://127.0.0.1:{ports[0]}/1k.txt")
    except RuntimeError:
        proc.stop()
        raise
    return proc


def start_haproxy(
    work: Path, label: str, body: str, port: int, pinning: bool, threads: int = 1, cpus: str | None = None
) -> Proc:
    conf = work / f"{label}.cfg"
    conf.write_text(
        f"global\n  nbthread {threads}\n  maxconn 4096\n"
        "defaults\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n" + body
    )
    proc = Proc(label, work)
    proc.spawn(["haproxy", "-f", str(conf)], (cpus or PROXY_CPU) if pinning else None)
    wait_port(port)
    return proc


def sidecar_yaml(
    listeners: list[dict[str, Any]], clusters: list[dict[str, Any]], routes: list[dict[str, Any]], version: str
) -> str:
    return json.dumps(
        {
            "version": version,
            "listeners": listeners,
            "route_tables": [{"name": "rt", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]}],
            "clusters": clusters,
        }
    )


def start_sidecar(
    work: Path, label: str, config: str, admin: int, pinning: bool, workers: int = 1, cpus: str | None = None
) -> Proc:
    path = work / f"{label}.json"
    path.write_text(config)
    proc = Proc(label, work)
    proc.spawn(
        [MESH, "sidecar", "--config", str(path), "--admin-addr", f"127.0.0.1:{admin}", "--log-level", "warning"]
        + (["--workers", str(workers)] if workers > 1 else []),
        (cpus or PROXY_CPU) if pinning else None,
    )
    wait_http(f"http://127.0.0.1:{admin}/ready")
    return proc


# === load ===


def run_wrk(
    url: str, seconds: float, pinning: bool, connections: int = 32, threads: int = 1, cpus: str | None = None
) -> dict[str, float]:
    pinned = ["taskset", "-c", cpus or str(LOAD_CPU)] if pinning else []
    out = subprocess.run(
        [*pinned, "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    requests = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = sum(int(x) for x in sock.groups()) if sock else 0
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    return {
        "requests": requests,
        "rps": rps,
        "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "socket_errors": float(errors),
    }


def cpu_per_request(proc: Proc, url: str, seconds: float, pinning: bool) -> dict[str, float]:
    before = process_cpu_seconds(proc.pid)
    result = run_wrk(url, seconds, pinning)
    used = process_cpu_seconds(proc.pid) - before
    return {**result, "us_per_req": used / result["requests"] * 1e6, "rps": result["requests"] / seconds}


def loadgen(url: str, host: str, rate: float, seconds: float, pinning: bool) -> dict[str, Any]:
    out = subprocess.run(
        [
            *taskset(LOAD_CPU, pinning),
            PYTHON,
            str(REPO / "bench" / "loadgen.py"),
            "--url",
            url,
            "--host",
            host,
            "--rate",
            str(rate),
            "--duration",
            str(seconds),
            "--warmup",
            "2",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def iperf(port: int, seconds: float, pinning: bool) -> float:
    out = subprocess.run(
        [*taskset(LOAD_CPU, pinning), "iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-J"],
        capture_output=True,
        text=True,
    ).stdout
    data = json.loads(out)
    if "error" in data:
        raise RuntimeError(f"iperf3 through port {port}: {data['error']}")
    return float(data["end"]["sum_received"]["bits_per_second"]) / 1e9


# === parts ===


def part_cpu(work: Path, nginx_port: int, rounds: int, seconds: float, pinning: bool) -> dict[str, Any]:
    side_port, side_admin, hap_port, bare_port = free_port(), free_port(), free_port(), free_port()
    sidecar = start_sidecar(
        work,
        "sidecar-l7",
        sidecar_yaml(
            [{"name": "out", "protocol": "http", "host": "127.0.0.1", "port": side_port, "route_table": "rt"}],
            [{"name": "nginx", "endpoints": [{"host": "127.0.0.1", "port": nginx_port}]}],
            [{"name": "all", "match": {"prefix": "/"}, "cluster": "nginx"}],
            "l7",
        ),
        side_admin,
        pinning,
    )
    haproxy = start_haproxy(
        work,
        "haproxy-l7",
        f"  mode http\n  http-reuse always\nfrontend fe\n  bind 127.0.0.1:{hap_port}\n  default_backend be\n"
        f"backend be\n  server s1 127.0.0.1:{nginx_port}\n",
        hap_port,
        pinning,
    )
    bare_script = work / "bare_proxy.py"
    bare_script.write_text(BARE_PROXY)
    bare = Proc("bare-l7", work)
    bare.spawn([PYTHON, str(bare_script), str(bare_port), str(nginx_port)], pin(PROXY_CPU, pinning))
    wait_http(f"http://127.0.0.1:{bare_port}/1k.txt")
    runs: dict[str, list[dict[str, float]]] = {"sidecar": [], "haproxy": [], "bare": []}
    try:
        targets = {"sidecar": sidecar, "haproxy": haproxy, "bare": bare}
        ports = {"sidecar": side_port, "haproxy": hap_port, "bare": bare_port}
        for name in targets:  # warm-up: connections, pools, caches
            run_wrk(f"http://127.0.0.1:{ports[name]}/1k.txt", 1, pinning)
        for r in range(rounds):
            for name, proc in targets.items():
                result = cpu_per_request(proc, f"http://127.0.0.1:{ports[name]}/1k.txt", seconds, pinning)
                runs[name].append(result)
                print(
                    f"  L7 round {r + 1} {name:8s} {result['rps']:9.0f} rps  {result['us_per_req']:6.2f} µs/req"
                    f"  errors {result['non2xx'] + result['socket_errors']:.0f}",
                    flush=True,
                )
    finally:
        for proc in (sidecar, haproxy, bare):
            proc.stop()
    med = {name: median([r["us_per_req"] for r in values]) for name, values in runs.items()}
    rps = {name: median([r["rps"] for r in values]) for name, values in runs.items()}
    errors = sum(r["non2xx"] + r["socket_errors"] for values in runs.values() for r in values)
    return {"us_per_req": med, "rps": rps, "ratio": med["haproxy"] / med["sidecar"], "errors": errors}


def part_latency(work: Path, nginx_port: int, rounds: int, seconds: float, pinning: bool) -> dict[str, Any]:
    a_port, a_admin, b_port, b_admin = free_port(), free_port(), free_port(), free_port()
    ha_port, hb_port = free_port(), free_port()
    inbound = start_sidecar(
        work,
        "sidecar-inbound",
        sidecar_yaml(
            [
                {
                    "name": "inbound",
                    "protocol": "http",
                    "host": "127.0.0.1",
                    "port": b_port,
                    "direction": "inbound",
                    "route_table": "rt",
                }
            ],
            [{"name": "local-app", "endpoints": [{"host": "127.0.0.1", "port": nginx_port}]}],
            [{"name": "app", "match": {"prefix": "/"}, "cluster": "local-app", "timeout": None}],
            "in",
        ),
        b_admin,
        pinning,
    )
    outbound = start_sidecar(
        work,
        "sidecar-outbound",
        sidecar_yaml(
            [{"name": "outbound", "protocol": "http", "host": "127.0.0.1", "port": a_port, "route_table": "rt"}],
            [{"name": "web", "endpoints": [{"host": "127.0.0.1", "port": b_port}]}],
            [{"name": "web", "match": {"prefix": "/"}, "cluster": "web"}],
            "out",
        ),
        a_admin,
        pinning,
    )
    # The same two hops through HAProxy, as a reference for what this machine adds by itself.
    hap_b = start_haproxy(
        work,
        "haproxy-inbound",
        f"  mode http\n  http-reuse always\nfrontend fe\n  bind 127.0.0.1:{hb_port}\n  default_backend be\n"
        f"backend be\n  server s1 127.0.0.1:{nginx_port}\n",
        hb_port,
        pinning,
    )
    hap_a = start_haproxy(
        work,
        "haproxy-outbound",
        f"  mode http\n  http-reuse always\nfrontend fe\n  bind 127.0.0.1:{ha_port}\n  default_backend be\n"
        f"backend be\n  server s1 127.0.0.1:{hb_port}\n",
        ha_port,
        pinning,
    )
    targets = {
        "direct": f"http://127.0.0.1:{nginx_port}/1k.txt",
        "two_hops": f"http://127.0.0.1:{a_port}/1k.txt",
        "haproxy_two_hops": f"http://127.0.0.1:{ha_port}/1k.txt",
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    shares: list[float] = []
    haproxy_shares: list[float] = []
    rss: list[float] = []
    try:
        for url in targets.values():  # warm-up
            loadgen(url, "web", 1000, 1, pinning)
        for r in range(rounds):
            for name, url in targets.items():
                watched = hap_a if name == "haproxy_two_hops" else outbound
                before, started = process_cpu_seconds(watched.pid), time.monotonic()
                runs[name].append(loadgen(url, "web", 1000, seconds, pinning))
                share = (process_cpu_seconds(watched.pid) - before) / (time.monotonic() - started)
                if name == "two_hops":
                    shares.append(share)
                    rss.append(process_memory_mb(outbound.pid).get("VmRSS", float("nan")))
                elif name == "haproxy_two_hops":
                    haproxy_shares.append(share)
                last = runs[name][-1]
                print(
                    f"  latency round {r + 1} {name:16s} p50 {last['p50_ms']:.3f} ms  p99 {last['p99_ms']:.3f} ms"
                    f"  errors {last['errors']}  rps {last['achieved_rps']}",
                    flush=True,
                )
    finally:
        for proc in (outbound, inbound, hap_a, hap_b):
            proc.stop()
    out: dict[str, Any] = {}
    for name, values in runs.items():
        out[name] = {key: median([v[key] for v in values]) for key in ("p50_ms", "p90_ms", "p99_ms", "p999_ms")}
        out[name]["errors"] = sum(v["errors"] for v in values)
    out["added_p50_ms"] = out["two_hops"]["p50_ms"] - out["direct"]["p50_ms"]
    out["added_p99_ms"] = out["two_hops"]["p99_ms"] - out["direct"]["p99_ms"]
    out["haproxy_added_p50_ms"] = out["haproxy_two_hops"]["p50_ms"] - out["direct"]["p50_ms"]
    out["haproxy_added_p99_ms"] = out["haproxy_two_hops"]["p99_ms"] - out["direct"]["p99_ms"]
    out["core_share"] = median(shares)
    out["haproxy_core_share"] = median(haproxy_shares)
    out["rss_mb"] = max(rss) if rss else float("nan")
    return out


def part_l4(work: Path, rounds: int, seconds: float, pinning: bool) -> dict[str, Any]:
    server_port, side_port, side_admin, hap_port = free_port(), free_port(), free_port(), free_port()
    server = Proc("iperf3-server", work)
    server.spawn(["iperf3", "-s", "-p", str(server_port)], pin(LOAD_CPU, pinning))
    wait_listening(server_port)  # no probe connection: iperf3 -s would take it for a test client
    sidecar = start_sidecar(
        work,
        "sidecar-l4",
        json.dumps(
            {
                "version": "l4",
                "listeners": [
                    {"name": "iperf", "protocol": "tcp", "host": "127.0.0.1", "port": side_port, "cluster": "iperf"}
                ],
                "clusters": [
                    {"name": "iperf", "protocol": "tcp", "endpoints": [{"host": "127.0.0.1", "port": server_port}]}
                ],
            }
        ),
        side_admin,
        pinning,
    )
    haproxy = start_haproxy(
        work,
        "haproxy-l4",
        f"  mode tcp\nfrontend fe\n  bind 127.0.0.1:{hap_port}\n  default_backend be\nbackend be\n"
        f"  server s1 127.0.0.1:{server_port}\n",
        hap_port,
        pinning,
    )
    runs: dict[str, list[float]] = {"sidecar": [], "haproxy": []}
    try:
        for r in range(rounds):
            for name, port in (("sidecar", side_port), ("haproxy", hap_port)):
                runs[name].append(iperf(port, seconds, pinning))
                print(f"  L4 round {r + 1} {name:8s} {runs[name][-1]:.2f} Gbit/s", flush=True)
    finally:
        for proc in (sidecar, haproxy, server):
            proc.stop()
    med = {name: median(values) for name, values in runs.items()}
    return {"gbps": med, "ratio": med["sidecar"] / med["haproxy"]}


def worker_counts(cpus: int, most: int) -> list[int]:
    """1, 2, 4, 8 ... up to half the CPUs (the other half carries the load), at most ``most``."""
    limit = max(1, min(most, cpus // 2))
    return [n for n in (1, 2, 4, 8, 16, 32) if n <= limit]


def part_workers(work: Path, counts: list[int], seconds: float, pinning: bool) -> dict[str, dict[str, float]]:
    """rps through the sidecar with --workers N and HAProxy with nbthread N, same load (docstring, part 6)."""
    cpus = os.cpu_count() or 2
    half = max(1, cpus // 2)
    load_cpus = f"{half}-{cpus - 1}" if cpus > 1 else "0"
    load_threads = max(1, cpus - half)
    port = free_port()
    nginx = start_nginx(work, [port], pinning, workers=load_threads, cpus=load_cpus)
    out: dict[str, dict[str, float]] = {}
    try:
        for n in counts:
            proxy_cpus = f"0-{n - 1}"
            side_port, admin, hap_port = free_port(), free_port(), free_port()
            sidecar = start_sidecar(
                work,
                f"sidecar-w{n}",
                sidecar_yaml(
                    [{"name": "out", "protocol": "http", "host": "127.0.0.1", "port": side_port, "route_table": "rt"}],
                    [{"name": "nginx", "endpoints": [{"host": "127.0.0.1", "port": port}]}],
                    [{"name": "all", "match": {"prefix": "/"}, "cluster": "nginx"}],
                    f"w{n}",
                ),
                admin,
                pinning,
                workers=n,
                cpus=proxy_cpus,
            )
            haproxy = start_haproxy(
                work,
                f"haproxy-w{n}",
                f"  mode http\n  http-reuse always\nfrontend fe\n  bind 127.0.0.1:{hap_port}\n  default_backend be\n"
                f"backend be\n  server s1 127.0.0.1:{port}\n",
                hap_port,
                pinning,
                threads=n,
                cpus=proxy_cpus,
            )
            try:
                out[str(n)] = {}
                for name, target in (("sidecar", side_port), ("haproxy", hap_port)):
                    url = f"http://127.0.0.1:{target}/1k.txt"
                    run_wrk(url, 1, pinning, 32 * n, load_threads, load_cpus)  # warm-up: pools, workers
                    ran = run_wrk(url, seconds, pinning, 32 * n, load_threads, load_cpus)
                    out[str(n)][name] = ran["rps"]
                    print(f"  workers {n} {name:8s} {ran['rps']:,.0f} rps", flush=True)
            finally:
                sidecar.stop()
                haproxy.stop()
    finally:
        nginx.stop()
    return out


def part_swaps(work: Path, nginx_ports: list[int], swaps: int, pinning: bool) -> dict[str, Any]:
    port, admin = free_port(), free_port()
    listeners = [{"name": "out", "protocol": "http", "host": "127.0.0.1", "port": port, "route_table": "rt"}]
    policies = ["round_robin", "least_request", "random", "peak_ewma", "weighted_round_robin"]

    def config(i: int) -> str:
        clusters: list[dict[str, Any]] = [
            {
                "name": "a",
                "endpoints": [{"host": "127.0.0.1", "port": nginx_ports[0]}],
                "lb": {"kind": policies[i % 5]},
            },
            {"name": "b", "endpoints": [{"host": "127.0.0.1", "port": p} for p in nginx_ports[: 1 + i % 2]]},
        ]
        routes = [
            {
                "name": f"split-{i % 3}",
                "match": {"prefix": "/"},
                "clusters": [{"name": "a", "weight": 1 + i % 9}, {"name": "b", "weight": 9 - i % 9}],
            }
        ]
        return sidecar_yaml(listeners, clusters, routes, f"swap-{i}")

    sidecar = start_sidecar(work, "sidecar-swaps", config(0), admin, pinning)
    path = work / "sidecar-swaps.json"
    wrk = subprocess.Popen(
        [
            *taskset(LOAD_CPU, pinning),
            "wrk",
            "-t1",
            "-c32",
            f"-d{max(12, swaps // 8 + 4)}s",
            f"http://127.0.0.1:{port}/1k.txt",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)
        for i in range(1, swaps + 1):
            tmp = path.with_suffix(".tmp")
            tmp.write_text(config(i))
            tmp.replace(path)
            os.kill(sidecar.pid, signal.SIGHUP)
            time.sleep(0.08)
        out, _ = wrk.communicate(timeout=120)
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as response:
            metrics = response.read().decode()
    finally:
        if wrk.poll() is None:
            wrk.kill()
        sidecar.stop()
    applied = re.search(r'mesh_sidecar_config_updates_total\{result="applied"\} ([0-9.e+]+)', metrics)
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = (int(non2xx.group(1)) if non2xx else 0) + (sum(int(x) for x in sock.groups()) if sock else 0)
    return {
        "requests": requests,
        "failed": failed,
        "applied": int(float(applied.group(1))) if applied else 0,
        "swaps": swaps,
    }


# === main ===


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs, one round each (smoke check)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument(
        "--only", help="comma-separated parts to run: cpu,latency,l4,swaps,workers [all; workers with 8+ CPUs]"
    )
    parser.add_argument("--max-workers", type=int, default=8, help="largest --workers / nbthread in the workers part")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    wrk_s = 3 if args.quick else 10
    lat_s = 5 if args.quick else 20
    iperf_s = 3 if args.quick else 10
    default_parts = "cpu,latency,l4,swaps" + (",workers" if (os.cpu_count() or 1) >= 8 else "")
    parts = set((args.only or default_parts).split(","))
    pinning = can_pin() and not args.no_pin
    missing = ensure_peers()
    if missing:
        sys.exit(f"missing peers: {', '.join(missing)} (apt-get install -y haproxy wrk iperf3 nginx-light)")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    pin_text = "on" if pinning else "off"
    print(f"machine: {cpu_model()} x{os.cpu_count()}, Python {platform.python_version()}, pinning {pin_text}")
    haproxy_version = subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    print(
        f"peers: {haproxy_version}; started {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, commit {commit}"
    )
    work = Path(tempfile.mkdtemp(prefix="sidecar-bench-"))
    nginx_ports = [free_port(), free_port()]
    nginx = start_nginx(work, nginx_ports, pinning)
    results: dict[str, Any] = {"commit": commit, "pinning": pinning, "quick": args.quick}
    try:
        if "cpu" in parts:
            results["cpu"] = part_cpu(work, nginx_ports[0], rounds, wrk_s, pinning)
        if "latency" in parts:
            results["latency"] = part_latency(work, nginx_ports[0], max(1, rounds - 1), lat_s, pinning)
        if "l4" in parts:
            results["l4"] = part_l4(work, rounds, iperf_s, pinning)
        if "swaps" in parts:
            results["swaps"] = part_swaps(work, nginx_ports, 100, pinning)
        if "workers" in parts:
            counts = worker_counts(os.cpu_count() or 2, args.max_workers)
            results["workers"] = part_workers(work, counts, wrk_s, pinning)
    finally:
        nginx.stop()
    rows: list[list[str]] = []
    if "cpu" in results:
        cpu = results["cpu"]
        us = cpu["us_per_req"]
        rows.append(
            [
                "L7 CPU µs/req (wrk -c32, 1 KB)",
                f"{us['sidecar']:.1f}",
                f"HAProxy {us['haproxy']:.1f} (bare py {us['bare']:.1f})",
                f"{cpu['ratio']:.2f}",
                f"≥ {TARGET_CPU_RATIO}",
                "yes" if cpu["ratio"] >= TARGET_CPU_RATIO else "no",
            ]
        )
        rows.append(
            [
                "L7 rps at that load",
                f"{cpu['rps']['sidecar']:.0f}",
                f"HAProxy {cpu['rps']['haproxy']:.0f}",
                f"{cpu['rps']['sidecar'] / cpu['rps']['haproxy']:.2f}",
                "-",
                "-",
            ]
        )
    if "latency" in results:
        lat = results["latency"]
        rows.append(
            [
                "p50 / p99 at 1,000 rps, 2 hops (ms)",
                f"{lat['two_hops']['p50_ms']:.3f} / {lat['two_hops']['p99_ms']:.3f}",
                f"direct {lat['direct']['p50_ms']:.3f} / {lat['direct']['p99_ms']:.3f}",
                f"+{lat['added_p50_ms']:.3f} / +{lat['added_p99_ms']:.3f}",
                f"p99 ≤ +{TARGET_ADDED_P99_MS}",
                "yes" if lat["added_p99_ms"] <= TARGET_ADDED_P99_MS else "no",
            ]
        )
        rows.append(
            [
                "  reference: HAProxy, same 2 hops (ms)",
                "-",
                f"{lat['haproxy_two_hops']['p50_ms']:.3f} / {lat['haproxy_two_hops']['p99_ms']:.3f}",
                f"+{lat['haproxy_added_p50_ms']:.3f} / +{lat['haproxy_added_p99_ms']:.3f}",
                "-",
                "-",
            ]
        )
        rows.append(
            [
                "CPU share of one sidecar at 1,000 rps",
                f"{lat['core_share']:.3f} core",
                f"HAProxy {lat['haproxy_core_share']:.3f}; Istio 1.24: 0.20",
                "-",
                f"≤ {TARGET_CORE_SHARE}",
                "yes" if lat["core_share"] <= TARGET_CORE_SHARE else "no",
            ]
        )
        rows.append(
            [
                "RSS of one sidecar at 1,000 rps",
                f"{lat['rss_mb']:.1f} MB",
                "Istio 60 MB, Linkerd ~26 MB",
                "-",
                f"≤ {TARGET_RSS_MB:.0f} MB",
                "yes" if lat["rss_mb"] <= TARGET_RSS_MB else "no",
            ]
        )
    if "l4" in results:
        l4 = results["l4"]
        rows.append(
            [
                "L4 iperf3 throughput (Gbit/s)",
                f"{l4['gbps']['sidecar']:.2f}",
                f"HAProxy {l4['gbps']['haproxy']:.2f}",
                f"{l4['ratio']:.2f}",
                f"≥ {TARGET_L4_RATIO}",
                "yes" if l4["ratio"] >= TARGET_L4_RATIO else "no",
            ]
        )
    if "swaps" in results:
        sw = results["swaps"]
        rows.append(
            [
                f"{sw['swaps']} hot swaps under wrk load",
                f"{sw['failed']} failed of {sw['requests']}",
                f"{sw['applied']} configs applied",
                "-",
                "0 failed",
                "yes" if sw["failed"] == 0 and sw["applied"] >= sw["swaps"] + 1 else "no",
            ]
        )
    for n, by in results.get("workers", {}).items():
        rows.append(
            [
                f"rps with {n} worker(s) / nbthread",
                f"{by['sidecar']:,.0f}",
                f"HAProxy {by['haproxy']:,.0f}",
                f"{by['sidecar'] / by['haproxy']:.2f}",
                "-",
                "-",
            ]
        )
    print()
    print(table(rows, ["what", "mesh sidecar", "peer / reference", "ratio / delta", "target", "met"]))
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
