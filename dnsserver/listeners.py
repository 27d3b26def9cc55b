"""Binding the DNS transports: UDP and TCP on the same address and port."""

from __future__ import annotations

import asyncio
import errno
from typing import Final

from dnsserver.handler import DnsHandler
from dnsserver.tcp import FRAME_TIMEOUT, IDLE_TIMEOUT, MAX_OUTSTANDING, TcpProtocol
from dnsserver.udp import UdpServer, open_udp

_BIND_ATTEMPTS: Final = 20


class Listeners:
    """The bound UDP endpoint and TCP server; ``port`` is the real port (also when 0 was asked)."""

    def __init__(
        self,
        host: str,
        port: int,
        udp_server: UdpServer,
        tcp_server: asyncio.Server,
        tcp_connections: set[TcpProtocol],
    ) -> None:
        self.host = host
        self.port = port
        self._udp_server = udp_server
        self._tcp_server = tcp_server
        self._tcp_connections = tcp_connections

    @property
    def tcp_connections(self) -> int:
        return len(self._tcp_connections)

    async def close(self) -> None:
        """Stop listening, drop open TCP connections and pending forwards."""
        self._tcp_server.close()
        for conn in list(self._tcp_connections):
            conn.abort()
        await self._udp_server.close()
        await self._tcp_server.wait_closed()


async def start_listeners(
    handler: DnsHandler,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    tcp_idle_timeout: float = IDLE_TIMEOUT,
    tcp_frame_timeout: float = FRAME_TIMEOUT,
    tcp_max_outstanding: int = MAX_OUTSTANDING,
    tcp_max_connections: int = 10_000,
) -> Listeners:
    """Serve ``handler`` over UDP and TCP on ``host:port`` (port 0: a free port, the same for both).

    UDP binds first; TCP then binds the same port. With port 0, a TCP port already taken means
    another UDP port is tried (up to 20 times); with a fixed port the OSError propagates.
    """
    loop = asyncio.get_running_loop()
    connections: set[TcpProtocol] = set()
    last_error: OSError | None = None
    for _ in range(_BIND_ATTEMPTS if port == 0 else 1):
        udp_server = await open_udp(handler, host, port)
        bound: int = udp_server.sockname[1]
        try:
            server = await loop.create_server(
                lambda: TcpProtocol(
                    handler,
                    connections,
                    idle_timeout=tcp_idle_timeout,
                    frame_timeout=tcp_frame_timeout,
                    max_outstanding=tcp_max_outstanding,
                    max_connections=tcp_max_connections,
                ),
                host,
                bound,
                reuse_address=True,
            )
        except OSError as exc:
            await udp_server.close()
            if port != 0 or exc.errno != errno.EADDRINUSE:
                raise
            last_error = exc
            continue
        return Listeners(host, bound, udp_server, server, connections)
    assert last_error is not None
    raise last_error
