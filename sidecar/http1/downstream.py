"""The client side of the HTTP/1.1 proxy: one asyncio Protocol per accepted connection.

It owns the transport, the request reader, the queue of pipelined requests, the reasons its
reading is paused, and its header/idle deadlines. Everything about one request lives in its
``Exchange``.

Rules:
- Pipelining: requests are parsed as they arrive but run one at a time, in order; while any
  wait, reading pauses (so the queue is bounded by one read's worth of requests).
- Reading is paused while any reason holds (bit flags: queue, upstream full, body buffer full,
  upgrade pending) and resumes when none does.
- Deadlines (checked by the listener's periodic sweep, no timer per request): from the first
  byte of a head to its end, ``header_timeout`` (slowloris; answered 408 and closed); between
  requests, ``idle_timeout`` (closed silently).
- A malformed request gets its 4xx/5xx after any response still in progress, then the
  connection closes; so does a connection whose request body was not read to its end. Closing
  with unread input lingers (write side shut, input read and dropped for a moment) so the
  client sees the answer instead of a reset.
- Drain: idle connections close at once; busy ones answer with ``Connection: close`` and close.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, cast

from sidecar.http1.exchange import PAUSE_QUEUE, PAUSE_UPGRADE, Exchange
from sidecar.http1.framing import HttpError, RequestHead
from sidecar.http1.reader import RequestReader
from sidecar.http1.upstream import WRITE_HIGH_WATER, WRITE_LOW_WATER
from sidecar.http1.wire import error_response
from sidecar.tcp.relay import Relay

if TYPE_CHECKING:
    from sidecar.http1.listener import HttpContext

log = logging.getLogger("sidecar.http1")

_monotonic = time.monotonic


class DownstreamConnection(asyncio.Protocol):
    __slots__ = (
        "client_ip",
        "client_ip_bytes",
        "closed",
        "closing",
        "context",
        "current",
        "deadline",
        "error",
        "lingering",
        "paused",
        "queue",
        "reader",
        "receiving",
        "relay",
        "tls",
        "transport",
        "upgrade_tail",
        "write_paused",
    )

    def __init__(self, context: HttpContext) -> None:
        self.context = context
        self.transport: asyncio.Transport | None = None
        self.reader = RequestReader(self, context.settings.limits)
        self.current: Exchange | None = None
        self.receiving: Exchange | None = None
        self.queue: deque[Exchange] = deque()
        self.paused = 0
        self.write_paused = False
        self.closing = False
        self.closed = False
        self.lingering = False
        self.deadline = 0.0
        self.error: HttpError | None = None
        self.relay: Relay | None = None
        self.upgrade_tail: bytes | None = None
        self.client_ip = ""
        self.client_ip_bytes = b""
        self.tls = False  # over TLS a half-closed connection cannot be written to (asyncio closes it)

    # === asyncio.Protocol ===

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.transport = transport
        transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        self.tls = transport.get_extra_info("sslcontext") is not None
        peer = transport.get_extra_info("peername")
        if peer:
            self.client_ip = str(peer[0])
            self.client_ip_bytes = self.client_ip.encode("ascii")
        context = self.context
        context.connections.add(self)
        stats = context.stats
        stats.active += 1
        stats.total += 1
        # A connection that sends nothing at all is closed like an idle keep-alive one, but sooner.
        self.deadline = _monotonic() + min(context.settings.header_timeout_s, context.settings.idle_timeout_s)
        if context.draining:
            self.closing = True

    def data_received(self, data: bytes) -> None:
        relay = self.relay
        if relay is not None:
            relay.from_downstream(data)
            return
        if self.lingering or self.error is not None:
            return
        if self.upgrade_tail is not None:
            self.upgrade_tail += data  # tunnel bytes that arrived before the upstream's 101
            return
        try:
            tail = self.reader.feed(data)
        except HttpError as exc:
            self._protocol_error(exc)
            return
        if tail is not None:
            self.upgrade_tail = tail

    def eof_received(self) -> bool:
        relay = self.relay
        if relay is not None:
            return relay.downstream_eof()
        current = self.current
        if current is None or self.lingering:
            return False
        if not current.body_done:
            return False  # truncated request: connection_lost aborts the exchange
        self.closing = True  # answer the request in flight, then close
        return not self.tls

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        context = self.context
        context.connections.discard(self)
        context.stats.active -= 1
        relay = self.relay
        if relay is not None:
            self.relay = None
            relay.downstream_lost()
        current = self.current
        if current is not None:
            self.current = None
            current.on_client_lost()
        self.queue.clear()
        self.receiving = None

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.relay is not None:
            self.relay.downstream_write_paused()
        elif self.current is not None:
            self.current.pause_upstream_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.relay is not None:
            self.relay.downstream_write_resumed()
        elif self.current is not None:
            self.current.resume_upstream_reading()

    # === RequestSink (called by the reader) ===

    def on_request(self, head: RequestHead) -> None:
        exchange = Exchange(self, head)
        self.receiving = exchange
        if head.upgrade is not None:
            self.pause_for(PAUSE_UPGRADE)
            self.upgrade_tail = b""
        if self.current is None:
            self.current = exchange
            exchange.begin()
        else:
            self.queue.append(exchange)
            self.pause_for(PAUSE_QUEUE)

    def on_request_body(self, data: bytes) -> None:
        receiving = self.receiving
        if receiving is not None:
            receiving.on_request_body(data)

    def on_request_end(self, trailers: list[tuple[bytes, bytes]] | None) -> None:
        receiving = self.receiving
        if receiving is not None:
            receiving.on_request_end(trailers)

    # === flow control ===

    def pause_for(self, reason: int) -> None:
        if not self.paused and self.transport is not None:
            self.transport.pause_reading()
        self.paused |= reason

    def resume_for(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and self.transport is not None and not self.closed:
                self.transport.resume_reading()

    # === exchange lifecycle ===

    def exchange_finished(self, exchange: Exchange, keep_alive: bool) -> None:
        """The response to ``exchange`` has been written in full."""
        if exchange is not self.current or self.closed:
            return
        self.current = None
        if self.error is not None:
            self._send_error_and_close(self.error)
            return
        if not keep_alive or self.closing or exchange.head.upgrade is not None:
            self.close(linger=not exchange.body_done)
            return
        queue = self.queue
        if queue:
            nxt = queue.popleft()
            if not queue:
                self.resume_for(PAUSE_QUEUE)
            self.current = nxt
            nxt.begin()
            return
        if self.paused:
            self.resume_for(PAUSE_QUEUE)
        self.deadline = _monotonic() + self.context.settings.idle_timeout_s

    def become_tunnel(self, exchange: Exchange, relay: Relay) -> None:
        """The upstream accepted the upgrade: from now on bytes pass through untouched."""
        self.current = None
        self.relay = relay
        self.deadline = 0.0
        self.context.tunnels.add(relay)
        tail = self.upgrade_tail or b""
        self.upgrade_tail = None
        if tail:
            relay.from_downstream(tail)
        self.paused = 0
        if self.transport is not None:
            self.transport.resume_reading()
        if self.write_paused:
            relay.downstream_write_paused()

    # === errors, timeouts, closing ===

    def _protocol_error(self, exc: HttpError) -> None:
        self.context.stats.protocol_error(exc.status)
        log.debug("bad request", extra={"status": exc.status, "reason": exc.reason, "client": self.client_ip})
        self.pause_for(PAUSE_QUEUE)
        current = self.current
        if current is None:
            self._send_error_and_close(exc)
        elif current is self.receiving and not current.body_done:
            # The request in flight is the broken one (e.g. a bad chunk size): it fails now.
            current.on_request_broken(exc)
            if not self.closed and self.current is None:
                self.close(linger=True)
        else:
            self.error = exc  # answered after the response in progress

    def _send_error_and_close(self, exc: HttpError) -> None:
        transport = self.transport
        if transport is not None and not self.closed:
            transport.write(error_response(exc.status, exc.reason, close=True))
        self.close(linger=True)

    def check_deadline(self, now: float) -> None:
        """Called by the listener's sweep: header and idle timeouts, the route timeout, tunnel idleness."""
        reader = self.reader
        if (
            reader.in_head
            and self.error is None
            and now - reader.head_started_at >= self.context.settings.header_timeout_s
        ):
            self.context.stats.protocol_error(408)
            self.error = HttpError(408, "request header timeout")
            if self.current is None:
                self._send_error_and_close(self.error)
        if self.deadline and now >= self.deadline:
            self.deadline = 0.0
            if self.lingering:
                self.abort()
            elif self.current is None and not reader.in_head:
                self.close(linger=False)
        current = self.current
        if current is not None and current.deadline and now >= current.deadline:
            current.deadline = 0.0
            current.on_timeout()

    def drain(self) -> None:
        """Stop taking requests: close now if idle, else after the response in progress."""
        self.closing = True
        if self.relay is None and self.current is None and not self.reader.in_head:
            self.close(linger=False)

    def close(self, linger: bool) -> None:
        """Close after pending writes; with ``linger``, shut our side and drop input for a while first."""
        transport = self.transport
        if transport is None or self.closed:
            return
        if linger and transport.can_write_eof():
            self.lingering = True
            self.paused = 0
            transport.resume_reading()
            transport.write_eof()
            self.deadline = _monotonic() + self.context.settings.linger_s
            return
        transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()
