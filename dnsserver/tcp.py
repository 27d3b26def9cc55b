"""TCP transport (RFC 1035 §4.2.2, RFC 7766): 2-byte length-prefixed messages, pipelined.

Rules:
- queries on one connection are answered as they complete (forwarded ones may overtake, which
  RFC 7766 allows); at most ``max_outstanding`` forwards wait per connection, then reading pauses;
- a length prefix below 12 (no room for a header) closes the connection;
- reading also pauses while the client does not read our replies (write buffer above its high
  water mark), and more than ``max_buffer`` received-but-unprocessed bytes closes it;
- timeouts: ``idle_timeout`` with no query in progress, ``frame_timeout`` to deliver a message
  once its first byte arrived (slow or half-sent frames), never while our own forwards are pending.
"""

from __future__ import annotations

import asyncio
from typing import Final, cast

from dnsserver.handler import DnsHandler, Pending

IDLE_TIMEOUT: Final = 10.0
FRAME_TIMEOUT: Final = 5.0
MAX_OUTSTANDING: Final = 64
MAX_BUFFER: Final = 1 << 20
WRITE_HIGH_WATER: Final = 256 << 10
_MIN_MESSAGE: Final = 12


class TcpProtocol(asyncio.Protocol):
    def __init__(
        self,
        handler: DnsHandler,
        connections: set[TcpProtocol],
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        frame_timeout: float = FRAME_TIMEOUT,
        max_outstanding: int = MAX_OUTSTANDING,
        max_buffer: int = MAX_BUFFER,
        max_connections: int = 10_000,
    ) -> None:
        self._respond = handler.respond
        self._connections = connections
        self._idle_timeout = idle_timeout
        self._frame_timeout = frame_timeout
        self._max_outstanding = max_outstanding
        self._max_buffer = max_buffer
        self._max_connections = max_connections
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._reading_paused = False
        self._writing_paused = False

    # === asyncio callbacks ===

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        if len(self._connections) >= self._max_connections:
            transport.abort()
            return
        self._transport = transport
        self._connections.add(self)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self._arm(self._idle_timeout)

    def data_received(self, data: bytes) -> None:
        was_empty = not self._buffer
        self._buffer += data
        if len(self._buffer) > self._max_buffer:
            self.abort()
            return
        answered = self._process()
        if self._transport is None:
            return
        if answered:
            self._arm(self._frame_timeout if self._buffer else self._idle_timeout)
        elif was_empty and self._buffer:
            self._arm(self._frame_timeout)  # a new message started: it must arrive in time

    def eof_received(self) -> bool | None:
        # Half-close from the client: finish what is pending, then close (False closes now).
        return bool(self._tasks)

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._update_reading()
        self._process()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in self._tasks:
            task.cancel()
        self._buffer.clear()

    # === framing ===

    def _process(self) -> int:
        """Answer every complete message in the buffer (while allowed to); returns how many."""
        buf = self._buffer
        answered = 0
        while self._transport is not None and not self._blocked():
            if len(buf) < 2:
                break
            length = buf[0] << 8 | buf[1]
            if length < _MIN_MESSAGE:
                self.abort()
                break
            if len(buf) < 2 + length:
                break
            message = bytes(buf[2 : 2 + length])
            del buf[: 2 + length]
            answered += 1
            result = self._respond(message, True)
            if result is None:
                continue
            if result.__class__ is bytes:
                self._write(result)
                continue
            assert isinstance(result, Pending)
            task = asyncio.get_running_loop().create_task(self._forward(result))
            self._tasks.add(task)
            task.add_done_callback(self._forward_done)
        self._update_reading()
        return answered

    def _write(self, reply: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(len(reply).to_bytes(2, "big") + reply)

    async def _forward(self, pending: Pending) -> None:
        data = await pending.result()
        if data is not None:
            self._write(data)

    def _forward_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._transport is None:
            return
        self._process()
        if not self._tasks and not self._buffer:
            self._arm(self._idle_timeout)

    # === flow control and timers ===

    def _blocked(self) -> bool:
        return self._writing_paused or len(self._tasks) >= self._max_outstanding

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        should_pause = self._blocked()
        if should_pause and not self._reading_paused:
            transport.pause_reading()
            self._reading_paused = True
        elif not should_pause and self._reading_paused:
            transport.resume_reading()
            self._reading_paused = False

    def _arm(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timeout)

    def _on_timeout(self) -> None:
        self._timer = None
        if self._transport is None:
            return
        if self._tasks:  # waiting on our own upstream: not the client's fault
            self._arm(self._idle_timeout)
            return
        self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
