"""A keyed work queue: at most one run per key at a time, many keys in parallel.

Submitting a key that is already queued merges into the queued job; submitting a key while it
runs queues exactly one more run after it. So a burst of events for one container costs at
most two inspections, and the last one always sees the final state. ``submit`` returns a
future that resolves once a run that started after the submission has finished.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Job:
    sync: bool = False  # part of a full sync (the --cleanup drop of kept services applies)
    event_ns: int | None = None  # the earliest Docker event time this run answers, for the lag metric
    hint: object | None = None  # the latest event, when no sync asked since (what it tells may spare a lookup)
    submissions: int = 0  # how many submissions this run answers (1: ``hint`` is all that happened)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def merge(self, sync: bool, event_ns: int | None, hint: object | None) -> None:
        self.sync = self.sync or sync
        if event_ns is not None and (self.event_ns is None or event_ns < self.event_ns):
            self.event_ns = event_ns
        self.hint = None if sync else hint
        self.submissions += 1


class KeyedWorkQueue:
    def __init__(self, run: Callable[[str, Job], Awaitable[None]], *, concurrency: int = 16) -> None:
        self._run = run
        self._pending: dict[str, Job] = {}
        self._drivers: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(concurrency)
        self._closed = False

    def submit(
        self, key: str, *, sync: bool = False, event_ns: int | None = None, hint: object | None = None
    ) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._closed:
            done.set_result(None)
            return done
        job = self._pending.setdefault(key, Job())
        job.merge(sync, event_ns, hint)
        job.waiters.append(done)
        if key not in self._drivers:
            self._drivers[key] = asyncio.create_task(self._drive(key), name=f"reconcile-{key[:12]}")
        return done

    @property
    def busy(self) -> int:
        """Keys queued or running."""
        return len(self._drivers)

    async def drain(self, timeout: float) -> bool:
        """Wait until nothing is queued or running (or ``timeout``); ``True`` if it got idle."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._drivers:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.wait(list(self._drivers.values()), timeout=remaining)
        return True

    async def close(self) -> None:
        """Stop taking work and cancel what is queued or running."""
        self._closed = True
        tasks = list(self._drivers.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _drive(self, key: str) -> None:
        try:
            while key in self._pending:
                async with self._slots:
                    job = self._pending.pop(key)
                    try:
                        await self._run(key, job)
                    except Exception:
                        log.exception("reconcile of %s failed", key[:12])
                    finally:
                        for waiter in job.waiters:
                            if not waiter.done():
                                waiter.set_result(None)
        finally:
            self._drivers.pop(key, None)
            leftover = self._pending.pop(key, None) if self._closed else None
            for waiter in leftover.waiters if leftover else ():
                if not waiter.done():
                    waiter.set_result(None)


__all__ = ["Job", "KeyedWorkQueue"]
