"""Resilience state shared by ``--workers N`` processes, over their private admin Unix sockets.

Each worker already serves its admin API on a private Unix socket (the supervisor reads
``/metrics`` and ``/clusters`` there); the workers use the same sockets to talk to each other.

**Active health checks run once.** Probing from each of N processes would multiply probe traffic
by N and let the workers disagree about an endpoint for a while. So worker 0 runs the probes
(``Resilience.probes_health``) and its ``HealthPublisher`` pushes ``Resilience.health_states()``
to the other workers as ``POST /workers/health``::

    {"<cluster>": {"<endpoint key>": {"status": "healthy", "streak": 0, "checks": 12, ...}}}

(each endpoint as ``HealthChecker.endpoint_state`` writes it): at once when an endpoint's
availability changes, and every ``RESYNC_S`` in any case. The others ``adopt_health`` it; one that
applies a config with endpoints it has no state for fetches ``GET /workers/health`` from worker 0
at once (``HealthFollower``), so a worker that starts, or learns of a cluster, after the last
change does not wait for the resync. An endpoint the prober has not checked yet stays *unchecked*
everywhere (no traffic, as in a single process before the first probe).

**Outlier ejections are shared.** Each worker detects outliers from the answers it sees; when it
ejects an endpoint, its ``EjectionBroadcaster`` tells every other worker
(``POST /workers/ejections``, ``{"ejections": [{"cluster", "key", "seconds", "reason",
"ejections"}]}``), which ejects it for the same remaining time (``adopt_ejection``; their own
``max_ejection_percent`` still applies). Each worker ends the ejection on its own clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Any

import aiohttp

from sidecar.admin_http import AdminRequest, AdminResponse, Handler
from sidecar.resilience.policy import Resilience

log = logging.getLogger("sidecar.resilience.sharing")

HEALTH_PATH = "/workers/health"
EJECTIONS_PATH = "/workers/ejections"
RESYNC_S = 1.0
TIMEOUT_S = 2.0


def _session(path: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=path))


async def _post(session: aiohttp.ClientSession, path: str, body: bytes) -> bool:
    """POST ``body`` (JSON) to a sibling; False when it is not there (starting, stopping) or refuses."""
    try:
        async with session.post(
            f"http://worker{path}",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
        ) as response:
            if response.status == 200:
                return True
            log.warning("a worker refused shared state", extra={"path": path, "error": await response.text()})
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        log.debug("shared state push failed", extra={"path": path, "error": str(exc)})
    return False


class _Background:
    """One task, started once, cancelled by ``close``."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def _start(self, name: str) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=name)

    async def _run(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# === health ===


class HealthPublisher(_Background):
    """Worker 0's side: pushes its health states to the other workers' sockets."""

    def __init__(self, resilience: Resilience, sockets: Sequence[str], *, resync_s: float = RESYNC_S) -> None:
        super().__init__()
        self._resilience = resilience
        self._sockets = tuple(sockets)
        self._resync_s = resync_s
        self._wake = asyncio.Event()
        self.pushes = 0
        self.failures = 0

    def start(self) -> None:
        if self._sockets and self._task is None:
            self._resilience.on_health_change.append(self._wake.set)
            self._start("health-publisher")

    async def _run(self) -> None:
        sessions = [_session(path) for path in self._sockets]
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._resync_s):
                        await self._wake.wait()
                self._wake.clear()
                states = self._resilience.health_states()
                if states:
                    body = json.dumps(states).encode()
                    for ok in await asyncio.gather(*(_post(s, HEALTH_PATH, body) for s in sessions)):
                        self.pushes += ok
                        self.failures += not ok
        finally:
            for session in sessions:
                await session.close()

    async def close(self) -> None:
        with contextlib.suppress(ValueError):
            self._resilience.on_health_change.remove(self._wake.set)
        await super().close()


class HealthFollower(_Background):
    """Another worker's side: fetches worker 0's states when ``Resilience`` asks
    (``on_health_needed``: a config with endpoints this worker has no state for)."""

    def __init__(self, resilience: Resilience, prober_socket: str, *, retry_s: float = 0.1) -> None:
        super().__init__()
        self._resilience = resilience
        self._socket = prober_socket
        self._retry_s = retry_s
        self._wake = asyncio.Event()
        self.fetches = 0

    def start(self) -> None:
        if self._task is None:
            self._resilience.on_health_needed.append(self._wake.set)
            self._start("health-follower")

    async def _run(self) -> None:
        async with _session(self._socket) as session:
            while True:
                await self._wake.wait()
                self._wake.clear()
                try:
                    async with session.get(
                        f"http://worker{HEALTH_PATH}", timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)
                    ) as response:
                        response.raise_for_status()
                        states = parse_health_states(await response.json())
                    self._resilience.adopt_health(states)
                    self.fetches += 1
                except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                    log.debug("health state fetch failed", extra={"error": str(exc)})
                    await asyncio.sleep(self._retry_s)  # worker 0 not serving yet: ask again
                    self._wake.set()

    async def close(self) -> None:
        with contextlib.suppress(ValueError):
            self._resilience.on_health_needed.remove(self._wake.set)
        await super().close()


def parse_health_states(data: object) -> dict[str, dict[str, dict[str, Any]]]:
    """A health states body, checked for shape: ``{cluster: {endpoint key: {status, ...}}}``."""
    if not isinstance(data, dict):
        raise ValueError("body: must be an object of clusters")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, endpoints in data.items():
        if not isinstance(endpoints, dict):
            raise ValueError(f"{name}: must be an object of endpoints")
        for key, view in endpoints.items():
            if not isinstance(view, dict) or "status" not in view:
                raise ValueError(f"{name}.{key}: must be an object with a status")
        out[str(name)] = endpoints
    return out


# === outlier ejections ===


class EjectionBroadcaster(_Background):
    """Every worker's side: tells the other workers about each ejection decided here."""

    def __init__(self, resilience: Resilience, sockets: Sequence[str]) -> None:
        super().__init__()
        self._resilience = resilience
        self._sockets = tuple(sockets)
        self._queue: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self.sent = 0

    def start(self) -> None:
        if self._sockets and self._task is None:
            self._resilience.on_ejection.append(self._add)
            self._start("ejection-broadcaster")

    def _add(self, cluster: str, key: str, seconds: float, reason: str, ejections: int) -> None:
        self._queue.append(
            {"cluster": cluster, "key": key, "seconds": round(seconds, 3), "reason": reason, "ejections": ejections}
        )
        self._wake.set()

    async def _run(self) -> None:
        sessions = [_session(path) for path in self._sockets]
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                batch, self._queue = self._queue, []
                body = json.dumps({"ejections": batch}).encode()
                # Not retried: a worker that misses one (starting, stopping) detects on its own.
                await asyncio.gather(*(_post(s, EJECTIONS_PATH, body) for s in sessions))
                self.sent += len(batch)
        finally:
            for session in sessions:
                await session.close()

    async def close(self) -> None:
        with contextlib.suppress(ValueError):
            self._resilience.on_ejection.remove(self._add)
        await super().close()


def parse_ejections(data: object) -> list[tuple[str, str, float, str, int]]:
    """An ejections body: ``{"ejections": [{cluster, key, seconds, reason, ejections}]}``."""
    if not isinstance(data, dict) or not isinstance(data.get("ejections"), list):
        raise ValueError("ejections: must be a list")
    out: list[tuple[str, str, float, str, int]] = []
    for i, item in enumerate(data["ejections"]):
        where = f"ejections[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: must be an object")
        try:
            cluster, key, reason = str(item["cluster"]), str(item["key"]), str(item.get("reason", ""))
            seconds, ejections = float(item["seconds"]), int(item.get("ejections", 1))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from exc
        if not seconds >= 0:
            raise ValueError(f"{where}.seconds: must be >= 0")
        out.append((cluster, key, seconds, reason, ejections))
    return out


# === the routes on each worker's socket ===


def sharing_routes(resilience: Resilience) -> dict[tuple[str, str], Handler]:
    """``GET``/``POST /workers/health`` (this worker's states / adopt the prober's; 409 on the
    prober itself) and ``POST /workers/ejections`` (adopt another worker's ejections)."""

    def health_states(_: AdminRequest) -> AdminResponse:
        return AdminResponse.json(resilience.health_states())

    def adopt_health(request: AdminRequest) -> AdminResponse:
        if resilience.probes_health:
            return AdminResponse.text("this worker runs the health checks itself\n", 409)
        try:
            resilience.adopt_health(parse_health_states(json.loads(request.body)))
        except ValueError as exc:  # json.JSONDecodeError included
            return AdminResponse.text(f"bad health states: {exc}\n", 400)
        return AdminResponse.text("ok\n")

    def adopt_ejections(request: AdminRequest) -> AdminResponse:
        try:
            ejections = parse_ejections(json.loads(request.body))
        except ValueError as exc:
            return AdminResponse.text(f"bad ejections: {exc}\n", 400)
        adopted = sum(resilience.adopt_ejection(*item) for item in ejections)
        return AdminResponse.text(f"adopted {adopted}\n")

    return {
        ("GET", HEALTH_PATH): health_states,
        ("POST", HEALTH_PATH): adopt_health,
        ("POST", EJECTIONS_PATH): adopt_ejections,
    }


__all__ = [
    "EJECTIONS_PATH",
    "HEALTH_PATH",
    "RESYNC_S",
    "EjectionBroadcaster",
    "HealthFollower",
    "HealthPublisher",
    "parse_ejections",
    "parse_health_states",
    "sharing_routes",
]
