"""An HTTP listener: the accepting socket, its open connections, and one periodic deadline sweep.

Per-request timers cost a heap entry and a cancel each; one sweep every ``sweep_interval_s``
over the listener's connections checks header, idle, route and tunnel-idle deadlines instead
(timeouts fire up to one interval late, which is fine at the second scale they are set at).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from sidecar.active import ConfigHolder
from sidecar.http1.downstream import DownstreamConnection
from sidecar.http1.reader import HeadLimits
from sidecar.http1.upstream_pool import UpstreamPools
from sidecar.http1.wire import RequestIds
from sidecar.listening import SweptListener
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


class HttpListener(SweptListener):
    """Accepts connections for one snapshot listener and runs its deadline sweep."""

    def __init__(self, context: HttpContext, host: str, port: int, *, reuse_port: bool = False) -> None:
        super().__init__(host, port, context.settings.sweep_interval_s, reuse_port=reuse_port)
        self.context = context

    def protocol(self) -> DownstreamConnection:
        return DownstreamConnection(self.context)

    def sweep(self, now: float) -> None:
        context = self.context
        for conn in list(context.connections):
            conn.check_deadline(now)
        for relay in list(context.tunnels):
            if relay.idle_check(now):
                context.tunnels.discard(relay)

    def renew_connections(self) -> None:
        """Idle keep-alive connections close, busy ones after their response; clients reconnect and are
        accepted under the port's new security (``SweptListener.renew_connections``)."""
        for conn in list(self.context.connections):
            conn.drain()

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
        self.stop_sweeping()
        for conn in list(self.context.connections):
            conn.abort()
        for relay in list(self.context.tunnels):
            relay.abort()
        await self.context.cancel_tasks()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
