"""Running a sidecar: one process, or ``--workers N`` processes sharing the listener ports.

With N workers the parent forks N children before any event loop exists. Each child runs a
whole sidecar (its own config source, balancers and pools) on uvloop, binding every listener
with SO_REUSEPORT so the kernel spreads connections across them. The children serve their
admin API on private Unix sockets; the parent serves the public admin address and answers
from all of them: ``/ready`` is LIVE when every worker is, ``/metrics`` carries every worker's
series with a ``worker`` label, ``/clusters`` sums active requests, pool sizes and circuit
breaker counts per cluster and endpoint, ``/config_dump`` and ``/listeners`` come from worker 0,
and ``POST /drain`` reaches all. SIGTERM/SIGINT to the parent is passed to every worker; the
parent exits 0 when all did.

Shared resilience state (docs/sidecar-config.md, "Several workers"): each worker enforces
``ceil(limit / N)`` (at least 1) of every circuit-breaker limit, so the cluster-wide totals
hold; only worker 0 runs active health checks and pushes the results to the others over the
same private sockets, and an outlier ejection decided by one worker is adopted by all
(``sidecar.resilience.sharing``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from discovery.client import RegistryClient
from discovery.client_config import ClientConfig
from discovery.runtime.addresses import split_host_port
from discovery.runtime.http import run_until_signalled, start_site
from discovery.runtime.logs import configure_logging
from sidecar.admin import admin_app
from sidecar.http1.listener import HttpSettings
from sidecar.resilience.sharing import EjectionBroadcaster, HealthFollower, HealthPublisher, add_sharing_routes
from sidecar.server import DEFAULT_ADMIN_ADDR, SidecarConfig, SidecarServer, serve
from sidecar.sources import ConfigSource, OnDemand, RegistrySource, SidecarSettings, StaticFileSource, parse_upstream
from sidecar.sources.control_plane import ControlPlaneSource
from sidecar.sources.defaults import DEFAULT_INBOUND_ADDR, DEFAULT_OUTBOUND_ADDR

log = logging.getLogger("sidecar.workers")


@dataclass(frozen=True)
class SidecarPlan:
    """Everything `mesh sidecar` was asked to run."""

    server: SidecarConfig
    settings: SidecarSettings
    config_file: Path | None = None
    registry: ClientConfig | None = None  # None with config_file set
    workers: int = 1
    log_level: str = "info"


def plan_from_options(options: Mapping[str, Any]) -> SidecarPlan:
    """The plan for `mesh sidecar`'s flag values (keys are the flag names with underscores).

    Raises ``ValueError`` naming the flag at fault. The registry address comes from the
    ``CONSUL_*`` environment when no ``config`` file is given.
    """
    settings = SidecarSettings(
        service=str(options.get("service", "")),
        app_port=int(options.get("app_port") or 0) or None,
        outbound_addr=str(options.get("outbound_addr", DEFAULT_OUTBOUND_ADDR)),
        inbound_addr=str(options.get("inbound_addr", DEFAULT_INBOUND_ADDR)),
        upstreams=tuple(parse_upstream(str(item)) for item in options.get("upstream", ())),
    ).validate()
    config = options.get("config")
    config_file = Path(str(config)) if config else None
    if config_file is not None and not config_file.is_file():
        raise ValueError(f"--config: no such file: {config_file}")
    timeouts = {}
    for flag, default in (("header_timeout", 10.0), ("idle_timeout", 300.0), ("drain_timeout", 30.0)):
        value = float(options.get(flag, default))
        if not value > 0:
            raise ValueError(f"--{flag.replace('_', '-')}: must be > 0, got {value}")
        timeouts[flag] = value
    workers = int(options.get("workers", 1))
    if workers < 1:
        raise ValueError(f"--workers: must be >= 1, got {workers}")
    return SidecarPlan(
        server=SidecarConfig(
            admin_addr=str(options.get("admin_addr", DEFAULT_ADMIN_ADDR)),
            http=HttpSettings(header_timeout_s=timeouts["header_timeout"], idle_timeout_s=timeouts["idle_timeout"]),
            drain_timeout_s=timeouts["drain_timeout"],
        ),
        settings=settings,
        config_file=config_file,
        registry=None if config_file is not None else ClientConfig.from_env(),
        workers=workers,
        log_level=str(options.get("log_level", "info")),
    )


@dataclass(frozen=True)
class WorkerSeat:
    """Which of ``count`` forked workers this process is, and where the private sockets live."""

    index: int
    count: int
    directory: str

    @property
    def probes_health(self) -> bool:
        return self.index == 0

    def socket(self, index: int | None = None) -> str:
        return worker_socket(self.directory, self.index if index is None else index)

    def siblings(self) -> list[str]:
        return [self.socket(i) for i in range(self.count) if i != self.index]


def run_sidecar(plan: SidecarPlan) -> int:
    """Run until SIGTERM/SIGINT, drain, and return the exit status."""
    if plan.workers <= 1:
        run_until_signalled(lambda stop: serve_plan(plan, stop))
        return 0
    return _supervise(plan)


async def serve_plan(plan: SidecarPlan, stop: asyncio.Event, seat: WorkerSeat | None = None) -> None:
    """One sidecar process: its config source, listeners and admin API (``seat``: as a worker)."""
    client: RegistryClient | None = None
    source: ConfigSource
    if plan.config_file is not None:
        source = StaticFileSource(plan.config_file)
    elif os.environ.get("MESH_CONTROL_ADDR"):  # the control plane (its state dir keeps the last good snapshot)
        state = Path(os.environ.get("MESH_DATA_DIR") or "mesh-data") / f"sidecar-{plan.settings.service}"
        source = ControlPlaneSource(plan.settings, state_dir=state)
    else:
        client = RegistryClient(plan.registry, max_connections=0)
        source = RegistrySource(plan.settings, client)
    demand = source.demand if isinstance(source, OnDemand) else None
    server_config = plan.server if seat is None else replace(plan.server, serve_admin=False)
    server = SidecarServer(server_config, demand=demand)
    log.info(
        "sidecar starting",
        extra={
            "service": plan.settings.service,
            "source": source.name,
            "admin": plan.server.admin_addr,
            "worker": os.environ.get("MESH_WORKER_INDEX", ""),
        },
    )
    worker_admin: web.AppRunner | None = None
    sharing: list[HealthPublisher | HealthFollower | EjectionBroadcaster] = []
    try:
        if seat is not None:
            resilience = server.resilience
            resilience.share_with_workers(seat.count, probes_health=seat.probes_health)
            worker_admin = await _serve_worker_admin(server, seat)
            if seat.probes_health:
                sharing.append(HealthPublisher(resilience, seat.siblings()))
            else:
                sharing.append(HealthFollower(resilience, seat.socket(0)))
            sharing.append(EjectionBroadcaster(resilience, seat.siblings()))
            for part in sharing:
                part.start()
        await serve(server, source, stop)
    finally:
        for part in sharing:
            await part.close()
        if worker_admin is not None:
            await worker_admin.cleanup()
        if client is not None:
            await client.close()


async def _serve_worker_admin(server: SidecarServer, seat: WorkerSeat) -> web.AppRunner:
    """A worker's admin API on its private socket, plus the routes workers share state by."""

    runner = web.AppRunner(
        admin_app(server, server.registry, lambda app: add_sharing_routes(app, server.resilience)),
        access_log=None,
        shutdown_timeout=1.0,
    )
    await runner.setup()
    await web.UnixSite(runner, seat.socket()).start()
    return runner


# === several workers ===


def worker_socket(directory: str, index: int) -> str:
    return os.path.join(directory, f"worker-{index}.sock")


def _supervise(plan: SidecarPlan) -> int:
    directory = tempfile.mkdtemp(prefix="mesh-sidecar-")
    children: dict[int, int] = {}
    for index in range(plan.workers):
        pid = os.fork()
        if pid == 0:
            os._exit(_worker(plan, directory, index))
        children[pid] = index
    log.info("sidecar workers started", extra={"workers": plan.workers, "pids": sorted(children)})
    statuses: dict[int, int] = {}

    async def parent(stop: asyncio.Event) -> None:
        host, port = split_host_port(plan.server.admin_addr, 15000)
        runner, bound = await start_site(_aggregate_app(directory, plan.workers), host, port)
        log.info("sidecar admin listening", extra={"admin": f"{host}:{bound}", "workers": plan.workers})
        loop = asyncio.get_running_loop()
        reaped = loop.create_task(asyncio.to_thread(_wait_any, statuses))
        waiter = loop.create_task(stop.wait())
        await asyncio.wait({reaped, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if reaped.done():
            log.error("a sidecar worker exited; stopping the others", extra={"exited": dict(statuses)})
        for pid in children:
            if pid not in statuses:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        waiter.cancel()
        await runner.cleanup()
        await reaped

    run_until_signalled(parent)
    for pid in children:
        if pid not in statuses:
            with contextlib.suppress(ChildProcessError):
                _, raw = os.waitpid(pid, 0)
                statuses[pid] = os.waitstatus_to_exitcode(raw)
    shutil.rmtree(directory, ignore_errors=True)
    return 0 if all(code == 0 for code in statuses.values()) else 1


def _worker(plan: SidecarPlan, directory: str, index: int) -> int:
    """The body of one forked worker; returns its exit status."""
    try:
        os.environ["MESH_WORKER_INDEX"] = str(index)
        configure_logging(plan.log_level)
        seat = WorkerSeat(index, plan.workers, directory)
        server = replace(plan.server, admin_addr=f"unix:{seat.socket()}", reuse_port=True)
        worker_plan = replace(plan, server=server)
        run_until_signalled(lambda stop: serve_plan(worker_plan, stop, seat))
        return 0
    except BaseException:
        log.exception("sidecar worker failed", extra={"worker": index})
        return 1


def _wait_any(statuses: dict[int, int]) -> None:
    """Block until one worker exits and record its status (the parent then stops the others)."""
    try:
        pid, raw = os.waitpid(-1, 0)
    except ChildProcessError:
        return
    statuses[pid] = os.waitstatus_to_exitcode(raw)


def _aggregate_app(directory: str, workers: int) -> web.Application:
    app = web.Application()

    async def fetch(index: int, method: str, path: str) -> tuple[int, str]:
        connector = aiohttp.UnixConnector(path=worker_socket(directory, index))
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.request(method, f"http://worker{path}", timeout=aiohttp.ClientTimeout(total=5)) as response,
        ):
            return response.status, await response.text()

    async def all_workers(method: str, path: str) -> list[tuple[int, str]]:
        results = await asyncio.gather(*(fetch(i, method, path) for i in range(workers)), return_exceptions=True)
        return [(503, str(r)) if isinstance(r, BaseException) else r for r in results]

    async def ready(_: web.Request) -> web.Response:
        answers = await all_workers("GET", "/ready")
        states = {text.strip() for _, text in answers}
        if all(status == 200 for status, _ in answers):
            return web.Response(text="LIVE\n")
        state = "DRAINING" if "DRAINING" in states else "PRE_INITIALIZING"
        return web.Response(text=state + "\n", status=503)

    async def metrics(_: web.Request) -> web.Response:
        answers = await all_workers("GET", "/metrics")
        return web.Response(
            body=merge_metrics([t for s, t in answers if s == 200]), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def from_first(request: web.Request) -> web.Response:
        status, text = await fetch(0, "GET", request.path_qs)
        return web.Response(text=text, status=status, content_type="application/json")

    async def clusters(_: web.Request) -> web.Response:
        answers = [json.loads(t) for s, t in await all_workers("GET", "/clusters") if s == 200]
        return web.json_response(merge_clusters(answers))

    async def drain(_: web.Request) -> web.Response:
        await all_workers("POST", "/drain")
        return web.Response(text="draining\n")

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app.router.add_get("/ready", ready)
    app.router.add_get("/readyz", ready)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/config_dump", from_first)
    app.router.add_get("/listeners", from_first)
    app.router.add_get("/clusters", clusters)
    app.router.add_post("/drain", drain)
    return app


def merge_metrics(texts: list[str]) -> bytes:
    """Workers' expositions as one, each sample labelled ``worker="<index>"`` (families merged by name)."""
    families: dict[str, tuple[str, str, list[Sample]]] = {}
    for index, text in enumerate(texts):
        for family in text_string_to_metric_families(text):
            entry = families.setdefault(family.name, (family.type, family.documentation, []))
            for sample in family.samples:
                entry[2].append(sample._replace(labels={**sample.labels, "worker": str(index)}))
    lines: list[str] = []
    for name, (kind, doc, samples) in families.items():
        declared = f"{name}_total" if kind == "counter" else name  # as generate_latest writes it
        lines.append(f"# HELP {declared} {doc}")
        lines.append(f"# TYPE {declared} {kind}")
        for sample in samples:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(sample.labels.items()))
            lines.append(f"{sample.name}{{{labels}}} {_number(sample.value)}")
    return ("\n".join(lines) + "\n").encode()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return repr(float(value)) if value == value and value not in (float("inf"), float("-inf")) else str(value)


def merge_clusters(answers: list[dict[str, Any]]) -> dict[str, Any]:
    """Worker 0's /clusters with the other workers' counts added in.

    Per endpoint: active requests and pool sizes summed, ``available`` only when every worker
    sends it traffic (outlier detection is per worker), ``unavailable_in_workers`` naming the
    others. Per cluster: circuit-breaker counts and limits summed (the limits being each
    worker's share, their sum is what the cluster gets), each worker's share as ``max_per_worker``.
    """
    if not answers:
        return {"version": "", "clusters": []}
    merged: dict[str, Any] = json.loads(json.dumps(answers[0]))
    clusters = {c["name"]: c for c in merged["clusters"]}
    index = {(c["name"], e["key"]): e for c in merged["clusters"] for e in c["endpoints"]}
    for endpoint in index.values():
        endpoint["unavailable_in_workers"] = [] if endpoint.get("available", True) else [0]
    for cluster in clusters.values():
        breakers = cluster.get("circuit_breakers")
        for resource in ("requests", "pending", "connections", "retries"):
            if breakers is not None and resource in breakers:
                breakers[resource]["max_per_worker"] = breakers[resource]["max"]
    for worker, other in enumerate(answers[1:], start=1):
        for cluster in other.get("clusters", []):
            target_cluster = clusters.get(cluster["name"])
            if target_cluster is not None:
                _add_breakers(target_cluster.get("circuit_breakers"), cluster.get("circuit_breakers"))
            for endpoint in cluster["endpoints"]:
                target = index.get((cluster["name"], endpoint["key"]))
                if target is not None:
                    target["active_requests"] += endpoint["active_requests"]
                    target["pool"]["active"] += endpoint["pool"]["active"]
                    target["pool"]["idle"] += endpoint["pool"]["idle"]
                    if not endpoint.get("available", True):
                        target["available"] = False
                        target["unavailable_in_workers"].append(worker)
    merged["workers"] = len(answers)
    return merged


def _add_breakers(into: dict[str, Any] | None, other: dict[str, Any] | None) -> None:
    if into is None or other is None:
        return
    for resource in ("requests", "pending", "connections", "retries"):
        if resource in into and resource in other:
            into[resource]["active"] += other[resource]["active"]
            into[resource]["max"] += other[resource]["max"]
    overflows = into.setdefault("overflows", {})
    for limit, count in other.get("overflows", {}).items():
        overflows[limit] = overflows.get(limit, 0) + count
