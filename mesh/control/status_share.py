"""Sidecar status shared by control-plane replicas through Consul KV (with ``--store consul``).

A sidecar long-polls one replica, so only that replica knows its ACKs and NACKs. Each replica
publishes what it knows under ``<consul prefix>/status/``, and ``GET /v1/mesh/status`` on any
replica merges every live replica's entries with its own:

- ``replicas/<replica>``: ``{"replica", "url", "heartbeat_at", "ttl", "config_version"}``,
  rewritten every ``ttl / 3`` seconds: the replica's heartbeat;
- ``sidecars/<replica>/<sidecar id>``: the sidecar's status entry as that replica computes it,
  written when it changes (checked every ``flush`` seconds) and deleted when the replica forgets
  the sidecar or stops cleanly.

A replica whose heartbeat is older than its ``ttl`` is dead: readers ignore its entries at once,
and the next heartbeat of any live replica deletes them (the heartbeat key with check-and-set on
the ModifyIndex it saw, so a replica that just came back is never removed; then its entries). A
replica that finds its own heartbeat gone (removed while it was partitioned away) publishes
every entry again. Heartbeats compare wall clocks: replicas need clocks in sync to well within
``ttl`` (NTP), as Consul's own session TTLs need.

The decisions (what changed, who is alive, which entry of a sidecar known to two replicas wins)
are plain functions; ``StatusShare`` does the KV I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from discovery.client import RegistryClient
from discovery.client_models import KVPair, RegistryError

log = logging.getLogger("mesh.control.status_share")

_WRITES_AT_ONCE = 16
VOLATILE_FIELDS = frozenset({"last_seen"})
"""Fields that change on every poll: not a reason to rewrite an entry (they travel with the next write)."""


@dataclass(frozen=True, slots=True)
class ReplicaInfo:
    replica: str
    url: str
    heartbeat_at: float
    ttl: float
    config_version: int
    modify_index: int = 0

    def alive(self, now: float) -> bool:
        return now - self.heartbeat_at <= self.ttl

    def to_json(self, now: float, own: str) -> dict[str, Any]:
        return {
            "id": self.replica,
            "url": self.url,
            "self": self.replica == own,
            "config_version": self.config_version,
            "heartbeat_age_s": round(max(0.0, now - self.heartbeat_at), 3),
        }


def stable_part(entry: Mapping[str, Any]) -> str:
    """An entry without its volatile fields, serialized: equal strings mean nothing worth writing changed."""
    return json.dumps({k: v for k, v in entry.items() if k not in VOLATILE_FIELDS}, sort_keys=True)


def parse_replica(pair: KVPair) -> ReplicaInfo | None:
    """A heartbeat value, or None (logged) when it is not one."""
    try:
        data = json.loads(pair.value or b"")
        return ReplicaInfo(
            str(data["replica"]),
            str(data.get("url", "")),
            float(data["heartbeat_at"]),
            float(data["ttl"]),
            int(data.get("config_version", 0)),
            pair.modify_index,
        )
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring %s: not a control-plane heartbeat (%s)", pair.key, exc)
        return None


def pick(entries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Of one sidecar's entries on several replicas (it moved), the one that serves it: connected
    first, then the most recently seen."""
    return max(entries, key=lambda e: (bool(e.get("connected")), str(e.get("last_seen", "")), str(e.get("replica"))))


def merge_sidecars(local: Iterable[dict[str, Any]], remote: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every sidecar once, by id, sorted (each entry already names its ``replica``)."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for entry in [*local, *remote]:
        by_id.setdefault(str(entry["id"]), []).append(entry)
    return [pick(by_id[sidecar_id]) for sidecar_id in sorted(by_id)]


@dataclass(frozen=True)
class SharedView:
    """What the KV holds now: live replicas and the entries they published (ours excluded)."""

    replicas: list[ReplicaInfo]
    sidecars: list[dict[str, Any]]


class StatusShare:
    """Publishes this replica's sidecar entries and heartbeat; reads the other replicas'."""

    def __init__(
        self,
        client: RegistryClient,
        prefix: str,
        replica: str,
        *,
        url: str = "",
        ttl: float = 15.0,
        flush: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if "/" in replica or not replica:
            raise ValueError(f"replica id must be non-empty without '/', got {replica!r}")
        base = prefix.strip("/") + "/status"
        self._client = client
        self.replica = replica
        self.url = url
        self.ttl = ttl
        self.flush = flush
        self._clock = clock
        self.status_prefix = f"{base}/"
        self.replicas_prefix = f"{base}/replicas/"
        self.sidecars_prefix = f"{base}/sidecars/"
        self.heartbeat_key = self.replicas_prefix + replica
        self.own_prefix = f"{self.sidecars_prefix}{replica}/"
        self._written: dict[str, str] = {}  # sidecar id → stable part last written

    # === publishing ===

    async def run(self, local: Callable[[], list[dict[str, Any]]], config_version: Callable[[], int]) -> None:
        """Heartbeat every ``ttl / 3`` s and publish changed entries every ``flush`` s, until cancelled."""
        next_beat = 0.0
        cleaned = False
        while True:
            try:
                if not cleaned:  # entries a previous run under this replica id left behind
                    await self._client.kv_delete(self.own_prefix, recurse=True)
                    cleaned = True
                if time.monotonic() >= next_beat:
                    await self._heartbeat(config_version())
                    next_beat = time.monotonic() + self.ttl / 3
                await self._publish(local())
            except RegistryError as exc:
                log.warning("cannot share sidecar status through Consul KV: %s", exc)
            await asyncio.sleep(self.flush)

    async def _heartbeat(self, config_version: int) -> None:
        listed = await self._client.kv_list(self.status_prefix)
        now = self._clock()
        replicas, sidecar_owners = self._decode(listed.value)
        if self.replica not in replicas:
            self._written.clear()  # removed while we were away (or first beat): publish everything again
        body = {
            "replica": self.replica,
            "url": self.url,
            "heartbeat_at": now,
            "ttl": self.ttl,
            "config_version": config_version,
        }
        await self._client.kv_put(self.heartbeat_key, json.dumps(body))
        for name, info in replicas.items():
            if name == self.replica or info.alive(now):
                continue
            if await self._client.kv_delete(self.replicas_prefix + name, cas=info.modify_index):
                log.info(
                    "removing the status of control plane %s (no heartbeat for %.0fs)", name, now - info.heartbeat_at
                )
                await self._client.kv_delete(f"{self.sidecars_prefix}{name}/", recurse=True)
        for name in sidecar_owners - set(replicas) - {self.replica}:
            await self._client.kv_delete(f"{self.sidecars_prefix}{name}/", recurse=True)  # no heartbeat at all

    async def _publish(self, entries: list[dict[str, Any]]) -> None:
        changed = {str(e["id"]): (e, stable_part(e)) for e in entries}
        gone = [sidecar_id for sidecar_id in self._written if sidecar_id not in changed]
        for sidecar_id, (_, stable) in list(changed.items()):
            if self._written.get(sidecar_id) == stable:
                del changed[sidecar_id]
        work: list[tuple[str, dict[str, Any] | None, str | None]] = [
            (sidecar_id, entry, stable) for sidecar_id, (entry, stable) in changed.items()
        ]
        work += [(sidecar_id, None, None) for sidecar_id in gone]
        for start in range(0, len(work), _WRITES_AT_ONCE):  # an apply's wave of ACKs: many writes, few at a time
            await asyncio.gather(*(self._write(*item) for item in work[start : start + _WRITES_AT_ONCE]))

    async def _write(self, sidecar_id: str, entry: dict[str, Any] | None, stable: str | None) -> None:
        if entry is None:
            await self._client.kv_delete(self._key(sidecar_id))
            self._written.pop(sidecar_id, None)
        else:
            await self._client.kv_put(self._key(sidecar_id), json.dumps(entry))
            self._written[sidecar_id] = stable or ""

    async def close(self) -> None:
        """Stopping cleanly: take our heartbeat and entries away now (sidecars go to other replicas)."""
        with contextlib.suppress(RegistryError):
            await self._client.kv_delete(self.heartbeat_key)
            await self._client.kv_delete(self.own_prefix, recurse=True)
        self._written.clear()

    def _key(self, sidecar_id: str) -> str:
        return self.own_prefix + quote(sidecar_id, safe="")

    # === reading ===

    async def view(self) -> SharedView:
        """Live replicas and the other replicas' entries, from one KV read."""
        listed = await self._client.kv_list(self.status_prefix)
        now = self._clock()
        replicas, _ = self._decode(listed.value)
        alive = {name for name, info in replicas.items() if info.alive(now)}
        sidecars: list[dict[str, Any]] = []
        for pair in listed.value:
            if not pair.key.startswith(self.sidecars_prefix) or pair.value is None:
                continue
            owner, _, raw_id = pair.key[len(self.sidecars_prefix) :].partition("/")
            if owner == self.replica or owner not in alive:
                continue
            try:
                entry = json.loads(pair.value)
            except ValueError:
                continue
            if isinstance(entry, dict):
                sidecars.append({**entry, "id": unquote(raw_id), "replica": owner})
        live = sorted((replicas[name] for name in alive), key=lambda r: r.replica)
        return SharedView(live, sidecars)

    def _decode(self, pairs: list[KVPair]) -> tuple[dict[str, ReplicaInfo], set[str]]:
        """Heartbeats by replica, and the replicas that have entries."""
        replicas: dict[str, ReplicaInfo] = {}
        owners: set[str] = set()
        for pair in pairs:
            if pair.key.startswith(self.replicas_prefix):
                info = parse_replica(pair)
                if info is not None:
                    replicas[pair.key[len(self.replicas_prefix) :]] = info
            elif pair.key.startswith(self.sidecars_prefix):
                owners.add(pair.key[len(self.sidecars_prefix) :].partition("/")[0])
        return replicas, owners


__all__ = ["ReplicaInfo", "SharedView", "StatusShare", "merge_sidecars", "pick", "stable_part"]
