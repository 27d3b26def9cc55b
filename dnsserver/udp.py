"""UDP transport: one datagram in, at most one datagram out.

The socket is read directly: ``loop.add_reader`` calls ``_readable``, which takes datagrams with
``socket.recvfrom`` (up to ``GROUP`` x ``GROUPS`` per wake-up, then the loop runs its other
callbacks), answers each with the handler, and sends the replies that need no upstream (cache
hits, our zones, errors) with ``socket.sendto``, a group at a time. Measured on loopback with
dnsperf and the same handler (CPU time of the server; see bench/dns_bench.py):

- why not an asyncio ``DatagramProtocol``: the transport's own work per datagram (uvloop: a
  context switch per callback, an address-cache lookup per send, state checks) cost 2-5 µs of
  the ~20 µs of a cache miss;
- why groups: a ``sendto`` hands the reply to the client's socket and, when the client is
  asleep, wakes it; that wake-up ran on our CPU (``perf``: ~12 % of the server's time under
  ``sock_def_readable``, an inter-processor interrupt in a VM). Replies sent back to back wake a
  client once per group instead of once per reply: 15-30 % less CPU per query under load. A
  reply waits at most for the rest of its group (``GROUP`` queries, well under a millisecond);
  when only one query is waiting the group is that one query.

Only real forwards become tasks, at most ``max_pending`` at once (beyond that: REFUSED). A reply
the kernel will not take right now (send buffer full) waits in a bounded backlog that is flushed
when the socket is writable; beyond ``MAX_BACKLOG`` waiting replies, more are dropped (the client
retries, as after any loss of a UDP datagram).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from typing import Any, Final

from dnsserver.handler import DnsHandler, Pending

MAX_PENDING: Final = 4096
RECV_BUFFER: Final = 4 << 20  # room for bursts while the loop is busy
GROUP: Final = 16  # queries answered before their replies are sent
GROUPS: Final = 4  # groups per wake-up, then the loop runs other callbacks (TCP, timers, the watcher)
MAX_DATAGRAM: Final = 65535
MAX_BACKLOG: Final = 4096
_AGAIN: Final = (BlockingIOError, InterruptedError)


class UdpServer:
    """Answers the datagrams arriving on ``sock`` (bound, non-blocking) with ``handler``."""

    def __init__(self, handler: DnsHandler, sock: socket.socket, *, max_pending: int = MAX_PENDING) -> None:
        self._loop = asyncio.get_running_loop()
        self._handler = handler
        self._respond = handler.respond
        self._sock = sock
        self._fd = sock.fileno()
        self._max_pending = max_pending
        self._tasks: set[asyncio.Task[None]] = set()
        self._backlog: deque[tuple[bytes, Any]] = deque()
        self._closed = False
        self._loop.add_reader(self._fd, self._readable)

    @property
    def sockname(self) -> Any:
        return self._sock.getsockname()

    def _readable(self) -> None:
        recvfrom, respond = self._sock.recvfrom, self._respond
        for _ in range(GROUPS):
            replies: list[tuple[bytes, Any]] = []
            for _ in range(GROUP):
                try:
                    data, addr = recvfrom(MAX_DATAGRAM)
                except _AGAIN:
                    self._send_all(replies)
                    return
                except OSError:  # an ICMP error for an earlier reply (client went away): nothing to do
                    continue
                result = respond(data, False)
                if result is None:
                    continue
                if result.__class__ is bytes:
                    replies.append((result, addr))
                else:
                    assert isinstance(result, Pending)
                    self._forward_later(data, result, addr)
            self._send_all(replies)

    def _send_all(self, replies: list[tuple[bytes, Any]]) -> None:
        if self._backlog:
            for data, addr in replies:
                self._queue(data, addr)
            return
        sendto = self._sock.sendto
        for i, (data, addr) in enumerate(replies):
            try:
                sendto(data, addr)
            except _AGAIN:
                for later, to in replies[i:]:
                    self._queue(later, to)
                return
            except OSError:  # unreachable client address, message too long for it, ...
                pass

    def _forward_later(self, data: bytes, pending: Pending, addr: Any) -> None:
        if len(self._tasks) >= self._max_pending:
            refused = self._handler.overloaded(data)
            if refused is not None:
                self._send(refused, addr)
            return
        task = self._loop.create_task(self._forward(pending, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward(self, pending: Pending, addr: Any) -> None:
        data = await pending.result()
        if data is not None and not self._closed:
            self._send(data, addr)

    def _send(self, data: bytes, addr: Any) -> None:
        self._send_all([(data, addr)])

    def _queue(self, data: bytes, addr: Any) -> None:
        if self._closed or len(self._backlog) >= MAX_BACKLOG:
            return
        if not self._backlog:
            self._loop.add_writer(self._fd, self._writable)
        self._backlog.append((data, addr))

    def _writable(self) -> None:
        backlog = self._backlog
        while backlog:
            data, addr = backlog[0]
            try:
                self._sock.sendto(data, addr)
            except _AGAIN:
                return
            except OSError:
                pass
            backlog.popleft()
        self._loop.remove_writer(self._fd)

    async def close(self) -> None:
        """Stop reading, release the socket (the port is free on return), cancel pending forwards."""
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self._fd)
            if self._backlog:
                self._loop.remove_writer(self._fd)
                self._backlog.clear()
            self._sock.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def open_udp(handler: DnsHandler, host: str, port: int, *, max_pending: int = MAX_PENDING) -> UdpServer:
    """A ``UdpServer`` bound to ``host:port`` (port 0: a free one; ``UdpServer.sockname`` tells which)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    if not infos:  # pragma: no cover - getaddrinfo raises rather than return nothing
        raise OSError(f"no address for {host!r}")
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
        sock.bind(address)
        return UdpServer(handler, sock, max_pending=max_pending)
    except BaseException:
        sock.close()
        raise
