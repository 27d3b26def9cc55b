"""UDP transport: one datagram in, at most one datagram out.

Replies that need no upstream (cache hits, our zones, errors) are sent from ``datagram_received``
itself; only real forwards become tasks, at most ``max_pending`` at once (beyond that: REFUSED).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any, Final, cast

from dnsserver.handler import DnsHandler, Pending

MAX_PENDING: Final = 4096
RECV_BUFFER: Final = 4 << 20  # room for bursts while the loop is busy


class UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, handler: DnsHandler, *, max_pending: int = MAX_PENDING) -> None:
        self._handler = handler
        self._respond = handler.respond
        self._max_pending = max_pending
        self._transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        result = self._respond(data, False)
        if result is None:
            return
        transport = self._transport
        if transport is None:
            return
        if result.__class__ is bytes:
            transport.sendto(result, addr)
            return
        assert isinstance(result, Pending)
        if len(self._tasks) >= self._max_pending:
            refused = self._handler.overloaded(data)
            if refused is not None:
                transport.sendto(refused, addr)
            return
        task = asyncio.get_running_loop().create_task(self._forward(result, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward(self, pending: Pending, addr: Any) -> None:
        data = await pending.result()
        transport = self._transport
        if data is not None and transport is not None and not transport.is_closing():
            transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors for earlier replies (client went away): nothing to do

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        for task in self._tasks:
            task.cancel()
        if not self._closed.done():
            self._closed.set_result(None)

    async def close(self) -> None:
        """Close the socket and wait until it is released; cancel pending forwards."""
        if self._transport is not None:
            self._transport.close()
            await self._closed
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
