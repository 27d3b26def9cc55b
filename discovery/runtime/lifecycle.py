"""Running a long-lived process: uvloop, signals that start a clean shutdown, limits, child processes.

Kept apart from the aiohttp-based ops routes (``discovery.runtime.http``) so processes that
serve no aiohttp app (the sidecar) do not import aiohttp just to run.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
from collections.abc import Awaitable, Callable

from discovery.runtime.limits import raise_open_files_limit
from discovery.runtime.memory import freeze_long_lived


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` on uvloop; SIGTERM/SIGINT set ``stop`` so it can drain and return."""
    import uvloop

    raise_open_files_limit()

    async def wrapper() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # Once per process, however many parts `main` runs (`mesh up` runs several).
        gc_tuning = asyncio.create_task(freeze_long_lived(), name="gc-freeze")
        try:
            await main(stop)
        finally:
            gc_tuning.cancel()
            await asyncio.gather(gc_tuning, return_exceptions=True)

    uvloop.run(wrapper())


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> bool:
    """In a child process: ask for SIGTERM when the parent dies; False if not possible or it is gone.

    A parent that is SIGKILLed (or OOM-killed) cannot stop its children itself; on Linux the kernel
    then sends them SIGTERM (``PR_SET_PDEATHSIG``, kept across ``exec``). Called in the child, not
    in a ``preexec_fn`` (unsafe in a threaded parent).
    """
    if not sys.platform.startswith("linux"):
        return os.getppid() == parent_pid
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return False
    return os.getppid() == parent_pid  # checked after prctl: the parent may have died just before
