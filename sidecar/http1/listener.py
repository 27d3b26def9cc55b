"""An HTTP listener: the accepting socket, its open connections, and one periodic deadline sweep.

Per-request timers cost a heap entry and a cancel each; one sweep every ``sweep_interval_s``
over the listener's connections checks header, idle, route and tunnel-idle deadlines instead
(timeouts fire up to one interval late, which is fine at the second scale they are set at).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from sidecar.active import ConfigHolder
from sidecar.http1.downstream import DownstreamConnection
from sidecar.http1.reader import HeadLimits
from sidecar.http1.upstream_pool import UpstreamPools
from sidecar.http1.wire import RequestIds
from sidecar.metrics import ListenerStats
from sidecar.resilience.policy import Resilience
from sidecar.tcp.relay import Relay

log = logging.getLogger("sidecar.http1")


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """Client-side limits and timeouts shared by the HTTP listeners."""

    limits: HeadLimits = field(default_factory=HeadLimits)
    header_timeout_s: float = 10.0  # first byte → end of head (slowloris)
    idle_timeout_s: float = 300.0  # keep-alive connection with no request
    tunnel_idle_timeout_s: float = 3600.0  # an upgraded (WebSocket) connection with no traffic
    linger_s: float = 2.0  # reading and dropping input after an error answer, before closing
    sweep_interval_s: float = 0.25


class HttpContext:
    """What every connection of one listener shares."""

    def __init__(
        self,
        name: str,
        config: ConfigHolder,
        pools: UpstreamPools,
        settings: HttpSettings,
        stats: ListenerStats,
        *,
        rng: random.Random,
        demand: Callable[[str], Awaitable[bool]] | None = None,
        resilience: Resilience | None = None,
    ) -> None:
        self.name = name
        self.resilience = resilience  # sends mirror copies (None: mirrors are not sent)
        self.config = config
        self.pools = pools
        self.settings = settings
        self.stats = stats
        self.rng = rng
        self.demand = demand
        self.ids = RequestIds()
        self.connections: set[DownstreamConnection] = set()
        self.tunnels: set[Relay] = set()
        self.draining = False
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class HttpListener:
    """Accepts connections for one snapshot listener and runs its deadline sweep."""

    def __init__(self, context: HttpContext, host: str, port: int, *, reuse_port: bool = False) -> None:
        self.context = context
        self.host = host
        self.port = port
        self._reuse_port = reuse_port
        self._server: asyncio.Server | None = None
        self._sweep: asyncio.TimerHandle | None = None

    async def start(self, sock: socket.socket | None = None) -> None:
        loop = asyncio.get_running_loop()
        context = self.context
        if sock is not None:
            self._server = await loop.create_server(lambda: DownstreamConnection(context), sock=sock, backlog=1024)
        else:
            self._server = await loop.create_server(
                lambda: DownstreamConnection(context),
                self.host,
                self.port,
                reuse_address=True,
                reuse_port=self._reuse_port or None,
                backlog=1024,
            )
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._schedule()

    def _schedule(self) -> None:
        self._sweep = asyncio.get_running_loop().call_later(self.context.settings.sweep_interval_s, self._tick)

    def _tick(self) -> None:
        now = time.monotonic()
        context = self.context
        for conn in list(context.connections):
            conn.check_deadline(now)
        for relay in list(context.tunnels):
            if relay.idle_check(now):
                context.tunnels.discard(relay)
        self._schedule()

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()

    def drain(self) -> None:
        """Stop accepting; idle keep-alive connections close, busy ones after their response."""
        self.context.draining = True
        self.stop_accepting()
        for conn in list(self.context.connections):
            conn.drain()

    @property
    def busy(self) -> int:
        """Connections still open (requests in flight, or tunnels)."""
        return len(self.context.connections)

    async def close(self) -> None:
        """Close everything now (after a drain, or on a hard stop)."""
        self.stop_accepting()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for conn in list(self.context.connections):
            conn.abort()
        for relay in list(self.context.tunnels):
            relay.abort()
        await self.context.cancel_tasks()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
