#!/usr/bin/env python3
"""Benchmark of the cluster DNS server (`mesh dns`) against dnsmasq, with dnsperf, on one core each.

    python bench/dns_bench.py              # full run (about 3 minutes)
    python bench/dns_bench.py --quick      # smaller counts, 1 run of 3 s per point (smoke check)
    python bench/dns_bench.py --profile    # also a py-spy profile of mesh dns on each path

Method (bench/README.md): the server under test is pinned to CPU 0 (`taskset -c 0`), dnsperf and
this script to CPU 1; everything on loopback; our server and its real peer (dnsmasq serving an
equivalent hosts file) get the same query file, the same dnsperf settings and the same pinning,
one after the other (never at the same time), in interleaved rounds (mesh, dnsmasq, mesh, ...)
so drift on the shared machine hits both alike. Medians of ``--runs`` runs are reported.

Phase 1 (cached path): a fresh `mesh registry` with 100 services x 3 instances (passing checks,
PUT /v1/catalog/register); `mesh dns` reads it (CONSUL_HTTP_ADDR); dnsperf sends the 100 names
`<svc>.service.consul` (A). Every reply after the first of each name comes from the answer cache.

Phase 2 (uncached path, memory): a fresh registry with 10,000 services x 3 instances. The query
file has 20,000 distinct names (`<svc>.service.consul` and `<svc>.service.dc1.consul` for every
service), all real answers (3 A records each). dnsserver/cache.py bounds each cache map to
10,000 entries with first-in-first-out eviction, so a cyclic stream of 20,000 distinct questions
never finds its answer still cached: every reply is built. (Case variation, 0x20 style, would
not do: the normalised key is lower-cased and a hit only respells the question.) The script
checks this with the server's own counters (mesh_dns_cache_hits/misses_total) and prints the
miss ratio of every run. VmRSS of mesh dns is read after the sync and after the uncached runs.

Phase 2, mixed types (``--skip-mix`` leaves it out): the same server and catalog (every instance
also carries Kubernetes Meta: namespace ``default``, named port ``http``), 20,000 distinct
questions of every kind the server answers: Consul A / AAAA (NODATA) / SRV, Kubernetes service
and endpoint A / AAAA, Kubernetes SRV, PTR and search-path NXDOMAIN (``MIX_SLOTS`` has the
shares). mesh dns only: a hosts file cannot give dnsmasq the same SRV, NODATA and PTR data, so
there is no peer; the target is the same absolute one. The cache miss share is checked the same way.

Peers: dnsperf and dnsmasq from Debian (`apt-get install -y dnsperf dnsmasq-base` when missing
and running as root; dnsmasq-base is the binary without the system service, so no dnsmasq is
started on port 53 behind our back). Without dnsperf the script falls back to a small built-in
UDP load generator (closed loop, same window) and says so; its ceiling is far below dnsperf's.

Only processes this script started are stopped. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import hashlib
import json
import os
import platform
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchlib import REPO, Proc, can_pin, cpu_model, free_port, median, run_pool, table

SERVER_CPU = 0
LOADGEN_CPU = 1

TARGET_CACHED_RATIO = 0.9  # mesh dns cached QPS / dnsmasq QPS (bench/README.md targets)
TARGET_UNCACHED_QPS = 40_000.0  # every answer built, one core
MIN_CACHED_RATIO = 0.5  # the issue's minimums
MIN_UNCACHED_QPS = 20_000.0
MIN_UNCACHED_MISS_SHARE = 0.99  # below this the "uncached" run was served partly from the cache

QTYPES = {"A": 1, "PTR": 12, "TXT": 16, "AAAA": 28, "SRV": 33}

# The uncached mix, in 20 slots (service i takes slot i % 20 in the first pass and (i + 10) % 20 in
# the second): 25 % Consul A, 15 % Consul AAAA (NODATA: the instances are IPv4), 10 % Consul SRV,
# 15 % Kubernetes A, 5 % Kubernetes AAAA (NODATA), 5 % Kubernetes SRV, 5 % PTR, 20 % NXDOMAIN
# (the names an ndots:5 resolver tries first from a pod's search path). Why this shape: resolvers
# ask A and AAAA together, search-path walks make NXDOMAIN common, SRV and PTR are rarer.
MIX_SLOTS = (
    *["A"] * 5,
    *["AAAA"] * 3,
    *["SRV"] * 2,
    *["K8S_A"] * 3,
    "K8S_AAAA",
    "K8S_SRV",
    "PTR",
    *["NXDOMAIN"] * 4,
)


# === small helpers ===


def pin_all_threads(pid: int, cpu: int) -> None:
    """Move every thread of ``pid`` to ``cpu`` (as `taskset -a -p`)."""
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(task.name), {cpu})


def find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/sbin", "/usr/local/sbin", "/tmp/tools/bin"):
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    return None


def first_line(argv: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        for line in (out.stdout + out.stderr).splitlines():
            if line.strip():
                return line.strip()
    return "unknown"


def loadavg() -> str:
    """The 1/5/15-minute load averages: other work on this shared machine shows up here."""
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "unknown"


def fmt_int(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:,.0f}"


# === peers ===


def ensure_peers(allow_install: bool) -> dict[str, Any]:
    """Install dnsperf and dnsmasq (Debian packages) when missing and allowed; report what is there."""
    wanted = {"dnsperf": "dnsperf", "dnsmasq": "dnsmasq-base"}
    missing = [pkg for binary, pkg in wanted.items() if find_binary(binary) is None]
    notes: list[str] = []
    if missing and allow_install:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            notes.append(f"cannot install {missing}: needs root and apt-get")
        else:
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            cmd = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
            print(f"installing peers: {' '.join(cmd)}", flush=True)
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
                done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                notes.append(f"apt-get install {missing} failed: {done.stderr.strip()[-300:]}")
    dnsperf, dnsmasq = find_binary("dnsperf"), find_binary("dnsmasq")
    if dnsperf is None:
        notes.append(
            "dnsperf is not available (not packaged or not installable): using the built-in Python UDP "
            "load generator instead; its ceiling (~one Python core) is far below dnsperf's, so the "
            "dnsmasq figure and the ratio are load-generator-bound"
        )
    if dnsmasq is None:
        notes.append("dnsmasq is not available: no peer figures, ratios not computed")
    return {
        "dnsperf": dnsperf,
        "dnsmasq": dnsmasq,
        "dnsmasq_version": first_line([dnsmasq, "--version"]) if dnsmasq else None,
        "notes": notes,
    }


def dnsperf_version(path: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([path, "-h"], capture_output=True, text=True, timeout=10)
        m = re.search(r"Version\s+(\S+)", out.stdout + out.stderr)
        if m:
            return m.group(1)
    return "unknown"


def sources_digest(folder: Path) -> str:
    """Short digest of the package's sources: the tree may be uncommitted, this names what ran."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def machine_facts(peers: dict[str, Any], pinned: bool) -> dict[str, Any]:
    model = cpu_model()
    commit = first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = first_line(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": commit + ("+dirty" if dirty != "unknown" else ""),
        "dnsserver_sha256": sources_digest(REPO / "dnsserver"),
        "dnsperf": dnsperf_version(peers["dnsperf"]) if peers["dnsperf"] else "missing (Python load generator)",
        "dnsmasq": peers["dnsmasq_version"] or "missing",
        "loadavg_at_start": loadavg(),
        "pinning": f"servers taskset -c {SERVER_CPU}; dnsperf, this script, the idle registry on CPU {LOADGEN_CPU}"
        if pinned
        else "none",
    }


# === the catalog and the names ===


def instance_ip(svc: int, inst: int, per_service: int) -> str:
    k = svc * per_service + inst + 1
    return f"10.{(k >> 16) & 255}.{(k >> 8) & 255}.{k & 255}"


def service_name(svc: int) -> str:
    return f"svc-{svc:05d}"


def catalog_body(svc: int, inst: int, per_service: int, nodes: int) -> bytes:
    n = (svc * per_service + inst) % nodes
    name = service_name(svc)
    sid = f"{name}-{inst}"
    body = {
        "Node": f"node-{n:04d}",
        "Address": f"10.200.{n // 250}.{n % 250 + 1}",
        "Service": {
            "ID": sid,
            "Service": name,
            "Address": instance_ip(svc, inst, per_service),
            "Port": 8080,
            # Kubernetes view of the same instances (headless service, one named port) for the mixed run;
            # Consul answers do not read Meta.
            "Meta": {"k8s-namespace": "default", "k8s-port-http": "tcp"},
        },
        "Check": {"CheckID": f"service:{sid}", "Name": "alive", "Status": "passing", "ServiceID": sid},
    }
    return json.dumps(body).encode()


def consul_names(svc: int, forms: int) -> list[str]:
    """Names that all resolve to the instances of ``svc`` (1 form: the plain one)."""
    name = service_name(svc)
    return [f"{name}.service.consul", f"{name}.service.dc1.consul"][:forms]


def mixed_question(svc: int, per_service: int, second: bool) -> tuple[str, str, str]:
    """(name, type, kind) of service ``svc`` in the uncached mix (``MIX_SLOTS``), first or second pass.

    The two passes use other spellings of each kind (``.service.dc1.consul``, endpoint names, the
    second search domain, another instance's address), and a service gets a different kind in
    each, so all 2 x services questions are distinct.
    """
    kind = MIX_SLOTS[(svc + (10 if second else 0)) % len(MIX_SLOTS)]
    name = service_name(svc)
    consul = f"{name}.service.dc1.consul" if second else f"{name}.service.consul"
    k8s = f"{name}.default.svc.cluster.local"
    ip = instance_ip(svc, (1 if second else 0) % per_service, per_service)
    endpoint = f"{ip.replace('.', '-')}.{k8s}"  # the default endpoint hostname: the dashed IP
    if kind in ("A", "AAAA", "SRV"):
        return consul, kind, kind
    if kind in ("K8S_A", "K8S_AAAA"):
        return (endpoint if second else k8s), kind[4:], kind
    if kind == "K8S_SRV":
        return (k8s if second else f"_http._tcp.{k8s}"), "SRV", kind
    if kind == "PTR":
        return ".".join(reversed(ip.split("."))) + ".in-addr.arpa", "PTR", kind
    search = "svc.cluster.local" if second else "default.svc.cluster.local"
    return f"{name}.service.consul.{search}", "A", kind


def mixed_questions(services: int, per_service: int) -> list[tuple[str, str, str]]:
    """The uncached mix: 2 x ``services`` distinct questions, pass-major (see ``mixed_question``)."""
    return [mixed_question(svc, per_service, second) for second in (False, True) for svc in range(services)]


def write_mixed_queries(path: Path, services: int, per_service: int) -> dict[str, int]:
    """A dnsperf query file with the uncached mix; returns how many questions of each kind."""
    questions = mixed_questions(services, per_service)
    path.write_text("".join(f"{name} {qtype}\n" for name, qtype, _ in questions))
    path.chmod(0o644)
    return dict(collections.Counter(kind for *_, kind in questions))


def write_hosts(path: Path, services: int, per_service: int) -> None:
    """dnsmasq's equivalent of the catalog: every name of every service -> its instance IPs."""
    with path.open("w") as f:
        for svc in range(services):
            names = " ".join(consul_names(svc, 2))
            for inst in range(per_service):
                f.write(f"{instance_ip(svc, inst, per_service)} {names}\n")
    path.chmod(0o644)


def write_queries(path: Path, services: int, forms: int) -> int:
    """A dnsperf query file; form-major order, so a name comes back only after all the others."""
    lines = [f"{consul_names(svc, forms)[form]} A\n" for form in range(forms) for svc in range(services)]
    path.write_text("".join(lines))
    path.chmod(0o644)
    return len(lines)


# === DNS probe ===


def encode_query(name: str, qtype: int, qid: int) -> bytes:
    labels = b"".join(bytes([len(label)]) + label.encode("ascii") for label in name.strip(".").split("."))
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\x00" + struct.pack(">HH", qtype, 1)


def probe(port: int, name: str, timeout: float = 0.5) -> tuple[int, int] | None:
    """(rcode, answer count) of an A query, or None when nothing came back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(encode_query(name, 1, 0x4242), ("127.0.0.1", port))
            data = s.recv(65535)
        except OSError:
            return None
    if len(data) < 12 or data[:2] != b"\x42\x42":
        return None
    return data[3] & 0x0F, struct.unpack(">H", data[6:8])[0]


# === processes (each stops only itself) ===


def mesh_exe() -> str:
    mesh = REPO / ".venv" / "bin" / "mesh"
    return str(mesh) if mesh.exists() else (shutil.which("mesh") or "mesh")


class Registry(Proc):
    def __init__(self, workdir: Path) -> None:
        super().__init__("registry", workdir)
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"

    def start(self, pin_cpu: int | None) -> None:
        argv = [mesh_exe(), "registry", "--data-dir", str(self.workdir / "registry-data")]
        argv += ["--http-addr", self.addr, "--log-level", "warning"]
        self.spawn(argv, pin_cpu)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"registry exited:\n{self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            time.sleep(0.05)
        raise RuntimeError(f"registry did not listen within 30 s:\n{self.log_tail()}")


async def load_catalog(reg: Registry, services: int, per_service: int, nodes: int, concurrency: int = 64) -> float:
    url = f"http://{reg.addr}/v1/catalog/register"
    headers = {"Content-Type": "application/json"}
    errors: list[int] = []
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def put(i: int) -> None:
            body = catalog_body(i // per_service, i % per_service, per_service, nodes)
            async with session.put(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    errors.append(resp.status)

        t0 = time.perf_counter()
        await run_pool(services * per_service, concurrency, put)
        elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} catalog registrations failed (e.g. HTTP {errors[0]}):\n{reg.log_tail()}")
    return elapsed


async def register_marker(reg: Registry, name: str) -> None:
    """One more catalog registration: a new registry view, so mesh dns starts over with an empty answer cache."""
    body = {"Node": "bench-marker", "Address": "10.254.0.1", "Service": {"ID": name, "Service": name, "Port": 1}}
    async with (
        aiohttp.ClientSession() as session,
        session.put(f"http://{reg.addr}/v1/catalog/register", json=body) as resp,
    ):
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"marker registration failed: HTTP {resp.status}")


def fresh_cache(reg: Registry, mesh: MeshDns, name: str, timeout: float = 60.0) -> None:
    """Empty mesh dns's answer cache the way production does: a registry change (see ``register_marker``).

    Without it the mixed run would start with the A-only run's answers cached, and the questions
    both runs ask would stay in the raw-bytes map for good (a hit there adds nothing to evict).
    """
    asyncio.run(register_marker(reg, name))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe(mesh.port, f"{name}.service.consul") == (0, 1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"mesh dns did not see the marker service {name} within {timeout:.0f} s")


class MeshDns(Proc):
    def __init__(self, workdir: Path, registry_addr: str) -> None:
        super().__init__("mesh-dns", workdir)
        self.registry_addr = registry_addr
        self.port = 0
        self.metrics_port = 0

    def start(self, pin_cpu: int | None, probe_name: str, expect_answers: int, timeout: float) -> float:
        """Start and wait until ``probe_name`` gets ``expect_answers`` A records; seconds taken."""
        self.port, self.metrics_port = free_port(), free_port()
        argv = [mesh_exe(), "dns", "--dns-addr", f"127.0.0.1:{self.port}"]
        argv += ["--metrics-addr", f"127.0.0.1:{self.metrics_port}", "--log-level", "warning"]
        env = {**os.environ, "CONSUL_HTTP_ADDR": self.registry_addr}
        env.pop("CONSUL_HTTP_TOKEN", None)
        t0 = time.monotonic()
        self.spawn(argv, pin_cpu, env)
        last: tuple[int, int] | None = None
        while time.monotonic() - t0 < timeout:
            if not self.alive():
                raise RuntimeError(f"mesh dns exited with {self.proc and self.proc.returncode}:\n{self.log_tail()}")
            last = probe(self.port, probe_name)
            if last is not None and last[0] == 0 and last[1] == expect_answers:
                return time.monotonic() - t0
            time.sleep(0.1)
        raise RuntimeError(
            f"mesh dns gave no full answer for {probe_name} within {timeout:.0f} s "
            f"(last (rcode, answers): {last}):\n{self.log_tail()}"
        )

    def cache_counters(self) -> tuple[float, float]:
        """(hits, misses) from the server's /metrics."""
        hits = misses = 0.0
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        for line in text.splitlines():
            if line.startswith("mesh_dns_cache_hits_total"):
                hits += float(line.rsplit(" ", 1)[1])
            elif line.startswith("mesh_dns_cache_misses_total"):
                misses += float(line.rsplit(" ", 1)[1])
        return hits, misses


def start_mesh_dns(
    workdir: Path,
    registry_addr: str,
    pin_cpu: int | None,
    probe_name: str,
    expect: int,
    timeout: float,
    attempts: int,
    retry_wait: float,
) -> tuple[MeshDns | None, dict[str, Any]]:
    """Start mesh dns, retrying (the transport may be mid-change in the working tree)."""
    failures: list[str] = []
    for attempt in range(1, attempts + 1):
        dns = MeshDns(workdir, registry_addr)
        try:
            took = dns.start(pin_cpu, probe_name, expect, timeout)
        except Exception as exc:
            dns.stop()
            failures.append(f"attempt {attempt}: {exc}")
            print(f"  mesh dns failed to start (attempt {attempt}/{attempts}): {exc}", flush=True)
            if attempt < attempts:
                print(f"  waiting {retry_wait:.0f} s before retrying", flush=True)
                time.sleep(retry_wait)
            continue
        return dns, {"attempts": attempt, "ready_s": took, "failures": failures}
    return None, {"attempts": attempts, "ready_s": None, "failures": failures}


class Dnsmasq(Proc):
    def __init__(self, workdir: Path, binary: str, hosts: Path) -> None:
        super().__init__("dnsmasq", workdir)
        self.binary = binary
        self.hosts = hosts
        self.port = 0

    def start(self, pin_cpu: int | None, probe_name: str, expect: int) -> None:
        self.port = free_port()
        argv = [self.binary, "--no-daemon", f"--port={self.port}", "--listen-address=127.0.0.1"]
        argv += ["--bind-interfaces", "--no-resolv", "--no-hosts", f"--addn-hosts={self.hosts}"]
        argv += ["--cache-size=10000", "--local-ttl=0", "--pid-file=", "--log-facility=-"]
        if os.geteuid() == 0:
            argv.append("--user=root")  # no privilege drop: the temp files stay readable
        self.spawn(argv, pin_cpu)
        deadline = time.monotonic() + 30
        last = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"dnsmasq exited:\n{self.log_tail()}")
            last = probe(self.port, probe_name)
            if last is not None and last[0] == 0 and last[1] == expect:
                return
            time.sleep(0.05)
        raise RuntimeError(f"dnsmasq gave no full answer for {probe_name} (last {last}):\n{self.log_tail()}")


# === load generators ===


def parse_dnsperf(text: str) -> dict[str, Any]:
    def num(pattern: str) -> float | None:
        m = re.search(pattern, text)
        return float(m.group(1)) if m else None

    rcodes = {}
    m = re.search(r"Response codes:\s+(.+)", text)
    if m:
        for code, count in re.findall(r"([A-Z]+) (\d+)", m.group(1)):
            rcodes[code] = int(count)
    size = re.search(r"Average packet size:\s+request (\d+), (?:reply|response) (\d+)", text)
    return {
        "qps": num(r"Queries per second:\s+([\d.]+)"),
        "sent": num(r"Queries sent:\s+(\d+)"),
        "completed": num(r"Queries completed:\s+(\d+)"),
        "lost": num(r"Queries lost:\s+(\d+)"),
        "run_s": num(r"Run time \(s\):\s+([\d.]+)"),
        "latency_avg_ms": (num(r"Average Latency \(s\):\s+([\d.]+)") or 0.0) * 1e3,
        "rcodes": rcodes,
        "reply_bytes": int(size.group(2)) if size else None,
    }


def run_dnsperf(
    binary: str, port: int, qfile: Path, duration: float, clients: int, outstanding: int, pin: bool
) -> dict[str, Any]:
    argv = [binary, "-s", "127.0.0.1", "-p", str(port), "-d", str(qfile), "-l", f"{duration:g}"]
    argv += ["-c", str(clients), "-q", str(outstanding), "-t", "2"]
    if pin:
        argv = ["taskset", "-c", str(LOADGEN_CPU), *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    result = parse_dnsperf(done.stdout)
    if result["qps"] is None:
        raise RuntimeError(f"dnsperf failed (rc {done.returncode}):\n{done.stdout[-800:]}\n{done.stderr[-800:]}")
    return result


def python_loadgen(port: int, qfile: Path, duration: float, clients: int, outstanding: int) -> dict[str, Any]:
    """Fallback when dnsperf is missing: closed loop over ``clients`` UDP sockets, ``outstanding`` in flight.

    Same shape as dnsperf's measurement (query file read in order and looped, a fixed window of
    outstanding queries, 2 s timeout counted as lost); runs in this process, which is on CPU 1.
    """
    bodies = []
    for line in qfile.read_text().splitlines():
        if line.strip():
            name, qtype = line.split()[:2]
            bodies.append(encode_query(name, QTYPES[qtype.upper()], 0)[2:])
    sel = selectors.DefaultSelector()
    socks = []
    inflight: list[dict[int, float]] = []
    next_id = [0] * clients
    for i in range(clients):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
        socks.append(s)
        inflight.append({})
    window = max(1, outstanding // clients)
    counts = {"sent": 0, "completed": 0, "lost": 0}
    rcodes: collections.Counter[int] = collections.Counter()
    latency_total = 0.0
    qi = 0

    def send(i: int, now: float) -> None:
        nonlocal qi
        table_i = inflight[i]
        qid = next_id[i]
        while qid in table_i:
            qid = (qid + 1) & 0xFFFF
        next_id[i] = (qid + 1) & 0xFFFF
        with contextlib.suppress(BlockingIOError):
            socks[i].send(struct.pack(">H", qid) + bodies[qi % len(bodies)])
            table_i[qid] = now
            counts["sent"] += 1
            qi += 1

    start = time.perf_counter()
    end = start + duration
    for i in range(clients):
        for _ in range(window):
            send(i, start)
    next_sweep = start + 0.1
    now = start
    try:
        while now < end:
            for key, _ in sel.select(0.05):
                i = key.data
                sock = socks[i]
                while True:
                    try:
                        data = sock.recv(65535)
                    except (BlockingIOError, ConnectionRefusedError):
                        break
                    now = time.perf_counter()
                    sent_at = inflight[i].pop(struct.unpack(">H", data[:2])[0], None)
                    if sent_at is None:
                        continue
                    counts["completed"] += 1
                    rcodes[data[3] & 0x0F] += 1
                    latency_total += now - sent_at
                    if now < end:
                        send(i, now)
            now = time.perf_counter()
            if now >= next_sweep:
                next_sweep = now + 0.1
                for i in range(clients):
                    expired = [qid for qid, t in inflight[i].items() if now - t > 2.0]
                    for qid in expired:
                        del inflight[i][qid]
                        counts["lost"] += 1
                        send(i, now)
    finally:
        for s in socks:
            sel.unregister(s)
            s.close()
        sel.close()
    elapsed = time.perf_counter() - start
    names = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}
    return {
        "qps": counts["completed"] / elapsed,
        **{k: float(v) for k, v in counts.items()},
        "run_s": elapsed,
        "latency_avg_ms": latency_total / max(1, counts["completed"]) * 1e3,
        "rcodes": {names.get(code, str(code)): n for code, n in rcodes.items()},
        "reply_bytes": None,
    }


class Load:
    """One load setting, shared by every server of a comparison."""

    def __init__(self, args: argparse.Namespace, peers: dict[str, Any], pin: bool) -> None:
        self.dnsperf = peers["dnsperf"]
        self.duration = args.duration
        self.warmup = args.warmup
        self.clients = args.clients
        self.outstanding = args.outstanding
        self.pin = pin
        self.tool = "dnsperf" if self.dnsperf else "python-loadgen"
        self._lines: dict[Path, list[str]] = {}
        self._positions: dict[tuple[int, Path], int] = {}

    def run(self, port: int, qfile: Path, duration: float | None = None) -> dict[str, Any]:
        """One load run against ``port``; the query stream continues where this server's last run stopped.

        dnsperf always starts at the top of its file. Restarting there would re-ask the names the
        previous run asked last, which may still be in the answer cache; so each run gets the file
        rotated to the position where the previous run against the same server stopped, and each
        server sees one endless cycle through the names.
        """
        seconds = duration if duration is not None else self.duration
        lines = self._lines.get(qfile)
        if lines is None:
            lines = self._lines[qfile] = qfile.read_text().splitlines(keepends=True)
        pos = self._positions.get((port, qfile), 0)
        source = qfile
        if pos:
            source = qfile.with_name(f"{qfile.name}.{port}.rotated")
            source.write_text("".join(lines[pos:] + lines[:pos]))
        if self.dnsperf:
            result = run_dnsperf(self.dnsperf, port, source, seconds, self.clients, self.outstanding, self.pin)
        else:
            result = python_loadgen(port, source, seconds, self.clients, self.outstanding)
        self._positions[(port, qfile)] = (pos + int(result["sent"] or 0)) % len(lines)
        return result


def measure(load: Load, server: Proc, port: int, qfile: Path, mesh: MeshDns | None) -> dict[str, Any]:
    """One measured run: dnsperf figures plus the server's CPU and (mesh only) cache counters."""
    counters0 = mesh.cache_counters() if mesh else None
    cpu0 = server.cpu_seconds()
    result = load.run(port, qfile)
    cpu = server.cpu_seconds() - cpu0
    completed = result["completed"] or 0.0
    result["server_cpu_share"] = cpu / result["run_s"] if result["run_s"] else None
    result["server_us_per_query"] = cpu / completed * 1e6 if completed else None
    answered = sum(result["rcodes"].values())
    result["noerror_share"] = result["rcodes"].get("NOERROR", 0) / answered if answered else 0.0
    if mesh and counters0:
        hits1, misses1 = mesh.cache_counters()
        hits, misses = hits1 - counters0[0], misses1 - counters0[1]
        result["cache_miss_share"] = misses / (hits + misses) if hits + misses else None
    return result


def describe_run(label: str, n: int, r: dict[str, Any]) -> str:
    text = (
        f"  {label:<26} run {n}: {r['qps']:>10,.0f} QPS  lost {fmt_int(r['lost'])}  "
        f"NOERROR {r['noerror_share']:.1%}  latency {r['latency_avg_ms']:.3f} ms  "
        f"server CPU {r['server_cpu_share'] or 0:.0%}, {r['server_us_per_query'] or 0:.1f} µs/query"
    )
    answered = sum(r["rcodes"].values())
    others = {code: n for code, n in r["rcodes"].items() if code != "NOERROR"}
    if others and answered:
        text += "  " + " ".join(f"{code} {n / answered:.1%}" for code, n in sorted(others.items()))
    if r.get("reply_bytes"):
        text += f"  reply {r['reply_bytes']} B"
    if r.get("cache_miss_share") is not None:
        text += f"  cache misses {r['cache_miss_share']:.1%}"
    return text


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    if not runs:
        return {"qps": None, "runs": []}
    return {
        "qps": median([r["qps"] for r in runs]),
        "qps_runs": [round(r["qps"]) for r in runs],
        "server_us_per_query": median([r["server_us_per_query"] or 0.0 for r in runs]),
        "server_cpu_share": median([r["server_cpu_share"] or 0.0 for r in runs]),
        "latency_avg_ms": median([r["latency_avg_ms"] for r in runs]),
        "lost": sum(r["lost"] or 0.0 for r in runs),
        "noerror_share": min(r["noerror_share"] for r in runs),
        "cache_miss_share": min(
            (r["cache_miss_share"] for r in runs if r.get("cache_miss_share") is not None), default=None
        ),
        "reply_bytes": runs[0].get("reply_bytes"),
        "runs": runs,
    }


def interleaved(
    load: Load, servers: list[tuple[str, Proc, int, MeshDns | None]], qfile: Path, runs: int
) -> dict[str, dict[str, Any]]:
    """Warm each server up (uncounted), then ``runs`` rounds of one measured run per server, in turn."""
    for label, _, port, _ in servers:
        if load.warmup > 0:
            load.run(port, qfile, load.warmup)
            print(f"  {label:<26} warm-up {load.warmup:g} s done", flush=True)
    results: dict[str, list[dict[str, Any]]] = {label: [] for label, *_ in servers}
    for n in range(1, runs + 1):
        for label, proc, port, mesh in servers:
            r = measure(load, proc, port, qfile, mesh)
            results[label].append(r)
            print(describe_run(label, n, r), flush=True)
    return {label: summarize(rs) for label, rs in results.items()}


# === profiling (optional) ===


def py_spy_binary() -> str | None:
    for candidate in (shutil.which("py-spy"), "/tmp/tools/bin/py-spy", str(REPO / ".venv" / "bin" / "py-spy")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def short_frame(frame: str) -> str:
    """``func (/long/path/pkg/mod.py:12)`` -> ``func (mod.py)``, or ``func (dnsserver/mod.py)`` for ours."""
    m = re.match(r"(.*?)\s*\((.*):\d+\)$", frame)
    if not m:
        return frame
    func, path = m.groups()
    parts = path.split("/")
    where = "/".join(parts[-2:]) if len(parts) >= 2 and parts[-2] == "dnsserver" else parts[-1]
    return f"{func} ({where})"


def profile_run(load: Load, mesh: MeshDns, qfile: Path, out: Path, seconds: float) -> dict[str, Any]:
    """py-spy (on CPU 1, non-blocking sampling) on mesh dns during one extra, uncounted run."""
    spy = py_spy_binary()
    if spy is None:
        return {"error": "py-spy not found"}
    argv = [spy, "record", "--pid", str(mesh.pid), "--duration", f"{seconds:.0f}", "--rate", "250"]
    argv += ["--nonblocking", "--format", "raw", "--output", str(out)]
    if load.pin:
        argv = ["taskset", "-c", str(LOADGEN_CPU), *argv]
    spy_proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)
    run = load.run(mesh.port, qfile, seconds)
    _, err = spy_proc.communicate(timeout=seconds + 60)
    if not out.exists():
        return {"error": f"py-spy wrote nothing: {err.decode(errors='replace')[-300:]}"}
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [short_frame(f) for f in stack.split(";") if f]
        if frames:
            self_time[frames[-1]] += count
        for frame in set(frames):
            if "dnsserver/" in frame:  # the entry point and event loop frames are 100 % and say nothing
                inclusive[frame] += count
    return {
        "qps_while_profiled": run["qps"],
        "samples": total,
        "self": [(f, n / total) for f, n in self_time.most_common(12)] if total else [],
        "inclusive": [(f, n / total) for f, n in inclusive.most_common(25)] if total else [],
        "raw_file": str(out),
    }


def print_profile(label: str, prof: dict[str, Any]) -> None:
    if "error" in prof:
        print(f"  profile {label}: {prof['error']}")
        return
    print(f"  profile {label}: {prof['samples']} samples, {prof['qps_while_profiled']:,.0f} QPS while sampled")
    print("    self time:")
    for frame, share in prof["self"]:
        print(f"      {share:6.1%}  {frame}")
    print("    inclusive (dnsserver/ frames):")
    for frame, share in prof["inclusive"]:
        print(f"      {share:6.1%}  {frame}")


# === phases ===


def phase_cached(args: argparse.Namespace, peers: dict[str, Any], load: Load, work: Path) -> dict[str, Any]:
    pin_cpu = SERVER_CPU if load.pin else None
    out: dict[str, Any] = {"services": args.services, "per_service": args.per_service}
    reg = Registry(work)
    mesh: MeshDns | None = None
    peer: Dnsmasq | None = None
    try:
        reg.start(pin_cpu)
        out["load_s"] = asyncio.run(load_catalog(reg, args.services, args.per_service, nodes=100))
        if load.pin:
            pin_all_threads(reg.pid, LOADGEN_CPU)  # idle from here on; keep CPU 0 for the server under test
        qfile = work / "cached.queries"
        out["names"] = write_queries(qfile, args.services, forms=1)
        hosts = work / "cached.hosts"
        write_hosts(hosts, args.services, args.per_service)
        probe_name = consul_names(args.services - 1, 1)[0]
        print(f"  registry loaded in {out['load_s']:.1f} s; starting mesh dns", flush=True)
        mesh, out["mesh_start"] = start_mesh_dns(
            work, reg.addr, pin_cpu, probe_name, args.per_service, 60, args.start_attempts, args.retry_wait
        )
        servers: list[tuple[str, Proc, int, MeshDns | None]] = []
        if mesh is not None:
            servers.append(("mesh dns (cached)", mesh, mesh.port, mesh))
            out["mesh_rss_mb"] = mesh.memory_mb().get("VmRSS")
        if peers["dnsmasq"]:
            peer = Dnsmasq(work, peers["dnsmasq"], hosts)
            peer.start(pin_cpu, probe_name, args.per_service)
            servers.append(("dnsmasq (cached)", peer, peer.port, None))
        out["results"] = interleaved(load, servers, qfile, args.runs)
        if mesh is not None and args.profile:
            prof = profile_run(load, mesh, qfile, work / "profile-cached.txt", args.profile_seconds)
            out["profile"] = prof
            print_profile("mesh dns cached", prof)
    finally:
        for proc in (mesh, peer, reg):
            if proc is not None:
                proc.stop()
    return out


def phase_uncached(args: argparse.Namespace, peers: dict[str, Any], load: Load, work: Path) -> dict[str, Any]:
    pin_cpu = SERVER_CPU if load.pin else None
    out: dict[str, Any] = {"services": args.large_services, "per_service": args.per_service}
    reg = Registry(work)
    mesh: MeshDns | None = None
    peer: Dnsmasq | None = None
    try:
        reg.start(pin_cpu)
        nodes = max(1, args.large_services // 10)
        out["load_s"] = asyncio.run(load_catalog(reg, args.large_services, args.per_service, nodes=nodes))
        if load.pin:
            pin_all_threads(reg.pid, LOADGEN_CPU)
        out["registry_rss_mb"] = reg.memory_mb().get("VmRSS")
        qfile = work / "uncached.queries"
        out["names"] = write_queries(qfile, args.large_services, forms=args.forms)
        hosts = work / "uncached.hosts"
        write_hosts(hosts, args.large_services, args.per_service)
        probe_name = consul_names(args.large_services - 1, 1)[0]
        print(
            f"  registry loaded in {out['load_s']:.1f} s "
            f"({args.large_services * args.per_service / out['load_s']:,.0f}/s); starting mesh dns",
            flush=True,
        )
        mesh, out["mesh_start"] = start_mesh_dns(
            work, reg.addr, pin_cpu, probe_name, args.per_service, 300, args.start_attempts, args.retry_wait
        )
        servers: list[tuple[str, Proc, int, MeshDns | None]] = []
        if mesh is not None:
            time.sleep(2.0)  # let the sync's garbage settle before reading RSS
            out["mesh_rss_synced_mb"] = mesh.memory_mb().get("VmRSS")
            print(
                f"  mesh dns answered all names after {out['mesh_start']['ready_s']:.1f} s; "
                f"VmRSS {out['mesh_rss_synced_mb']:.1f} MB",
                flush=True,
            )
            servers.append(("mesh dns (uncached)", mesh, mesh.port, mesh))
        if peers["dnsmasq"]:
            peer = Dnsmasq(work, peers["dnsmasq"], hosts)
            peer.start(pin_cpu, probe_name, args.per_service)
            servers.append(("dnsmasq (same names)", peer, peer.port, None))
        out["results"] = interleaved(load, servers, qfile, args.runs)
        if mesh is not None:
            mem = mesh.memory_mb()
            out["mesh_rss_after_load_mb"] = mem.get("VmRSS")
            out["mesh_hwm_mb"] = mem.get("VmHWM")
        if peer is not None:
            out["dnsmasq_rss_mb"] = peer.memory_mb().get("VmRSS")
        if mesh is not None and args.profile:
            prof = profile_run(load, mesh, qfile, work / "profile-uncached.txt", args.profile_seconds)
            out["profile"] = prof
            print_profile("mesh dns uncached", prof)
        if mesh is not None and not args.skip_mix:
            fresh_cache(reg, mesh, "bench-mix-marker")
            mixfile = work / "uncached-mix.queries"
            kinds = write_mixed_queries(mixfile, args.large_services, args.per_service)
            out["mix_names"], out["mix_kinds"] = sum(kinds.values()), kinds
            total = out["mix_names"]
            print("  uncached mix: " + ", ".join(f"{k} {n / total:.0%}" for k, n in kinds.items()), flush=True)
            out["mix_results"] = interleaved(
                load, [("mesh dns (uncached mix)", mesh, mesh.port, mesh)], mixfile, args.runs
            )
            if args.profile:
                prof = profile_run(load, mesh, mixfile, work / "profile-uncached-mix.txt", args.profile_seconds)
                out["mix_profile"] = prof
                print_profile("mesh dns uncached mix", prof)
    finally:
        for proc in (mesh, peer, reg):
            if proc is not None:
                proc.stop()
    return out


# === report ===


def yes_no(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "**no**")


def build_summary(cached: dict[str, Any], uncached: dict[str, Any]) -> tuple[list[list[str]], dict[str, Any]]:
    cres, ures = cached.get("results", {}), uncached.get("results", {})
    peer_c = cres.get("dnsmasq (cached)", {}).get("qps")
    mesh_c = cres.get("mesh dns (cached)", {}).get("qps")
    peer_u = ures.get("dnsmasq (same names)", {}).get("qps")
    mesh_u = ures.get("mesh dns (uncached)", {}).get("qps")
    ratio_c = mesh_c / peer_c if mesh_c and peer_c else None
    ratio_u = mesh_u / peer_u if mesh_u and peer_u else None

    def cpu_ratio(mesh_res: dict[str, Any], peer_res: dict[str, Any]) -> float | None:
        """dnsmasq CPU per query / mesh dns CPU per query: the ratio with the machine's noise taken out."""
        m, d = mesh_res.get("server_us_per_query"), peer_res.get("server_us_per_query")
        return d / m if m and d else None

    cpu_c = cpu_ratio(cres.get("mesh dns (cached)", {}), cres.get("dnsmasq (cached)", {}))
    cpu_u = cpu_ratio(ures.get("mesh dns (uncached)", {}), ures.get("dnsmasq (same names)", {}))
    miss_c = cres.get("mesh dns (cached)", {}).get("cache_miss_share")
    miss_u = ures.get("mesh dns (uncached)", {}).get("cache_miss_share")
    mres = uncached.get("mix_results", {}).get("mesh dns (uncached mix)", {})
    mesh_m, miss_m = mres.get("qps"), mres.get("cache_miss_share")
    mix_valid = miss_m is not None and miss_m >= MIN_UNCACHED_MISS_SHARE
    # The uncached figure counts only if (nearly) every reply was built: checked with the server's counters.
    uncached_valid = miss_u is not None and miss_u >= MIN_UNCACHED_MISS_SHARE
    if mesh_u is not None and not uncached_valid:
        mesh_u_checked: float | None = None
    else:
        mesh_u_checked = mesh_u
    met = {
        "cached_ratio_target": None if ratio_c is None else ratio_c >= TARGET_CACHED_RATIO,
        "cached_ratio_minimum": None if ratio_c is None else ratio_c >= MIN_CACHED_RATIO,
        "uncached_qps_target": None if mesh_u_checked is None else mesh_u_checked >= TARGET_UNCACHED_QPS,
        "uncached_qps_minimum": None if mesh_u_checked is None else mesh_u_checked >= MIN_UNCACHED_QPS,
        "uncached_mix_qps_target": None if mesh_m is None or not mix_valid else mesh_m >= TARGET_UNCACHED_QPS,
    }

    def runs_of(res: dict[str, Any]) -> str:
        return ", ".join(f"{q:,}" for q in res.get("qps_runs", [])) or "-"

    def us(res: dict[str, Any]) -> str:
        return f"{res['server_us_per_query']:.1f}" if res.get("server_us_per_query") else "-"

    def ratio(r: float | None) -> str:
        return "-" if r is None else f"{r:.2f}x"

    cn, un = cached.get("names", 0), uncached.get("names", 0)
    if mesh_u is None:
        uncached_qps = "failed"
    else:
        uncached_qps = fmt_int(mesh_u) + ("" if uncached_valid else " (INVALID: answers were cached)")
    rows = [
        [
            "dnsmasq",
            f"cached: {cn} names, hosts file",
            fmt_int(peer_c),
            runs_of(cres.get("dnsmasq (cached)", {})),
            us(cres.get("dnsmasq (cached)", {})),
            "1.00x" if peer_c else "-",
            "(peer)",
            "-",
        ],
        [
            "mesh dns",
            f"cached: {cn} names" + (f" (misses {miss_c:.1%})" if miss_c is not None else ""),
            fmt_int(mesh_c) if mesh_c else "failed",
            runs_of(cres.get("mesh dns (cached)", {})),
            us(cres.get("mesh dns (cached)", {})),
            f"{ratio(ratio_c)} ({ratio(cpu_c)})",
            f"≥ {TARGET_CACHED_RATIO}x dnsmasq (min ≥ {MIN_CACHED_RATIO}x)",
            f"{yes_no(met['cached_ratio_target'])} (min: {yes_no(met['cached_ratio_minimum'])})",
        ],
        [
            "dnsmasq",
            f"same {un:,} names as below",
            fmt_int(peer_u),
            runs_of(ures.get("dnsmasq (same names)", {})),
            us(ures.get("dnsmasq (same names)", {})),
            "1.00x" if peer_u else "-",
            "(reference)",
            "-",
        ],
        [
            "mesh dns",
            f"uncached: {un:,} distinct names" + (f" (misses {miss_u:.1%})" if miss_u is not None else ""),
            uncached_qps,
            runs_of(ures.get("mesh dns (uncached)", {})),
            us(ures.get("mesh dns (uncached)", {})),
            f"{ratio(ratio_u)} ({ratio(cpu_u)})",
            f"≥ {TARGET_UNCACHED_QPS:,.0f} QPS (min ≥ {MIN_UNCACHED_QPS:,.0f})",
            f"{yes_no(met['uncached_qps_target'])} (min: {yes_no(met['uncached_qps_minimum'])})",
        ],
    ]
    if mres:
        mn = uncached.get("mix_names", 0)
        rows.append(
            [
                "mesh dns",
                f"uncached mix: {mn:,} distinct questions, all types"
                + (f" (misses {miss_m:.1%})" if miss_m is not None else ""),
                fmt_int(mesh_m) + ("" if mix_valid else " (INVALID: answers were cached)"),
                runs_of(mres),
                us(mres),
                "-",
                f"≥ {TARGET_UNCACHED_QPS:,.0f} QPS",
                yes_no(met["uncached_mix_qps_target"]),
            ]
        )
    figures = {
        "cached_qps": {"mesh": mesh_c, "dnsmasq": peer_c, "ratio": ratio_c, "cpu_per_query_ratio": cpu_c},
        "uncached_qps": {
            "mesh": mesh_u,
            "dnsmasq_same_names": peer_u,
            "ratio": ratio_u,
            "cpu_per_query_ratio": cpu_u,
        },
        "uncached_mix_qps": {
            "mesh": mesh_m,
            "server_us_per_query": mres.get("server_us_per_query"),
            "kinds": uncached.get("mix_kinds"),
            "rcodes": mres["runs"][0]["rcodes"] if mres.get("runs") else None,
        },
        "cache_miss_share": {"cached": miss_c, "uncached": miss_u, "uncached_mix": miss_m},
        "uncached_valid": uncached_valid,
        "uncached_mix_valid": mix_valid,
        "targets_met": met,
    }
    return rows, figures


def strip_runs(phase: dict[str, Any]) -> dict[str, Any]:
    """The phase without the full profile stacks (kept short for the JSON line)."""
    out = dict(phase)
    if "profile" in out:
        prof = dict(out["profile"])
        prof.pop("inclusive", None)
        out["profile"] = prof
    return out


# === main ===


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 run of 3 s per point, 6,000 services in phase 2")
    p.add_argument("--runs", type=int, help="measured runs per server and path; medians reported [3; quick 1]")
    p.add_argument("--duration", type=float, help="seconds per dnsperf run [10; quick 3]")
    p.add_argument("--warmup", type=float, default=2.0, help="uncounted dnsperf seconds per server first [2]")
    p.add_argument("--clients", type=int, default=10, help="dnsperf -c [10]")
    p.add_argument("--outstanding", type=int, default=100, help="dnsperf -q: queries in flight [100]")
    p.add_argument("--services", type=int, default=100, help="services in phase 1 (cached path) [100]")
    p.add_argument("--per-service", type=int, default=3, help="instances per service (all passing) [3]")
    p.add_argument("--large-services", type=int, help="services in phase 2 (uncached path, RSS) [10000; quick 6000]")
    p.add_argument(
        "--forms",
        type=int,
        default=2,
        choices=(1, 2),
        help="names per service in phase 2 (plain, with .dc1); 2 x 10k exceeds the 10k answer cache [2]",
    )
    p.add_argument("--start-attempts", type=int, default=4, help="tries to start mesh dns [4]")
    p.add_argument("--retry-wait", type=float, default=60.0, help="seconds between those tries [60]")
    p.add_argument("--profile", action="store_true", help="py-spy mesh dns during one extra run per path")
    p.add_argument("--profile-seconds", type=float, default=10.0, help="length of that run [10]")
    p.add_argument("--skip-uncached", action="store_true", help="phase 1 only")
    p.add_argument("--skip-mix", action="store_true", help="no uncached run with the mixed query types")
    p.add_argument("--no-install", action="store_true", help="never run apt-get")
    p.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()), help="parent of the temp dir")
    args = p.parse_args(argv)
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.duration is None:
        args.duration = 3.0 if args.quick else 10.0
    if args.large_services is None:
        args.large_services = 6000 if args.quick else 10_000
    return args


def _interrupted(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through the finally blocks that stop our processes


def raise_nofile(children_need: int) -> None:
    """The watcher holds one connection per service (and the registry the other end)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < children_need:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(children_need, soft)), hard))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupted)
    started = time.monotonic()
    pin = can_pin() and not args.no_pin
    if pin:
        os.sched_setaffinity(0, {LOADGEN_CPU})  # this script and the registry loader
    raise_nofile(args.large_services * 2 + 1024)
    peers = ensure_peers(not args.no_install)
    facts = machine_facts(peers, pin)
    load = Load(args, peers, pin)
    print("# DNS benchmark: mesh dns vs dnsmasq" + (" (--quick)" if args.quick else ""))
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    for k, v in facts.items():
        print(f"{k}: {v}")
    for note in peers["notes"]:
        print(f"NOTE: {note}")
    print(
        f"load: {load.tool}, {args.duration:g} s per run after {args.warmup:g} s warm-up, -c {args.clients} "
        f"-q {args.outstanding}, A queries over UDP (the uncached mix: its own types), {args.runs} runs per point, "
        "interleaved"
    )
    work = Path(tempfile.mkdtemp(prefix="dns-bench-", dir=args.workdir))
    work.chmod(0o755)
    try:
        print(f"\n[1/2] cached path: {args.services} services x {args.per_service} instances")
        cached = phase_cached(args, peers, load, work)
        uncached: dict[str, Any] = {}
        if not args.skip_uncached:
            print(f"\n[2/2] uncached path and memory: {args.large_services:,} services x {args.per_service} instances")
            uncached = phase_uncached(args, peers, load, work)
    finally:
        if args.profile:
            print(f"\nprofiles (py-spy raw/collapsed stacks) and logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    rows, figures = build_summary(cached, uncached)
    print("\n## Summary\n")
    print(
        table(
            rows,
            [
                "server",
                "path",
                "QPS (median)",
                "runs",
                "server µs/query",
                "ratio to dnsmasq (CPU/query)",
                "target",
                "met?",
            ],
        )
    )
    mem_rows = []
    if uncached:
        n = f"{uncached['services']:,} services x {uncached['per_service']}"
        small = f"{cached.get('services', 0):,} services x {cached.get('per_service', 0)}"
        mem_rows.append(["mesh dns VmRSS, synced (baseline)", small, f"{cached.get('mesh_rss_mb') or 0:.1f} MB"])
        mem_rows.append(["mesh dns VmRSS, synced, idle", n, f"{uncached.get('mesh_rss_synced_mb') or 0:.1f} MB"])
        mem_rows.append(
            [
                "mesh dns VmRSS, after the uncached runs (cache full)",
                n,
                f"{uncached.get('mesh_rss_after_load_mb') or 0:.1f} MB",
            ]
        )
        mem_rows.append(["mesh dns VmHWM (peak)", n, f"{uncached.get('mesh_hwm_mb') or 0:.1f} MB"])
        mem_rows.append(["dnsmasq VmRSS (same names, hosts file)", n, f"{uncached.get('dnsmasq_rss_mb') or 0:.1f} MB"])
        mem_rows.append(["registry VmRSS (for scale)", n, f"{uncached.get('registry_rss_mb') or 0:.1f} MB"])
        print()
        print(table(mem_rows, ["memory", "catalog", "value"]))
    print(
        f"\n{facts['date']}; nproc {facts['nproc']}; {facts['cpu_model']}; {facts['pinning']}; "
        f"load {load.tool} {facts['dnsperf']}; peer {facts['dnsmasq']}"
    )
    facts["loadavg_at_end"] = loadavg()
    print(f"load average (1/5/15 min) at start {facts['loadavg_at_start']}, at end {facts['loadavg_at_end']}")
    failures = [f for phase in (cached, uncached) for f in phase.get("mesh_start", {}).get("failures", [])]
    if failures:
        print(f"mesh dns start failures: {len(failures)} (see above)")
    result = {
        "bench": "dns",
        "quick": args.quick,
        "machine": facts,
        "load": {
            "tool": load.tool,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "clients": args.clients,
            "outstanding": args.outstanding,
            "runs": args.runs,
        },
        **figures,
        "memory_mb": {
            "services": uncached.get("services"),
            "instances": (uncached.get("services") or 0) * args.per_service,
            "mesh_rss_synced": uncached.get("mesh_rss_synced_mb"),
            "mesh_rss_small_catalog": cached.get("mesh_rss_mb"),
            "mesh_rss_after_load": uncached.get("mesh_rss_after_load_mb"),
            "mesh_hwm": uncached.get("mesh_hwm_mb"),
            "dnsmasq_rss": uncached.get("dnsmasq_rss_mb"),
            "registry_rss": uncached.get("registry_rss_mb"),
        },
        "cached_phase": strip_runs(cached),
        "uncached_phase": strip_runs(uncached),
        "peer_notes": peers["notes"],
        "wall_s": time.monotonic() - started,
    }
    print()
    print(json.dumps(result, separators=(",", ":"), default=str))  # the last line: every figure
    mesh_ok = figures["cached_qps"]["mesh"] is not None and (args.skip_uncached or figures["uncached_qps"]["mesh"])
    return 0 if mesh_ok else 1


if __name__ == "__main__":
    sys.exit(main())
