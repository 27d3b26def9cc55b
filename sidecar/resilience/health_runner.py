"""Runs active health checks: one asyncio task per checked endpoint, real HTTP/TCP probes.

The decisions live in ``sidecar.resilience.health_check.HealthChecker``; this edge only sleeps
(``first_delay`` / ``next_delay``), probes, and reports with ``record``. When an endpoint's
availability changes it calls ``on_change(cluster_name)`` so the sidecar rebuilds that
cluster's balancer. ``sync`` is called on every config swap with each checked cluster's
endpoints: tasks start for new endpoints and stop for gone ones; the rest keep running (and
read the checker's current settings before each probe).

Probes: HTTP ``GET path`` over a fresh connection with ``Connection: close`` and
``User-Agent: mesh-health-check``; the status line decides. TCP: the connection opens. Either
fails on ``timeout``, a refused or reset connection, or a malformed answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lb import Endpoint
from mesh.model.policies import HealthCheck
from sidecar.resilience.health_check import HealthChecker

log = logging.getLogger("sidecar.resilience.health")

USER_AGENT = b"mesh-health-check"
MAX_STATUS_LINE = 8192


@dataclass(frozen=True, slots=True)
class ProbeResult:
    passed: bool
    detail: str


_HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-_]*")


def probe_host(cluster: str, endpoint: Endpoint) -> str:
    """The default ``Host`` of an HTTP probe: the cluster's name (Envoy), or the endpoint's address
    when the name is not a host name (``inbound|8080``)."""
    if _HOST_NAME.fullmatch(cluster):
        return cluster
    return f"[{endpoint.host}]:{endpoint.port}" if ":" in endpoint.host else f"{endpoint.host}:{endpoint.port}"


async def probe(check: HealthCheck, host: str, port: int, host_header: str) -> ProbeResult:
    """One probe of ``host:port`` as ``check`` says, bounded by its timeout."""
    try:
        async with asyncio.timeout(check.timeout_s):
            if check.kind == "tcp":
                return await _probe_tcp(host, port)
            return await _probe_http(check, host, port, host_header)
    except TimeoutError:
        return ProbeResult(False, f"timed out after {check.timeout_s:g}s")
    except OSError as exc:
        return ProbeResult(False, f"connection failed: {exc.strerror or exc}")


async def _probe_tcp(host: str, port: int) -> ProbeResult:
    _, writer = await asyncio.open_connection(host, port)
    await _close(writer)
    return ProbeResult(True, "connected")


async def _probe_http(check: HealthCheck, host: str, port: int, host_header: str) -> ProbeResult:
    reader, writer = await asyncio.open_connection(host, port, limit=MAX_STATUS_LINE)
    try:
        writer.write(
            b"GET %b HTTP/1.1\r\nHost: %b\r\nUser-Agent: %b\r\nConnection: close\r\nAccept: */*\r\n\r\n"
            % (check.path.encode("latin-1"), host_header.encode("latin-1"), USER_AGENT)
        )
        await writer.drain()
        try:
            line = await reader.readuntil(b"\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return ProbeResult(False, "no valid HTTP status line")
        parts = line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
            return ProbeResult(False, f"invalid status line {line[:64]!r}")
        status = int(parts[1])
        return ProbeResult(check.expects(status), f"HTTP {status}")
    finally:
        await _close(writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


class HealthCheckRunner:
    """Probe tasks of every checked cluster. ``close`` stops them all."""

    def __init__(self, on_change: Callable[[str], None], *, rng: random.Random | None = None) -> None:
        self._on_change = on_change
        self._rng = rng or random.Random()
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._checkers: dict[str, HealthChecker] = {}

    def sync(self, cluster: str, checker: HealthChecker | None, endpoints: Sequence[Endpoint]) -> None:
        """Probe exactly ``endpoints`` of ``cluster`` with ``checker`` (None: stop checking it)."""
        if checker is None:
            self._checkers.pop(cluster, None)
            wanted: dict[str, Endpoint] = {}
        else:
            self._checkers[cluster] = checker
            wanted = {e.key: e for e in endpoints}
        for task_key in [k for k in self._tasks if k[0] == cluster and k[1] not in wanted]:
            self._tasks.pop(task_key).cancel()
        for key, endpoint in wanted.items():
            task_key = (cluster, key)
            task = self._tasks.get(task_key)
            if task is None or task.done():
                self._tasks[task_key] = asyncio.get_running_loop().create_task(
                    self._run(cluster, endpoint), name=f"health-check {cluster} {key}"
                )

    def forget_others(self, clusters: set[str]) -> None:
        """Stop checking every cluster not in ``clusters`` (it left the config)."""
        for name in [c for c in self._checkers if c not in clusters]:
            self.sync(name, None, ())

    async def _run(self, cluster: str, endpoint: Endpoint) -> None:
        checker = self._checkers.get(cluster)
        if checker is None:
            return
        await asyncio.sleep(checker.first_delay(self._rng))
        while True:
            checker = self._checkers.get(cluster)
            if checker is None or endpoint.key not in checker.endpoints:
                return
            check = checker.config
            result = await probe(check, endpoint.host, endpoint.port, check.host or probe_host(cluster, endpoint))
            checker = self._checkers.get(cluster)
            if checker is None:
                return
            if checker.record(endpoint.key, result.passed, result.detail):
                log.info(
                    "endpoint health changed",
                    extra={"cluster": cluster, "endpoint": endpoint.key, "state": checker.state(endpoint.key)},
                )
                try:
                    self._on_change(cluster)
                except Exception:
                    log.exception("health change callback failed", extra={"cluster": cluster})
            await asyncio.sleep(checker.next_delay(self._rng))

    @property
    def running(self) -> int:
        return sum(1 for task in self._tasks.values() if not task.done())

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        self._checkers.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


__all__ = ["USER_AGENT", "HealthCheckRunner", "ProbeResult", "probe"]
