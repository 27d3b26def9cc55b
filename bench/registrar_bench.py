#!/usr/bin/env python3
"""Benchmark of `mesh registrar`: Docker start event -> service visible in the registry's health API.

    flock /tmp/mesh-bench.lock .venv/bin/python bench/registrar_bench.py            # 100 containers
    flock /tmp/mesh-bench.lock .venv/bin/python bench/registrar_bench.py --quick    # 20 containers

Real processes on loopback: a fresh `mesh registry` (temp data dir) and `mesh registrar`
(``--ip 127.0.0.1``, its own ``--hostname``), against the local Docker daemon. The containers
are the registrar tests' busybox image (built from busybox-static by ``docker import``), each
publishing port 80 on 127.0.0.1 with its own ``SERVICE_NAME``. For every container the script:

1. parks a blocking query ``GET /v1/health/service/<name>?index=N&wait=60s`` on the registry;
2. creates and starts the container through the Engine API;
3. records Docker's own ``start`` event timestamp (``timeNano``, the daemon's realtime clock) from
   its event stream, and the realtime clock (``time.time_ns()``, same machine, same clock) when
   the blocking query returns with the instance in it.

Latency = seen - start event: what the registrar and registry add, excluding Docker's own start
time (printed separately: API call -> start event). Then every container is killed the same way
and the time from its ``die`` event to the health API answering without it is measured.
``--host-ports`` chooses ``ephemeral`` publishing (127.0.0.1::80, the host port is picked by Docker at
start) and/or ``fixed`` (127.0.0.1:PORT:80, which the registrar can register from the create-time
inspect without asking Docker again). ``--concurrency`` containers are started (and killed) at a
time. The registrar's and registry's CPU (utime+stime from /proc/PID/stat) over each phase is
divided by the container count. The registrar's own histograms are read from its /metrics, the
registry's commit and HTTP histograms from the registry's; ``--trace`` runs the registrar at debug
level and reports its per-stage times.

No peer: gliderlabs/registrator cannot be pulled (no Docker Hub) or built (no Go module proxy)
on these machines, so figures are checked against the target p99 <= 50 ms (bench/README.md).
Only the processes and containers this script started are stopped/removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchlib import Proc, can_pin, cpu_model, free_port, median, percentile, table
from discovery.registrar.docker_source import DockerClient, DockerEvent
from tests.discovery.registrar.busybox_image import ensure_image, static_busybox

MESH = Path(sys.executable).parent / "mesh"
REGISTRAR_CPU = 0
OTHERS_CPU = 1
TARGET_P99_MS = 50.0
LABEL = "mesh-registrar-bench"


class EventTimes:
    """Follows Docker's event stream; ``time_of(container, action)`` waits for that event's timestamp."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], int] = {}
        self.delivery_ms: dict[tuple[str, str], float] = {}  # event timestamp -> this script reading it
        self._waiters: dict[tuple[str, str], asyncio.Future[int]] = {}

    def record(self, event: DockerEvent) -> None:
        key = (event.container_id, event.action)
        self._seen.setdefault(key, event.time_ns)
        if event.received_ns:
            self.delivery_ms.setdefault(key, (event.received_ns - event.time_ns) / 1e6)
        waiter = self._waiters.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(event.time_ns)

    async def time_of(self, container_id: str, action: str, timeout: float = 60.0) -> int:
        key = (container_id, action)
        if key in self._seen:
            return self._seen[key]
        waiter = self._waiters.setdefault(key, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(asyncio.shield(waiter), timeout)


async def health_index(http: aiohttp.ClientSession, base: str, service: str) -> tuple[int, list[Any]]:
    async with http.get(f"{base}/v1/health/service/{service}") as response:
        return int(response.headers["X-Consul-Index"]), await response.json()


async def wait_until(http: aiohttp.ClientSession, base: str, service: str, present: bool, index: int) -> int:
    """Block on the health API until the service is (or is no longer) listed; the realtime clock then."""
    while True:
        url = f"{base}/v1/health/service/{service}?index={index}&wait=60s"
        async with http.get(url) as response:
            body = await response.json()
            seen = time.time_ns()
            index = max(1, int(response.headers["X-Consul-Index"]))
        if bool(body) == present:
            return seen


# The registrar's own histograms, read from its /metrics: (name, label) -> what the mean shows.
STAGES = {
    ("mesh_registrar_docker_event_delay_seconds", ""): "event delivery",
    ("mesh_registrar_docker_inspect_seconds", ""): "inspect",
    ("mesh_registrar_registry_write_seconds", 'op="register"'): "register write",
    ("mesh_registrar_registry_write_seconds", 'op="deregister"'): "deregister write",
    ("mesh_registrar_event_to_registry_seconds", 'op="register"'): "event -> register ack",
    ("mesh_registrar_event_to_registry_seconds", 'op="deregister"'): "event -> deregister ack",
}


def registrar_stages(metrics_text: str) -> dict[str, tuple[float, float]]:
    """(sum s, count) of each stage histogram."""
    out: dict[str, tuple[float, float]] = {}
    for (name, labels), stage in STAGES.items():
        suffix = f"{{{labels}}}" if labels else ""
        total = re.search(rf"^{name}_sum{re.escape(suffix)} ([0-9.e+-]+)$", metrics_text, re.MULTILINE)
        count = re.search(rf"^{name}_count{re.escape(suffix)} ([0-9.e+-]+)$", metrics_text, re.MULTILINE)
        out[stage] = (float(total.group(1)) if total else 0.0, float(count.group(1)) if count else 0.0)
    return out


# The registry's own histograms, read from its /metrics: (name, labels) -> what they show.
REGISTRY_HISTOGRAMS = {
    ("mesh_registry_http_request_duration_seconds", 'route="/v1/agent/service/register"'): "PUT register answered",
    ("mesh_registry_commit_duration_seconds", ""): "SQLite commit (fsync)",
}


def histogram_buckets(metrics_text: str) -> dict[str, list[tuple[float, float]]]:
    """Each registry histogram's cumulative buckets: [(upper bound s, count)]."""
    out: dict[str, list[tuple[float, float]]] = {}
    for (name, labels), label in REGISTRY_HISTOGRAMS.items():
        found = []
        for match in re.finditer(rf"^{name}_bucket{{(.*)}} ([0-9.e+-]+)$", metrics_text, re.MULTILINE):
            attrs = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            if labels and f'{labels.split("=")[0]}="{attrs.get(labels.split("=")[0], "")}"' != labels:
                continue
            found.append((float(attrs["le"].replace("+Inf", "inf")), float(match.group(2))))
        out[label] = sorted(found)
    return out


def bucket_quantiles(
    before: dict[str, list[tuple[float, float]]], after: dict[str, list[tuple[float, float]]]
) -> dict[str, dict[str, float]]:
    """Per histogram over one phase: count, and the bucket bounds (ms) that hold p50 and p99."""
    out = {}
    for label, buckets in after.items():
        old = dict(before.get(label, []))
        deltas = [(bound, count - old.get(bound, 0.0)) for bound, count in buckets]
        total = deltas[-1][1] if deltas else 0.0
        if not total:
            continue
        row = {"n": total}
        for pct in (50, 99):
            bound = next(b for b, c in deltas if c >= total * pct / 100)
            row[f"p{pct}_le_ms"] = round(bound * 1000, 1)
        out[label] = row
    return out


def start_paths(metrics_text: str) -> dict[str, float]:
    """The registrar's start events by path: predicted from the create-time configuration, or inspected."""
    found = re.findall(r'^mesh_registrar_start_path_total\{path="(\w+)"\} ([0-9.e+-]+)$', metrics_text, re.MULTILINE)
    return {path: float(count) for path, count in found}


def stage_means(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Mean ms per stage over one phase (the difference of two scrapes)."""
    means = {}
    for stage, (total, count) in after.items():
        d_total, d_count = total - before[stage][0], count - before[stage][1]
        if d_count:
            means[stage] = round(1000.0 * d_total / d_count, 2)
    return means


async def run_bench(
    args: argparse.Namespace,
    concurrency: int,
    host_ports: str,
    registry: Proc,
    registrar: Proc,
    reg_url: str,
    metrics: str,
) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:6]
    image = args.image
    times = EventTimes()
    events_client = DockerClient(args.docker_url)
    await events_client.open()
    since = await events_client.daemon_time_ns()
    docker = aiodocker.Docker(url=args.docker_url)
    started: dict[str, int] = {}  # container ID -> its service number
    start_lat: list[float] = []
    docker_start: list[float] = []
    stop_lat: list[float] = []
    try:
        async with (
            events_client.events(since) as stream,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
        ):

            async def follow() -> None:
                async for event in stream:
                    times.record(event)

            follower = asyncio.create_task(follow())
            slots = asyncio.Semaphore(concurrency)

            async def start_one(i: int) -> None:
                service = f"bench-{run_id}-{i}"
                async with slots:
                    index, _ = await health_index(http, reg_url, service)
                    watcher = asyncio.create_task(wait_until(http, reg_url, service, True, index))
                    await asyncio.sleep(0.005)  # let the blocking query reach the registry and park
                    # fixed: a free port chosen here (-p 127.0.0.1:PORT:80); ephemeral: Docker picks at start
                    host_port = str(free_port()) if host_ports == "fixed" else ""
                    called = time.time_ns()
                    container = await docker.containers.run(
                        {
                            "Image": image,
                            "Cmd": ["httpd", "-f", "-p", "80", "-h", "/www"],
                            "Env": [f"SERVICE_NAME={service}"],
                            "Labels": {LABEL: run_id},
                            "ExposedPorts": {"80/tcp": {}},
                            "HostConfig": {
                                "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": host_port}]}
                            },
                        }
                    )
                    started[container.id] = i
                    seen = await asyncio.wait_for(watcher, 60)
                    event_ns = await times.time_of(container.id, "start")
                    start_lat.append((seen - event_ns) / 1e6)
                    docker_start.append((event_ns - called) / 1e6)

            async def stop_one(i: int, container_id: str) -> None:
                service = f"bench-{run_id}-{i}"
                async with slots:
                    index, body = await health_index(http, reg_url, service)
                    assert body, f"{service} not registered before the kill"
                    watcher = asyncio.create_task(wait_until(http, reg_url, service, False, index))
                    await asyncio.sleep(0.005)
                    await docker.containers.container(container_id).kill()
                    seen = await asyncio.wait_for(watcher, 60)
                    event_ns = await times.time_of(container_id, "die")
                    stop_lat.append((seen - event_ns) / 1e6)

            async with http.get(metrics) as response:
                text = await response.text()
                lag_before, paths_before = registrar_stages(text), start_paths(text)
            async with http.get(f"{reg_url}/metrics") as response:
                registry_before = histogram_buckets(await response.text())
            cpu0 = (registrar.cpu_seconds(), registry.cpu_seconds())
            t0 = time.monotonic()
            await asyncio.gather(*(start_one(i) for i in range(args.containers)))
            start_wall = time.monotonic() - t0
            cpu1 = (registrar.cpu_seconds(), registry.cpu_seconds())
            await asyncio.gather(*(stop_one(i, cid) for cid, i in list(started.items())))
            cpu2 = (registrar.cpu_seconds(), registry.cpu_seconds())
            async with http.get(metrics) as response:
                text = await response.text()
                lag_after, paths_after = registrar_stages(text), start_paths(text)
            async with http.get(f"{reg_url}/metrics") as response:
                registry_after = histogram_buckets(await response.text())
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
    finally:
        for cid in started:
            with contextlib.suppress(aiodocker.exceptions.DockerError):
                await docker.containers.container(cid).delete(force=True)
        await docker.close()
        await events_client.close()
    n = args.containers
    return {
        "containers": n,
        "concurrency": concurrency,
        "host_ports": host_ports,
        "phase": f"{concurrency}, {host_ports}",
        "start_wall_s": round(start_wall, 2),
        "register_ms": summary(start_lat),
        "docker_start_ms": summary(docker_start),
        "docker_delivery_ms": summary(
            [ms for (cid, action), ms in times.delivery_ms.items() if cid in started and action == "start"]
        ),
        "deregister_ms": summary(stop_lat),
        "registrar_cpu_ms_per_container": {
            "start": round(1000 * (cpu1[0] - cpu0[0]) / n, 2),
            "stop": round(1000 * (cpu2[0] - cpu1[0]) / n, 2),
        },
        "registry_cpu_ms_per_container": {
            "start": round(1000 * (cpu1[1] - cpu0[1]) / n, 2),
            "stop": round(1000 * (cpu2[1] - cpu1[1]) / n, 2),
        },
        "registrar_stage_mean_ms": stage_means(lag_before, lag_after),
        "registry_buckets": bucket_quantiles(registry_before, registry_after),
        "start_paths": {path: int(n - paths_before.get(path, 0.0)) for path, n in paths_after.items()},
        "trace_start_ms": trace_stages(registrar.log, set(started), "start") if args.trace else {},
        "trace_die_ms": trace_stages(registrar.log, set(started), "die") if args.trace else {},
    }


# The registrar's ``reconcile stages`` debug line gives ms after the event's timestamp at each stamp;
# the report shows what each stage added: (name, from stamp, to stamp).
TRACE_STAGES = (
    ("delivery", "", "received_ms"),
    ("queued", "received_ms", "run_ms"),
    ("inspect", "run_ms", "inspected_ms"),
    ("write", "planned_ms", "acked_ms"),
    ("event -> ack", "", "acked_ms"),
)


def trace_stages(log: Path, container_ids: set[str], action: str) -> dict[str, dict[str, float]]:
    """The registrar's ``reconcile stages`` debug lines for these containers: what each stage took."""
    short = {cid[:12] for cid in container_ids}
    values: dict[str, list[float]] = {stage: [] for stage, _, _ in TRACE_STAGES}
    with contextlib.suppress(OSError), log.open(errors="replace") as lines:
        for line in lines:
            if '"reconcile stages"' not in line:
                continue
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("container_id") not in short or entry.get("action") != action or not entry.get("writes"):
                    continue
                for stage, since, until in TRACE_STAGES:
                    begin = entry.get(since, 0.0) if since else 0.0
                    if isinstance(entry.get(until), (int, float)) and isinstance(begin, (int, float)):
                        values[stage].append(float(entry[until]) - float(begin))
    return {stage: summary(v) for stage, v in values.items() if v}


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 50), 2),
        "p95": round(percentile(values, 95), 2),
        "p99": round(percentile(values, 99), 2),
        "max": round(max(values), 2) if values else float("nan"),
        "median": round(median(values), 2),
        "n": len(values),
    }


def start_processes(args: argparse.Namespace, workdir: Path, data: Path, pin: bool) -> tuple[Proc, Proc, str, str]:
    reg_port, metrics_port = free_port(), free_port()
    reg_url = f"http://127.0.0.1:{reg_port}"
    registry = Proc("registry", workdir)
    registry.spawn(
        [
            str(MESH),
            "registry",
            "--http-addr",
            f"127.0.0.1:{reg_port}",
            "--data-dir",
            str(data),
            "--node",
            "bench-node",
            "--log-level",
            "warning",
        ],
        OTHERS_CPU if pin else None,
    )
    wait_http(f"{reg_url}/v1/status/leader", registry)
    registrar = Proc("registrar", workdir)
    env = {**os.environ, "CONSUL_HTTP_ADDR": reg_url, "DOCKER_HOST": args.docker_url}
    registrar.spawn(
        [
            str(MESH),
            "registrar",
            "--ip",
            "127.0.0.1",
            "--hostname",
            "bench-host",
            "--metrics-addr",
            f"127.0.0.1:{metrics_port}",
            "--log-level",
            "debug" if args.trace else "warning",
        ],
        REGISTRAR_CPU if pin else None,
        env=env,
    )
    wait_http(f"http://127.0.0.1:{metrics_port}/readyz", registrar)
    return registry, registrar, reg_url, f"http://127.0.0.1:{metrics_port}/metrics"


def wait_http(url: str, proc: Proc, timeout: float = 30.0) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise SystemExit(f"{proc.label} exited:\n{proc.log_tail()}")
        with contextlib.suppress(urllib.error.URLError, OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"{url} not ready after {timeout:g}s:\n{proc.log_tail()}")


def machine_facts(pin: bool, docker_version: str) -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "docker": docker_version,
        "pinned": pin,
        "loadavg": os.getloadavg(),
    }


def report(results: list[dict[str, Any]]) -> str:
    rows = []
    for label, key in (
        ("start event -> visible in health API", "register_ms"),
        ("die event -> gone from health API", "deregister_ms"),
        ("(Docker itself: API call -> start event)", "docker_start_ms"),
        ("(Docker itself: start event -> on this script's stream)", "docker_delivery_ms"),
    ):
        for result in results:
            s = result[key]
            rows.append(
                [
                    label,
                    result["phase"],
                    f"{s['p50']:.2f}",
                    f"{s['p95']:.2f}",
                    f"{s['p99']:.2f}",
                    f"{s['max']:.2f}",
                    str(s["n"]),
                ]
            )
    lines = [table(rows, ["latency (ms)", "at a time, host ports", "p50", "p95", "p99", "max", "n"]), ""]
    cpu_rows = []
    for result in results:
        cpu, reg_cpu = result["registrar_cpu_ms_per_container"], result["registry_cpu_ms_per_container"]
        cpu_rows.append(
            [
                result["phase"],
                f"{cpu['start']:.2f} / {cpu['stop']:.2f}",
                f"{reg_cpu['start']:.2f} / {reg_cpu['stop']:.2f}",
            ]
        )
    lines.append(
        table(
            cpu_rows,
            [
                "at a time, host ports",
                "registrar CPU ms/container (start / kill)",
                "registry CPU ms/container (start / kill)",
            ],
        )
    )
    lines.append("")
    stages = list(STAGES.values())
    stage_rows = [
        [
            r["phase"],
            *(f"{r['registrar_stage_mean_ms'].get(s, float('nan')):.2f}" for s in stages),
            " / ".join(str(r["start_paths"].get(path, 0)) for path in ("predicted", "inspect")),
        ]
        for r in results
    ]
    lines.append("registrar's own histograms, mean ms per stage:")
    lines.append(table(stage_rows, ["at a time, host ports", *stages, "starts predicted / inspected"]))
    lines.append("")
    trace_rows = []
    for result in results:
        for what in ("start", "die"):
            traced: dict[str, dict[str, float]] = result.get(f"trace_{what}_ms") or {}
            if traced:
                cells = [
                    f"{traced[name]['p50']:.1f} / {traced[name]['p99']:.1f}" if name in traced else "-"
                    for name, _, _ in TRACE_STAGES
                ]
                trace_rows.append([result["phase"], what, *cells])
    registry_rows = [
        [r["phase"], label, str(int(q["n"])), f"<= {q['p50_le_ms']:g}", f"<= {q['p99_le_ms']:g}"]
        for r in results
        for label, q in r["registry_buckets"].items()
    ]
    if registry_rows:
        lines.append("registry's own histograms over both phases of the run (start and kill), bucket bounds in ms:")
        lines.append(table(registry_rows, ["at a time, host ports", "what", "n", "p50", "p99"]))
        lines.append("")
    if trace_rows:
        lines.append("registrar trace (--trace), ms each stage took, p50 / p99:")
        lines.append(table(trace_rows, ["at a time, host ports", "event", *(name for name, _, _ in TRACE_STAGES)]))
        lines.append("")
    for result in results:
        p99 = result["register_ms"]["p99"]
        verdict = "met" if p99 <= TARGET_P99_MS else "NOT met"
        lines.append(f"target p99 <= {TARGET_P99_MS:g} ms, {result['phase']}: {verdict} ({p99:.2f} ms)")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="20 containers instead of 100")
    p.add_argument("--containers", type=int, help="containers to start [100; quick 20]")
    p.add_argument(
        "--concurrency",
        default="1,4,8",
        help="containers started (and killed) at a time, one phase per comma-separated value [1,4,8]",
    )
    p.add_argument(
        "--host-ports",
        default="ephemeral,fixed",
        help="how the containers publish port 80, one set of phases per comma-separated value: ephemeral "
        "(127.0.0.1::80, Docker picks the host port at start) and/or fixed (127.0.0.1:PORT:80) [ephemeral,fixed]",
    )
    p.add_argument(
        "--data-root",
        type=Path,
        help="create the registry's data directory in this folder instead of the temp dir (another filesystem "
        "than Docker's shows how long the registry's fsync waits behind Docker's own writes)",
    )
    p.add_argument(
        "--trace",
        action="store_true",
        help="run the registrar at debug level and report its per-stage times (p50/p99 after the start event)",
    )
    p.add_argument("--no-pin", action="store_true", help="do not pin the registrar to CPU 0 and the rest to CPU 1")
    p.add_argument("--docker-url", default=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
    args = p.parse_args(argv)
    args.containers = args.containers or (20 if args.quick else 100)
    args.phases = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    args.host_ports = [m.strip() for m in str(args.host_ports).split(",") if m.strip()]
    if not set(args.host_ports) <= {"ephemeral", "fixed"}:
        p.error(f"--host-ports: expected ephemeral and/or fixed, got {','.join(args.host_ports)!r}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    docker_cli = shutil.which("docker")
    busybox = static_busybox()
    if docker_cli is None or busybox is None:
        print("needs the docker CLI, a running dockerd and busybox-static (deploy/dev/bootstrap.sh)", file=sys.stderr)
        return 2
    import subprocess

    version = subprocess.run([docker_cli, "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True)
    if version.returncode != 0:
        print(f"no Docker daemon answers: {version.stderr.strip()}", file=sys.stderr)
        return 2
    args.image = ensure_image(docker_cli, busybox)
    pin = can_pin() and not args.no_pin
    if pin:
        os.sched_setaffinity(0, {OTHERS_CPU})
    facts = machine_facts(pin, version.stdout.strip())
    facts["registry_data"] = str(args.data_root or tempfile.gettempdir())
    print("machine:", json.dumps(facts))
    with (
        tempfile.TemporaryDirectory(prefix="registrar-bench-") as tmp,
        tempfile.TemporaryDirectory(prefix="registrar-bench-data-", dir=args.data_root) as data,
    ):
        workdir = Path(tmp)
        registry, registrar, reg_url, metrics = start_processes(args, workdir, Path(data), pin)
        try:
            results = [
                asyncio.run(run_bench(args, concurrency, host_ports, registry, registrar, reg_url, metrics))
                for host_ports in args.host_ports
                for concurrency in args.phases
            ]
        finally:
            registrar.stop()
            registry.stop()
    facts["loadavg_end"] = os.getloadavg()
    print()
    print(f"registrar benchmark: {args.containers} containers per phase")
    print(report(results))
    print(json.dumps({"machine": facts, "phases": results}, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
