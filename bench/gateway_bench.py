#!/usr/bin/env python3
"""The ingress gateway terminating HTTPS vs HAProxy terminating TLS: CPU per request, same load, same run.

    flock /tmp/mesh-bench.lock .venv/bin/python bench/gateway_bench.py [--quick] [--rounds 3] [--seconds 5]

wrk (1 thread, 32 keep-alive connections, so handshakes are a one-time cost as with real clients)
→ proxy on one core → nginx serving 1 KB on the other core with wrk. The gateway is `mesh gateway
--config` with one HTTPS listener (ECDSA P-256 certificate, TLS 1.3, what a Gateway server with
``tls.mode: SIMPLE`` gives it); HAProxy (nbthread 1, ``bind ... ssl crt``, ``http-reuse always``) holds
the same certificate. The figure is CPU µs per request (utime+stime from /proc over the wrk run,
divided by the requests it completed), median of the rounds, and the ratio HAProxy ÷ gateway
(benchmarking.md's method; higher is better for the gateway). Plain HTTP through the same gateway
is measured too, so the TLS share of the cost shows.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchlib import Proc, can_pin, free_port, median, table
from bench.sidecar_bench import (
    MESH,
    PROXY_CPU,
    cpu_per_request,
    ensure_peers,
    run_wrk,
    start_haproxy,
    start_nginx,
    wait_port,
)
from tests.web_certs import TestCA

HOST = "gateway.bench.example"


def start_gateway(work: Path, nginx_port: int, cert: Path, key: Path, pinning: bool) -> tuple[Proc, int, int]:
    https, http, admin = free_port(), free_port(), free_port()
    route_table = {
        "name": "all",
        "domains": ["*"],
        "routes": [{"name": "all", "match": {"prefix": "/"}, "cluster": "nginx"}],
    }
    config = {
        "version": "gateway-bench",
        "listeners": [
            {
                "name": "https",
                "protocol": "http",
                "host": "127.0.0.1",
                "port": https,
                "route_table": "rt",
                "tls": [{"server_names": [HOST], "certificate": str(cert), "private_key": str(key)}],
            },
            {"name": "http", "protocol": "http", "host": "127.0.0.1", "port": http, "route_table": "rt"},
        ],
        "route_tables": [{"name": "rt", "virtual_hosts": [route_table]}],
        "clusters": [{"name": "nginx", "endpoints": [{"host": "127.0.0.1", "port": nginx_port}]}],
    }
    path = work / "gateway.json"
    path.write_text(json.dumps(config))
    proc = Proc("gateway", work)
    argv = [MESH, "gateway", "--config", str(path), "--admin-addr", f"127.0.0.1:{admin}", "--log-level", "warning"]
    proc.spawn(argv, PROXY_CPU if pinning else None)
    wait_port(https)
    return proc, https, http


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one short round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="per wrk run (whole seconds)")
    args = parser.parse_args()
    rounds, seconds = (1, 3) if args.quick else (args.rounds, args.seconds)
    missing = [tool for tool in ensure_peers() if tool in ("wrk", "nginx", "haproxy")]
    if missing:
        sys.exit(f"missing tools: {', '.join(missing)} (apt-get install -y wrk nginx-light haproxy)")
    pinning = can_pin()
    work = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    ca = TestCA(work / "certs")
    files = ca.issue(HOST)
    combined = work / "certs" / "haproxy.pem"  # HAProxy reads certificate and key from one file
    combined.write_bytes(files.cert.read_bytes() + files.key.read_bytes())
    nginx_port, haproxy_port = free_port(), free_port()
    procs: list[Proc] = [start_nginx(work, [nginx_port], pinning)]
    runs: dict[str, list[dict[str, float]]] = {"gateway https": [], "haproxy https": [], "gateway http": []}
    try:
        gateway, https_port, http_port = start_gateway(work, nginx_port, files.cert, files.key, pinning)
        procs.append(gateway)
        haproxy = start_haproxy(
            work,
            "haproxy-tls",
            f"  mode http\n  http-reuse always\nfrontend fe\n  bind 127.0.0.1:{haproxy_port} ssl crt {combined}\n"
            f"  default_backend be\nbackend be\n  server s1 127.0.0.1:{nginx_port}\n",
            haproxy_port,
            pinning,
        )
        procs.append(haproxy)
        targets: dict[str, tuple[Proc, str]] = {
            "gateway https": (gateway, f"https://127.0.0.1:{https_port}/1k.txt"),
            "haproxy https": (haproxy, f"https://127.0.0.1:{haproxy_port}/1k.txt"),
            "gateway http": (gateway, f"http://127.0.0.1:{http_port}/1k.txt"),
        }
        for _, url in targets.values():  # warm-up: connections, pools, TLS
            run_wrk(url, 1, pinning)
        for r in range(rounds):
            for name, (proc, url) in targets.items():
                result = cpu_per_request(proc, url, seconds, pinning)
                runs[name].append(result)
                errors = result["non2xx"] + result["socket_errors"]
                print(
                    f"  round {r + 1} {name:14s} {result['rps']:9.0f} rps  {result['us_per_req']:6.1f} µs/req"
                    f"  errors {errors:.0f}",
                    flush=True,
                )
    finally:
        for proc in procs:
            proc.stop()
    us = {name: median([r["us_per_req"] for r in values]) for name, values in runs.items()}
    rps = {name: median([r["rps"] for r in values]) for name, values in runs.items()}
    errors = sum(r["non2xx"] + r["socket_errors"] for values in runs.values() for r in values)
    ratio = us["haproxy https"] / us["gateway https"]
    rows = [[name, f"{rps[name]:,.0f}", f"{us[name]:.1f}"] for name in runs]
    print(table(rows, ["proxy", "rps (median)", "CPU µs/request (median)"]))
    tls_cost = us["gateway https"] - us["gateway http"]
    print(f"HTTPS CPU per request ratio (HAProxy ÷ gateway): {ratio:.2f}; TLS adds {tls_cost:.1f} µs/request")
    figures: dict[str, Any] = {"us_per_req": us, "rps": rps, "ratio": ratio, "errors": errors, "pinned": pinning}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
