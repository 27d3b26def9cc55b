"""The workload as a child of the sidecar (``mesh sidecar ... -- CMD``): start, stop, restart.

The app inherits the sidecar's stdin/stdout/stderr and environment. Stopping sends SIGTERM and,
after ``grace`` seconds, SIGKILL (the kubelet's order). Restarts after a crash wait ``backoff``:
the first wait, doubled after each crash up to the longest, and reset once the app has run for
ten times the longest wait (Kubernetes' CrashLoopBackOff, with shorter defaults).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence

log = logging.getLogger("sidecar.probes.app")


def next_backoff(previous: float, first: float, longest: float) -> float:
    """The wait before the next restart after a crash (0 before the first one)."""
    return first if previous <= 0 else min(longest, previous * 2)


class AppProcess:
    """One supervised command; ``pid`` and ``restarts`` say what runs and how often it was restarted."""

    def __init__(
        self, command: Sequence[str], *, grace: float, backoff: tuple[float, float], clock: Callable[[], float]
    ) -> None:
        if not command:
            raise ValueError("the app command is empty")
        self.command = tuple(command)
        self.grace = grace
        self.first_backoff, self.longest_backoff = backoff
        self._clock = clock
        self._process: asyncio.subprocess.Process | None = None
        self._started_at = 0.0
        self._backoff = 0.0
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(*self.command)
        self._started_at = self._clock()
        log.info("app started", extra={"pid": self._process.pid, "command": list(self.command)})

    async def wait(self) -> int:
        """Until the app exits by itself; its exit status (negative: killed by that signal)."""
        assert self._process is not None
        return await self._process.wait()

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after ``grace``; the exit status."""
        process, self._process = self._process, None
        if process is None:
            return None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(self.grace):
                    await process.wait()
            except TimeoutError:
                log.warning("app did not stop within the grace period: killing it", extra={"pid": process.pid})
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        log.info("app stopped", extra={"pid": process.pid, "status": process.returncode})
        return process.returncode

    async def restart(self, reason: str) -> None:
        """Stop (gracefully) and start again at once, as the kubelet does after a failed liveness probe."""
        log.warning("restarting the app", extra={"reason": reason, "pid": self.pid})
        await self.stop()
        self.restarts += 1
        await self.start()

    async def restart_after_crash(self, status: int) -> None:
        """The app exited by itself: wait the backoff, then start it again."""
        ran = self._clock() - self._started_at
        if ran >= 10 * self.longest_backoff:
            self._backoff = 0.0
        self._backoff = next_backoff(self._backoff, self.first_backoff, self.longest_backoff)
        log.warning("app exited; restarting after backoff", extra={"status": status, "backoff_s": self._backoff})
        self._process = None
        await asyncio.sleep(self._backoff)
        self.restarts += 1
        await self.start()


__all__ = ["AppProcess", "next_backoff"]
