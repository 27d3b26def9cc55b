"""Sends mirrored copies (fire and forget) and drops their answers: the I/O edge of ``mirror``.

Each copy is one short-lived task on a fresh connection (``Connection: close``): write the
request, read until the upstream closes or ``timeout_s`` passes, close. The ``MirrorLimiter``
slot taken by the caller is released when the task ends, whatever happened, so the number of
tasks and buffered copies is bounded per shadow cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sidecar.resilience.mirror import MirrorLimiter

log = logging.getLogger("sidecar.resilience.mirror")

DEFAULT_MIRROR_TIMEOUT_S = 5.0
_READ_CHUNK = 65536


class MirrorSender:
    """Owns the copies' tasks; ``close`` cancels those still running."""

    def __init__(self, limiter: MirrorLimiter, *, timeout_s: float = DEFAULT_MIRROR_TIMEOUT_S) -> None:
        self.limiter = limiter
        self.timeout_s = timeout_s
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, cluster: str, host: str, port: int, request: bytes) -> None:
        """Send ``request`` (from ``shadow_request_bytes``) to ``host:port``; the caller holds a
        limiter slot for ``cluster``, released here when the copy is done."""
        task = asyncio.get_running_loop().create_task(self._send(cluster, host, port, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, cluster: str, host: str, port: int, request: bytes) -> None:
        ok = False
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(request)
                await writer.drain()
                got = b""
                while True:
                    data = await reader.read(_READ_CHUNK)
                    if not data:
                        break
                    if not got:
                        got = data[:12]
                ok = got.startswith(b"HTTP/1.")
        except (OSError, TimeoutError) as exc:
            log.debug("mirror copy failed", extra={"cluster": cluster, "error": str(exc)})
        finally:
            self.limiter.release(cluster, ok)
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


__all__ = ["DEFAULT_MIRROR_TIMEOUT_S", "MirrorSender"]
