"""A request budget shared by every sidecar of a workload: a fixed window counted in the registry's KV.

Each (limit, client key, window) has one KV key, ``<prefix>/<hash of the client key>/<window>``,
holding the number of requests admitted in that window by all sidecars. A sidecar admits from
what it last read plus what it admitted since (never one KV call per request); every
``sync_s`` (100 ms) it adds its unsynced count with check-and-set (retrying on a lost race) and
learns the others' counts in the same read. So N sidecars can together admit up to about N times
what each sees as left in one sync interval before they see each other's counts: the overshoot is
bounded by the traffic of one sync interval, not by the window.

When the registry cannot be reached (a failed sync), the budget follows ``failureMode``: ``ALLOW``
admits (Envoy's ``failure_mode_deny: false``, the default), ``DENY`` refuses, until a sync
succeeds again. Old windows' keys are deleted by the sidecar that moves past them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from discovery.client_models import RegistryError
from mesh.rules.ratelimit import SharedQuota

if TYPE_CHECKING:
    from discovery.client import RegistryClient

log = logging.getLogger("sidecar.ratelimit")

SYNC_S = 0.1
KV_PREFIX = "mesh/ratelimit"
_CAS_ATTEMPTS = 5


@dataclass(slots=True)
class _Window:
    number: int
    known: int = 0  # the total in the KV at the last sync (ours included)
    unsynced: int = 0  # admitted here since


class SharedWindows:
    def __init__(
        self,
        quota: SharedQuota,
        prefix: str,
        client: Callable[[], RegistryClient],
        clock: Callable[[], float] = time.time,
        sync_s: float = SYNC_S,
    ) -> None:
        self.quota = quota
        self.prefix = prefix
        self._client = client
        self._clock = clock  # wall clock: every sidecar must agree on the window
        self._sync_s = sync_s
        self._windows: dict[str, _Window] = {}
        self._past: list[tuple[str, int]] = []  # (client key, window) whose KV keys are to delete
        self._task: asyncio.Task[None] | None = None
        self.down = False  # the last sync failed
        self.syncs = 0

    def take(self, key: str) -> float:
        """0.0 when admitted; otherwise the seconds until the window ends."""
        now = self._clock()
        length = self.quota.window_s
        number = int(now // length)
        retry_after = (number + 1) * length - now
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sync_loop(), name=f"ratelimit {self.prefix}")
        if self.down:
            return 0.0 if self.quota.failure_mode == "ALLOW" else retry_after
        window = self._windows.get(key)
        if window is None or window.number != number:
            if window is not None:
                self._past.append((key, window.number))
            window = self._windows[key] = _Window(number)
        if window.known + window.unsynced >= self.quota.requests_per_unit:
            return retry_after
        window.unsynced += 1
        return 0.0

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # === syncing ===

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self._sync_s)
            try:
                await self.sync()
            except (RegistryError, OSError, TimeoutError) as exc:
                if not self.down:
                    log.warning("shared rate limit: the registry is unreachable", extra={"error": f"{exc}"})
                self.down = True
            else:
                self.down = False

    async def sync(self) -> None:
        """Add every window's unsynced count to the KV and learn the totals; drop past windows."""
        current = int(self._clock() // self.quota.window_s)
        client = self._client()
        for key, window in list(self._windows.items()):
            if window.number < current:
                del self._windows[key]
                self._past.append((key, window.number))
            else:
                await self._sync_window(client, key, window)
        while self._past:
            key, number = self._past[-1]
            await client.kv_delete(self._kv_key(key, number))
            self._past.pop()
        self.syncs += 1

    async def _sync_window(self, client: RegistryClient, key: str, window: _Window) -> None:
        kv_key = self._kv_key(key, window.number)
        for _ in range(_CAS_ATTEMPTS):
            pair = (await client.kv_get(kv_key)).value
            stored = _count(pair.value if pair is not None else None)
            sending = window.unsynced
            if not sending:
                window.known = stored
                return
            if await client.kv_put(kv_key, str(stored + sending), cas=pair.modify_index if pair is not None else 0):
                window.known = stored + sending
                window.unsynced -= sending
                return
        # lost every race this round: the count stays unsynced and goes with the next sync

    def _kv_key(self, key: str, number: int) -> str:
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        return f"{self.prefix}/{digest}/{number}"


def _count(value: bytes | None) -> int:
    try:
        return int(value or b"0")
    except ValueError:
        return 0  # not ours: counted from zero (and overwritten by the next successful sync)


__all__ = ["KV_PREFIX", "SYNC_S", "SharedWindows"]
