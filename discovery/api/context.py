"""What handlers share: the registry, who we are, and the blocking-query machinery."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

from aiohttp import web

from discovery import metrics
from discovery.api import params
from discovery.catalog import Topic
from discovery.registry import Registry

# Blocking watchers of one query wake together; the first renders, the rest reuse its bytes.
RESPONSE_CACHE_SIZE: Final = 1024
_NOT_CACHE_KEY: Final = frozenset({"index", "wait", "token"})


@dataclass
class ApiContext:
    registry: Registry
    acl_token: str = ""
    on_ttl_update: Callable[[str], None] = lambda _check_id: None
    _cache: OrderedDict[tuple[Any, ...], tuple[int, bytes]] = field(default_factory=OrderedDict)
    _parked: set[asyncio.Future[None]] = field(default_factory=set)
    _releasing: bool = False

    @property
    def datacenter(self) -> str:
        return self.registry.identity.datacenter

    @property
    def node_name(self) -> str:
        return self.registry.identity.node_name

    async def wait_for_change(self, request: web.Request, topics: Iterable[Topic], index_of: Callable[[], int]) -> int:
        """Block per ``?index&wait`` until ``index_of()`` moves past the client's index; return it.

        Returns at once without ``?index``, and with the current index when ``wait`` runs out.
        """
        params.reject_unsupported(request.query, self.datacenter)
        params.consistency(request.query)  # ?stale with ?consistent is a 400 now, not after the wait
        blocking = params.parse_blocking(request.query)
        if blocking.index:
            await self.wait_until(topics, blocking.wait, lambda: index_of() > blocking.index)
        return index_of()

    async def wait_until(self, topics: Iterable[Topic], wait: float, done: Callable[[], bool]) -> None:
        """Sleep until ``done()`` holds, re-checking it each time one of ``topics`` changes."""
        catalog = self.registry.catalog
        topics = tuple(topics)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        metrics.BLOCKING_IN_FLIGHT.inc()
        try:
            while not self._releasing and not done() and deadline > loop.time():
                # One future, woken by the watch or by the deadline timer (cheaper than wait_for).
                woken: asyncio.Future[None] = loop.create_future()
                watch = catalog.watch(topics, partial(_wake, woken))
                timer = loop.call_at(deadline, _wake, woken)
                self._parked.add(woken)
                try:
                    await woken
                finally:
                    timer.cancel()
                    watch.cancel()
                    self._parked.discard(woken)
        finally:
            metrics.BLOCKING_IN_FLIGHT.dec()

    def release_waiters(self) -> None:
        """Shutting down: every parked blocking query answers now with what it has, and new
        ones do not park, so the server drains in milliseconds instead of waiting out ``wait``."""
        self._releasing = True
        for future in list(self._parked):
            _wake(future)

    def json_response(
        self, request: web.Request, index: int | None, build: Callable[[], Any], status: int = 200
    ) -> web.Response:
        """Serialise ``build()`` (cached per query and index) with Consul's headers."""
        pretty = "pretty" in request.query
        key = (request.path, pretty, tuple(sorted(kv for kv in request.query.items() if kv[0] not in _NOT_CACHE_KEY)))
        cached = self._cache.get(key) if index is not None else None
        if cached is not None and cached[0] == index:
            self._cache.move_to_end(key)
            body = cached[1]
        else:
            value = build()
            body = (json.dumps(value, indent=4) if pretty else json.dumps(value, separators=(",", ":"))).encode()
            if index is not None:
                self._cache[key] = (index, body)
                if len(self._cache) > RESPONSE_CACHE_SIZE:
                    self._cache.popitem(last=False)
        return web.Response(
            status=status, body=body, content_type="application/json", headers=self.headers(request, index)
        )

    def headers(self, request: web.Request, index: int | None) -> dict[str, str]:
        headers = {
            "X-Consul-KnownLeader": "true",
            "X-Consul-LastContact": "0",
            "X-Consul-Effective-Consistency": params.consistency(request.query),
        }
        if index is not None:
            headers["X-Consul-Index"] = str(max(index, 1))
        return headers


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


CONTEXT: Final = web.AppKey("api_context", ApiContext)
