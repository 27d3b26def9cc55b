"""Where the configuration lives: the interface both stores implement, and their shared record form.

- ``SqliteRuleStore`` (``mesh.control.store_sqlite``): embedded and durable, the default.
- ``ConsulRuleStore`` (``mesh.control.store_consul``): Consul KV with check-and-set, so several
  control planes can share one configuration.

A store commits a ``Plan`` (all its upserts and deletes, and the new config version) atomically,
or raises ``StaleState`` when the stored version is no longer the plan's base (another replica
committed first); the caller then re-reads, re-plans and retries. ``watch`` reports commits made
by others (a no-op for SQLite, which one process owns).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from mesh.control.changes import Plan
from mesh.control.state import ConfigState, StoredResource
from mesh.model.reader import ConfigError
from mesh.rules.resource import parse_resource

log = logging.getLogger("mesh.control.store")

OnState = Callable[[ConfigState], Awaitable[None] | None]


class StoreError(RuntimeError):
    """The store cannot be read or written."""


class StaleState(Exception):
    """The store moved past the plan's base version: re-read and re-plan."""


class RuleStore(Protocol):
    name: str

    async def open(self) -> ConfigState:
        """Load the stored configuration."""
        ...

    async def commit(self, plan: Plan) -> None:
        """Store ``plan`` atomically; ``StaleState`` if the stored version is not ``plan.base_version``."""
        ...

    async def refresh(self) -> ConfigState:
        """Read the newest stored configuration."""
        ...

    async def watch(self, on_state: Callable[[ConfigState], None]) -> None:
        """Call ``on_state`` with each configuration committed elsewhere, until cancelled."""
        ...

    async def close(self) -> None: ...


def stored_from_record(record: dict[str, Any], label: str) -> StoredResource | None:
    """A stored record back to a resource, re-validated; ``None`` (logged) if it no longer validates."""
    try:
        content = record["content"]
        resource = parse_resource(json.loads(content))
        return StoredResource(
            resource,
            int(record["created"]),
            int(record["modified"]),
            int(record.get("generation", 1)),
            str(record.get("created_at", "")),
        )
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        log.error("stored resource %s is not valid any more and is ignored: %s", label, exc)
        return None


__all__ = ["OnState", "RuleStore", "StaleState", "StoreError", "stored_from_record"]
