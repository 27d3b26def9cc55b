"""One SQLite file used from the event loop: the connection lives on one dedicated thread, so the loop
never waits on disk. WAL journal and ``synchronous=FULL``, as the registry's store (``discovery/store.py``):
a call returns only after its transaction is on disk. The control plane's rule store and rollout store
share the file ``control.db`` through this base, each with its own tables."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class SqliteFile:
    def __init__(self, path: Path, thread_name: str) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._db: sqlite3.Connection | None = None
        self._closed = False

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._run(self._close_db)
        self._executor.shutdown(wait=True)

    async def _run(self, func: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    # === on the storage thread ===

    def _connect(self) -> sqlite3.Connection:
        """Open the file (its directory made if missing) in WAL mode with full syncs; ``sqlite3.Error``
        and ``OSError`` go to the caller, which says what it was opening."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def _close_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


__all__ = ["SqliteFile"]
