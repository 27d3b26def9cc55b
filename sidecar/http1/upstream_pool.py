"""Keep-alive connection pools, one per upstream endpoint address, shared by every config.

Pools are keyed by (host, port), not by cluster or snapshot: an endpoint that stays in the
config across a swap keeps its warm connections, and one that leaves is closed as its
connections go idle. Acquisition is callback-based so the common case (an idle connection
is there) costs no task or future: ``acquire`` returns the connection at once or arranges for
``waiter.on_upstream_ready`` / ``on_upstream_failed`` to be called later.

Rules:
- Idle connections are reused last-in first-out (the warmest socket, and the others age out).
- At most ``max_connections`` per endpoint (open plus connecting); further requests wait in the
  endpoint's FIFO queue and are handed the next released connection; the route timeout bounds
  the wait.
- An idle connection is closed after the cluster's idle timeout; a periodic sweep does this
  (one timer for all, not one per connection).
- A connection that served the cluster's ``max_requests_per_connection`` requests (Envoy's field
  of that name; 0: unlimited) is closed when released instead of being reused or handed on; a
  waiter of its endpoint then opens a fresh one.
- Circuit breaker (the cluster's, when the caller passes it): a queued waiter holds a
  ``max_pending_requests`` slot until it is served or gives up (``release_pending``); a refused
  slot calls ``waiter.on_pending_overflow`` at once. Opening a connection takes a
  ``max_connections`` slot, given back when the connection closes.
- ``max_connections`` is the cluster's, across all its endpoints (Envoy): a request refused a
  connection slot waits in the *cluster's* FIFO queue (one per breaker, kept here only while
  non-empty), whichever endpoint it targets. It proceeds when any connection holding one of the
  cluster's slots closes (the freed slot opens a connection to the waiter's own endpoint), or is
  released while the first waiter is queued: the connection is handed over when the waiter
  targets the same endpoint, else closed so its slot serves that waiter. An idle connection of
  the cluster is closed when a request starts to wait, for the same reason. Unlike Envoy, an
  endpoint without connections gets none past the limit: the limit holds exactly.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Callable
from typing import Protocol

from sidecar.http1.reader import HeadLimits
from sidecar.http1.upstream import UpstreamConnection
from sidecar.resilience.circuit_breaker import CircuitBreaker

log = logging.getLogger("sidecar.http1.pool")

SWEEP_INTERVAL_S = 1.0
PRUNE_SLACK = 16  # dead entries (waiters that gave up) tolerated in a queue before it is compacted


class PoolWaiter(Protocol):
    """Who asked for a connection. ``wants_upstream`` turns False if it gave up (timeout, client gone).

    ``pending_on``: the breaker whose pending slot the waiter holds while queued (set by the pool;
    whoever clears it first, the pool on serving or the waiter on giving up, releases the slot).
    """

    wants_upstream: bool
    pending_on: CircuitBreaker | None

    def on_upstream_ready(self, conn: UpstreamConnection, reused: bool) -> None: ...
    def on_upstream_failed(self, kind: str, message: str) -> None: ...
    def on_pending_overflow(self) -> None: ...


# (waiter, its endpoint's pool, connect timeout, per-endpoint connection limit, the cluster's breaker)
Waiting = tuple[PoolWaiter, "EndpointPool", float, int, CircuitBreaker | None]


class EndpointPool:
    """Connections to one address. Counters feed /metrics and /clusters."""

    __slots__ = (
        "connect_failures",
        "created",
        "host",
        "idle",
        "live",
        "on_slot_freed",
        "port",
        "reused",
        "size",
        "waiters",
    )

    def __init__(self, host: str, port: int, on_slot_freed: Callable[[CircuitBreaker], None] | None = None) -> None:
        self.host = host
        self.port = port
        self.idle: list[UpstreamConnection] = []
        self.live: set[UpstreamConnection] = set()
        self.size = 0  # live + connecting
        self.waiters: deque[Waiting] = deque()  # waiting for this endpoint's own limit
        self.created = 0
        self.reused = 0
        self.connect_failures = 0
        self.on_slot_freed = on_slot_freed  # the owner's: a cluster connection slot came back

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def active(self) -> int:
        return len(self.live) - len(self.idle)

    def forget(self, conn: UpstreamConnection) -> None:
        """A connection closed: drop it from the books (idempotent)."""
        if conn in self.live:
            self.live.discard(conn)
            self.size -= 1
            if conn in self.idle:
                self.idle.remove(conn)
        breaker = conn.breaker
        if breaker is not None:  # its max_connections slot goes back once
            conn.breaker = None
            breaker.release_connection()
            if self.on_slot_freed is not None:
                self.on_slot_freed(breaker)


class UpstreamPools:
    """Every endpoint pool of the process, with connect and idle-timeout handling.

    ``queued``: per breaker (cluster), the requests waiting for a cluster connection slot; a
    cluster is in it only while someone waits, so the hot path tests one empty dict.
    """

    def __init__(self, limits: HeadLimits, clock: Callable[[], float]) -> None:
        self._limits = limits
        self._clock = clock
        self.pools: dict[tuple[str, int], EndpointPool] = {}
        self.queued: dict[CircuitBreaker, deque[Waiting]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._closing = False
        self._connects: set[asyncio.Task[None]] = set()
        # The TLS context for a new connection to (host, port), None for plaintext (set by the server).
        self.tls_for: Callable[[str, int], ssl.SSLContext | None] | None = None
        self.tls_check: Callable[[str, int, asyncio.BaseTransport], str | None] | None = None  # the server's identity

    def pool(self, host: str, port: int) -> EndpointPool:
        key = (host, port)
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = EndpointPool(host, port, self.slot_freed)
        return pool

    def acquire(
        self,
        pool: EndpointPool,
        waiter: PoolWaiter,
        connect_timeout_s: float,
        max_connections: int,
        breaker: CircuitBreaker | None = None,
    ) -> UpstreamConnection | None:
        """An idle connection now, or None and a later callback on ``waiter``."""
        idle = pool.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                pool.reused += 1
                return conn
        if breaker is not None and self.queued and breaker in self.queued:
            # Others of this cluster wait for a connection slot already: queue behind them (FIFO).
            self._enqueue(self.queued[breaker], (waiter, pool, connect_timeout_s, max_connections, breaker))
            self._serve_cluster(breaker)  # in case the limit was raised since they queued
            return None
        return self._open_or_wait(pool, waiter, connect_timeout_s, max_connections, breaker)

    def _open_or_wait(
        self,
        pool: EndpointPool,
        waiter: PoolWaiter,
        connect_timeout_s: float,
        max_connections: int,
        breaker: CircuitBreaker | None,
    ) -> UpstreamConnection | None:
        """No idle connection: open one if both limits allow, else wait where the limit was hit."""
        if pool.size < max_connections and not self._closing:
            if breaker is None or breaker.try_acquire_connection():
                pool.size += 1
                task = asyncio.get_running_loop().create_task(self._connect(pool, waiter, connect_timeout_s, breaker))
                self._connects.add(task)
                task.add_done_callback(self._connects.discard)
                return None
            assert breaker is not None
            queue = self.queued.get(breaker)
            if queue is None:
                queue = self.queued[breaker] = deque()
            if self._enqueue(queue, (waiter, pool, connect_timeout_s, max_connections, breaker)):
                self._free_idle_slot(breaker)
            return None
        self._enqueue(pool.waiters, (waiter, pool, connect_timeout_s, max_connections, breaker))
        return None

    def _enqueue(self, queue: deque[Waiting], entry: Waiting) -> bool:
        """Append ``entry`` holding a pending slot of its breaker; False (and the fast 503) when refused."""
        waiter, breaker = entry[0], entry[4]
        if breaker is not None:
            if not breaker.try_acquire_pending():
                if not self.queued.get(breaker, True):
                    del self.queued[breaker]
                waiter.on_pending_overflow()
                return False
            waiter.pending_on = breaker
            if len(queue) > 2 * breaker.limits.max_pending_requests + PRUNE_SLACK:
                live = [item for item in queue if item[0].wants_upstream]  # waiters that gave up leave
                queue.clear()
                queue.extend(live)
        queue.append(entry)
        return True

    def release(self, conn: UpstreamConnection, idle_timeout_s: float, max_requests: int = 0) -> None:
        """Give back a connection whose last exchange ended cleanly (``max_requests``: 0 unlimited)."""
        conn.user = None
        if conn.closed:
            return
        if max_requests and conn.requests >= max_requests:  # served its share: retire it
            self.discard(conn)
            return
        pool = conn.pool
        while pool.waiters:
            waiter = pool.waiters.popleft()[0]
            release_pending_slot(waiter)
            if waiter.wants_upstream:
                pool.reused += 1
                waiter.on_upstream_ready(conn, True)
                return
        if self.queued and conn.breaker is not None and self._hand_to_cluster(conn, conn.breaker):
            return
        if self._closing or idle_timeout_s <= 0:
            conn.close()
            return
        conn.idle_deadline = self._clock() + idle_timeout_s
        pool.idle.append(conn)
        if self._sweeper is None:
            self._schedule_sweep()

    def _hand_to_cluster(self, conn: UpstreamConnection, breaker: CircuitBreaker) -> bool:
        """A connection of a cluster with requests waiting for a slot came free: it serves the first.

        Returns False when nobody of that cluster waits (the connection goes idle)."""
        queue = self.queued.get(breaker)
        if queue is None:
            return False
        handled = False
        while queue:
            waiter, pool = queue[0][0], queue[0][1]
            if not waiter.wants_upstream:
                queue.popleft()
                continue
            handled = True
            if pool is conn.pool:
                queue.popleft()
                release_pending_slot(waiter)
                pool.reused += 1
                waiter.on_upstream_ready(conn, True)
            else:
                conn.close()  # its slot opens a connection to the endpoint the waiter was sent to
            break
        if not queue and self.queued.get(breaker) is queue:
            del self.queued[breaker]
        return handled

    def _free_idle_slot(self, breaker: CircuitBreaker) -> None:
        """A request waits for a slot of ``breaker``: close an idle connection holding one (oldest first)."""
        for pool in self.pools.values():
            for conn in pool.idle:
                if conn.breaker is breaker:
                    conn.close()  # forget → slot_freed → the queue is served
                    return

    def slot_freed(self, breaker: CircuitBreaker) -> None:
        """A connection holding a slot of ``breaker`` closed (or failed to open)."""
        if self.queued and breaker in self.queued:
            self._serve_cluster(breaker)

    def _serve_cluster(self, breaker: CircuitBreaker) -> None:
        """Slots of ``breaker`` are free: let its waiters proceed, in order, while they last."""
        queue = self.queued.get(breaker)
        while queue and breaker.connections < breaker.limits.max_connections:
            waiter, pool, timeout_s, max_connections, _ = queue.popleft()
            release_pending_slot(waiter)
            if waiter.wants_upstream:
                conn = self._open_or_wait(pool, waiter, timeout_s, max_connections, breaker)
                if conn is not None:
                    waiter.on_upstream_ready(conn, True)
        if queue is not None and not queue and self.queued.get(breaker) is queue:
            del self.queued[breaker]

    def discard(self, conn: UpstreamConnection) -> None:
        """Close a connection that cannot be reused and let a waiter open a new one."""
        conn.user = None
        conn.close()
        self._serve_waiters(conn.pool)

    async def _connect(
        self, pool: EndpointPool, waiter: PoolWaiter, timeout_s: float, breaker: CircuitBreaker | None
    ) -> None:
        loop = asyncio.get_running_loop()
        limits = self._limits
        try:
            async with asyncio.timeout(timeout_s):
                tls = self.tls_for(pool.host, pool.port) if self.tls_for is not None else None  # mTLS: sidecar.security
                _, conn = await loop.create_connection(
                    lambda: UpstreamConnection(pool, limits), pool.host, pool.port, ssl=tls
                )
        except TimeoutError:
            self._connect_failed(pool, waiter, "connect_timeout", f"upstream connect timeout ({timeout_s:g}s)", breaker)
            return
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            self._connect_failed(pool, waiter, "connect_failure", f"upstream connect error: {reason}", breaker)
            return
        except BaseException:
            if breaker is not None:
                breaker.release_connection()
            raise
        if tls is not None and self.tls_check is not None and conn.transport is not None:
            problem = self.tls_check(pool.host, pool.port, conn.transport)
            if problem is not None:  # not the mesh workload expected there
                conn.transport.abort()
                self._connect_failed(pool, waiter, "connect_failure", f"upstream TLS: {problem}", breaker)
                return
        pool.created += 1
        pool.live.add(conn)
        if conn.closed:  # reset right after connecting
            pool.live.discard(conn)
            pool.size -= 1
            message = "upstream connection closed while connecting"
            self._connect_failed(pool, waiter, "connect_failure", message, breaker, False)
            return
        conn.breaker = breaker  # its max_connections slot, given back when it closes (EndpointPool.forget)
        if waiter.wants_upstream:
            waiter.on_upstream_ready(conn, False)
        else:
            self.release(conn, 5.0)

    def _connect_failed(
        self,
        pool: EndpointPool,
        waiter: PoolWaiter,
        kind: str,
        message: str,
        breaker: CircuitBreaker | None,
        counted: bool = True,
    ) -> None:
        if counted:
            pool.size -= 1
        pool.connect_failures += 1
        if breaker is not None:
            breaker.release_connection()
        if waiter.wants_upstream:
            waiter.on_upstream_failed(kind, message)
        if breaker is not None:
            self.slot_freed(breaker)
        self._serve_waiters(pool)

    def _serve_waiters(self, pool: EndpointPool) -> None:
        """Room was freed below the endpoint's limit: start a connect for the first live waiter."""
        while pool.waiters and pool.size < pool_limit(pool):
            waiter, _, timeout_s, max_connections, breaker = pool.waiters.popleft()
            release_pending_slot(waiter)
            if waiter.wants_upstream:
                conn = self.acquire(pool, waiter, timeout_s, max_connections, breaker)
                if conn is not None:
                    waiter.on_upstream_ready(conn, True)
                return

    def _schedule_sweep(self) -> None:
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP_INTERVAL_S, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = self._clock()
        any_idle = False
        awaited = {entry[1] for queue in self.queued.values() for entry in queue}
        for key, pool in list(self.pools.items()):
            for conn in [c for c in pool.idle if c.idle_deadline <= now]:
                conn.close()
            any_idle = any_idle or bool(pool.idle)
            if pool.size == 0 and not pool.waiters and pool not in awaited:
                del self.pools[key]
        if any_idle and not self._closing:
            self._schedule_sweep()

    def close_idle(self) -> None:
        """Close every idle connection now (drain)."""
        for pool in list(self.pools.values()):
            for conn in list(pool.idle):
                conn.close()

    async def close(self) -> None:
        """Stop: close idle connections and refuse new ones; connections in use close on release."""
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for task in list(self._connects):
            task.cancel()
        await asyncio.gather(*self._connects, return_exceptions=True)
        self.close_idle()


def release_pending_slot(waiter: PoolWaiter) -> None:
    """The waiter left the queue (served, or gave up): its breaker's pending slot goes back once."""
    breaker = waiter.pending_on
    if breaker is not None:
        waiter.pending_on = None
        breaker.release_pending()


def pool_limit(pool: EndpointPool) -> int:
    """The connection limit the first queued waiter asked for (waiters carry the endpoint's limit)."""
    return pool.waiters[0][3] if pool.waiters else 0
