"""SQLite persistence: records and the index survive close/reopen; concurrent commits share transactions."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

import pytest

from discovery.catalog import Catalog, ChangeSet, agent_serf_check
from discovery.models import PASSING, WARNING, Check, CheckDefinition, KVEntry, Node, Service
from discovery.registry import AgentIdentity, Registry
from discovery.store import Record, Store, StoreError


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(tmp_path / "registry.db")
    records, index = await s.open()
    assert (records, index) == ([], 0)
    yield s
    if s._db is not None:  # some tests close it themselves
        await s.close()


async def reopen(path: Path) -> tuple[list[Record], int]:
    s = Store(path)
    try:
        return await s.open()
    finally:
        await s.close()


def by_key(records: Iterable[Record]) -> dict[tuple[str, ...], Record]:
    out: dict[tuple[str, ...], Record] = {}
    for r in records:
        if isinstance(r, Node):
            out[("node", r.name)] = r
        elif isinstance(r, Service):
            out[("service", r.node, r.id)] = r
        elif isinstance(r, Check):
            out[("check", r.node, r.check_id)] = r
        else:
            out[("kv", r.key)] = r
    return out


def catalog_records(c: Catalog) -> dict[tuple[str, ...], Record]:
    return by_key([*c.nodes(), *(s for n in c.nodes() for s in c.services_on(n.name)), *c.all_checks(), *c.kv_list("")])


async def write(store: Store, catalog: Catalog, apply: Callable[[Catalog], ChangeSet]) -> ChangeSet:
    change = apply(catalog)
    if change.changed:
        await store.commit(change)
    return change


async def test_records_and_index_survive_reopen(store: Store) -> None:
    c = Catalog(agent_node="n1")
    n1 = Node("n1", "10.0.0.1", id="id-1", meta={"rack": "a"}, tagged_addresses={"lan": "10.0.0.1"})
    await write(store, c, lambda c: c.register_checks([agent_serf_check("n1")], node=n1))
    http = CheckDefinition(http="http://127.0.0.1:1/h", interval=10, timeout=1, header={"X": ("1", "2")})
    await write(
        store,
        c,
        lambda c: c.register_service(
            Service("n1", "web1", "web", tags=("v1",), port=80, meta={"m": "1"}),
            [Check("n1", "service:web1", "web check", service_id="web1", definition=http)],
        ),
    )
    await write(store, c, lambda c: c.register_service(Service("n1", "db1", "db")))
    await write(store, c, lambda c: c.update_check("n1", "service:web1", WARNING, "slow"))
    await write(store, c, lambda c: c.kv_put("cfg/a", b"\x00\x01", flags=9))
    await write(store, c, lambda c: c.kv_put("cfg/b", b"b"))
    await write(store, c, lambda c: c.kv_delete("cfg/b"))
    await write(store, c, lambda c: c.deregister_service("n1", "db1"))
    await store.close()

    records, index = await reopen(store.path)
    assert index == c.index
    assert by_key(records) == catalog_records(c)
    assert ("kv", "cfg/b") not in by_key(records)
    assert ("service", "n1", "db1") not in by_key(records)

    restored = Catalog(agent_node="n1")
    restored.load(records, index)
    assert restored.index == c.index
    web = restored.check("n1", "service:web1")
    assert web is not None
    assert (web.status, web.output, web.definition) == (WARNING, "slow", http)


async def test_meta_index_is_persisted_even_when_no_record_carries_it(store: Store) -> None:
    c = Catalog()
    await write(store, c, lambda c: c.kv_put("a", b""))
    gone = await write(store, c, lambda c: c.kv_delete("a"))
    await store.close()
    records, index = await reopen(store.path)
    assert records == []
    assert index == gone.index == 3


async def test_group_commit_batches_concurrent_writers(store: Store) -> None:
    c = Catalog()
    changes = [c.kv_put(f"k{i:03}", str(i).encode()) for i in range(200)]
    batches: list[int] = []
    store.on_batch = lambda size, _seconds: batches.append(size)
    await asyncio.gather(*(store.commit(change) for change in changes))
    assert sum(batches) == 200
    assert store.commits == len(batches) < 200
    assert store.commits <= 2, batches
    await store.close()
    records, index = await reopen(store.path)
    assert len(records) == 200
    assert index == changes[-1].index


async def test_writes_arriving_during_a_commit_share_the_next_one(store: Store) -> None:
    """Writers that queue while a transaction is in flight all go into the following transaction."""
    c = Catalog()
    gate, inside = threading.Event(), threading.Event()
    real = store._commit_sync

    def held(changes: Iterable[ChangeSet]) -> None:
        inside.set()
        assert gate.wait(5)
        real(changes)

    store._commit_sync = held  # type: ignore[method-assign]
    first = asyncio.ensure_future(store.commit(c.kv_put("first", b"")))
    assert await asyncio.to_thread(inside.wait, 5)
    later = [asyncio.ensure_future(store.commit(c.kv_put(f"later{i}", b""))) for i in range(50)]
    await asyncio.sleep(0.01)
    assert not first.done(), "nothing is acknowledged before it is durable"
    assert not any(f.done() for f in later)
    store._commit_sync = real  # type: ignore[method-assign]
    gate.set()
    await asyncio.gather(first, *later)
    assert store.commits == 2


async def test_close_drains_queued_commits(tmp_path: Path) -> None:
    s = Store(tmp_path / "r.db")
    await s.open()
    c = Catalog()
    pending = [asyncio.ensure_future(s.commit(c.kv_put(f"k{i}", b""))) for i in range(20)]
    await asyncio.sleep(0)
    await s.close()
    await asyncio.gather(*pending)
    records, index = await reopen(s.path)
    assert len(records) == 20
    assert index == c.index


async def test_a_failed_commit_fails_its_writers_and_every_later_one(store: Store) -> None:
    c = Catalog()
    await store.commit(c.kv_put("ok", b""))

    def broken(_changes: Iterable[ChangeSet]) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    store._commit_sync = broken  # type: ignore[method-assign,assignment]
    with pytest.raises(StoreError, match="disk I/O error"):
        await store.commit(c.kv_put("lost", b""))
    assert store.failure is not None
    with pytest.raises(StoreError, match="unusable"):
        await store.commit(c.kv_put("later", b""))


async def test_failed_commit_marks_the_registry_unhealthy(tmp_path: Path) -> None:
    reg = Registry(tmp_path, AgentIdentity("n1", "127.0.0.1"))
    await reg.open()
    fatal: list[BaseException] = []
    reg.on_fatal = fatal.append

    def broken(_changes: Iterable[ChangeSet]) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    reg.store._commit_sync = broken  # type: ignore[method-assign,assignment]
    assert reg.healthy
    with pytest.raises(StoreError):
        await reg.write(lambda c: c.kv_put("k", b""))
    assert not reg.healthy
    assert len(fatal) == 1
    await reg.close()


async def test_wrong_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    await reopen(path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = 99 WHERE name = 'schema'")
    with pytest.raises(StoreError, match="schema version 99"):
        await reopen(path)


async def test_unreadable_data_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open registry data"):
        await reopen(path)


async def test_database_uses_wal_and_full_sync(store: Store) -> None:
    await store.commit(Catalog().kv_put("k", b""))
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# === the registry on top ===


async def test_registry_reopens_with_the_same_state_and_no_new_index(tmp_path: Path) -> None:
    identity = AgentIdentity("n1", "127.0.0.1")
    reg = Registry(tmp_path, identity)
    await reg.open()
    first_node = reg.catalog.node("n1")
    assert first_node is not None
    assert first_node.id
    await reg.write(lambda c: c.register_service(Service("n1", "web1", "web", port=80)))
    await reg.write(lambda c: c.kv_put("k", b"v", flags=1))
    before = (reg.catalog.index, catalog_records(reg.catalog))
    await reg.close()

    again = Registry(tmp_path, identity)
    await again.open()
    assert (again.catalog.index, catalog_records(again.catalog)) == before, "reopening writes nothing"
    serf = again.catalog.check("n1", "serfHealth")
    assert serf is not None
    assert serf.status == PASSING
    change = await again.write(lambda c: c.kv_put("k", b"w"))
    assert change.index == before[0] + 1
    await again.close()


async def test_identical_write_is_acknowledged_only_once_what_it_repeats_is_durable(tmp_path: Path) -> None:
    """A retried registration finds its twin applied in memory but not yet on disk: it must wait for it."""
    reg = Registry(tmp_path, AgentIdentity("n1", "127.0.0.1"))
    await reg.open()
    gate, inside = threading.Event(), threading.Event()
    real = reg.store._commit_sync

    def held(changes: Iterable[ChangeSet]) -> None:
        inside.set()
        assert gate.wait(5)
        real(changes)

    reg.store._commit_sync = held  # type: ignore[method-assign]
    service = Service("n1", "web1", "web", port=80)
    first = asyncio.ensure_future(reg.write(lambda c: c.register_service(service)))
    assert await asyncio.to_thread(inside.wait, 5)
    first.cancel()  # the client hung up: the registration still commits, and its retry must wait for that
    retry = asyncio.ensure_future(reg.write(lambda c: c.register_service(service)))
    cas_miss = asyncio.ensure_future(reg.write(lambda c: c.kv_put("k", b"", cas=7)))
    await asyncio.sleep(0.05)
    assert not retry.done(), "the retry was acknowledged while the registration could still be lost"
    assert not cas_miss.done()
    gate.set()
    assert not (await retry).changed
    assert reg.catalog.service_instance("n1", "web1") is not None
    with pytest.raises(asyncio.CancelledError):
        await first
    assert (await cas_miss).result is False
    await reg.close()


async def test_kv_entry_with_every_field_survives(store: Store) -> None:
    c = Catalog()
    await write(store, c, lambda c: c.kv_put("bin", bytes(range(256)), flags=2**64 - 1))
    await store.close()
    records, _ = await reopen(store.path)
    (entry,) = records
    assert isinstance(entry, KVEntry)
    assert entry == c.kv_get("bin")
