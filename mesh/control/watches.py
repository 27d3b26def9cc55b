"""One registry watch per service that any sidecar needs, shared by all of them.

``want(names)`` is called after each recompute with the union of every profile's services:
missing watches start, and watches nobody has needed for ``linger`` seconds stop (a sidecar
that reconnects does not restart them). Each watch is a blocking query on
``/v1/health/service/<name>`` without ``?passing``, so one answer tells "no instance"
(unknown: 404) from "instances, none healthy" (503) and keeps the failing checks ``explain``
shows. A changed answer replaces the service's entry in an immutable catalog mapping and calls
``on_change(name)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from types import MappingProxyType

from discovery.client import RegistryClient
from mesh.control.instances import Instance, instances_from_entries
from mesh.control.translate import Catalog

log = logging.getLogger("mesh.control.watches")


class ServiceWatches:
    def __init__(
        self,
        client: RegistryClient,
        on_change: Callable[[str], None],
        *,
        wait: float | None = None,
        linger: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._on_change = on_change
        self._wait = wait
        self._linger = linger
        self._clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._answered: dict[str, asyncio.Event] = {}
        self._unneeded_since: dict[str, float] = {}
        self._catalog: dict[str, tuple[Instance, ...]] = {}
        self.catalog: Catalog = MappingProxyType({})

    @property
    def watched(self) -> frozenset[str]:
        return frozenset(self._tasks)

    def want(self, names: Iterable[str]) -> None:
        wanted = set(names)
        now = self._clock()
        for name in wanted:
            self._unneeded_since.pop(name, None)
            if name not in self._tasks:
                self._start(name)
        for name in list(self._tasks):
            if name in wanted:
                continue
            since = self._unneeded_since.setdefault(name, now)
            if now - since >= self._linger:
                self._stop(name)

    async def answered(self, names: Iterable[str], timeout: float) -> None:
        """Wait (at most ``timeout``) until each of ``names`` has had its first answer."""
        events = [self._answered[name].wait() for name in names if name in self._answered]
        if events:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*events), timeout)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    def _start(self, name: str) -> None:
        self._answered[name] = asyncio.Event()
        self._tasks[name] = asyncio.get_running_loop().create_task(self._follow(name), name=f"control-watch:{name}")

    def _stop(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
        self._unneeded_since.pop(name, None)
        self._answered.pop(name, None)
        if self._catalog.pop(name, None) is not None:
            self.catalog = MappingProxyType(dict(self._catalog))
        log.debug("stopped watching service %s", name)

    async def _follow(self, name: str) -> None:
        watch = self._client.watch_health_service(name, passing=False, wait=self._wait)
        try:
            async for result in watch:
                instances = instances_from_entries(result.value)
                if self._catalog.get(name) != instances or name not in self._catalog:
                    self._catalog[name] = instances
                    self.catalog = MappingProxyType(dict(self._catalog))
                    self._on_change(name)
                event = self._answered.get(name)
                if event is not None:
                    event.set()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("watch of service %s failed", name)


__all__ = ["ServiceWatches"]
