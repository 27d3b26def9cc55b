"""What the HTTP and L4 listeners share: binding (or an inherited SO_REUSEPORT socket) and a
periodic sweep, one timer per listener instead of one per connection or request."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sidecar.security.wiring import InboundSecurity
    from sidecar.tls_termination import TlsTermination


class SweptListener:
    """Accepts connections with ``protocol()`` and calls ``sweep(now)`` every ``sweep_interval_s``."""

    def __init__(self, host: str, port: int, sweep_interval_s: float, *, reuse_port: bool = False) -> None:
        self.host = host
        self.port = port
        self._sweep_interval_s = sweep_interval_s
        self._reuse_port = reuse_port
        self._server: asyncio.Server | None = None
        self._sweep: asyncio.TimerHandle | None = None
        # Set on inbound listeners: picks the protocol per accepted connection (mTLS, authorization).
        self.inbound_security: InboundSecurity | None = None
        # Set on HTTPS listeners (a gateway's): the TLS they terminate (sidecar.tls_termination).
        self.tls: TlsTermination | None = None

    def protocol(self) -> asyncio.Protocol:
        raise NotImplementedError

    def sweep(self, now: float) -> None:
        raise NotImplementedError

    def renew_connections(self) -> None:
        """The port's mTLS mode or authorization policies changed: connections accepted under the old
        ones must not go on serving requests (Envoy drains a listener's old filter chains the same way).
        The L4 listener keeps its connections: a TCP stream has no request boundary to stop at."""

    async def start(self, sock: socket.socket | None = None) -> None:
        loop = asyncio.get_running_loop()
        factory = self.protocol if self.inbound_security is None else self.inbound_security.accept
        context = None if self.tls is None else self.tls.context
        if sock is not None:
            self._server = await loop.create_server(factory, sock=sock, backlog=1024, ssl=context)
        else:
            self._server = await loop.create_server(
                factory,
                self.host,
                self.port,
                reuse_address=True,
                reuse_port=self._reuse_port or None,
                backlog=1024,
                ssl=context,
            )
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._schedule()

    def _schedule(self) -> None:
        self._sweep = asyncio.get_running_loop().call_later(self._sweep_interval_s, self._tick)

    def _tick(self) -> None:
        self.sweep(time.monotonic())
        self._schedule()

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()

    def stop_sweeping(self) -> None:
        self.stop_accepting()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
