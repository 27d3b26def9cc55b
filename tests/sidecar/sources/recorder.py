"""An ``apply`` that records what a source offers, and waits for it (no fixed sleeps)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from mesh.model.snapshot import Snapshot
from sidecar.sources.base import APPLIED, ApplyResult


class Recorder:
    """Accepts every snapshot unless ``reject`` says why not; keeps the applied ones in order."""

    def __init__(self, reject: Callable[[Snapshot], str | None] | None = None) -> None:
        self.offered: list[Snapshot] = []
        self.applied: list[Snapshot] = []
        self.reject = reject
        self._changed = asyncio.Event()

    def apply(self, snapshot: Snapshot) -> ApplyResult:
        self.offered.append(snapshot)
        self._changed.set()
        error = self.reject(snapshot) if self.reject is not None else None
        if error is not None:
            return ApplyResult.rejected(error)
        self.applied.append(snapshot)
        return APPLIED

    @property
    def current(self) -> Snapshot | None:
        return self.applied[-1] if self.applied else None

    async def until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``condition()`` holds, re-checking after each offer (and every 50 ms)."""
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            assert remaining > 0, "condition not reached in time"
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(0.05, remaining))

    async def applied_count(self, count: int, timeout: float = 5.0) -> Snapshot:
        await self.until(lambda: len(self.applied) >= count, timeout)
        return self.applied[count - 1]
