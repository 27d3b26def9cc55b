"""Bytes both ways between two connected transports: the L4 proxy and HTTP upgrade tunnels.

Rules:
- Backpressure: when one side's write buffer passes its high-water mark (asyncio calls
  ``pause_writing`` on that side's protocol), reading from the other side pauses until it
  drains below the low-water mark. Memory per relay is bounded by the two buffers.
- Half-close: EOF from one side is passed on as a write EOF (``shutdown(SHUT_WR)``) to the
  other, and that direction is done; the other direction keeps flowing. When both directions
  are done, or either side resets, both transports close.
- Idle: the relay counts bytes moved; ``idle_check`` (called by a periodic sweep) closes it
  when nothing moved since the previous check and the idle timeout has passed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Relay:
    __slots__ = (
        "_closed",
        "_down",
        "_down_eof",
        "_idle_since",
        "_idle_timeout_s",
        "_last_moved",
        "_on_close",
        "_paused_down_read",
        "_paused_up_read",
        "_up",
        "_up_eof",
        "bytes_down_to_up",
        "bytes_up_to_down",
    )

    def __init__(
        self,
        down: asyncio.Transport,
        up: asyncio.Transport,
        *,
        idle_timeout_s: float = 0.0,
        now: float = 0.0,
        on_close: Callable[[Relay], None] | None = None,
    ) -> None:
        self._down = down
        self._up = up
        self._down_eof = False
        self._up_eof = False
        self._closed = False
        self._paused_down_read = False
        self._paused_up_read = False
        self._idle_timeout_s = idle_timeout_s
        self._idle_since = now
        self._last_moved = 0
        self._on_close = on_close
        self.bytes_down_to_up = 0
        self.bytes_up_to_down = 0

    @property
    def closed(self) -> bool:
        return self._closed

    # --- data ---

    def from_downstream(self, data: bytes) -> None:
        if not self._closed:
            self.bytes_down_to_up += len(data)
            self._up.write(data)

    def from_upstream(self, data: bytes) -> None:
        if not self._closed:
            self.bytes_up_to_down += len(data)
            self._down.write(data)

    # --- half-close ---

    def downstream_eof(self) -> bool:
        """The client finished sending; returns True to keep its transport open for our writes."""
        self._down_eof = True
        return self._pass_eof(self._up, self._up_eof)

    def upstream_eof(self) -> bool:
        self._up_eof = True
        return self._pass_eof(self._down, self._down_eof)

    def _pass_eof(self, other: asyncio.Transport, other_done: bool) -> bool:
        if self._closed:
            return False
        if other_done:
            self.close()
            return False
        if other.can_write_eof():
            other.write_eof()
            return True
        self.close()
        return False

    def downstream_lost(self) -> None:
        self.close()

    def upstream_lost(self) -> None:
        self.close()

    # --- backpressure ---

    def upstream_write_paused(self) -> None:
        if not self._paused_down_read and not self._down_eof:
            self._paused_down_read = True
            self._down.pause_reading()

    def upstream_write_resumed(self) -> None:
        if self._paused_down_read:
            self._paused_down_read = False
            if not self._closed and not self._down_eof:
                self._down.resume_reading()

    def downstream_write_paused(self) -> None:
        if not self._paused_up_read and not self._up_eof:
            self._paused_up_read = True
            self._up.pause_reading()

    def downstream_write_resumed(self) -> None:
        if self._paused_up_read:
            self._paused_up_read = False
            if not self._closed and not self._up_eof:
                self._up.resume_reading()

    # --- idle and close ---

    def idle_check(self, now: float) -> bool:
        """Close if idle for the timeout; True when closed (now or before)."""
        if self._closed:
            return True
        moved = self.bytes_down_to_up + self.bytes_up_to_down
        if moved != self._last_moved:
            self._last_moved = moved
            self._idle_since = now
            return False
        if self._idle_timeout_s > 0 and now - self._idle_since >= self._idle_timeout_s:
            self.close()
            return True
        return False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._down.close()
        self._up.close()
        if self._on_close is not None:
            self._on_close(self)

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._down.abort()
        self._up.abort()
        if self._on_close is not None:
            self._on_close(self)
