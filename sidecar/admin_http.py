"""A small HTTP/1.1 server for the sidecar's admin routes, on asyncio and httptools.

The admin port is low-traffic, but it lives in every sidecar process: serving it with aiohttp
costs about 14 MB of resident memory per sidecar (the library and its import tree), more than the
whole request path. The sidecar already parses HTTP with httptools, so the admin port reuses
that parser and answers from a route table; nothing here is on the request path.

Behaviour: keep-alive as the client asks (HTTP/1.0 closes unless it asks for keep-alive), one
request at a time per connection (reading pauses while a handler runs), 404 for unknown paths,
405 with ``Allow`` for a known path with another method, 400 for malformed requests, 413 above
``MAX_BODY`` bytes of request body; handlers may be plain functions or coroutines.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import parse_qsl

import httptools

from sidecar.http1.wire import reason_phrase

log = logging.getLogger("sidecar.admin")

MAX_BODY = 1024 * 1024
MAX_HEAD = 64 * 1024


@dataclass(frozen=True, slots=True)
class AdminRequest:
    method: str
    path: str
    query: Mapping[str, str]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class AdminResponse:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def text(cls, text: str, status: int = 200) -> AdminResponse:
        return cls(status, text.encode("utf-8"))

    @classmethod
    def json(cls, data: object, status: int = 200) -> AdminResponse:
        return cls(status, (json.dumps(data, indent=2) + "\n").encode("utf-8"), "application/json")


Handler = Callable[[AdminRequest], "AdminResponse | Awaitable[AdminResponse]"]
Routes = Mapping[tuple[str, str], Handler]  # (method, path) → handler


def response_bytes(response: AdminResponse, keep_alive: bool, head_only: bool = False) -> bytes:
    lines = [
        f"HTTP/1.1 {response.status} {reason_phrase(response.status).decode('latin-1')}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        *(f"{name}: {value}" for name, value in response.headers),
    ]
    if not keep_alive:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body


async def answer(routes: Routes, request: AdminRequest) -> AdminResponse:
    """The route's answer, or 404/405; a handler that raises gives a 500 (and a log line)."""
    method = "GET" if request.method == "HEAD" else request.method
    handler = routes.get((method, request.path))
    if handler is None:
        allowed = sorted({m for m, p in routes if p == request.path})
        if not allowed:
            return AdminResponse.text(f"no admin route {request.path}\n", 404)
        return AdminResponse(405, b"method not allowed\n", headers=(("Allow", ", ".join(allowed)),))
    try:
        result = handler(request)
        return await result if inspect.isawaitable(result) else result
    except Exception:
        log.exception("admin handler failed", extra={"path": request.path})
        return AdminResponse.text("internal error\n", 500)


class _AdminConnection(asyncio.Protocol):
    def __init__(self, server: AdminServer) -> None:
        self._server = server
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        self._size = 0
        self._task: asyncio.Task[None] | None = None
        self._queue: deque[tuple[AdminRequest, bool]] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._size += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail(400, "malformed request\n")
            return
        if self._task is None and self._size > MAX_HEAD + MAX_BODY:
            self._fail(413, "request too large\n")

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._body = []
        self._size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        transport = self._transport
        if transport is None:
            return
        parsed = httptools.parse_url(self._url)
        request = AdminRequest(
            self._parser.get_method().decode("latin-1"),
            (parsed.path or b"/").decode("latin-1"),
            dict(parse_qsl((parsed.query or b"").decode("latin-1"))),
            b"".join(self._body),
        )
        self._queue.append((request, self._parser.should_keep_alive()))
        if self._task is None:
            transport.pause_reading()  # one request at a time; pipelined ones wait in the queue
            self._task = asyncio.get_running_loop().create_task(self._serve())

    async def _serve(self) -> None:
        while self._queue:
            request, keep_alive = self._queue.popleft()
            response = await answer(self._server.routes, request)
            transport = self._transport
            if transport is None:
                break
            transport.write(response_bytes(response, keep_alive, head_only=request.method == "HEAD"))
            if not keep_alive or self._server.closing:
                self._queue.clear()
                transport.close()
                break
        self._task = None
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def _fail(self, status: int, message: str) -> None:
        transport = self._transport
        if transport is not None:
            transport.write(response_bytes(AdminResponse.text(message, status), keep_alive=False))
            transport.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class AdminServer:
    """Serves ``routes`` on TCP (``start_tcp``) or a unix socket (``start_unix``)."""

    def __init__(self, routes: Routes) -> None:
        self.routes = routes
        self.connections: set[_AdminConnection] = set()
        self.closing = False
        self._server: asyncio.AbstractServer | None = None

    async def start_tcp(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0 picks a free port); returns the bound port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _AdminConnection(self), host, port, reuse_address=True)
        return int(self._server.sockets[0].getsockname()[1])

    async def start_unix(self, path: str) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self._server = await loop.create_unix_server(lambda: _AdminConnection(self), path)

    async def close(self) -> None:
        self.closing = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in list(self.connections):
            conn.close()
        if server is not None:
            await server.wait_closed()
