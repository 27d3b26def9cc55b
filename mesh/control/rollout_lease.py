"""Which control-plane replica runs the rollouts when several share one Consul store.

Only one replica may change a rollout's weights. With the consul store the replicas compete for
a lease in KV, ``<consul prefix>/rollouts-leader`` = ``{"replica", "url", "until"}`` (wall
seconds), written with check-and-set: the holder renews it every third of ``ttl``; another
replica takes it over only once ``until`` has passed (so replicas' clocks must agree to well
within ``ttl``), then loads every stored rollout and resumes the unfinished ones. A replica that
stops deletes its lease (CAS), so the next one takes over within ``ttl / 3``. With SQLite one
process owns the file and always leads (``SoleLeader``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from discovery.client import RegistryClient
from discovery.client_models import RegistryError

log = logging.getLogger("mesh.control.rollout")

OnChange = Callable[[bool], Awaitable[None]]
Identity = Callable[[], tuple[str, str] | None]  # (replica, url) once the server listens; None before


class Leadership(Protocol):
    leader: bool

    def holder(self) -> dict[str, Any] | None:
        """The lease as last read: ``{"replica", "url", "until"}``; ``None`` when not known."""
        ...

    async def run(self, on_change: OnChange) -> None:
        """Call ``on_change(True/False)`` as leadership is won and lost, until cancelled."""
        ...

    async def release(self) -> None: ...


class SoleLeader:
    leader = True

    def holder(self) -> dict[str, Any] | None:
        return None

    async def run(self, on_change: OnChange) -> None:
        await asyncio.Event().wait()

    async def release(self) -> None:
        """Nothing is held."""


class KvLease:
    def __init__(
        self,
        client: RegistryClient,
        prefix: str,
        identity: Identity,
        *,
        ttl: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self.key = f"{prefix.strip('/')}/rollouts-leader"
        self._identity = identity
        self.ttl = ttl
        self._clock = clock
        self.leader = False
        self._holder: dict[str, Any] | None = None

    def holder(self) -> dict[str, Any] | None:
        return self._holder

    async def run(self, on_change: OnChange) -> None:
        identity = self._identity()
        while identity is None:  # the replica's name and URL come once it listens
            await asyncio.sleep(0.05)
            identity = self._identity()
        while True:
            try:
                won = await self._attempt(*identity)
            except RegistryError as exc:
                log.warning("cannot read or renew the rollout lease %s: %s", self.key, exc)
                won = False
            if won != self.leader:
                self.leader = won
                log.info("rollout leadership %s", "won" if won else "lost", extra={"replica": identity[0]})
                await on_change(won)
            await asyncio.sleep(self.ttl / 3)

    async def _attempt(self, replica: str, url: str) -> bool:
        pair = (await self._client.kv_get(self.key)).value
        now = self._clock()
        if pair is not None and pair.value:
            try:
                current = json.loads(pair.value)
                if current["replica"] != replica and float(current["until"]) > now:
                    self._holder = current
                    return False
            except (KeyError, TypeError, ValueError):
                pass  # an unreadable lease is taken over
        lease = {"replica": replica, "url": url, "until": now + self.ttl}
        cas = 0 if pair is None else pair.modify_index
        if not await self._client.kv_put(self.key, json.dumps(lease), cas=cas):
            return False  # another replica wrote it first
        self._holder = lease
        return True

    async def release(self) -> None:
        identity = self._identity()
        if not self.leader or identity is None:
            return
        self.leader = False
        try:
            pair = (await self._client.kv_get(self.key)).value
            if pair is not None and pair.value is not None and json.loads(pair.value).get("replica") == identity[0]:
                await self._client.kv_delete(self.key, cas=pair.modify_index)
        except (RegistryError, ValueError) as exc:
            log.info("cannot release the rollout lease: %s", exc)


__all__ = ["Identity", "KvLease", "Leadership", "OnChange", "SoleLeader"]
