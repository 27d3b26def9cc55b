"""Running a long-lived process: uvloop, signals that start a clean shutdown, process limits.

Kept apart from the aiohttp-based ops routes (``discovery.runtime.http``) so processes that
serve no aiohttp app (the sidecar) do not import aiohttp just to run.
"""

from __future__ import annotations

import asyncio
import signal
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
