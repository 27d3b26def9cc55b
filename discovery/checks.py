"""Health checks the registry runs for its own agent node: HTTP, TCP and TTL.

- Each HTTP/TCP check runs every Interval, its first run placed at a random
  point inside the first interval and each later one jittered, so checks
  registered together never probe together. A semaphore bounds how many
  probes run at once.
- TTL checks turn critical when no pass/warn/fail/update arrives within TTL.
- A service whose check has been critical longer than its
  DeregisterCriticalServiceAfter is deregistered by the reaper (every 30 s, as
  Consul), together with all its checks.
- Results are written through the registry like any other write, so they are
  durable and wake watchers only when status or output really changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Final

import aiohttp

from discovery import metrics
from discovery.catalog import Catalog, CatalogError, ChangeSet, Delete, Upsert
from discovery.models import CRITICAL, PASSING, WARNING, Check, CheckDefinition
from discovery.registry import Registry

log = logging.getLogger("discovery.checks")

MAX_OUTPUT: Final = 4096
MIN_DEREGISTER_AFTER: Final = 60.0
REAP_INTERVAL: Final = 30.0


# === pure decisions ===


def http_status_to_check(code: int) -> str:
    """Consul's rule: 2xx passing, 429 Too Many Requests warning, anything else critical."""
    if 200 <= code < 300:
        return PASSING
    if code == 429:
        return WARNING
    return CRITICAL


@dataclass
class Debouncer:
    """SuccessBeforePassing / FailuresBeforeCritical: hold the old status until N in a row agree.

    As Consul's StatusHandler: passing and warning both count as successes, and the
    counters start at their thresholds, so the first result after registration applies at once.
    """

    successes_needed: int = 0
    failures_needed: int = 0
    _successes: int = field(init=False, default=0)
    _failures: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._successes, self._failures = self.successes_needed, self.failures_needed

    def decide(self, current: str, observed: str) -> str:
        if observed in (PASSING, WARNING):
            self._successes, self._failures = self._successes + 1, 0
            return observed if self._successes >= self.successes_needed else current
        self._failures, self._successes = self._failures + 1, 0
        return observed if self._failures >= self.failures_needed else current


def next_delay(interval: float, rand: float) -> float:
    """The wait before a check's next run: the interval, jittered by up to ±5%."""
    return interval * (0.95 + 0.1 * rand)


# === probes ===


async def probe_http(session: aiohttp.ClientSession, definition: CheckDefinition, timeout: float) -> tuple[str, str]:
    method = definition.method or "GET"
    headers = {"User-Agent": "Consul Health Check", "Accept": "text/plain, text/*, */*"}
    for name, values in definition.header.items():
        headers[name] = ", ".join(values)
    ssl_option: ssl.SSLContext | bool = True
    if definition.tls_skip_verify:
        ssl_option = False
    try:
        async with session.request(
            method,
            definition.http,
            headers=headers,
            data=definition.body.encode() or None,
            timeout=aiohttp.ClientTimeout(total=timeout),
            ssl=ssl_option,
            server_hostname=definition.tls_server_name or None,
        ) as response:
            body = await response.content.read(MAX_OUTPUT)
            status = http_status_to_check(response.status)
            text = body.decode("utf-8", "replace")
            output = f"HTTP {method} {definition.http}: {response.status} {response.reason} Output: {text}"
            return status, output[:MAX_OUTPUT]
    except TimeoutError:
        return CRITICAL, f"HTTP {method} {definition.http}: timed out after {timeout:g}s"
    except (aiohttp.ClientError, OSError) as exc:
        return CRITICAL, f"HTTP {method} {definition.http}: {exc}"


async def probe_tcp(address: str, timeout: float) -> tuple[str, str]:
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
    except TimeoutError:
        return CRITICAL, f"TCP connect {address}: timed out after {timeout:g}s"
    except OSError as exc:
        return CRITICAL, f"TCP connect {address}: {exc.strerror or exc}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return PASSING, f"TCP connect {address}: Success"


def _runnable(check: Check) -> bool:
    """Agent checks only: TTL, or a probe with an Interval (one without would spin)."""
    d = check.definition
    return check.agent_check and (d.kind == "ttl" or (d.kind in ("http", "tcp") and d.interval > 0))


def _deregister(catalog: Catalog, *, node: str, service_id: str) -> ChangeSet:
    return catalog.deregister_service(node, service_id)


# === the runner ===


@dataclass
class _Running:
    definition: CheckDefinition
    task: asyncio.Task[None] | None = None
    ttl_timer: asyncio.TimerHandle | None = None
    debouncer: Debouncer = field(default_factory=Debouncer)


class CheckRunner:
    """Runs the agent node's checks and reaps long-critical services."""

    def __init__(
        self,
        registry: Registry,
        *,
        concurrency: int = 64,
        reap_interval: float = REAP_INTERVAL,
        min_deregister_after: float = MIN_DEREGISTER_AFTER,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._node = registry.identity.node_name
        self._limit = asyncio.Semaphore(concurrency)
        self._reap_interval = reap_interval
        self._min_deregister_after = min_deregister_after
        self._rand = rand
        self._clock = clock
        self._running: dict[str, _Running] = {}
        self._critical_since: dict[str, float] = {}
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self._tasks = [asyncio.create_task(self._reap_loop(), name="checks-reaper")]
        for check in self._registry.catalog.checks_on(self._node):
            self._follow(check.check_id)
        self._registry.add_listener(self._on_change)

    async def close(self) -> None:
        self._registry.remove_listener(self._on_change)
        tasks = [*self._tasks, *(r.task for r in self._running.values() if r.task is not None)]
        for running in self._running.values():
            self._stop(running)
        self._running.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def ttl_refreshed(self, check_id: str) -> None:
        """A pass/warn/fail/update arrived: the TTL countdown starts again."""
        running = self._running.get(check_id)
        if running is not None and running.definition.ttl:
            self._arm_ttl(check_id, running)

    # --- following the catalog ---

    def _on_change(self, change: ChangeSet) -> None:
        """Follow only the checks a write touched: a scan of every check per write would make
        registration cost grow with the number of checks."""
        for write in change.writes:
            if isinstance(write, Upsert) and isinstance(write.record, Check) and write.record.node == self._node:
                self._follow(write.record.check_id)
            elif isinstance(write, Delete) and write.table == "check" and write.key[0] == self._node:
                self._follow(write.key[1])

    def _follow(self, check_id: str) -> None:
        """Start, restart or stop one check's runner to match its current definition."""
        check = self._registry.catalog.check(self._node, check_id)
        wanted = check if check is not None and _runnable(check) else None
        running = self._running.get(check_id)
        if running is not None and (wanted is None or wanted.definition != running.definition):
            self._stop(self._running.pop(check_id))
            running = None
        if wanted is not None and running is None:
            self._running[check_id] = self._launch(wanted)

    def _launch(self, check: Check) -> _Running:
        d = check.definition
        running = _Running(d, debouncer=Debouncer(d.success_before_passing, d.failures_before_critical))
        if d.ttl:
            self._arm_ttl(check.check_id, running)
        else:
            probe = self._probe_loop(check.check_id, running)
            running.task = asyncio.create_task(probe, name=f"check:{check.check_id}")
        return running

    def _stop(self, running: _Running) -> None:
        if running.task is not None:
            running.task.cancel()
        if running.ttl_timer is not None:
            running.ttl_timer.cancel()

    # --- HTTP / TCP ---

    async def _probe_loop(self, check_id: str, running: _Running) -> None:
        d = running.definition
        await asyncio.sleep(d.interval * self._rand())  # spread the first runs over one interval
        while True:
            async with self._limit:
                if d.http:
                    assert self._session is not None
                    observed, output = await probe_http(self._session, d, d.timeout)
                else:
                    observed, output = await probe_tcp(d.tcp, d.timeout)
            metrics.CHECKS_RUN.labels(d.kind, observed).inc()
            check = self._registry.catalog.check(self._node, check_id)
            if check is None:
                return
            await self._record(check_id, running.debouncer.decide(check.status, observed), output)
            await asyncio.sleep(next_delay(d.interval, self._rand()))

    # --- TTL ---

    def _arm_ttl(self, check_id: str, running: _Running) -> None:
        if running.ttl_timer is not None:
            running.ttl_timer.cancel()
        loop = asyncio.get_running_loop()
        running.ttl_timer = loop.call_later(running.definition.ttl, self._ttl_expired, check_id)

    def _ttl_expired(self, check_id: str) -> None:
        metrics.CHECKS_RUN.labels("ttl", CRITICAL).inc()
        check = self._registry.catalog.check(self._node, check_id)
        last = check.output if check else ""
        output = f"TTL expired (last output before timeout follows): {last}" if last else "TTL expired"
        task = asyncio.create_task(self._record(check_id, CRITICAL, output), name=f"ttl-expired:{check_id}")
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    async def _record(self, check_id: str, status: str, output: str) -> None:
        with contextlib.suppress(CatalogError):  # deregistered while the probe ran
            await self._registry.write(lambda c: c.update_check(self._node, check_id, status, output))

    # --- reaping ---

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(self._reap_interval)
            for service_id in self.services_to_reap():
                with contextlib.suppress(CatalogError):  # already gone
                    await self._registry.write(partial(_deregister, node=self._node, service_id=service_id))
                    log.info("deregistered critical service", extra={"service_id": service_id})

    def services_to_reap(self) -> list[str]:
        """Services with a check critical for longer than its DeregisterCriticalServiceAfter."""
        now = self._clock()
        reap: set[str] = set()
        seen: set[str] = set()
        for check in self._registry.catalog.checks_on(self._node):
            after = check.definition.deregister_critical_after
            if not after or not check.agent_check or not check.service_id or check.status != CRITICAL:
                continue
            seen.add(check.check_id)
            since = self._critical_since.setdefault(check.check_id, now)
            if now - since >= max(after, self._min_deregister_after):
                reap.add(check.service_id)
        for check_id in set(self._critical_since) - seen:
            del self._critical_since[check_id]
        return sorted(reap)
