"""The live topology: scrape registered sidecars' ``/metrics`` on an interval, keep the last two scrapes.

Targets are the admin addresses sidecars gave at registration (``admin``); several sidecars sharing
one address (``--workers N``: the parent serves one aggregated admin API) are scraped once. With no
target nothing is fetched. After each round the topology (``mesh.observe.build_topology``) is
computed once and swapped in; ``GET /v1/mesh/topology`` answers that snapshot. Scrape outcomes are
counted in ``mesh_control_sidecar_scrapes_total{result}``; the last error of each target is shown in
the answer's ``targets``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp

from mesh.control import metrics
from mesh.control.sidecars import SidecarRecord
from mesh.observe import Scrape, ScrapeError, TargetScrapes, Topology, build_topology, scrape

log = logging.getLogger("mesh.control.topology")

DEFAULT_SCRAPE_INTERVAL = 5.0


@dataclass
class _Target:
    address: str
    sidecar: str
    service: str
    namespace: str
    before: Scrape | None = None
    after: Scrape | None = None
    error: str = ""
    failures: int = 0

    def pair(self) -> TargetScrapes | None:
        if self.before is None or self.after is None:
            return None
        return TargetScrapes(self.sidecar, self.service, self.namespace, self.before, self.after)

    def to_json(self) -> dict[str, Any]:
        return {
            "admin": self.address,
            "sidecar": self.sidecar,
            "service": self.service,
            "namespace": self.namespace,
            "scrapes": (self.before is not None) + (self.after is not None),
            "error": self.error or None,
        }


def scrape_targets(records: Iterable[SidecarRecord]) -> dict[str, tuple[str, str, str]]:
    """admin address → (sidecar id, service, namespace); the first sidecar (by id) naming an address wins."""
    out: dict[str, tuple[str, str, str]] = {}
    for record in sorted(records, key=lambda r: r.id):
        reg = record.registration
        if reg.admin and reg.admin not in out:
            out[reg.admin] = (record.id, reg.service, reg.namespace)
    return out


class TopologyScraper:
    def __init__(
        self,
        sidecars: Callable[[], Iterable[SidecarRecord]],
        interval: float = DEFAULT_SCRAPE_INTERVAL,
        *,
        timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"scrape interval must be > 0, got {interval}")
        self._sidecars = sidecars
        self.interval = interval
        self.timeout = timeout if timeout is not None else min(interval, 2.0)
        self._clock = clock
        self._targets: dict[str, _Target] = {}
        self.topology = Topology(0.0)
        self.rounds = 0
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="topology-scraper")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            started = self._clock()
            try:
                await self.round()
            except Exception:  # a bug here must not end the scraping for good
                log.exception("topology scrape round failed")
            await asyncio.sleep(max(0.0, self.interval - (self._clock() - started)))

    async def round(self) -> None:
        """Scrape every target once (concurrently) and swap in the new topology."""
        wanted = scrape_targets(self._sidecars())
        for address in list(self._targets):
            if address not in wanted:
                del self._targets[address]
        if not wanted:  # no sidecar gave an admin address: nothing to fetch
            self.topology = Topology(0.0)
            metrics.SIDECAR_SCRAPE_TARGETS.labels("ok").set(0)
            metrics.SIDECAR_SCRAPE_TARGETS.labels("failing").set(0)
            return
        for address, (sidecar, service, namespace) in wanted.items():
            target = self._targets.get(address)
            if target is None or (target.sidecar, target.service, target.namespace) != (sidecar, service, namespace):
                self._targets[address] = _Target(address, sidecar, service, namespace)
        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"User-Agent": "mesh-control-topology"})
        session = self._session
        await asyncio.gather(*(self._scrape(session, target) for target in list(self._targets.values())))
        pairs = [p for p in (t.pair() for t in self._targets.values()) if p is not None]
        self.topology = build_topology(pairs)
        self.rounds += 1
        failing = sum(1 for t in self._targets.values() if t.error)
        metrics.SIDECAR_SCRAPE_TARGETS.labels("ok").set(len(self._targets) - failing)
        metrics.SIDECAR_SCRAPE_TARGETS.labels("failing").set(failing)

    async def _scrape(self, session: aiohttp.ClientSession, target: _Target) -> None:
        try:
            fresh = await scrape(session, target.address, timeout=self.timeout, clock=self._clock)
        except ScrapeError as exc:
            metrics.SIDECAR_SCRAPES.labels(exc.reason).inc()
            target.failures += 1
            target.error = exc.message
            if target.failures == 1:
                log.warning("cannot scrape sidecar %s: %s", target.sidecar, exc.message)
            if target.failures >= 2:  # gone for two rounds: its old numbers no longer describe now
                target.before = target.after = None
            return
        metrics.SIDECAR_SCRAPES.labels("ok").inc()
        target.failures = 0
        target.error = ""
        target.before, target.after = target.after, fresh

    def view(self) -> dict[str, Any]:
        """The ``GET /v1/mesh/topology`` answer."""
        return {
            **self.topology.to_json(),
            "interval_s": self.interval,
            "targets": [t.to_json() for t in sorted(self._targets.values(), key=lambda t: t.sidecar)],
        }


__all__ = ["DEFAULT_SCRAPE_INTERVAL", "TopologyScraper", "scrape_targets"]
