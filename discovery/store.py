"""Durable state: catalog records in SQLite (WAL), written by group commit.

A write's response is sent only after its rows are committed with
``synchronous=FULL``, so a 200 survives ``kill -9`` and power loss alike.
Writes that arrive while a commit is in flight are batched into the next
transaction: one fsync serves many writers, which is what makes thousands of
registrations per second possible on one core.

The SQLite connection lives on one dedicated thread; the event loop never
blocks on disk.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from discovery.catalog import ChangeSet, Delete, Upsert
from discovery.models import (
    Check,
    KVEntry,
    Node,
    Service,
    check_from_record,
    check_to_record,
    kv_from_record,
    kv_to_record,
    node_from_record,
    node_to_record,
    service_from_record,
    service_to_record,
)

Record = Node | Service | Check | KVEntry

SCHEMA_VERSION: Final = 1
_KEY_SEP: Final = "\x1f"
# Load order matters: services need their node, checks their service.
_TABLES: Final = ("node", "service", "check", "kv")
_DECODERS: Final[dict[str, Callable[[Any], Record]]] = {
    "node": node_from_record,
    "service": service_from_record,
    "check": check_from_record,
    "kv": kv_from_record,
}


class StoreError(RuntimeError):
    """The data directory could not be read or written."""


def _encode(record: Record) -> tuple[str, str, str]:
    if isinstance(record, Node):
        return "node", record.name, json.dumps(node_to_record(record))
    if isinstance(record, Service):
        return "service", _KEY_SEP.join((record.node, record.id)), json.dumps(service_to_record(record))
    if isinstance(record, Check):
        return "check", _KEY_SEP.join((record.node, record.check_id)), json.dumps(check_to_record(record))
    return "kv", record.key, json.dumps(kv_to_record(record))


class Store:
    """SQLite-backed persistence of catalog records and the global index."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="registry-store")
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[ChangeSet, asyncio.Future[None]]] = []
        self._last: asyncio.Future[None] | None = None  # the newest commit handed to the writer
        self._wakeup: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None
        self._closing = False
        self._closed = False
        self.commits = 0
        self.last_batch_seconds = 0.0
        self.on_batch: Callable[[int, float], None] | None = None

    # --- lifecycle ---

    async def open(self) -> tuple[list[Record], int]:
        """Open (creating if needed) the database; return every record and the last index."""
        loop = asyncio.get_running_loop()
        records, index = await loop.run_in_executor(self._executor, self._open_sync)
        self._wakeup = asyncio.Event()
        self._writer = asyncio.create_task(self._write_loop(), name="registry-store-writer")
        return records, index

    async def close(self) -> None:
        """Finish queued writes and close the database; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None and self._wakeup is not None:
            # The writer drains what is queued, then returns.
            self._closing = True
            self._wakeup.set()
            await self._writer
            self._writer = None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_sync)
        self._executor.shutdown(wait=True)

    # --- writes ---

    async def commit(self, change: ChangeSet) -> None:
        """Return once ``change`` is durable; raise StoreError if it could not be written."""
        if self.failure is not None:
            raise StoreError(f"data directory unusable: {self.failure}")
        assert self._wakeup is not None, "Store.open() must be awaited first"
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((change, future))
        self._last = future
        self._wakeup.set()
        # Shielded: a writer that gives up (client hung up) leaves the commit, and flush(), intact.
        await asyncio.shield(future)

    async def flush(self) -> None:
        """Return once every change handed to ``commit`` so far is durable (batches commit in order).

        A write that changes nothing may have read state still on its way to disk; it is
        acknowledged only after that state is durable.
        """
        last = self._last
        if last is not None and not last.done():
            await asyncio.shield(last)

    async def _write_loop(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._pending = self._pending, []
            if not batch:
                if self._closing:
                    return
                continue
            started = time.perf_counter()
            try:
                await loop.run_in_executor(self._executor, self._commit_sync, [c for c, _ in batch])
            except Exception as exc:  # the disk refused: fail every writer in the batch
                self.failure = exc
                for _, future in batch:
                    if not future.done():
                        future.set_exception(StoreError(f"commit failed: {exc}"))
                continue
            self.commits += 1
            self.last_batch_seconds = time.perf_counter() - started
            if self.on_batch is not None:
                self.on_batch(len(batch), self.last_batch_seconds)
            for _, future in batch:
                if not future.done():
                    future.set_result(None)
            self._wakeup.set()  # look again: writes may have queued during the commit

    # --- the storage thread ---

    def _open_sync(self) -> tuple[list[Record], int]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS records ("
                "kind TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (kind, key)"
                ") WITHOUT ROWID"
            )
            db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            (schema,) = db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
            if schema != SCHEMA_VERSION:
                raise StoreError(f"{self.path}: schema version {schema}, this build reads {SCHEMA_VERSION}")
            row = db.execute("SELECT value FROM meta WHERE name = 'index'").fetchone()
            index = int(row[0]) if row else 0
            records: list[Record] = []
            for table in _TABLES:
                decode = _DECODERS[table]
                for (body,) in db.execute("SELECT body FROM records WHERE kind = ?", (table,)):
                    records.append(decode(json.loads(body)))
        except (sqlite3.Error, OSError, ValueError, TypeError, KeyError) as exc:
            raise StoreError(f"cannot open registry data at {self.path}: {exc}") from exc
        self._db = db
        return records, index

    def _commit_sync(self, changes: Iterable[ChangeSet]) -> None:
        db = self._db
        assert db is not None
        last_index = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            for change in changes:
                last_index = max(last_index, change.index)
                for write in change.writes:
                    if isinstance(write, Upsert):
                        db.execute("INSERT OR REPLACE INTO records VALUES (?, ?, ?)", _encode(write.record))
                    elif isinstance(write, Delete):
                        db.execute(
                            "DELETE FROM records WHERE kind = ? AND key = ?",
                            (write.table, _KEY_SEP.join(write.key)),
                        )
            db.execute("INSERT OR REPLACE INTO meta VALUES ('index', ?)", (last_index,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _close_sync(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
