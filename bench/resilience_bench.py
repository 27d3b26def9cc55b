"""Kill 1 of 3 backends under fixed-rate load: error rate, p99 during the fault, time to eject.

Runs the sidecar and its real peer, HAProxy, on the same scenario in the same run:

- three backend processes (a minimal keep-alive HTTP/1.1 server, 1 KB answers, ``/healthz``);
- the proxy under test in front of them, pinned to CPU 0: the sidecar with retries
  (``5xx,connect-failure,reset``, 2 retries, other hosts), passive outlier detection
  (5 consecutive 5xx / gateway errors) and an active HTTP health check every 1 s; HAProxy 2.6
  with the same policy in its terms (``retry-on``, ``option redispatch``, ``observe layer7``
  ``error-limit 5 on-error mark-down``, ``check inter 1s fall 3 rise 2``);
- an open-loop load generator on CPU 1 sending at a fixed rate over keep-alive connections and
  timing each request from its *intended* send time (no coordinated omission);
- after the warm-up, one backend is SIGKILLed; the run goes on for the fault window and after.

Reported per proxy: error rate over the whole run and in the fault window (the first 5 s after
the kill), p50/p99 latency before and during the fault, and the time from the kill until the
proxy stops using the dead backend: for the sidecar, until ``mesh_sidecar_outlier_ejections_active``
or ``mesh_sidecar_health_check_unavailable`` on its admin ``/metrics`` turns 1; for HAProxy,
until its stats socket shows the server DOWN. Target (benchmarking.md): error rate ≤ 0.1 %.

Needs the proxy to call the resilience layers (``sidecar.resilience.policy``); without that the
sidecar still runs but neither retries nor ejects, and the table shows it.

    flock /tmp/mesh-bench.lock .venv/bin/python bench/resilience_bench.py [--rate 500] [--seconds 12]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchlib import REPO, Proc, can_pin, cpu_model, free_port, median, percentile, table

BODY = b"x" * 1024
FAULT_WINDOW_S = 5.0


# === backend process ===


class _BackendProtocol(asyncio.Protocol):
    """Keep-alive HTTP/1.1 without request bodies: enough for GET load and health probes."""

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            close = b"connection: close" in head.lower()
            body = b"ok\n" if head.startswith(b"GET /healthz") else BODY
            assert self.transport is not None
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Backend: %b\r\nContent-Length: %d\r\n%b\r\n%b"
                % (self.name, len(body), b"Connection: close\r\n" if close else b"", body)
            )
            if close:
                self.transport.close()
                return


def serve_backend(port: int, name: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _BackendProtocol(name.encode()), "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


# === sidecar process (used when the `mesh sidecar` command is not there yet) ===


def serve_sidecar(config_path: str, admin_port: int) -> None:
    from mesh.model.parse import parse_snapshot_text
    from sidecar.server import SidecarConfig, SidecarServer

    snapshot = parse_snapshot_text(Path(config_path).read_bytes())

    async def main() -> None:
        server = SidecarServer(SidecarConfig(admin_addr=f"127.0.0.1:{admin_port}"))
        await server.start()
        result = server.apply(snapshot)
        print("apply:", result, flush=True)
        await server.settle()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


# === open-loop load ===


@dataclass
class Sample:
    intended: float
    latency: float
    ok: bool


@dataclass
class LoadResult:
    samples: list[Sample] = field(default_factory=list)


class _Client(asyncio.Protocol):
    """One keep-alive client connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._check()

    def _check(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = self.buffer[:end]
        match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
        length = int(match.group(1)) if match else 0
        if len(self.buffer) < end + 4 + length:
            return
        self.buffer = self.buffer[end + 4 + length :]
        status = int(head[9:12])
        if b"connection: close" in head.lower():
            self.closed = True
            assert self.transport is not None
            self.transport.close()
        waiter, self.waiter = self.waiter, None
        if not waiter.done():
            waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection lost"))


async def fixed_rate_load(port: int, host: str, rate: float, seconds: float, timeout_s: float) -> LoadResult:
    """Send ``rate`` requests per second for ``seconds``, each on an idle keep-alive connection."""
    loop = asyncio.get_running_loop()
    idle: list[_Client] = []
    result = LoadResult()
    request = b"GET /item HTTP/1.1\r\nHost: %b\r\n\r\n" % host.encode()
    tasks: set[asyncio.Task[None]] = set()

    async def one(intended: float) -> None:
        client = None
        ok = False
        try:
            async with asyncio.timeout(timeout_s):
                while idle:
                    candidate = idle.pop()
                    if not candidate.closed:
                        client = candidate
                        break
                if client is None:
                    _, client = await loop.create_connection(_Client, "127.0.0.1", port)
                client.waiter = loop.create_future()
                assert client.transport is not None
                client.transport.write(request)
                status = await client.waiter
                ok = status < 500
        except (OSError, ConnectionError, TimeoutError, ValueError):
            ok = False
            if client is not None and client.transport is not None:
                client.transport.close()
                client = None
        result.samples.append(Sample(intended, loop.time() - intended, ok))
        if client is not None and not client.closed:
            idle.append(client)

    start = loop.time() + 0.05
    total = int(rate * seconds)
    for i in range(total):
        intended = start + i / rate
        delay = intended - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(one(intended))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks, return_exceptions=True)
    for client in idle:
        if client.transport is not None:
            client.transport.close()
    return result


# === ejection watchers ===


async def _http_get(port: int, path: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    return data.decode(errors="replace")


async def sidecar_ejected(admin_port: int) -> bool:
    with contextlib.suppress(OSError):
        text = await _http_get(admin_port, "/metrics")
        for line in text.splitlines():
            if (
                line.startswith(("mesh_sidecar_outlier_ejections_active{", "mesh_sidecar_health_check_unavailable{"))
                and 'cluster="web"' in line
                and float(line.rsplit(" ", 1)[1]) >= 1
            ):
                return True
    return False


async def haproxy_down(stats_path: str) -> bool:
    with contextlib.suppress(OSError):
        reader, writer = await asyncio.open_unix_connection(stats_path)
        writer.write(b"show stat\n")
        data = (await reader.read()).decode()
        writer.close()
        return any(line.startswith("web,b0,") and ",DOWN" in line for line in data.splitlines())
    return False


async def watch(probe: object, since: float, until: float) -> float | None:
    """Seconds from ``since`` until ``probe()`` first says yes (None: never before ``until``)."""
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        if await probe():  # type: ignore[operator]
            return loop.time() - since
        await asyncio.sleep(0.02)
    return None


# === one scenario ===


def sidecar_config(proxy_port: int, backends: list[int]) -> dict[str, object]:
    return {
        "version": "resilience-bench",
        "listeners": [{"name": "out", "protocol": "http", "port": proxy_port, "route_table": "out"}],
        "route_tables": [
            {
                "name": "out",
                "virtual_hosts": [
                    {
                        "name": "web",
                        "domains": ["*"],
                        "routes": [
                            {
                                "name": "all",
                                "cluster": "web",
                                "timeout": "2s",
                                "retry_policy": {
                                    "retry_on": "5xx,connect-failure,reset",
                                    "num_retries": 2,
                                    "per_try_timeout": "500ms",
                                },
                            }
                        ],
                    }
                ],
            }
        ],
        "clusters": [
            {
                "name": "web",
                "endpoints": [{"host": "127.0.0.1", "port": p} for p in backends],
                "connect_timeout": "250ms",
                "outlier_detection": {
                    "consecutive_5xx": 5,
                    "consecutive_gateway_errors": 5,
                    "interval": "1s",
                    "base_ejection_time": "30s",
                    "max_ejection_percent": 34,
                },
                "health_check": {
                    "interval": "1s",
                    "timeout": "250ms",
                    "unhealthy_threshold": 3,
                    "healthy_threshold": 2,
                    "http": {"path": "/healthz"},
                },
            }
        ],
    }


def haproxy_config(proxy_port: int, backends: list[int], stats_path: str) -> str:
    servers = "\n".join(
        f"    server b{i} 127.0.0.1:{port} check inter 1s fall 3 rise 2 observe layer7 error-limit 5 on-error mark-down"
        for i, port in enumerate(backends)
    )
    return f"""global
    nbthread 1
    stats socket {stats_path} mode 600 level admin
defaults
    mode http
    timeout connect 250ms
    timeout client 30s
    timeout server 500ms
    retries 2
    option redispatch 1
    retry-on conn-failure empty-response response-timeout 502 503 504
    http-reuse always
frontend out
    bind 127.0.0.1:{proxy_port}
    default_backend web
backend web
    balance roundrobin
    option httpchk GET /healthz
{servers}
"""


@dataclass
class Outcome:
    proxy: str
    requests: int
    error_rate: float
    fault_error_rate: float
    p50_before_ms: float
    p99_before_ms: float
    p50_fault_ms: float
    p99_fault_ms: float
    eject_s: float | None
    cpu_s: float


async def run_scenario(proxy: str, args: argparse.Namespace, workdir: Path, pin: bool) -> Outcome:
    backend_ports = [free_port() for _ in range(3)]
    proxy_port = free_port()
    admin_port = free_port()
    backends = [Proc(f"{proxy}-backend{i}", workdir) for i in range(3)]
    for i, (proc, port) in enumerate(zip(backends, backend_ports, strict=True)):
        proc.spawn([sys.executable, __file__, "--serve-backend", str(port), f"b{i}"], 1 if pin else None)
    server = Proc(proxy, workdir)
    stats_path = str(workdir / "haproxy.sock")
    if proxy == "sidecar":
        config_path = workdir / "sidecar.json"
        config_path.write_text(json.dumps(sidecar_config(proxy_port, backend_ports)))
        mesh = REPO / ".venv" / "bin" / "mesh"
        if args.sidecar_cli:
            argv = [str(mesh), "sidecar", "--config", str(config_path), "--admin-addr", f"127.0.0.1:{admin_port}"]
        else:
            argv = [sys.executable, __file__, "--serve-sidecar", str(config_path), str(admin_port)]
        server.spawn(argv, 0 if pin else None)
        ejected = lambda: sidecar_ejected(admin_port)  # noqa: E731
    else:
        config_path = workdir / "haproxy.cfg"
        config_path.write_text(haproxy_config(proxy_port, backend_ports, stats_path))
        server.spawn(["haproxy", "-f", str(config_path)], 0 if pin else None)
        ejected = lambda: haproxy_down(stats_path)  # noqa: E731
    try:
        await _wait_port(proxy_port, server)
        for port in backend_ports:
            await _wait_port(port, None)
        await asyncio.sleep(1.5)  # health checks pass once, pools warm up
        loop = asyncio.get_running_loop()
        cpu_before = server.cpu_seconds()
        load = loop.create_task(fixed_rate_load(proxy_port, "web", args.rate, args.seconds, timeout_s=3.0))
        await asyncio.sleep(args.kill_at)
        killed_at = loop.time()
        os.kill(backends[0].pid, signal.SIGKILL)
        eject_s = await watch(ejected, killed_at, killed_at + args.seconds)
        result = await load
        cpu = server.cpu_seconds() - cpu_before
    finally:
        server.stop()
        for proc in backends:
            proc.stop()
    samples = result.samples
    before = [s for s in samples if s.intended < killed_at]
    fault = [s for s in samples if killed_at <= s.intended < killed_at + FAULT_WINDOW_S]
    return Outcome(
        proxy=proxy,
        requests=len(samples),
        error_rate=_errors(samples),
        fault_error_rate=_errors(fault),
        p50_before_ms=1000 * percentile([s.latency for s in before], 50),
        p99_before_ms=1000 * percentile([s.latency for s in before], 99),
        p50_fault_ms=1000 * percentile([s.latency for s in fault], 50),
        p99_fault_ms=1000 * percentile([s.latency for s in fault], 99),
        eject_s=eject_s,
        cpu_s=cpu,
    )


def _errors(samples: list[Sample]) -> float:
    return sum(1 for s in samples if not s.ok) / len(samples) if samples else float("nan")


async def _wait_port(port: int, proc: Proc | None, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.label} exited:\n{proc.log_tail()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"port {port} not listening" + (f":\n{proc.log_tail()}" if proc else ""))


def has_sidecar_command() -> bool:
    mesh = REPO / ".venv" / "bin" / "mesh"
    return subprocess.run([str(mesh), "sidecar", "--help"], capture_output=True).returncode == 0


async def main(args: argparse.Namespace) -> None:
    pin = can_pin() and not args.no_pin
    if pin:
        os.sched_setaffinity(0, {1})
    proxies = ["sidecar"] + (["haproxy"] if shutil.which("haproxy") and not args.no_peer else [])
    print(
        f"machine: {cpu_model()}, nproc {os.cpu_count()}, pinned: {pin}; rate {args.rate}/s for {args.seconds}s, "
        f"kill at {args.kill_at}s, rounds {args.rounds}"
    )
    outcomes: dict[str, list[Outcome]] = {p: [] for p in proxies}
    with tempfile.TemporaryDirectory(prefix="resilience-bench-") as tmp:
        for round_ in range(args.rounds):
            for proxy in proxies:
                outcome = await run_scenario(proxy, args, Path(tmp), pin)
                outcomes[proxy].append(outcome)
                print(f"round {round_ + 1} {proxy}: {json.dumps(outcome.__dict__)}", flush=True)
    rows = []
    summary: dict[str, dict[str, float | None]] = {}
    for proxy, runs in outcomes.items():
        ejects = [r.eject_s for r in runs if r.eject_s is not None]
        figures = {
            "error_rate_pct": 100 * median([r.error_rate for r in runs]),
            "fault_error_rate_pct": 100 * median([r.fault_error_rate for r in runs]),
            "p50_before_ms": median([r.p50_before_ms for r in runs]),
            "p99_before_ms": median([r.p99_before_ms for r in runs]),
            "p99_fault_ms": median([r.p99_fault_ms for r in runs]),
            "eject_s": median(ejects) if ejects else None,
            "cpu_s": median([r.cpu_s for r in runs]),
        }
        summary[proxy] = figures
        rows.append(
            [
                proxy,
                f"{figures['error_rate_pct']:.3f} %",
                f"{figures['fault_error_rate_pct']:.3f} %",
                f"{figures['p50_before_ms']:.2f} / {figures['p99_before_ms']:.2f}",
                f"{figures['p99_fault_ms']:.2f}",
                "never" if figures["eject_s"] is None else f"{figures['eject_s']:.2f} s",
                f"{figures['cpu_s']:.2f}",
            ]
        )
    header = [
        "proxy",
        "errors (run)",
        f"errors (first {FAULT_WINDOW_S:g} s)",
        "p50 / p99 before (ms)",
        "p99 fault (ms)",
        "kill → eject",
        "proxy CPU s",
    ]
    print(table(rows, header))
    print("target: error rate during the kill ≤ 0.1 %")
    print(json.dumps({"bench": "resilience", "rate": args.rate, "seconds": args.seconds, "summary": summary}))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second (default 500)")
    parser.add_argument("--seconds", type=float, default=12.0, help="load duration per run (default 12)")
    parser.add_argument("--kill-at", type=float, default=4.0, help="seconds into the load to kill backend 0")
    parser.add_argument("--rounds", type=int, default=1, help="runs per proxy; medians are reported")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to CPUs")
    parser.add_argument("--no-peer", action="store_true", help="skip HAProxy")
    parser.add_argument("--serve-backend", nargs=2, metavar=("PORT", "NAME"), help=argparse.SUPPRESS)
    parser.add_argument("--serve-sidecar", nargs=2, metavar=("CONFIG", "ADMIN_PORT"), help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve_backend:
        serve_backend(int(arguments.serve_backend[0]), arguments.serve_backend[1])
    elif arguments.serve_sidecar:
        serve_sidecar(arguments.serve_sidecar[0], int(arguments.serve_sidecar[1]))
    else:
        arguments.sidecar_cli = has_sidecar_command()
        asyncio.run(main(arguments))
