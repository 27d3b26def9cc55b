"""The embedded store: one SQLite file in ``--data-dir`` (``control.db``).

Same durability rules as the registry's store (``discovery/store.py``): WAL journal,
``synchronous=FULL``, the connection on one dedicated thread so the event loop never waits on
disk, and a reply only after the transaction commits. Config changes are rare, so there is no
group commit: each plan is one transaction (resources and version together), which is what
makes an apply atomic across a crash.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Final

from mesh.control.changes import Plan
from mesh.control.sqlite_file import SqliteFile
from mesh.control.state import ConfigState, StoredResource
from mesh.control.store import StaleState, StoreError, stored_from_record

SCHEMA_VERSION: Final = 1


class SqliteRuleStore(SqliteFile):
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        super().__init__(path, "control-store")

    async def open(self) -> ConfigState:
        return await self._run(self._open_sync)

    async def refresh(self) -> ConfigState:
        return await self._run(self._load_sync)

    async def commit(self, plan: Plan) -> None:
        await self._run(self._commit_sync, plan)

    async def watch(self, on_state: Callable[[ConfigState], None]) -> None:
        """Nothing else writes our file: wait until cancelled."""
        await asyncio.Event().wait()

    # === the storage thread ===

    def _open_sync(self) -> ConfigState:
        try:
            db = self._connect()
            db.execute("CREATE TABLE IF NOT EXISTS resources (id TEXT PRIMARY KEY, record TEXT NOT NULL) WITHOUT ROWID")
            db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('version', 0)")
            (schema,) = db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
            if schema != SCHEMA_VERSION:
                raise StoreError(f"{self.path}: schema version {schema}, this build reads {SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open control-plane data at {self.path}: {exc}") from exc
        self._db = db
        return self._load_sync()

    def _load_sync(self) -> ConfigState:
        db = self._require()
        try:
            (version,) = db.execute("SELECT value FROM meta WHERE name = 'version'").fetchone()
            items: list[StoredResource] = []
            for resource_id, record in db.execute("SELECT id, record FROM resources"):
                item = stored_from_record(json.loads(record), resource_id)
                if item is not None:
                    items.append(item)
        except (sqlite3.Error, ValueError) as exc:
            raise StoreError(f"cannot read {self.path}: {exc}") from exc
        return ConfigState.build(int(version), items)

    def _commit_sync(self, plan: Plan) -> ConfigState:
        db = self._require()
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write {self.path}: {exc}") from exc
        try:
            (version,) = db.execute("SELECT value FROM meta WHERE name = 'version'").fetchone()
            if int(version) != plan.base_version:
                raise StaleState(f"stored version is {version}, the plan was made on {plan.base_version}")
            for item in plan.upserts:
                db.execute(
                    "INSERT OR REPLACE INTO resources VALUES (?, ?)", (item.key.id, json.dumps(item.to_record()))
                )
            for key in plan.deletes:
                db.execute("DELETE FROM resources WHERE id = ?", (key.id,))
            db.execute("UPDATE meta SET value = ? WHERE name = 'version'", (plan.version,))
            db.execute("COMMIT")
        except BaseException as exc:
            db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot write {self.path}: {exc}") from exc
            raise
        return plan.state

    def _require(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("the store is not open")
        return self._db


__all__ = ["SCHEMA_VERSION", "SqliteRuleStore"]
