"""One keep-alive connection to an upstream endpoint: the asyncio edge of the response reader.

The connection belongs to its endpoint's pool while idle and to one ``UpstreamUser`` (an
exchange) while a request is on it. It forwards parsed responses to the user and turns
transport events (EOF, reset, write buffer full) into calls on it. After a 101 it becomes one
half of a tunnel and only moves bytes.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol, cast

from sidecar.http1.framing import UpstreamProtocolError
from sidecar.http1.reader import HeadLimits, ResponseReader

if TYPE_CHECKING:
    from sidecar.http1.upstream_pool import EndpointPool
    from sidecar.resilience.circuit_breaker import CircuitBreaker
    from sidecar.tcp.relay import Relay

WRITE_HIGH_WATER = 256 * 1024
WRITE_LOW_WATER = 64 * 1024


class UpstreamUser(Protocol):
    """The exchange using a connection: receives what happens to it."""

    def flush_out(self) -> None: ...
    def on_upstream_error(self, exc: Exception) -> None: ...
    def on_upstream_lost(self, exc: Exception | None) -> None: ...
    def on_upstream_write_paused(self) -> None: ...
    def on_upstream_write_resumed(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "breaker",
        "closed",
        "idle_deadline",
        "pool",
        "reader",
        "relay",
        "requests",
        "transport",
        "user",
        "write_paused",
    )

    def __init__(self, pool: EndpointPool, limits: HeadLimits) -> None:
        self.pool = pool
        self.breaker: CircuitBreaker | None = None  # whose max_connections slot this connection holds
        self.reader = ResponseReader(limits)
        self.transport: asyncio.Transport | None = None
        self.user: UpstreamUser | None = None
        self.relay: Relay | None = None
        self.idle_deadline = 0.0
        self.requests = 0
        self.closed = False
        self.write_paused = False

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.transport = transport
        transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)

    def data_received(self, data: bytes) -> None:
        relay = self.relay
        if relay is not None:
            relay.from_upstream(data)
            return
        user = self.user
        if user is None:  # bytes on an idle connection: the upstream is confused, drop it
            self.close()
            return
        try:
            rest = self.reader.feed(data)
        except UpstreamProtocolError as exc:
            self.user = None
            self.close()
            user.on_upstream_error(exc)
            return
        user = self.user  # None once the response ended and the connection went back to the pool
        if user is not None:
            user.flush_out()
        if rest and self.relay is not None:
            self.relay.from_upstream(rest)  # tunnel bytes that came in the same read as the 101

    def eof_received(self) -> bool:
        relay = self.relay
        if relay is not None:
            return relay.upstream_eof()
        return False  # connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        relay = self.relay
        if relay is not None:
            self.relay = None
            relay.upstream_lost()
        user = self.user
        if user is not None:
            self.user = None
            user.on_upstream_lost(exc)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.relay is not None:
            self.relay.upstream_write_paused()
        elif self.user is not None:
            self.user.on_upstream_write_paused()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.relay is not None:
            self.relay.upstream_write_resumed()
        elif self.user is not None:
            self.user.on_upstream_write_resumed()

    # --- used by the pool and the exchange ---

    def close(self) -> None:
        """Close now (pending writes are flushed by the transport); the pool forgets it."""
        if not self.closed:
            self.closed = True
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.close()

    def abort(self) -> None:
        """Reset now, dropping pending writes (the exchange on it failed half way)."""
        if not self.closed:
            self.closed = True
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.abort()
