"""The parent of ``--workers N`` sidecar processes: forks the workers and serves their admin API.

The workers serve their admin API on private Unix sockets (``sidecar.workers``); the parent
serves the public admin address and answers from all of them: ``/ready`` is LIVE when every
worker is, ``/metrics`` carries every worker's series with a ``worker`` label, ``/clusters``
sums active requests, pool sizes and circuit breaker counts per cluster and endpoint,
``/config_dump`` and ``/listeners`` come from worker 0, and ``POST /drain`` reaches all.
SIGTERM/SIGINT to the parent is passed to every worker; the parent exits 0 when all did.
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
from dataclasses import replace
from typing import Any

import aiohttp
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from discovery.runtime.addresses import split_host_port
from discovery.runtime.lifecycle import die_with_parent, run_until_signalled
from discovery.runtime.logs import configure_logging
from sidecar.admin_http import AdminRequest, AdminResponse, AdminServer, Handler
from sidecar.workers import SidecarPlan, WorkerSeat, serve_plan, worker_socket

log = logging.getLogger("sidecar.supervisor")


def supervise(plan: SidecarPlan) -> int:
    """Fork ``plan.workers`` workers, serve the aggregated admin API, stop them all when one exits."""
    directory = tempfile.mkdtemp(prefix="mesh-sidecar-")
    children: dict[int, int] = {}
    supervisor_pid = os.getpid()
    for index in range(plan.workers):
        pid = os.fork()
        if pid == 0:
            # A SIGKILLed parent cannot stop its workers: the kernel does (SIGTERM, a clean drain).
            os._exit(_worker(plan, directory, index) if die_with_parent(supervisor_pid) else 1)
        children[pid] = index
    log.info("sidecar workers started", extra={"workers": plan.workers, "pids": sorted(children)})
    statuses: dict[int, int] = {}

    async def parent(stop: asyncio.Event) -> None:
        host, port = split_host_port(plan.server.admin_addr, 15000)
        admin = AdminServer(aggregate_routes(directory, plan.workers))
        bound = await admin.start_tcp(host, port)
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
        await admin.close()
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


def aggregate_routes(directory: str, workers: int) -> dict[tuple[str, str], Handler]:
    """The parent's admin routes: each answer gathered from the workers' private sockets."""

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

    async def ready(_: AdminRequest) -> AdminResponse:
        answers = await all_workers("GET", "/ready")
        states = {text.strip() for _, text in answers}
        if all(status == 200 for status, _ in answers):
            return AdminResponse.text("LIVE\n")
        state = "DRAINING" if "DRAINING" in states else "PRE_INITIALIZING"
        return AdminResponse.text(state + "\n", 503)

    async def metrics(_: AdminRequest) -> AdminResponse:
        answers = await all_workers("GET", "/metrics")
        return AdminResponse(200, merge_metrics([t for s, t in answers if s == 200]), CONTENT_TYPE_LATEST)

    def from_first(path: str) -> Handler:
        async def handler(_: AdminRequest) -> AdminResponse:
            status, text = await fetch(0, "GET", path)
            return AdminResponse(status, text.encode("utf-8"), "application/json")

        return handler

    async def clusters(_: AdminRequest) -> AdminResponse:
        answers = [json.loads(t) for s, t in await all_workers("GET", "/clusters") if s == 200]
        return AdminResponse.json(merge_clusters(answers))

    async def drain(_: AdminRequest) -> AdminResponse:
        await all_workers("POST", "/drain")
        return AdminResponse.text("draining\n")

    def healthz(_: AdminRequest) -> AdminResponse:
        return AdminResponse.text("ok\n")

    return {
        ("GET", "/ready"): ready,
        ("GET", "/readyz"): ready,
        ("GET", "/healthz"): healthz,
        ("GET", "/metrics"): metrics,
        ("GET", "/config_dump"): from_first("/config_dump"),
        ("GET", "/listeners"): from_first("/listeners"),
        ("GET", "/clusters"): clusters,
        ("POST", "/drain"): drain,
    }


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
