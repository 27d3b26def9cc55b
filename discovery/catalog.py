"""The catalog core: nodes, service instances, checks and KV with Consul's index semantics.

Rules this module keeps (no I/O, no event loop; the server and tests drive it):
- One global index. A write that changes something takes the next index; every
  record it touches gets that index as ModifyIndex (and CreateIndex when new).
  A write that changes nothing (same content) takes no index and wakes no one,
  as Consul's state store skips identical writes.
- Every write names the *topics* whose query results it changed; each topic
  remembers the index of its last change. A query's index is the largest index
  of its topics, never below ``floor`` (the index the catalog was loaded at),
  so indexes never go backwards across restarts.
- Watches are one-shot callbacks on topics. A write fires exactly the watches of
  the topics it changed, and only after the caller has made it durable
  (``publish``), so nothing is announced that could still be lost.
- Preconditions are checked before anything is touched: a write either applies
  whole or raises ``CatalogError`` with nothing changed.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Final

from discovery.models import (
    CHECK_STATUSES,
    PASSING,
    SERF_CHECK_ID,
    Check,
    KVEntry,
    Node,
    Service,
)

Topic = tuple[str, ...]
"""A query family whose result a write can change, e.g. ("health-service", "web")."""

CATALOG_SERVICES: Final[Topic] = ("catalog-services",)
CATALOG_NODES: Final[Topic] = ("catalog-nodes",)

# Tombstones let a blocking query on a deleted key or prefix see the delete.
# They live in memory only and the oldest are dropped past this bound.
MAX_TOMBSTONES: Final = 50_000


def catalog_service_topic(name: str) -> Topic:
    return ("catalog-service", name)


def health_service_topic(name: str) -> Topic:
    return ("health-service", name)


def catalog_node_topic(node: str) -> Topic:
    return ("catalog-node", node)


def health_node_topic(node: str) -> Topic:
    return ("health-node", node)


def health_state_topic(state: str) -> Topic:
    return ("health-state", state)


def kv_key_topic(key: str) -> Topic:
    return ("kv", key)


def kv_prefix_topic(prefix: str) -> Topic:
    return ("kv-prefix", prefix)


class CatalogError(Exception):
    """A write refused by the catalog. ``kind`` maps to an HTTP status at the edge."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "not_found" | "invalid" | "conflict"
        self.message = message


# === persistence changes ===


@dataclass(frozen=True, slots=True)
class Upsert:
    record: Node | Service | Check | KVEntry


@dataclass(frozen=True, slots=True)
class Delete:
    table: str  # "node" | "service" | "check" | "kv"
    key: tuple[str, ...]


Write = Upsert | Delete


@dataclass(slots=True)
class ChangeSet:
    """What one write did: the index it took, rows to persist, topics to wake."""

    index: int = 0
    writes: list[Write] = field(default_factory=list)
    topics: set[Topic] = field(default_factory=set)
    result: bool = True

    @property
    def changed(self) -> bool:
        return bool(self.writes)


# === watches ===


class Watch:
    """A one-shot subscription: fires once, on the first change to any of its topics."""

    __slots__ = ("_callback", "_hub", "_topics", "fired")

    def __init__(self, hub: _WatchHub, topics: tuple[Topic, ...], callback: Callable[[], None]) -> None:
        self._hub = hub
        self._topics = topics
        self._callback = callback
        self.fired = False

    def cancel(self) -> None:
        self._hub.remove(self, self._topics)

    def _fire(self) -> None:
        if not self.fired:
            self.fired = True
            self.cancel()
            self._callback()


class _WatchHub:
    def __init__(self) -> None:
        self._by_topic: dict[Topic, set[Watch]] = {}

    def add(self, topics: tuple[Topic, ...], callback: Callable[[], None]) -> Watch:
        watch = Watch(self, topics, callback)
        for topic in topics:
            self._by_topic.setdefault(topic, set()).add(watch)
        return watch

    def remove(self, watch: Watch, topics: tuple[Topic, ...]) -> None:
        for topic in topics:
            watchers = self._by_topic.get(topic)
            if watchers is not None:
                watchers.discard(watch)
                if not watchers:
                    del self._by_topic[topic]

    def has(self, topic: Topic) -> bool:
        return topic in self._by_topic

    def fire(self, topics: Iterable[Topic]) -> int:
        fired = 0
        for topic in topics:
            for watch in list(self._by_topic.get(topic, ())):
                watch._fire()
                fired += 1
        return fired

    def count(self) -> int:
        return sum(len(w) for w in self._by_topic.values())


# === the catalog ===


class Catalog:
    """In-memory state. Single-threaded: call it from one thread (the event loop)."""

    def __init__(self, *, agent_node: str = "", floor: int = 1) -> None:
        self.agent_node = agent_node
        self.index = max(floor, 1)
        self.floor = self.index
        self._nodes: dict[str, Node] = {}
        self._services: dict[str, dict[str, Service]] = {}  # node -> service id -> instance
        self._by_name: dict[str, dict[tuple[str, str], Service]] = {}  # name -> (node, id) -> instance
        self._tag_counts: dict[str, Counter[str]] = {}  # name -> tag -> instances carrying it
        self._checks: dict[str, dict[str, Check]] = {}  # node -> check id -> check
        self._service_checks: dict[tuple[str, str], set[str]] = {}  # (node, service id) -> check ids
        self._kv: dict[str, KVEntry] = {}
        self._kv_keys: list[str] = []  # sorted, for prefix scans
        self._tombstones: dict[str, int] = {}  # deleted key -> index of the delete
        self._tombstone_keys: list[str] = []
        self._topic_index: dict[Topic, int] = {}
        self._watches = _WatchHub()

    # --- loading (from the store, before serving) ---

    def load(self, records: Iterable[Node | Service | Check | KVEntry], index: int) -> None:
        """Fill an empty catalog from persisted records; queries start at ``index``."""
        for record in records:
            if isinstance(record, Node):
                self._nodes[record.name] = record
            elif isinstance(record, Service):
                self._put_service(record)
            elif isinstance(record, Check):
                self._put_check(record)
            else:
                self._put_kv(record)
            index = max(index, record.modify_index)
        self.index = max(index, 1)
        self.floor = self.index

    # --- watch plumbing ---

    def topic_index(self, topics: Iterable[Topic]) -> int:
        return max((self._topic_index.get(t, 0) for t in topics), default=0) or self.floor

    def watch(self, topics: Iterable[Topic], callback: Callable[[], None]) -> Watch:
        return self._watches.add(tuple(topics), callback)

    def publish(self, change: ChangeSet) -> int:
        """Wake the watches of a durable change; returns how many fired."""
        return self._watches.fire(change.topics)

    def watcher_count(self) -> int:
        return self._watches.count()

    # --- reads ---

    def node(self, name: str) -> Node | None:
        return self._nodes.get(name)

    def nodes(self) -> list[Node]:
        return sorted(self._nodes.values(), key=lambda n: n.name)

    def services_on(self, node: str) -> list[Service]:
        return sorted(self._services.get(node, {}).values(), key=lambda s: s.id)

    def service_instance(self, node: str, service_id: str) -> Service | None:
        return self._services.get(node, {}).get(service_id)

    def instances(self, name: str) -> list[Service]:
        """Every instance of a service, ordered by node then ID (Consul's order)."""
        return [self._by_name[name][k] for k in sorted(self._by_name.get(name, {}))]

    def service_names(self) -> dict[str, list[str]]:
        """Service name -> sorted unique tags, as /v1/catalog/services."""
        return {name: sorted(self._tag_counts.get(name, ())) for name in sorted(self._by_name)}

    def check(self, node: str, check_id: str) -> Check | None:
        return self._checks.get(node, {}).get(check_id)

    def checks_on(self, node: str) -> list[Check]:
        return sorted(self._checks.get(node, {}).values(), key=lambda c: c.check_id)

    def node_checks(self, node: str) -> list[Check]:
        return [c for c in self.checks_on(node) if not c.service_id]

    def checks_of_instance(self, node: str, service_id: str) -> list[Check]:
        ids = sorted(self._service_checks.get((node, service_id), ()))
        on_node = self._checks.get(node, {})
        return [on_node[i] for i in ids]

    def health_checks(self, service: Service) -> list[Check]:
        """What decides an instance's health: its own checks, then its node's checks (as Consul)."""
        return self.checks_of_instance(service.node, service.id) + self.node_checks(service.node)

    def checks_of_service(self, name: str) -> list[Check]:
        return [c for s in self.instances(name) for c in self.checks_of_instance(s.node, s.id)]

    def checks_in_state(self, state: str) -> list[Check]:
        return [c for node in sorted(self._checks) for c in self.checks_on(node) if state == "any" or c.status == state]

    def all_checks(self) -> Iterator[Check]:
        for checks in self._checks.values():
            yield from checks.values()

    def service_tags(self, check: Check) -> tuple[str, ...]:
        service = self.service_instance(check.node, check.service_id) if check.service_id else None
        return service.tags if service else ()

    def kv_get(self, key: str) -> KVEntry | None:
        return self._kv.get(key)

    def kv_list(self, prefix: str) -> list[KVEntry]:
        return [self._kv[k] for k in _prefix_range(self._kv_keys, prefix)]

    def kv_key_index(self, key: str) -> int:
        """X-Consul-Index of a single-key read: the key's ModifyIndex, else its delete."""
        entry = self._kv.get(key)
        if entry is not None:
            return entry.modify_index
        return max(self._tombstones.get(key, 0), self.floor)

    def kv_prefix_index(self, prefix: str) -> int:
        """X-Consul-Index of a recursive read: newest write or delete under the prefix."""
        newest = max((self._kv[k].modify_index for k in _prefix_range(self._kv_keys, prefix)), default=0)
        deleted = max((self._tombstones[k] for k in _prefix_range(self._tombstone_keys, prefix)), default=0)
        return max(newest, deleted) or self.floor

    def counts(self) -> dict[str, int]:
        return {
            "nodes": len(self._nodes),
            "services": len(self._by_name),
            "instances": sum(len(s) for s in self._services.values()),
            "checks": sum(len(c) for c in self._checks.values()),
            "kv": len(self._kv),
        }

    # --- writes: nodes ---

    def ensure_node(self, node: Node, change: ChangeSet | None = None) -> ChangeSet:
        """Create or update a node (catalog register without a service)."""
        change = change or self._begin()
        existing = self._nodes.get(node.name)
        if existing is not None and existing.same_content(node):
            return change
        stored = replace(
            node,
            create_index=existing.create_index if existing else change.index,
            modify_index=change.index,
        )
        self._nodes[node.name] = stored
        change.writes.append(Upsert(stored))
        change.topics |= {CATALOG_NODES, catalog_node_topic(node.name)}
        for service in self._services.get(node.name, {}).values():
            change.topics |= {catalog_service_topic(service.name), health_service_topic(service.name)}
        self._mark(change)
        return change

    def deregister_node(self, name: str) -> ChangeSet:
        change = self._begin()
        if name not in self._nodes:
            return change
        for service_id in list(self._services.get(name, {})):
            self._drop_service(name, service_id, change)
        for check_id in list(self._checks.get(name, {})):
            self._drop_check(name, check_id, change)
        del self._nodes[name]
        change.writes.append(Delete("node", (name,)))
        # health-node already moved with each dropped check; a node without checks leaves it as is.
        change.topics |= {CATALOG_NODES, catalog_node_topic(name)}
        self._mark(change)
        return change

    # --- writes: services ---

    def register_service(
        self,
        service: Service,
        checks: Iterable[Check] = (),
        *,
        replace_existing_checks: bool = False,
        node: Node | None = None,
    ) -> ChangeSet:
        """Register (or replace) one instance with its checks in one index.

        ``node`` is upserted first when given (catalog register); otherwise the
        node must exist (agent register goes to the agent's own node).
        """
        checks = list(checks)
        node_pending = node is not None and node.name == service.node
        if service.node not in self._nodes and not node_pending:
            raise CatalogError("not_found", f"Node {service.node!r} is not registered")
        for check in checks:
            self._check_may_attach(check, node, service)
        change = self._begin()
        if node is not None:
            self.ensure_node(node, change)
        self._upsert_service(service, change)
        wanted = {c.check_id for c in checks}
        if replace_existing_checks:
            for check_id in list(self._service_checks.get((service.node, service.id), ())):
                if check_id not in wanted:
                    self._drop_check(service.node, check_id, change)
        for check in checks:
            self._upsert_check(check, change)
        return change

    def deregister_service(self, node: str, service_id: str) -> ChangeSet:
        if self.service_instance(node, service_id) is None:
            raise CatalogError(
                "not_found",
                f'Unknown service ID "{service_id}". Ensure that the service ID is passed, not the service name.',
            )
        change = self._begin()
        self._drop_service(node, service_id, change)
        return change

    # --- writes: checks ---

    def register_checks(self, checks: Iterable[Check], *, node: Node | None = None) -> ChangeSet:
        checks = list(checks)
        for check in checks:
            self._check_may_attach(check, node)
        change = self._begin()
        if node is not None:
            self.ensure_node(node, change)
        for check in checks:
            self._upsert_check(check, change)
        return change

    def deregister_check(self, node: str, check_id: str) -> ChangeSet:
        if self.check(node, check_id) is None:
            raise CatalogError(
                "not_found",
                f'Unknown check ID "{check_id}". Ensure that the check ID is passed, not the check name.',
            )
        change = self._begin()
        self._drop_check(node, check_id, change)
        return change

    def update_check(self, node: str, check_id: str, status: str, output: str) -> ChangeSet:
        """Set a check's status and output (TTL updates, results of checks the registry runs)."""
        existing = self.check(node, check_id)
        if existing is None:
            raise CatalogError(
                "not_found",
                f'Unknown check ID "{check_id}". Ensure that the check ID is passed, not the check name.',
            )
        if status not in CHECK_STATUSES:
            raise CatalogError("invalid", f"Invalid check status: {status!r}")
        change = self._begin()
        self._upsert_check(replace(existing, status=status, output=output), change)
        return change

    # --- writes: KV ---

    def kv_put(self, key: str, value: bytes, flags: int = 0, cas: int | None = None) -> ChangeSet:
        """Write a key. With ``cas``: 0 creates only if absent, N writes only if ModifyIndex == N."""
        existing = self._kv.get(key)
        change = self._begin()
        if cas is not None and (existing.modify_index if existing else 0) != cas:
            change.result = False
            return change
        entry = KVEntry(
            key=key,
            value=value,
            flags=flags,
            create_index=existing.create_index if existing else change.index,
            modify_index=change.index,
            lock_index=existing.lock_index if existing else 0,
            session=existing.session if existing else "",
        )
        self._put_kv(entry)
        if self._tombstones.pop(key, None) is not None:
            del self._tombstone_keys[bisect.bisect_left(self._tombstone_keys, key)]
        change.writes.append(Upsert(entry))
        self._kv_topics(key, change)
        return change

    def kv_delete(self, key: str, cas: int | None = None) -> ChangeSet:
        existing = self._kv.get(key)
        change = self._begin()
        if cas is not None and (existing is None or existing.modify_index != cas):
            change.result = False
            return change
        if existing is not None:
            self._drop_kv(key, change)
        return change

    def kv_delete_tree(self, prefix: str) -> ChangeSet:
        change = self._begin()
        for key in list(_prefix_range(self._kv_keys, prefix)):
            self._drop_kv(key, change)
        return change

    # === internals ===

    def _begin(self) -> ChangeSet:
        return ChangeSet(index=self.index + 1)

    def _check_may_attach(
        self, check: Check, pending_node: Node | None = None, pending_service: Service | None = None
    ) -> None:
        """Refuse a check whose node or service neither exists nor is written with it."""
        node_pending = pending_node is not None and pending_node.name == check.node
        if check.node not in self._nodes and not node_pending:
            raise CatalogError("not_found", f"Node {check.node!r} is not registered")
        if not check.service_id:
            return
        pending = pending_service is not None and (pending_service.node, pending_service.id) == (
            check.node,
            check.service_id,
        )
        if not pending and self.service_instance(check.node, check.service_id) is None:
            raise CatalogError("not_found", f'ServiceID "{check.service_id}" does not exist')

    def _mark(self, change: ChangeSet) -> None:
        """Record that the change wrote something: it takes its index now."""
        self.index = change.index
        for topic in change.topics:
            self._topic_index[topic] = change.index

    def _upsert_service(self, service: Service, change: ChangeSet) -> None:
        existing = self.service_instance(service.node, service.id)
        if existing is not None and existing.same_content(service):
            return
        stored = replace(
            service,
            create_index=existing.create_index if existing else change.index,
            modify_index=change.index,
        )
        renamed = existing is not None and existing.name != service.name
        if existing is not None and renamed:
            self._drop_service(existing.node, existing.id, change, keep_checks=True)
        tags_before = self._tag_view(service.name)
        self._put_service(stored)
        change.writes.append(Upsert(stored))
        if renamed:
            for check in self.checks_of_instance(service.node, service.id):
                self._upsert_check(check, change)
        change.topics |= {
            catalog_service_topic(service.name),
            health_service_topic(service.name),
            catalog_node_topic(service.node),
        }
        if tags_before != self._tag_view(service.name):
            change.topics.add(CATALOG_SERVICES)
        if existing is not None and existing.tags != service.tags:
            # Checks carry ServiceTags, so check listings change with the tags.
            for check in self.checks_of_instance(service.node, service.id):
                change.topics |= _check_topics(check)
        self._mark(change)

    def _drop_service(self, node: str, service_id: str, change: ChangeSet, keep_checks: bool = False) -> None:
        service = self._services[node][service_id]
        tags_before = self._tag_view(service.name)
        del self._services[node][service_id]
        if not self._services[node]:
            del self._services[node]
        by_name = self._by_name[service.name]
        del by_name[(node, service_id)]
        if not by_name:
            del self._by_name[service.name]
        self._count_tags(service, -1)
        if not keep_checks:
            for check_id in list(self._service_checks.get((node, service_id), ())):
                self._drop_check(node, check_id, change)
        change.writes.append(Delete("service", (node, service_id)))
        change.topics |= {
            catalog_service_topic(service.name),
            health_service_topic(service.name),
            catalog_node_topic(node),
        }
        if tags_before != self._tag_view(service.name):
            change.topics.add(CATALOG_SERVICES)
        self._mark(change)

    def _upsert_check(self, check: Check, change: ChangeSet) -> None:
        existing = self.check(check.node, check.check_id)
        if check.service_id:
            service = self.service_instance(check.node, check.service_id)
            check = replace(check, service_name=service.name if service else check.service_name)
        if existing is not None and existing.same_content(check):
            return
        stored = replace(
            check,
            create_index=existing.create_index if existing else change.index,
            modify_index=change.index,
        )
        if existing is not None:
            change.topics |= self._check_affects(existing)
            if existing.service_id != check.service_id:
                self._unlink_check(existing)
        self._put_check(stored)
        change.writes.append(Upsert(stored))
        change.topics |= self._check_affects(stored)
        self._mark(change)

    def _drop_check(self, node: str, check_id: str, change: ChangeSet) -> None:
        check = self._checks[node].pop(check_id)
        if not self._checks[node]:
            del self._checks[node]
        self._unlink_check(check)
        change.writes.append(Delete("check", (node, check_id)))
        change.topics |= self._check_affects(check)
        self._mark(change)

    def _unlink_check(self, check: Check) -> None:
        if not check.service_id:
            return
        linked = self._service_checks.get((check.node, check.service_id))
        if linked is not None:
            linked.discard(check.check_id)
            if not linked:
                del self._service_checks[(check.node, check.service_id)]

    def _check_affects(self, check: Check) -> set[Topic]:
        topics = _check_topics(check)
        if check.service_id:
            topics.add(health_service_topic(check.service_name))
        else:
            # A node check is part of every instance's health on that node.
            for service in self._services.get(check.node, {}).values():
                topics.add(health_service_topic(service.name))
        return topics

    def _put_service(self, service: Service) -> None:
        previous = self._services.get(service.node, {}).get(service.id)
        if previous is not None:
            self._count_tags(previous, -1)
        self._services.setdefault(service.node, {})[service.id] = service
        self._by_name.setdefault(service.name, {})[(service.node, service.id)] = service
        self._count_tags(service, 1)

    def _count_tags(self, service: Service, delta: int) -> None:
        """Keep per-name tag counts so the tag view costs O(tags), not O(instances)."""
        counts = self._tag_counts.setdefault(service.name, Counter())
        for tag in set(service.tags):
            counts[tag] += delta
            if counts[tag] <= 0:
                del counts[tag]
        if not counts:
            del self._tag_counts[service.name]

    def _put_check(self, check: Check) -> None:
        self._checks.setdefault(check.node, {})[check.check_id] = check
        if check.service_id:
            self._service_checks.setdefault((check.node, check.service_id), set()).add(check.check_id)

    def _put_kv(self, entry: KVEntry) -> None:
        if entry.key not in self._kv:
            bisect.insort(self._kv_keys, entry.key)
        self._kv[entry.key] = entry

    def _drop_kv(self, key: str, change: ChangeSet) -> None:
        del self._kv[key]
        del self._kv_keys[bisect.bisect_left(self._kv_keys, key)]
        if key not in self._tombstones:
            bisect.insort(self._tombstone_keys, key)
        self._tombstones[key] = change.index
        if len(self._tombstones) > MAX_TOMBSTONES:
            oldest = next(iter(self._tombstones))
            del self._tombstones[oldest]
            del self._tombstone_keys[bisect.bisect_left(self._tombstone_keys, oldest)]
        change.writes.append(Delete("kv", (key,)))
        self._kv_topics(key, change)

    def _kv_topics(self, key: str, change: ChangeSet) -> None:
        change.topics.add(kv_key_topic(key))
        # Only prefixes someone watches become topics: a key of length L has L+1 prefixes.
        for end in range(len(key) + 1):
            topic = kv_prefix_topic(key[:end])
            if self._watches.has(topic):
                change.topics.add(topic)
        self._mark(change)

    def _tag_view(self, name: str) -> list[str] | None:
        return sorted(self._tag_counts.get(name, ())) if name in self._by_name else None


def _check_topics(check: Check) -> set[Topic]:
    return {
        health_node_topic(check.node),
        health_state_topic("any"),
        health_state_topic(check.status),
    }


def _prefix_range(keys: list[str], prefix: str) -> list[str]:
    start = bisect.bisect_left(keys, prefix)
    if not prefix:
        return keys[start:]
    end = bisect.bisect_left(keys, prefix[:-1] + chr(ord(prefix[-1]) + 1))
    return keys[start:end]


def agent_serf_check(node: str) -> Check:
    """The node-level check every Consul agent node carries."""
    return Check(
        node=node,
        check_id=SERF_CHECK_ID,
        name="Serf Health Status",
        status=PASSING,
        output="Agent alive and reachable",
    )


__all__ = [
    "CATALOG_NODES",
    "CATALOG_SERVICES",
    "Catalog",
    "CatalogError",
    "ChangeSet",
    "Delete",
    "Topic",
    "Upsert",
    "Watch",
    "Write",
    "agent_serf_check",
]
