"""`mesh sidecar --workers 2` as real processes: health checks run once and reach every worker,
an outlier ejection reaches every worker, and circuit-breaker limits are split so the
cluster-wide totals hold."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.sidecar.helpers import http_config, serve_app
from tests.sidecar.test_cli_sidecar import MESH, sidecar_process_env, wait_ready

PROBE_INTERVAL_S = 0.2


@dataclass
class Checked:
    """A backend whose ``/healthz`` answers ``health``; it counts probes and names itself on ``/``."""

    name: str
    health: int = 200
    status: int = 200
    probes: list[float] = field(default_factory=list)
    served: int = 0
    runner: web.AppRunner | None = None
    port: int = 0

    async def start(self) -> Checked:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/hold", self._hold)
        app.router.add_route("*", "/{tail:.*}", self._serve)
        self.runner, self.port = await serve_app(app)
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        self.probes.append(time.monotonic())
        return web.Response(status=self.health)

    async def _hold(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("delay", "1")))
        return web.Response(text=self.name)

    async def _serve(self, request: web.Request) -> web.Response:
        self.served += 1
        return web.Response(text=self.name, status=self.status)


@contextlib.asynccontextmanager
async def workers_sidecar(config: dict[str, Any], tmp_path: Path) -> AsyncIterator[tuple[int, int]]:
    """``mesh sidecar --workers 2`` on ``config``; yields (listener port, admin port)."""
    env, listen, admin = sidecar_process_env(config, tmp_path, workers=2)
    proc = await asyncio.create_subprocess_exec(*MESH, "sidecar", env=env, stderr=asyncio.subprocess.DEVNULL)
    try:
        await wait_ready(admin, proc)
        yield listen, admin
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def fresh_get(port: int, path: str = "/") -> tuple[int, str, dict[str, str]]:
    """One request on a new connection (the kernel picks a worker per connection)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}", headers={"Host": "web"}) as response,
    ):
        return response.status, await response.text(), dict(response.headers)


async def admin_json(admin: int, path: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{admin}{path}") as response:
        return await response.json()


async def requests_by_worker(admin: int) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{admin}/metrics") as response:
        text = await response.text()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "mesh_sidecar_requests":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels.get("cluster") == "web":
                    worker = sample.labels["worker"]
                    counts[worker] = counts.get(worker, 0.0) + sample.value
    return counts


def checked_config(backends: list[Checked], **cluster: Any) -> dict[str, Any]:
    return http_config(
        [{"name": "web", "endpoints": [{"host": "127.0.0.1", "port": b.port} for b in backends], **cluster}],
        [{"name": "web", "domains": ["web"], "routes": [{"name": "all", "match": {"prefix": "/"}, "cluster": "web"}]}],
    )


async def served_by(listen: int, count: int) -> set[str]:
    names = set()
    for _ in range(count):
        status, body, _ = await fresh_get(listen)
        assert status == 200
        names.add(body)
    return names


async def until(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_health_checks_run_once_and_every_worker_avoids_the_failing_endpoint(tmp_path: Path) -> None:
    good, sick = await Checked("good").start(), await Checked("sick", health=503).start()
    try:
        config = checked_config(
            [good, sick],
            health_check={
                "http": {"path": "/healthz"},
                "interval": f"{int(PROBE_INTERVAL_S * 1000)}ms",
                "unhealthy_threshold": 1,
                "healthy_threshold": 1,
            },
        )
        async with workers_sidecar(config, tmp_path) as (listen, admin):
            await asyncio.sleep(0.5)  # let the worker that applied its config last catch up (resync)
            assert await served_by(listen, 40) == {"good"}
            by_worker = await requests_by_worker(admin)
            assert set(by_worker) == {"0", "1"}, by_worker  # both workers served, neither sent to sick
            assert all(count > 0 for count in by_worker.values())

            # Probe traffic is one worker's: about one probe per interval per endpoint, not two.
            window = 2.0
            before = len(good.probes), len(sick.probes)
            await asyncio.sleep(window)
            probes = len(good.probes) - before[0], len(sick.probes) - before[1]
            single = window / PROBE_INTERVAL_S
            assert all(0.5 * single <= n <= 1.3 * single for n in probes), probes

            view = await admin_json(admin, "/clusters")
            endpoints = {e["address"]: e for e in view["clusters"][0]["endpoints"]}
            bad = endpoints[f"127.0.0.1:{sick.port}"]
            assert bad["available"] is False
            assert bad["unavailable_in_workers"] == [0, 1]  # worker 1 took worker 0's verdict
            assert bad["health_check"]["status"] == "unhealthy"

            # The verdict flips: both workers follow the one prober.
            good.health, sick.health = 503, 200
            await until(lambda: _all_served_by(listen, "sick"), timeout=5.0)
            assert await served_by(listen, 20) == {"sick"}
    finally:
        await good.stop()
        await sick.stop()


async def _all_served_by(listen: int, name: str) -> bool:
    return await served_by(listen, 10) == {name}


@pytest.mark.slow
async def test_breaker_limits_are_split_across_workers(tmp_path: Path) -> None:
    backend = await Checked("web").start()
    try:
        breakers = {"max_requests": 4, "max_connections": 5, "max_pending_requests": 1, "max_retries": 0}
        async with workers_sidecar(checked_config([backend], circuit_breakers=breakers), tmp_path) as (listen, admin):
            view = await admin_json(admin, "/clusters")
            gauges = view["clusters"][0]["circuit_breakers"]
            assert view["workers"] == 2
            assert (gauges["requests"]["max_per_worker"], gauges["requests"]["max"]) == (2, 4)
            assert (gauges["connections"]["max_per_worker"], gauges["connections"]["max"]) == (3, 6)  # ceil(5/2)
            assert gauges["pending"]["max_per_worker"] == 1  # at least 1
            assert gauges["retries"]["max_per_worker"] == 0  # 0 stays 0

            results = await asyncio.gather(*(fresh_get(listen, "/hold?delay=1") for _ in range(12)))
            ok = [r for r in results if r[0] == 200]
            shed = [r for r in results if r[0] == 503]
            assert len(ok) + len(shed) == 12
            assert 2 <= len(ok) <= 4  # never more in flight than the cluster's max_requests
            assert all(r[2].get("x-mesh-overflow") == "max_requests" for r in shed)
            view = await admin_json(admin, "/clusters")
            gauges = view["clusters"][0]["circuit_breakers"]
            assert gauges["requests"]["active"] == 0
            assert gauges["overflows"]["max_requests"] == len(shed)
    finally:
        await backend.stop()


async def ejected_in(admin: int, port: int) -> list[int]:
    """The workers that send the endpoint on ``port`` no traffic (merged ``/clusters``)."""
    view = await admin_json(admin, "/clusters")
    for endpoint in view["clusters"][0]["endpoints"]:
        if endpoint["address"] == f"127.0.0.1:{port}":
            return list(endpoint.get("unavailable_in_workers", []))
    return []


async def outlier_ejections_by_worker(admin: int) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{admin}/metrics") as response:
        text = await response.text()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "mesh_sidecar_outlier_ejections_total":
                worker = sample.labels["worker"]
                counts[worker] = counts.get(worker, 0.0) + sample.value
    return counts


@pytest.mark.slow
async def test_an_ejection_decided_by_one_worker_is_adopted_by_the_other(tmp_path: Path) -> None:
    good, bad = await Checked("good").start(), await Checked("bad").start()
    bad.status = 500
    try:
        outlier = {"consecutive_5xx": 3, "interval": "10s", "base_ejection_time": "30s", "max_ejection_percent": 50}
        async with workers_sidecar(checked_config([good, bad], outlier_detection=outlier), tmp_path) as (listen, admin):
            statuses: list[int] = []
            for _ in range(40):
                statuses.append((await fresh_get(listen))[0])
                if statuses[-1] == 500 and await ejected_in(admin, bad.port):
                    # Adoption travels over a socket: let it land before the next request, so the
                    # other worker cannot reach its own third 5xx first on a loaded machine.
                    async with asyncio.timeout(5):
                        while await ejected_in(admin, bad.port) != [0, 1]:  # noqa: ASYNC110 - polls another process
                            await asyncio.sleep(0.02)
            assert statuses.count(500) == bad.served <= 5  # one worker's 3 in a row, and what the other saw
            assert statuses[-10:] == [200] * 10
            view = await admin_json(admin, "/clusters")
            endpoints = {e["address"]: e for e in view["clusters"][0]["endpoints"]}
            ejected = endpoints[f"127.0.0.1:{bad.port}"]
            assert ejected["unavailable_in_workers"] == [0, 1]
            assert ejected["outlier"]["ejected"] is True
            by_worker = await outlier_ejections_by_worker(admin)
            assert sum(by_worker.values()) == 1, by_worker  # detected once, adopted by the other
    finally:
        await good.stop()
        await bad.stop()


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Running (an exited worker left unreaped, a zombie, counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
async def test_workers_end_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    """SIGKILL cannot be handled by the parent: the kernel's parent-death signal ends the workers."""
    env, _, admin = sidecar_process_env(checked_config([]), tmp_path, workers=2)
    proc = await asyncio.create_subprocess_exec(*MESH, "sidecar", env=env, stderr=asyncio.subprocess.DEVNULL)
    try:
        await wait_ready(admin, proc)
        workers = children_of(proc.pid)
        assert len(workers) == 2
        proc.kill()
        await proc.wait()
        async with asyncio.timeout(10):
            while any(alive(pid) for pid in workers):  # noqa: ASYNC110 - polls other processes
                await asyncio.sleep(0.05)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
