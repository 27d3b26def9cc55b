"""The canary's numbers for one window, from the sidecars' own Istio metrics (``mesh.observe``).

At a window's start every connected sidecar that registered an admin address is scraped (the
baseline); at its end they are scraped again, and ``mesh.observe`` turns the two scrapes per
sidecar into a topology whose traffic into ``<service>.<namespace>`` is summed per destination
version, which is the subset name the callers' sidecars routed to. A sidecar that answers only
one of the two scrapes is left out of the window.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from mesh.control.rollout_decide import WindowStats
from mesh.observe import Scrape, ScrapeError, TargetScrapes, build_topology, node_id, scrape, version_traffic

log = logging.getLogger("mesh.control.rollout")

SidecarList = Callable[[], Awaitable[list[dict[str, Any]]]]  # status entries: id, service, namespace, admin


@dataclass(frozen=True, slots=True)
class Target:
    sidecar: str
    service: str
    namespace: str
    admin: str


@dataclass(frozen=True, slots=True)
class Baseline:
    scrapes: dict[Target, Scrape]


class SidecarMetrics:
    def __init__(self, sidecars: SidecarList, *, timeout: float = 2.0) -> None:
        self._sidecars = sidecars
        self._session: aiohttp.ClientSession | None = None
        self._timeout = timeout

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def baseline(self) -> Baseline:
        return Baseline(await self._scrape_all(await self._targets()))

    async def window(self, baseline: Baseline, service: str, namespace: str, subset: str) -> WindowStats | None:
        """The subset's traffic since ``baseline``; ``None`` when no sidecar could be scraped twice."""
        after = await self._scrape_all(list(baseline.scrapes))
        pairs = [
            TargetScrapes(t.sidecar, t.service, t.namespace, baseline.scrapes[t], after[t])
            for t in baseline.scrapes
            if t in after
        ]
        if not pairs:
            return None
        topology = build_topology(pairs)
        traffic = version_traffic(topology, node_id(service, namespace)).get(subset)
        if traffic is None:
            return WindowStats(0.0, 0.0, None, topology.window_s)
        return WindowStats(traffic.requests, traffic.errors, traffic.p99_ms, topology.window_s)

    async def _targets(self) -> list[Target]:
        return [
            Target(str(s["id"]), str(s["service"]), str(s["namespace"]), str(s["admin"]))
            for s in await self._sidecars()
            if s.get("admin") and s.get("connected", True)
        ]

    async def _scrape_all(self, targets: list[Target]) -> dict[Target, Scrape]:
        results = await asyncio.gather(*(self._scrape(t) for t in targets))
        return {t: r for t, r in zip(targets, results, strict=True) if r is not None}

    async def _scrape(self, target: Target) -> Scrape | None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            return await scrape(self._session, target.admin, timeout=self._timeout)
        except ScrapeError as exc:
            log.info("rollout analysis cannot scrape sidecar %s: %s", target.sidecar, exc)
            return None


__all__ = ["Baseline", "SidecarList", "SidecarMetrics", "Target"]
