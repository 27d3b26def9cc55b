"""L4 listeners: each accepted connection is relayed to one endpoint of the listener's cluster.

The ambassador pattern: ``--upstream db=15432`` gives the app ``localhost:15432``, and every
connection to it goes to a healthy instance of ``db``. Reading from the client is paused until
the upstream connection is up (so early bytes wait in the kernel, not in our memory). The
endpoint comes from the cluster's balancer under the active config of the moment of accept
(hash key: the client address, for the hashing policies). A failed connect is tried once more
on another endpoint, then the client connection is closed. Idle connections (no bytes either
way for the cluster's idle timeout) are closed by the listener's sweep.

A listener with SNI routes (a gateway's ``PASSTHROUGH`` server) reads the client's TLS ClientHello
first (``sidecar.tcp.sni``; TLS is not terminated: the bytes are replayed to the upstream), and
its server name picks the cluster: exact name, then ``*.suffix``, then ``*``. No server name, no
match, more than 64 KiB or 10 s without a complete ClientHello: the connection is closed.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from typing import cast

from lb import NO_HINTS, Endpoint, PickContext
from sidecar.active import ClusterRuntime, ConfigHolder
from sidecar.listening import SweptListener
from sidecar.metrics import TcpStats
from sidecar.tcp.relay import Relay
from sidecar.tcp.sni import NEED_MORE, client_hello_sni
from sidecar.tls_termination import match_rank

log = logging.getLogger("sidecar.tcp")

CONNECT_ATTEMPTS = 2
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
SWEEP_INTERVAL_S = 1.0
SNI_TIMEOUT_S = 10.0

_monotonic = time.monotonic


class TcpContext:
    def __init__(self, name: str, config: ConfigHolder, stats: TcpStats) -> None:
        self.name = name
        self.config = config
        self.stats = stats
        self.connections: set[TcpDownstream] = set()
        self.draining = False
        self.tls_for: Callable[[str, int], ssl.SSLContext | None] | None = None  # outbound mTLS (sidecar.security)
        self.tls_check: Callable[[str, int, asyncio.BaseTransport], str | None] | None = None


class TcpUpstream(asyncio.Protocol):
    __slots__ = ("relay", "transport")

    def __init__(self) -> None:
        self.relay: Relay | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)

    def data_received(self, data: bytes) -> None:
        if self.relay is not None:
            self.relay.from_upstream(data)

    def eof_received(self) -> bool:
        return self.relay.upstream_eof() if self.relay is not None else False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.relay is not None:
            self.relay.upstream_lost()

    def pause_writing(self) -> None:
        if self.relay is not None:
            self.relay.upstream_write_paused()

    def resume_writing(self) -> None:
        if self.relay is not None:
            self.relay.upstream_write_resumed()


class TcpDownstream(asyncio.Protocol):
    __slots__ = (
        "_client_ip",
        "_cluster",
        "_connect",
        "_early",
        "_endpoint",
        "_eof_early",
        "_sni",
        "_started",
        "closed",
        "context",
        "relay",
        "transport",
        "write_paused",
    )

    def __init__(self, context: TcpContext) -> None:
        self.context = context
        self.transport: asyncio.Transport | None = None
        self.relay: Relay | None = None
        self.closed = False
        self.write_paused = False
        self._eof_early = False
        self._early: list[bytes] = []  # bytes that came before the upstream was connected
        self._connect: asyncio.Task[None] | None = None
        self._cluster: ClusterRuntime | None = None
        self._endpoint: Endpoint | None = None
        self._started = 0.0
        self._sni: tuple[tuple[tuple[str, ...], ClusterRuntime], ...] = ()  # waiting for the ClientHello
        self._client_ip = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)
        self.transport.pause_reading()
        context = self.context
        context.connections.add(self)
        context.stats.total += 1
        context.stats.active += 1
        self._started = _monotonic()
        runtime = context.config.current.listeners.get(context.name)
        cluster = runtime.cluster if runtime is not None else None
        peer = self.transport.get_extra_info("peername")
        self._client_ip = str(peer[0]) if peer else ""
        if cluster is None and runtime is not None and runtime.sni:
            self._sni = runtime.sni
            self.transport.resume_reading()  # the ClientHello decides where the connection goes
            return
        if cluster is None:
            log.warning("tcp listener has no cluster in the active config", extra={"listener": context.name})
            self.transport.close()
            return
        self._start(cluster)

    def _start(self, cluster: ClusterRuntime) -> None:
        self._cluster = cluster
        self._connect = asyncio.get_running_loop().create_task(self._open(cluster, self._client_ip))

    def _route_by_sni(self) -> None:
        """With the ClientHello complete, the cluster for its server name (or the connection closes)."""
        assert self.transport is not None
        name = client_hello_sni(b"".join(self._early))
        if name is NEED_MORE:
            return
        routes, self._sni = self._sni, ()
        best: ClusterRuntime | None = None
        best_rank = 0
        if isinstance(name, str):
            for names, cluster in routes:
                rank = max((match_rank(name, pattern) for pattern in names), default=0)
                if rank > best_rank:
                    best, best_rank = cluster, rank
        if best is None:
            self.context.stats.connect_failures += 1
            log.debug("no route for the connection's SNI", extra={"listener": self.context.name, "sni": name})
            self.transport.close()
            return
        self.transport.pause_reading()
        self._start(best)

    async def _open(self, cluster: ClusterRuntime, client_ip: str) -> None:
        loop = asyncio.get_running_loop()
        tried: set[str] = set()
        hash_key = client_ip.encode() if client_ip else None
        for _ in range(CONNECT_ATTEMPTS):
            ctx = PickContext(hash_key=hash_key, exclude=frozenset(tried)) if tried or hash_key else NO_HINTS
            endpoint = cluster.balancer.pick(ctx)
            if endpoint is None:
                break
            tried.add(endpoint.key)
            cluster.load.start(endpoint.key)  # counted from the pick, so concurrent accepts see it
            try:
                async with asyncio.timeout(cluster.connect_timeout_s):
                    tls_for = self.context.tls_for
                    tls = tls_for(endpoint.host, endpoint.port) if tls_for is not None else None
                    up_transport, upstream = await loop.create_connection(
                        TcpUpstream, endpoint.host, endpoint.port, ssl=tls
                    )
            except asyncio.CancelledError:  # the client left while we were connecting
                cluster.load.finish(endpoint.key, _monotonic() - self._started, False)
                raise
            except (OSError, TimeoutError) as exc:
                cluster.load.finish(endpoint.key, _monotonic() - self._started, False)
                self.context.stats.connect_failures += 1
                cluster.errors.add("connect_timeout" if isinstance(exc, TimeoutError) else "connect_failure")
                log.debug("tcp upstream connect failed", extra={"endpoint": endpoint.key, "error": str(exc)})
                continue
            tls_check = self.context.tls_check
            problem = tls_check(endpoint.host, endpoint.port, up_transport) if tls and tls_check else None
            if problem is not None:  # not the mesh workload expected there: try another endpoint
                up_transport.abort()
                cluster.load.finish(endpoint.key, _monotonic() - self._started, False)
                self.context.stats.connect_failures += 1
                cluster.errors.add("connect_failure")
                log.warning("tcp upstream refused", extra={"endpoint": endpoint.key, "error": problem})
                continue
            if self.closed or self.transport is None:
                cluster.load.finish(endpoint.key, _monotonic() - self._started, False)
                up_transport.close()
                return
            self._attach(cluster, endpoint, up_transport, upstream)
            return
        if self.transport is not None:
            self.transport.close()

    def _attach(
        self, cluster: ClusterRuntime, endpoint: Endpoint, up_transport: asyncio.Transport, upstream: TcpUpstream
    ) -> None:
        assert self.transport is not None
        self._endpoint = endpoint
        relay = Relay(
            self.transport, up_transport, idle_timeout_s=cluster.idle_timeout_s, now=_monotonic(), on_close=None
        )
        self.relay = relay
        upstream.relay = relay
        for data in self._early:
            relay.from_downstream(data)
        self._early = []
        if self._eof_early:
            relay.downstream_eof()
        else:
            self.transport.resume_reading()
        if self.write_paused:
            relay.downstream_write_paused()

    # --- asyncio.Protocol ---

    def data_received(self, data: bytes) -> None:
        relay = self.relay
        if relay is not None:
            relay.from_downstream(data)
        elif self._sni:
            self._early.append(data)
            self._route_by_sni()
        else:  # reading was paused at accept, but a read may already have been under way
            self._early.append(data)
            if self.transport is not None:
                self.transport.pause_reading()

    def eof_received(self) -> bool:
        relay = self.relay
        if relay is not None:
            return relay.downstream_eof()
        self._eof_early = True  # the client sent nothing more before we connected
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        context = self.context
        context.connections.discard(self)
        context.stats.active -= 1
        if self._connect is not None and not self._connect.done():
            self._connect.cancel()
        relay = self.relay
        if relay is not None:
            relay.downstream_lost()
            context.stats.bytes_rx += relay.bytes_down_to_up
            context.stats.bytes_tx += relay.bytes_up_to_down
            cluster, endpoint = self._cluster, self._endpoint
            if cluster is not None and endpoint is not None:
                cluster.load.finish(endpoint.key, _monotonic() - self._started, True)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.relay is not None:
            self.relay.downstream_write_paused()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.relay is not None:
            self.relay.downstream_write_resumed()

    # --- sweep and shutdown ---

    def idle_check(self, now: float) -> None:
        if self.relay is not None:
            self.relay.idle_check(now)
        elif self._sni and now - self._started > SNI_TIMEOUT_S and self.transport is not None:
            self.transport.close()  # no complete ClientHello in time

    def abort(self) -> None:
        if self.relay is not None:
            self.relay.abort()
        elif self.transport is not None:
            self.transport.abort()


class TcpListener(SweptListener):
    """Accepts connections for one L4 listener and sweeps idle relays."""

    def __init__(self, context: TcpContext, host: str, port: int, *, reuse_port: bool = False) -> None:
        super().__init__(host, port, SWEEP_INTERVAL_S, reuse_port=reuse_port)
        self.context = context

    def protocol(self) -> TcpDownstream:
        return TcpDownstream(self.context)

    def sweep(self, now: float) -> None:
        for conn in list(self.context.connections):
            conn.idle_check(now)

    def drain(self) -> None:
        """Stop accepting; open connections run on until they end (or the drain deadline)."""
        self.context.draining = True
        self.stop_accepting()

    @property
    def busy(self) -> int:
        return len(self.context.connections)

    async def close(self) -> None:
        self.stop_sweeping()
        for conn in list(self.context.connections):
            conn.abort()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
