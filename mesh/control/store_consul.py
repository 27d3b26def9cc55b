"""The shared store: Consul KV (or the embedded registry's KV), written with check-and-set.

Layout under ``--consul-prefix`` (default ``mesh/config``):

- ``<prefix>/head``: JSON ``{"version": N, "resources": {"Kind/ns/name": {"object": KEY,
  "created": C, "modified": M, "generation": G, "created_at": T}}}`` — the whole configuration's
  index and the global config version;
- ``<prefix>/objects/<commit-id>/<n>``: one resource's content each, never rewritten.

A commit writes the new objects under a fresh commit id, then replaces the head with
``?cas=<ModifyIndex of the head it planned on>``. That one CAS write is the commit point: all of
a plan's resources appear together or not at all, however many there are, and two replicas can
never both commit on top of the same version (the loser gets ``StaleState``, deletes its
orphan objects, re-reads and re-plans). Objects the new head no longer names are deleted
afterwards; a reader that finds one gone simply reads the head again.

Every replica follows the head with a blocking query (``discovery.watch.Watch``) and reloads
when its version moves, fetching only objects it has not seen (they are immutable).
Consul limits a value to 512 KiB: the head holds ~150 bytes per resource, so a few thousand.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from discovery.client import RegistryClient
from discovery.client_models import KVPair, QueryResult, RegistryError
from discovery.watch import Watch
from mesh.control.changes import Plan
from mesh.control.state import ConfigState, StoredResource
from mesh.control.store import StaleState, StoreError, stored_from_record

log = logging.getLogger("mesh.control.store_consul")

DEFAULT_PREFIX = "mesh/config"
_READ_ATTEMPTS = 5
_BULK_FETCH = 16  # more missing objects than this: one recursive read instead of one read each


class _ObjectGone(Exception):
    """An object the head names was deleted by a newer commit while we read."""


class ConsulRuleStore:
    name = "consul"

    def __init__(self, client: RegistryClient, prefix: str = DEFAULT_PREFIX, *, wait: float | None = None) -> None:
        prefix = prefix.strip("/")
        if not prefix:
            raise ValueError("the Consul KV prefix must not be empty")
        self._client = client
        self.prefix = prefix
        self.head_key = f"{prefix}/head"
        self.objects_prefix = f"{prefix}/objects/"
        self._wait = wait
        self._head_index = 0  # ModifyIndex of the head our state came from (0: no head yet)
        self._state = ConfigState()
        self._head: dict[str, dict[str, Any]] = {}  # resource id → head entry
        self._contents: dict[str, str] = {}  # object key → content (objects never change)

    async def open(self) -> ConfigState:
        return await self.refresh()

    async def close(self) -> None:
        """The client belongs to the caller."""

    async def refresh(self) -> ConfigState:
        for _ in range(_READ_ATTEMPTS):
            result = await self._client.kv_get(self.head_key)
            try:
                return await self._adopt(result.value)
            except _ObjectGone:
                continue
        raise StoreError(f"{self.head_key}: the configuration kept changing while being read")

    async def commit(self, plan: Plan) -> None:
        if plan.base_version != self._state.version:
            raise StaleState(f"our view is at version {self._state.version}, the plan at {plan.base_version}")
        commit_id = uuid.uuid4().hex
        head = {rid: dict(entry) for rid, entry in self._head.items()}
        replaced: list[str] = []
        written: list[str] = []
        try:
            for i, item in enumerate(plan.upserts):
                key = f"{self.objects_prefix}{commit_id}/{i}"
                await self._client.kv_put(key, item.resource.content)
                written.append(key)
                old = head.get(item.key.id)
                if old is not None:
                    replaced.append(old["object"])
                head[item.key.id] = _entry(key, item)
                self._contents[key] = item.resource.content
            for resource_key in plan.deletes:
                old = head.pop(resource_key.id, None)
                if old is not None:
                    replaced.append(old["object"])
            body = json.dumps({"version": plan.version, "resources": head}, sort_keys=True)
            committed = await self._client.kv_put(self.head_key, body, cas=self._head_index)
        except RegistryError as exc:
            await self._forget(written)
            raise StoreError(f"cannot write the configuration to Consul KV: {exc}") from exc
        if not committed:
            await self._forget(written)
            raise StaleState("another control plane committed first")
        self._head = head
        self._state = plan.state
        await self._learn_head_index(plan.version)
        await self._forget(replaced)

    async def watch(self, on_state: Callable[[ConfigState], None]) -> None:
        """Follow the head; report each version newer than ours (commits by other replicas)."""

        async def fetch(index: int) -> QueryResult[KVPair | None]:
            return await self._client.kv_get(self.head_key, index=index, wait=self._wait)

        async for result in Watch(fetch, name=f"kv/{self.head_key}"):
            version = _head_version(result.value)
            if version is None or version <= self._state.version:
                continue
            try:
                state = await self.refresh()
            except (StoreError, RegistryError) as exc:
                log.warning("cannot load configuration version %s from Consul: %s", version, exc)
                continue
            on_state(state)

    # === helpers ===

    async def _adopt(self, pair: KVPair | None) -> ConfigState:
        if pair is None or pair.value is None:
            self._head_index, self._head, self._state = 0, {}, ConfigState()
            return self._state
        head = _decode_head(pair.value, self.head_key)
        entries: dict[str, dict[str, Any]] = head["resources"]
        await self._fetch_missing([entry["object"] for entry in entries.values()])
        items: list[StoredResource] = []
        for rid, entry in entries.items():
            record = {**entry, "content": self._contents[entry["object"]]}
            item = stored_from_record(record, rid)
            if item is not None:
                items.append(item)
        self._head_index = pair.modify_index
        self._head = entries
        self._state = ConfigState.build(int(head["version"]), items)
        return self._state

    async def _fetch_missing(self, keys: list[str]) -> None:
        missing = [key for key in keys if key not in self._contents]
        if not missing:
            return
        if len(missing) > _BULK_FETCH:
            listed = await self._client.kv_list(self.objects_prefix)
            for pair in listed.value:
                if pair.value is not None:
                    self._contents.setdefault(pair.key, pair.value.decode())
        else:
            for key in missing:
                got = await self._client.kv_get(key)
                if got.value is not None and got.value.value is not None:
                    self._contents[key] = got.value.value.decode()
        if any(key not in self._contents for key in missing):
            raise _ObjectGone

    async def _learn_head_index(self, version: int) -> None:
        """The ModifyIndex of the head we just wrote, for our next CAS (a newer head: stay stale)."""
        result = await self._client.kv_get(self.head_key)
        if result.value is not None and _head_version(result.value) == version:
            self._head_index = result.value.modify_index

    async def _forget(self, keys: list[str]) -> None:
        for key in keys:
            self._contents.pop(key, None)
            try:
                await self._client.kv_delete(key)
            except RegistryError as exc:  # garbage only: the next commit does not depend on it
                log.warning("cannot delete old config object %s: %s", key, exc)


def _entry(object_key: str, item: StoredResource) -> dict[str, Any]:
    return {
        "object": object_key,
        "created": item.created_version,
        "modified": item.modified_version,
        "generation": item.generation,
        "created_at": item.created_at,
    }


def _decode_head(raw: bytes, key: str) -> dict[str, Any]:
    try:
        head = json.loads(raw)
        if not isinstance(head, dict) or not isinstance(head.get("resources"), dict):
            raise ValueError("expected {version, resources}")
        int(head["version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{key} does not hold a mesh configuration head: {exc}") from exc
    return head


def _head_version(pair: KVPair | None) -> int | None:
    if pair is None or pair.value is None:
        return 0
    try:
        return int(json.loads(pair.value)["version"])
    except (ValueError, KeyError, TypeError):
        return None


__all__ = ["DEFAULT_PREFIX", "ConsulRuleStore"]
