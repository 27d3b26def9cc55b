#!/usr/bin/env python3
"""Benchmark of mesh mTLS: two sidecar hops with mTLS on vs off, in one run.

    flock /tmp/mesh-bench.lock .venv/bin/python bench/mtls_bench.py            # 3 rounds
    flock /tmp/mesh-bench.lock .venv/bin/python bench/mtls_bench.py --quick    # 1 short round

Topology (all loopback): client → sidecar A (outbound listener) → sidecar B (inbound listener)
→ nginx (1 KB file). Two such pairs run side by side: one plaintext (no security section), one
with mTLS (B's inbound STRICT, A originating mTLS to B: the snapshot's ``security`` section, as
the control plane sends it). Each sidecar's certificate is issued by the mesh CA code
(``mesh.security``) into a directory read through ``MESH_SIDECAR_CERT_DIR``. Proxies are pinned
to CPU 0, nginx and the load generators to CPU 1 (as bench/sidecar_bench.py); the pairs are
measured one after the other in interleaved rounds; medians are reported.

1. Throughput and CPU: ``wrk -t1 -c32`` keep-alive through each pair; CPU µs per request =
   utime+stime of both sidecars (from /proc/PID/stat) ÷ requests; rps.
2. Added latency at a fixed rate (bench/loadgen.py, open loop, 1,000 rps): p50/p99 direct to
   nginx, through the plaintext pair and through the mTLS pair; the mTLS cost is the difference
   between the pairs (Istio publishes its sidecar latency with mTLS on).

Connections are kept alive on both hops (the sidecar's upstream pool keeps TLS connections like
plaintext ones), so these are steady-state figures: record encryption, not handshakes. The last
line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import serialization

from bench.benchlib import Proc, can_pin, cpu_model, free_port, median, process_cpu_seconds, table
from bench.sidecar_bench import (
    MESH,
    PROXY_CPU,
    ensure_peers,
    loadgen,
    run_wrk,
    start_nginx,
    wait_http,
)
from mesh.security.ca import MeshCA, generate_root, pem_of
from mesh.security.identity import SpiffeId
from mesh.security.workload import build_csr, new_private_key

RATE = 1000.0


def write_credentials(ca: MeshCA, service: str, directory: Path) -> Path:
    """A key and its certificate from the mesh CA, in Istio's file-mounted names (key 0600)."""
    directory.mkdir(mode=0o700)
    identity = SpiffeId(ca.trust_domain, "default", service)
    key = new_private_key()
    issued = ca.sign(build_csr(identity, key), identity)
    (directory / "cert-chain.pem").write_text(issued.chain_pem())
    fd = os.open(directory / "key.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    (directory / "root-cert.pem").write_text(pem_of(ca.trust_bundle))
    return directory


def config(listener: dict[str, Any], upstream_port: int, security: dict[str, Any] | None, version: str) -> str:
    data: dict[str, Any] = {
        "version": version,
        "listeners": [listener],
        "route_tables": [
            {
                "name": "rt",
                "virtual_hosts": [
                    {
                        "name": "all",
                        "domains": ["*"],
                        "routes": [{"name": "all", "match": {"prefix": "/"}, "cluster": "up", "timeout": None}],
                    }
                ],
            }
        ],
        "clusters": [{"name": "up", "endpoints": [{"host": "127.0.0.1", "port": upstream_port}]}],
    }
    if security is not None:
        data["security"] = security
    return json.dumps(data)


def start_sidecar(work: Path, label: str, text: str, pinning: bool, cert_dir: Path | None) -> Proc:
    path = work / f"{label}.json"
    path.write_text(text)
    admin = free_port()
    env = dict(os.environ)
    if cert_dir is not None:
        env["MESH_SIDECAR_CERT_DIR"] = str(cert_dir)
    proc = Proc(label, work)
    proc.spawn(
        [MESH, "sidecar", "--config", str(path), "--admin-addr", f"127.0.0.1:{admin}", "--log-level", "warning"],
        PROXY_CPU if pinning else None,
        env=env,
    )
    wait_http(f"http://127.0.0.1:{admin}/ready")
    return proc


def start_pair(work: Path, name: str, nginx_port: int, mtls: bool, ca: MeshCA, pinning: bool) -> tuple[Proc, Proc, int]:
    a_port, b_port = free_port(), free_port()
    inbound = {"name": "inbound", "protocol": "http", "host": "127.0.0.1", "port": b_port, "direction": "inbound"}
    outbound = {"name": "outbound", "protocol": "http", "host": "127.0.0.1", "port": a_port}
    b_security = {"mtls": {"mode": "STRICT"}} if mtls else None
    a_security = {"mtls": {"mode": "PERMISSIVE"}, "mtls_endpoints": [f"127.0.0.1:{b_port}"]} if mtls else None
    b_certs = write_credentials(ca, "web", work / f"{name}-b-certs") if mtls else None
    a_certs = write_credentials(ca, "sleep", work / f"{name}-a-certs") if mtls else None
    b = start_sidecar(
        work, f"{name}-b", config({**inbound, "route_table": "rt"}, nginx_port, b_security, "b"), pinning, b_certs
    )
    a = start_sidecar(
        work, f"{name}-a", config({**outbound, "route_table": "rt"}, b_port, a_security, "a"), pinning, a_certs
    )
    wait_http(f"http://127.0.0.1:{a_port}/1k.txt")
    return a, b, a_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one short round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="per wrk / loadgen measurement (whole seconds: wrk)")
    args = parser.parse_args()
    rounds, seconds = (1, 3) if args.quick else (args.rounds, args.seconds)
    missing = [tool for tool in ensure_peers() if tool in ("wrk", "nginx")]
    if missing:
        sys.exit(f"missing tools: {', '.join(missing)} (apt-get install -y wrk nginx-light)")
    pinning = can_pin()
    work = Path(tempfile.mkdtemp(prefix="mtls-bench-"))
    root, key = generate_root("cluster.local")
    ca = MeshCA(root, key, trust_domain="cluster.local")
    nginx_port = free_port()
    nginx = start_nginx(work, [nginx_port], pinning)
    procs: list[Proc] = [nginx]
    cpu: dict[str, list[dict[str, float]]] = {"plain": [], "mtls": []}
    latency: dict[str, list[dict[str, Any]]] = {"direct": [], "plain": [], "mtls": []}
    try:
        plain_a, plain_b, plain_port = start_pair(work, "plain", nginx_port, False, ca, pinning)
        mtls_a, mtls_b, mtls_port = start_pair(work, "mtls", nginx_port, True, ca, pinning)
        procs += [plain_a, plain_b, mtls_a, mtls_b]
        pairs = {"plain": (plain_a, plain_b, plain_port), "mtls": (mtls_a, mtls_b, mtls_port)}
        urls = {"direct": f"http://127.0.0.1:{nginx_port}/1k.txt"}
        urls.update({name: f"http://127.0.0.1:{port}/1k.txt" for name, (_, _, port) in pairs.items()})
        for url in urls.values():  # warm-up: connections, pools, TLS sessions
            loadgen(url, "web", RATE, 1, pinning)
        for r in range(rounds):
            for name, (a, b, port) in pairs.items():
                before = process_cpu_seconds(a.pid) + process_cpu_seconds(b.pid)
                result = run_wrk(f"http://127.0.0.1:{port}/1k.txt", seconds, pinning)
                used = process_cpu_seconds(a.pid) + process_cpu_seconds(b.pid) - before
                result["us_per_req"] = used / result["requests"] * 1e6
                result["rps"] = result["requests"] / seconds
                cpu[name].append(result)
                print(
                    f"  round {r + 1} wrk {name:6s} rps {result['rps']:9.0f}  CPU {result['us_per_req']:6.1f} µs/req"
                    f"  (both sidecars)  errors {result['non2xx'] + result['socket_errors']:.0f}",
                    flush=True,
                )
            for name, url in urls.items():
                run = loadgen(url, "web", RATE, seconds, pinning)
                latency[name].append(run)
                print(
                    f"  round {r + 1} {RATE:.0f} rps {name:6s} p50 {run['p50_ms']:.3f} ms  p99 {run['p99_ms']:.3f} ms"
                    f"  errors {run['errors']}",
                    flush=True,
                )
    finally:
        for proc in reversed(procs):
            proc.stop()
    results: dict[str, Any] = {
        "bench": "mtls",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version(), "pinned": pinning},
        "rounds": rounds,
        "seconds": seconds,
    }
    for name, runs in cpu.items():
        results[f"{name}_rps"] = median([r["rps"] for r in runs])
        results[f"{name}_us_per_req"] = median([r["us_per_req"] for r in runs])
        results[f"{name}_errors"] = sum(r["non2xx"] + r["socket_errors"] for r in runs)
    for name, runs in latency.items():
        results[f"{name}_p50_ms"] = median([r["p50_ms"] for r in runs])
        results[f"{name}_p99_ms"] = median([r["p99_ms"] for r in runs])
        results[f"{name}_latency_errors"] = sum(r["errors"] for r in runs)
    results["rps_ratio_mtls_over_plain"] = results["mtls_rps"] / results["plain_rps"]
    results["cpu_ratio_mtls_over_plain"] = results["mtls_us_per_req"] / results["plain_us_per_req"]
    for pct in ("p50", "p99"):
        results[f"plain_added_{pct}_ms"] = results[f"plain_{pct}_ms"] - results[f"direct_{pct}_ms"]
        results[f"mtls_added_{pct}_ms"] = results[f"mtls_{pct}_ms"] - results[f"direct_{pct}_ms"]
        results[f"mtls_extra_{pct}_ms"] = results[f"mtls_{pct}_ms"] - results[f"plain_{pct}_ms"]
    rows = [
        [
            "rps (wrk -c32, two hops)",
            f"{results['mtls_rps']:,.0f}",
            f"{results['plain_rps']:,.0f}",
            f"{results['rps_ratio_mtls_over_plain']:.2f}",
        ],
        [
            "CPU µs/req (both sidecars)",
            f"{results['mtls_us_per_req']:.1f}",
            f"{results['plain_us_per_req']:.1f}",
            f"{results['cpu_ratio_mtls_over_plain']:.2f}",
        ],
        [
            "added p50 at 1,000 rps (ms)",
            f"{results['mtls_added_p50_ms']:.3f}",
            f"{results['plain_added_p50_ms']:.3f}",
            f"+{results['mtls_extra_p50_ms']:.3f}",
        ],
        [
            "added p99 at 1,000 rps (ms)",
            f"{results['mtls_added_p99_ms']:.3f}",
            f"{results['plain_added_p99_ms']:.3f}",
            f"+{results['mtls_extra_p99_ms']:.3f}",
        ],
        [
            "errors",
            f"{results['mtls_errors'] + results['mtls_latency_errors']}",
            f"{results['plain_errors'] + results['plain_latency_errors']}",
            "-",
        ],
    ]
    print()
    print(table(rows, ["what", "mTLS on", "mTLS off", "ratio / delta"]))
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
