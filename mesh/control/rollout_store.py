"""Where rollouts live between steps and across restarts: beside the configuration, in the same store.

- ``SqliteRolloutStore``: a ``rollouts`` table in the control plane's own ``control.db`` (WAL,
  ``synchronous=FULL``, one connection on its own thread, as ``mesh.control.store_sqlite``);
- ``ConsulRolloutStore``: one JSON value per rollout at ``<consul prefix>/rollouts/<namespace>/<name>``.

A record is the spec, the state machine's state and the event log (``RolloutRecord.to_json``).
Every decision is saved before the controller moves on, so a restarted control plane resumes
each unfinished rollout where it stood.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from discovery.client import RegistryClient
from discovery.client_models import RegistryError
from mesh.control.rollout_decide import Event, RolloutState
from mesh.control.rollout_spec import RolloutSpec, parse_rollout_spec
from mesh.control.sqlite_file import SqliteFile
from mesh.control.store import StoreError
from mesh.model.reader import ConfigError

log = logging.getLogger("mesh.control.rollout_store")

MAX_EVENTS = 200  # the oldest events go first; the first ("created") is always kept


@dataclass(frozen=True, slots=True)
class RolloutRecord:
    spec: RolloutSpec
    state: RolloutState
    events: tuple[dict[str, Any], ...]
    created: float  # wall seconds

    @property
    def key(self) -> str:
        return f"{self.spec.namespace}/{self.spec.name}"

    def with_decision(self, state: RolloutState, events: tuple[Event, ...]) -> RolloutRecord:
        log_ = self.events + tuple(e.to_json() for e in events)
        if len(log_) > MAX_EVENTS:
            log_ = log_[:1] + log_[len(log_) - MAX_EVENTS + 1 :]
        return replace(self, state=state, events=log_)

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_json(),
            "status": self.state.to_json(),
            "events": list(self.events),
            "created": self.created,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RolloutRecord:
        return cls(
            parse_rollout_spec(data["spec"]),
            RolloutState.from_json(data["status"]),
            tuple(data.get("events") or ()),
            float(data["created"]),
        )


def record_from_text(text: str | bytes, label: str) -> RolloutRecord | None:
    """A stored record back, re-validated; ``None`` (logged) when it no longer reads."""
    try:
        return RolloutRecord.from_json(json.loads(text))
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        log.error("stored rollout %s cannot be read and is ignored: %s", label, exc)
        return None


class RolloutStore(Protocol):
    name: str

    async def open(self) -> list[RolloutRecord]:
        """Open the store; every stored rollout."""
        ...

    async def load(self) -> list[RolloutRecord]:
        """Every stored rollout, read again."""
        ...

    async def save(self, record: RolloutRecord) -> None: ...

    async def close(self) -> None: ...


class SqliteRolloutStore(SqliteFile):
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        super().__init__(path, "rollout-store")

    async def open(self) -> list[RolloutRecord]:
        return await self._run(self._open_sync)

    async def load(self) -> list[RolloutRecord]:
        return await self._run(self._load_sync)

    async def save(self, record: RolloutRecord) -> None:
        await self._run(self._save_sync, record.key, json.dumps(record.to_json()))

    def _open_sync(self) -> list[RolloutRecord]:
        try:
            db = self._connect()
            db.execute("CREATE TABLE IF NOT EXISTS rollouts (id TEXT PRIMARY KEY, record TEXT NOT NULL) WITHOUT ROWID")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the rollouts in {self.path}: {exc}") from exc
        self._db = db
        return self._load_sync()

    def _load_sync(self) -> list[RolloutRecord]:
        if self._db is None:
            raise StoreError("the rollout store is not open")
        try:
            rows = self._db.execute("SELECT id, record FROM rollouts ORDER BY id").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the rollouts in {self.path}: {exc}") from exc
        return [r for r in (record_from_text(text, key) for key, text in rows) if r is not None]

    def _save_sync(self, key: str, text: str) -> None:
        if self._db is None:
            raise StoreError("the rollout store is not open")
        try:
            self._db.execute("INSERT OR REPLACE INTO rollouts VALUES (?, ?)", (key, text))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write rollout {key} to {self.path}: {exc}") from exc


class ConsulRolloutStore:
    name = "consul"

    def __init__(self, client: RegistryClient, prefix: str) -> None:
        self._client = client
        self.prefix = f"{prefix.strip('/')}/rollouts/"

    async def open(self) -> list[RolloutRecord]:
        return await self.load()

    async def load(self) -> list[RolloutRecord]:
        try:
            result = await self._client.kv_list(self.prefix)
        except RegistryError as exc:
            raise StoreError(f"cannot read the rollouts under {self.prefix}: {exc}") from exc
        out = []
        for pair in result.value or []:
            if pair.value is not None:
                record = record_from_text(pair.value, pair.key)
                if record is not None:
                    out.append(record)
        return sorted(out, key=lambda r: r.key)

    async def save(self, record: RolloutRecord) -> None:
        try:
            await self._client.kv_put(self.prefix + record.key, json.dumps(record.to_json()))
        except RegistryError as exc:
            raise StoreError(f"cannot write rollout {record.key}: {exc}") from exc

    async def close(self) -> None:
        """The client belongs to the caller."""


__all__ = [
    "MAX_EVENTS",
    "ConsulRolloutStore",
    "RolloutRecord",
    "RolloutStore",
    "SqliteRolloutStore",
    "record_from_text",
]
