"""What handlers share: the registry, who we are, and the blocking-query machinery."""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.utils import formatdate
from functools import partial
from typing import Any, Final

from aiohttp import HttpVersion11, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import SERVER_SOFTWARE

from discovery import metrics
from discovery.api import params
from discovery.catalog import Topic
from discovery.registry import Registry

# Blocking watchers of one query wake together; the first renders, the rest reuse its bytes.
RESPONSE_CACHE_SIZE: Final = 1024
_NOT_CACHE_KEY: Final = frozenset({"index", "wait", "token"})


# (path, pretty, the query's other parameters, sorted): one rendered body per query and index.
_CacheKey = tuple[str, bool, tuple[tuple[str, str], ...]]


def _cache_key(request: web.Request) -> _CacheKey:
    query = request.query
    return (request.path, "pretty" in query, tuple(sorted(kv for kv in query.items() if kv[0] not in _NOT_CACHE_KEY)))


@dataclass(slots=True)
class _Rendered:
    """One query's answer at one index: the JSON body, and the whole HTTP/1.1 response
    (head included) once a blocking watcher was answered straight on its connection."""

    index: int
    body: bytes
    wire: bytes = b""
    wire_date: str = ""


@dataclass
class ApiContext:
    registry: Registry
    acl_token: str = ""
    on_ttl_update: Callable[[str], None] = lambda _check_id: None
    _cache: OrderedDict[_CacheKey, _Rendered] = field(default_factory=OrderedDict)
    _parked: set[asyncio.Future[bool]] = field(default_factory=set)
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
        blocking = self._blocking(request)
        if blocking.index:
            await self.wait_until(topics, blocking.wait, lambda: index_of() > blocking.index)
        return index_of()

    async def blocking_json(
        self, request: web.Request, topics: Iterable[Topic], index_of: Callable[[], int], build: Callable[[], Any]
    ) -> web.StreamResponse:
        """A read with Consul's blocking semantics, answered with ``build()`` as JSON.

        A parked GET is answered from the wake-up callback itself, written straight to its
        connection: when a thousand watchers of one service wake together, the last one's answer
        then waits only for the others' socket writes, not for their handlers' trips through
        aiohttp (which finish afterwards, with nothing left to send).
        """
        blocking = self._blocking(request)
        if blocking.index:
            # The cache key is computed once here, not by each of a thousand wake-ups.
            answer = (
                partial(self._answer_on_wire, request, _cache_key(request), index_of, build)
                if _wire_answerable(request)
                else None
            )
            if await self.wait_until(topics, blocking.wait, lambda: index_of() > blocking.index, answer):
                return AnsweredOnWire()
        return self.json_response(request, index_of(), build)

    def _blocking(self, request: web.Request) -> params.BlockingParams:
        params.reject_unsupported(request.query, self.datacenter)
        params.consistency(request.query)  # ?stale with ?consistent is a 400 now, not after the wait
        return params.parse_blocking(request.query)

    async def wait_until(
        self,
        topics: Iterable[Topic],
        wait: float,
        done: Callable[[], bool],
        answer: Callable[[], bool] | None = None,
    ) -> bool:
        """Sleep until ``done()`` holds, re-checking it each time one of ``topics`` changes.

        With ``answer``, the wake-up callback calls it once ``done()`` holds; it returns whether it
        answered the request itself, and so does this method.
        """
        catalog = self.registry.catalog
        topics = tuple(topics)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        metrics.BLOCKING_IN_FLIGHT.inc()
        try:
            while not self._releasing and not done() and deadline > loop.time():
                # One future, woken by the watch or by the deadline timer (cheaper than wait_for).
                woken: asyncio.Future[bool] = loop.create_future()
                watch = catalog.watch(topics, partial(_on_change, woken, done, answer))
                timer = loop.call_at(deadline, _wake, woken)
                self._parked.add(woken)
                try:
                    if await woken:
                        return True
                finally:
                    timer.cancel()
                    watch.cancel()
                    self._parked.discard(woken)
        finally:
            metrics.BLOCKING_IN_FLIGHT.dec()
        return False

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
        body = self._rendered(_cache_key(request), index, build).body
        return web.Response(
            status=status, body=body, content_type="application/json", headers=self.headers(request, index)
        )

    def _rendered(self, key: _CacheKey, index: int | None, build: Callable[[], Any]) -> _Rendered:
        cached = self._cache.get(key) if index is not None else None
        if cached is not None and cached.index == index:
            self._cache.move_to_end(key)
            return cached
        value = build()
        pretty = key[1]
        body = (json.dumps(value, indent=4) if pretty else json.dumps(value, separators=(",", ":"))).encode()
        rendered = _Rendered(index or 0, body)
        if index is not None:
            self._cache[key] = rendered
            if len(self._cache) > RESPONSE_CACHE_SIZE:
                self._cache.popitem(last=False)
        return rendered

    def _answer_on_wire(
        self, request: web.Request, key: _CacheKey, index_of: Callable[[], int], build: Callable[[], Any]
    ) -> bool:
        """Write the whole 200 response to the parked connection; False when it has gone."""
        transport = request.transport
        if transport is None or transport.is_closing():
            return False
        index = index_of()
        rendered = self._rendered(key, index, build)
        date = _http_date()
        if rendered.wire_date != date:
            # The same head as json_response's, which aiohttp would write (tests compare them).
            lines = [
                "HTTP/1.1 200 OK",
                "Content-Type: application/json",
                *(f"{name}: {value}" for name, value in self.headers(request, index).items()),
                f"Content-Length: {len(rendered.body)}",
                f"Date: {date}",
                f"Server: {SERVER_SOFTWARE}",
            ]
            rendered.wire = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + rendered.body
            rendered.wire_date = date
        transport.write(rendered.wire)
        return True

    def headers(self, request: web.Request, index: int | None) -> dict[str, str]:
        headers = {
            "X-Consul-KnownLeader": "true",
            "X-Consul-LastContact": "0",
            "X-Consul-Effective-Consistency": params.consistency(request.query),
        }
        if index is not None:
            headers["X-Consul-Index"] = str(max(index, 1))
        return headers


class AnsweredOnWire(web.StreamResponse):
    """What a handler returns when its answer already went out on the connection: aiohttp
    finishes the request (metrics, keep-alive) and writes nothing more."""

    def __init__(self) -> None:
        super().__init__(status=200)

    @property
    def keep_alive(self) -> bool:
        return True

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


def _wire_answerable(request: web.Request) -> bool:
    # Only a plain HTTP/1.1 keep-alive GET: HEAD has no body, and a closing connection needs
    # aiohttp's own close handling.
    return request.method == "GET" and request.version == HttpVersion11 and request.keep_alive


def _on_change(woken: asyncio.Future[bool], done: Callable[[], bool], answer: Callable[[], bool] | None) -> None:
    if not woken.done():
        woken.set_result(answer is not None and done() and answer())


def _wake(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(False)


class _HttpDate:
    """The Date header, formatted once per second."""

    def __init__(self) -> None:
        self.second, self.text = -1, ""

    def __call__(self) -> str:
        now = int(time.time())
        if now != self.second:
            self.second, self.text = now, formatdate(now, usegmt=True)
        return self.text


_http_date: Final = _HttpDate()


CONTEXT: Final = web.AppKey("api_context", ApiContext)
