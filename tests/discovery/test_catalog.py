"""The catalog core as plain functions: indexes, topics, one-shot watches, preconditions.

No sockets, no event loop. Every write is followed by ``publish`` exactly as the
registry does after the store made it durable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from discovery import catalog as catalog_module
from discovery.catalog import (
    CATALOG_NODES,
    CATALOG_SERVICES,
    Catalog,
    CatalogError,
    ChangeSet,
    Delete,
    Topic,
    Upsert,
    agent_serf_check,
    catalog_node_topic,
    catalog_service_topic,
    health_node_topic,
    health_service_topic,
    health_state_topic,
    kv_key_topic,
    kv_prefix_topic,
)
from discovery.models import CRITICAL, PASSING, WARNING, Check, CheckDefinition, KVEntry, Node, Service

# === builders ===


def node(name: str = "n1", address: str = "10.0.0.1", **kw: Any) -> Node:
    return Node(name=name, address=address, **kw)


def svc(service_id: str = "web1", name: str = "web", node_name: str = "n1", **kw: Any) -> Service:
    return Service(node=node_name, id=service_id, name=name, **kw)


def chk(check_id: str, node_name: str = "n1", service_id: str = "", status: str = PASSING, **kw: Any) -> Check:
    return Check(node=node_name, check_id=check_id, name=check_id, status=status, service_id=service_id, **kw)


def commit(catalog: Catalog, change: ChangeSet) -> ChangeSet:
    """What the registry does after the store: wake the watches of the change."""
    catalog.publish(change)
    return change


class Recorder:
    """One one-shot watch per topic; remembers which fired."""

    def __init__(self, catalog: Catalog, topics: Iterable[Topic]) -> None:
        self.fired: set[Topic] = set()
        self.watches = {t: catalog.watch((t,), lambda t=t: self.fired.add(t)) for t in topics}  # type: ignore[misc]

    def cancel(self) -> None:
        for w in self.watches.values():
            w.cancel()


def fired_by(catalog: Catalog, topics: Iterable[Topic], write: Callable[[Catalog], ChangeSet]) -> set[Topic]:
    recorder = Recorder(catalog, topics)
    commit(catalog, write(catalog))
    recorder.cancel()
    return recorder.fired


WEB = health_service_topic("web")


def populated() -> Catalog:
    """n1: web1 (+ its check) and the node check serfHealth; n2: db1 (+ its check) and serfHealth."""
    c = Catalog(agent_node="n1")
    commit(c, c.register_checks([agent_serf_check("n1")], node=node("n1", "10.0.0.1")))
    commit(c, c.register_checks([agent_serf_check("n2")], node=node("n2", "10.0.0.2")))
    commit(c, c.register_service(svc("web1", "web", tags=("v1",), port=80), [chk("service:web1", service_id="web1")]))
    commit(
        c,
        c.register_service(
            svc("db1", "db", "n2", tags=("primary",), port=5432), [chk("service:db1", "n2", service_id="db1")]
        ),
    )
    return c


# === the index ===


def test_one_index_moves_by_one_per_changing_write() -> None:
    c = Catalog()
    assert c.index == 1
    seen = []
    writes: list[Callable[[Catalog], ChangeSet]] = [
        lambda c: c.ensure_node(node()),
        lambda c: c.register_service(svc()),
        lambda c: c.kv_put("k", b"v"),
        lambda c: c.register_checks([chk("nc")]),
        lambda c: c.update_check("n1", "nc", CRITICAL, "down"),
        lambda c: c.kv_delete("k"),
    ]
    for write in writes:
        change = commit(c, write(c))
        assert change.changed
        seen.append(change.index)
        assert c.index == change.index
    assert seen == list(range(2, 8))


def test_create_and_modify_index_of_every_record_kind() -> None:
    c = Catalog()
    created = commit(c, c.ensure_node(node())).index
    assert c.node("n1") is not None
    assert (c.node("n1").create_index, c.node("n1").modify_index) == (created, created)  # type: ignore[union-attr]

    reg = commit(c, c.register_service(svc(port=80), [chk("c1", service_id="web1")])).index
    s = c.service_instance("n1", "web1")
    k = c.check("n1", "c1")
    assert s is not None
    assert k is not None
    assert (s.create_index, s.modify_index) == (reg, reg)
    assert (k.create_index, k.modify_index) == (reg, reg)

    moved = commit(c, c.register_service(svc(port=81))).index
    s2 = c.service_instance("n1", "web1")
    assert s2 is not None
    assert (s2.create_index, s2.modify_index) == (reg, moved)
    assert c.check("n1", "c1") == k, "a service update leaves its checks alone"

    flipped = commit(c, c.update_check("n1", "c1", CRITICAL, "boom")).index
    k2 = c.check("n1", "c1")
    assert k2 is not None
    assert (k2.create_index, k2.modify_index) == (reg, flipped)
    assert (k2.status, k2.output) == (CRITICAL, "boom")

    kv1 = commit(c, c.kv_put("a", b"1")).index
    kv2 = commit(c, c.kv_put("a", b"2", flags=7)).index
    e = c.kv_get("a")
    assert e is not None
    assert (e.create_index, e.modify_index, e.flags, e.value) == (kv1, kv2, 7, b"2")
    assert c.node("n1").modify_index == created  # type: ignore[union-attr]


def test_identical_writes_take_no_index_and_wake_nobody() -> None:
    c = populated()
    before = c.index
    web1 = c.service_instance("n1", "web1")
    check = c.check("n1", "service:web1")
    assert web1 is not None
    assert check is not None
    everything = [CATALOG_SERVICES, CATALOG_NODES, WEB, health_state_topic("any")]
    writes: list[Callable[[Catalog], ChangeSet]] = [
        # the stored record itself, and a fresh copy with index fields zeroed
        lambda c: c.register_service(web1, [check]),
        lambda c: c.register_service(
            svc("web1", "web", tags=("v1",), port=80), [chk("service:web1", service_id="web1")]
        ),
        lambda c: c.ensure_node(node("n1", "10.0.0.1")),
        lambda c: c.register_checks([agent_serf_check("n2")], node=node("n2", "10.0.0.2")),
        lambda c: c.update_check("n1", "service:web1", PASSING, ""),
        lambda c: c.deregister_node("nope"),
        lambda c: c.kv_delete("absent"),
        lambda c: c.kv_delete_tree("absent/"),
    ]
    for write in writes:
        change = write(c)
        assert not change.changed
        assert change.topics == set()
        assert fired_by(c, everything, lambda c, change=change: change) == set()  # type: ignore[misc]
        assert c.index == before


def test_service_registration_with_new_node_and_checks_is_one_index() -> None:
    c = Catalog()
    change = commit(
        c,
        c.register_service(
            svc("api1", "api", "n9"), [chk("a", "n9", service_id="api1"), chk("b", "n9")], node=node("n9", "10.9.9.9")
        ),
    )
    assert change.index == 2
    assert c.index == 2
    assert {type(w) for w in change.writes} == {Upsert}
    assert len(change.writes) == 4
    records = [c.node("n9"), c.service_instance("n9", "api1"), c.check("n9", "a"), c.check("n9", "b")]
    assert all(r is not None and r.create_index == r.modify_index == 2 for r in records)


# === topics: exactly the queries whose result changed ===


def test_health_service_watch_ignores_unrelated_writes() -> None:
    c = populated()
    unrelated: list[Callable[[Catalog], ChangeSet]] = [
        lambda c: c.register_service(svc("db1", "db", "n2", tags=("primary",), port=5433)),
        lambda c: c.register_service(svc("db2", "db", "n1")),  # another service, even on web's node
        lambda c: c.update_check("n2", "service:db1", CRITICAL, "down"),
        lambda c: c.update_check("n2", "serfHealth", CRITICAL, "n2 gone"),  # node check of another node
        lambda c: c.register_checks([chk("disk", "n2", status=WARNING)]),
        lambda c: c.ensure_node(node("n2", "10.0.0.22")),
        lambda c: c.ensure_node(node("n3", "10.0.0.3")),
        lambda c: c.kv_put("web", b"not a service"),
        lambda c: c.deregister_service("n2", "db1"),
    ]
    for write in unrelated:
        assert WEB not in fired_by(c, [WEB], write)
    assert c.topic_index([WEB]) < c.index


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(lambda c: c.update_check("n1", "service:web1", CRITICAL, "down"), id="instance-check-status"),
        pytest.param(lambda c: c.update_check("n1", "service:web1", PASSING, "new output"), id="instance-check-output"),
        pytest.param(lambda c: c.update_check("n1", "serfHealth", CRITICAL, "n1 gone"), id="node-check-of-webs-node"),
        pytest.param(lambda c: c.register_checks([chk("mem", "n1", status=WARNING)]), id="new-node-check-on-webs-node"),
        pytest.param(lambda c: c.deregister_check("n1", "serfHealth"), id="node-check-removed"),
        pytest.param(lambda c: c.ensure_node(node("n1", "10.0.0.99")), id="node-address"),
        pytest.param(lambda c: c.register_service(svc("web1", "web", tags=("v1",), port=81)), id="instance-port"),
        pytest.param(lambda c: c.register_service(svc("web2", "web", "n2")), id="new-instance"),
        pytest.param(lambda c: c.deregister_service("n1", "web1"), id="instance-removed"),
        pytest.param(lambda c: c.deregister_node("n1"), id="node-removed"),
        pytest.param(lambda c: c.register_service(svc("web1", "api")), id="instance-renamed-away"),
    ],
)
def test_health_service_watch_fires_on_every_change_of_its_result(write: Callable[[Catalog], ChangeSet]) -> None:
    c = populated()
    change = write(c)
    assert change.changed
    recorder = Recorder(c, [WEB])
    fired = commit(c, change)
    assert c.publish(fired) == 0, "watches are one-shot"
    assert recorder.fired == {WEB}
    assert c.topic_index([WEB]) == change.index


def test_catalog_services_fires_only_when_names_or_tags_change() -> None:
    c = populated()

    def fires(write: Callable[[Catalog], ChangeSet]) -> bool:
        return CATALOG_SERVICES in fired_by(c, [CATALOG_SERVICES], write)

    assert not fires(lambda c: c.register_service(svc("web1", "web", tags=("v1",), port=9999)))
    assert not fires(lambda c: c.register_service(svc("web1", "web", tags=("v1",), port=9999, address="1.2.3.4")))
    assert not fires(lambda c: c.update_check("n1", "service:web1", CRITICAL, "health is not in this list"))
    assert not fires(lambda c: c.ensure_node(node("n1", "10.1.1.1")))
    assert not fires(lambda c: c.register_service(svc("web2", "web", "n2", tags=("v1",))))  # same name, same tags
    assert fires(lambda c: c.register_service(svc("web2", "web", "n2", tags=("v1", "canary"))))  # new tag
    assert fires(lambda c: c.register_service(svc("cache1", "cache", "n2")))  # new name
    assert not fires(lambda c: c.kv_put("x", b""))
    assert fires(lambda c: c.deregister_service("n2", "web2"))  # "canary" disappears
    assert fires(lambda c: c.deregister_service("n2", "cache1"))  # name disappears
    assert c.service_names() == {"db": ["primary"], "web": ["v1"]}


def test_node_level_topics() -> None:
    c = populated()
    n1_topics = [CATALOG_NODES, catalog_node_topic("n1"), health_node_topic("n1")]
    assert fired_by(c, n1_topics, lambda c: c.ensure_node(node("n1", "10.0.0.5"))) == {
        CATALOG_NODES,
        catalog_node_topic("n1"),
    }
    assert fired_by(c, n1_topics, lambda c: c.update_check("n1", "serfHealth", WARNING, "")) == {
        health_node_topic("n1")
    }
    assert fired_by(c, n1_topics, lambda c: c.register_service(svc("x1", "x"))) == {catalog_node_topic("n1")}
    assert fired_by(c, n1_topics, lambda c: c.update_check("n2", "serfHealth", WARNING, "")) == set()
    # A tag change shows in the ServiceTags of the instance's checks.
    assert fired_by(c, n1_topics, lambda c: c.register_service(svc("web1", "web", tags=("v2",), port=80))) == {
        catalog_node_topic("n1"),
        health_node_topic("n1"),
    }


def test_health_state_topics_follow_old_and_new_status() -> None:
    c = populated()
    states = [health_state_topic(s) for s in ("any", PASSING, WARNING, CRITICAL)]
    assert fired_by(c, states, lambda c: c.update_check("n1", "service:web1", CRITICAL, "x")) == {
        health_state_topic("any"),
        health_state_topic(PASSING),
        health_state_topic(CRITICAL),
    }
    assert fired_by(c, states, lambda c: c.update_check("n1", "service:web1", CRITICAL, "y")) == {
        health_state_topic("any"),
        health_state_topic(CRITICAL),
    }
    assert fired_by(c, states, lambda c: c.kv_put("k", b"")) == set()


def test_watch_fires_once_and_can_be_cancelled() -> None:
    c = populated()
    calls: list[str] = []
    w1 = c.watch([WEB, CATALOG_SERVICES], lambda: calls.append("w1"))
    w2 = c.watch([WEB], lambda: calls.append("w2"))
    assert c.watcher_count() == 3
    w2.cancel()
    change = c.register_service(svc("web9", "web", "n2", tags=("new",)))  # fires both of w1's topics
    assert calls == [], "nothing fires before publish (the write is not durable yet)"
    c.publish(change)
    assert calls == ["w1"]
    assert w1.fired
    c.publish(change)
    assert calls == ["w1"]
    assert c.watcher_count() == 0


# === KV ===


def test_kv_key_and_prefix_watches() -> None:
    c = Catalog()
    commit(c, c.kv_put("app/db/url", b"x"))
    topics = [kv_key_topic("app/db/url"), kv_prefix_topic("app/"), kv_prefix_topic("app/db/"), kv_prefix_topic("")]
    assert fired_by(c, topics, lambda c: c.kv_put("app/web/port", b"80")) == {
        kv_prefix_topic("app/"),
        kv_prefix_topic(""),
    }
    assert fired_by(c, topics, lambda c: c.kv_put("other", b"1")) == {kv_prefix_topic("")}
    assert fired_by(c, topics, lambda c: c.kv_put("app", b"1")) == {kv_prefix_topic("")}  # "app" is not under "app/"
    assert fired_by(c, topics, lambda c: c.kv_put("app/db/url", b"y")) == set(topics)
    assert fired_by(c, topics, lambda c: c.kv_delete("app/db/url")) == set(topics)
    assert fired_by(c, topics, lambda c: c.kv_delete("app/db/url")) == set(), "deleting an absent key changes nothing"


def test_kv_index_of_deleted_key_and_prefix_moves_forward() -> None:
    c = Catalog()
    commit(c, c.kv_put("p/a", b"1"))
    newest = commit(c, c.kv_put("p/b", b"2")).index
    commit(c, c.kv_put("q", b"3"))
    assert c.kv_key_index("p/b") == newest
    assert c.kv_prefix_index("p/") == newest
    gone = commit(c, c.kv_delete("p/b")).index
    assert gone > newest
    assert c.kv_get("p/b") is None
    assert c.kv_key_index("p/b") == gone, "a blocking read on the deleted key must see the delete"
    assert c.kv_prefix_index("p/") == gone, "deleting the newest key must not move the prefix index back"
    tree = commit(c, c.kv_delete_tree("p/")).index
    assert c.kv_list("p/") == []
    assert c.kv_prefix_index("p/") == tree
    assert c.kv_key_index("p/a") == tree
    assert c.kv_key_index("never") == c.floor


def test_kv_rewrite_after_delete_keeps_indexes_consistent() -> None:
    c = Catalog()
    commit(c, c.kv_put("a/k", b"1"))
    commit(c, c.kv_delete("a/k"))
    again = commit(c, c.kv_put("a/k", b"2")).index
    assert c.kv_key_index("a/k") == again
    assert c.kv_prefix_index("a/") == again
    assert c.kv_prefix_index("") == again
    entry = c.kv_get("a/k")
    assert entry is not None
    assert entry.create_index == again, "a key written after its delete is new"
    gone = commit(c, c.kv_delete("a/k")).index
    assert c.kv_prefix_index("a/") == gone
    commit(c, c.kv_put("a/k", b"3"))
    commit(c, c.kv_delete_tree("a/"))
    assert c.kv_prefix_index("a/") == c.index


def test_kv_tombstones_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog_module, "MAX_TOMBSTONES", 3)
    c = Catalog()
    for i in range(6):
        commit(c, c.kv_put(f"t/{i}", b""))
    for i in range(6):
        commit(c, c.kv_delete(f"t/{i}"))
    commit(c, c.kv_put("t/5", b"back"))
    commit(c, c.kv_delete("t/5"))
    assert c.kv_prefix_index("t/") == c.index
    assert c.kv_key_index("t/0") == c.floor, "the oldest tombstones are dropped"
    assert c.kv_key_index("t/4") > c.floor


def test_kv_cas() -> None:
    c = Catalog()
    created = commit(c, c.kv_put("k", b"1", cas=0))
    assert created.result
    assert created.changed
    refused = c.kv_put("k", b"2", cas=0)
    assert (refused.result, refused.changed, c.index) == (False, False, created.index)
    stale = c.kv_put("k", b"2", cas=created.index + 5)
    assert (stale.result, stale.changed) == (False, False)
    ok = commit(c, c.kv_put("k", b"2", cas=created.index))
    assert ok.result
    entry = c.kv_get("k")
    assert entry is not None
    assert entry.value == b"2"
    assert not c.kv_put("absent", b"", cas=3).result, "cas=N on an absent key fails"
    # delete with cas: 0 never deletes, N must match
    assert not c.kv_delete("k", cas=0).result
    assert not c.kv_delete("k", cas=created.index).result
    assert c.kv_get("k") is not None
    deleted = commit(c, c.kv_delete("k", cas=ok.index))
    assert deleted.result
    assert deleted.changed
    assert c.kv_get("k") is None


def test_kv_put_replaces_the_whole_entry() -> None:
    c = Catalog()
    commit(c, c.kv_put("k", b"v", flags=42))
    commit(c, c.kv_put("k", b""))
    entry = c.kv_get("k")
    assert entry is not None
    assert (entry.value, entry.flags) == (b"", 0)


def test_kv_delete_tree_is_a_string_prefix() -> None:
    c = Catalog()
    for key in ("a", "a/1", "a/2/x", "ab", "b"):
        commit(c, c.kv_put(key, b""))
    change = commit(c, c.kv_delete_tree("a/"))
    assert sorted(w.key[0] for w in change.writes if isinstance(w, Delete)) == ["a/1", "a/2/x"]
    assert [e.key for e in c.kv_list("")] == ["a", "ab", "b"]
    commit(c, c.kv_delete_tree("a"))
    assert [e.key for e in c.kv_list("")] == ["b"]
    commit(c, c.kv_delete_tree(""))
    assert c.kv_list("") == []


# === deregistration and preconditions ===


def test_deregister_service_removes_its_checks_only() -> None:
    c = populated()
    commit(c, c.register_checks([chk("extra", service_id="web1")]))
    change = commit(c, c.deregister_service("n1", "web1"))
    assert c.service_instance("n1", "web1") is None
    assert c.check("n1", "service:web1") is None
    assert c.check("n1", "extra") is None
    assert c.check("n1", "serfHealth") is not None, "node checks stay"
    assert c.checks_of_instance("n1", "web1") == []
    assert c.instances("web") == []
    assert "web" not in c.service_names()
    deletes = {(w.table, w.key) for w in change.writes if isinstance(w, Delete)}
    assert deletes == {("service", ("n1", "web1")), ("check", ("n1", "service:web1")), ("check", ("n1", "extra"))}


def test_deregister_node_removes_everything_on_it() -> None:
    c = populated()
    commit(c, c.register_service(svc("web2", "web", "n2")))
    change = commit(c, c.deregister_node("n1"))
    assert c.node("n1") is None
    assert c.services_on("n1") == []
    assert c.checks_on("n1") == []
    assert [s.id for s in c.instances("web")] == ["web2"]
    assert all(isinstance(w, Delete) for w in change.writes)
    assert {(w.table, w.key) for w in change.writes if isinstance(w, Delete)} == {
        ("service", ("n1", "web1")),
        ("check", ("n1", "service:web1")),
        ("check", ("n1", "serfHealth")),
        ("node", ("n1",)),
    }
    assert c.counts() == {"nodes": 1, "services": 2, "instances": 2, "checks": 2, "kv": 0}


def _state(c: Catalog) -> tuple[Any, ...]:
    return (
        c.index,
        c.nodes(),
        [c.services_on(n.name) for n in c.nodes()],
        sorted(c.all_checks(), key=lambda k: (k.node, k.check_id)),
        c.kv_list(""),
        c.service_names(),
    )


@pytest.mark.parametrize(
    ("write", "kind"),
    [
        pytest.param(lambda c: c.register_service(svc("x", "x", "nowhere")), "not_found", id="service-unknown-node"),
        pytest.param(
            lambda c: c.register_service(svc("x", "x", "nowhere"), node=node("elsewhere")),
            "not_found",
            id="service-node-mismatch",
        ),
        pytest.param(
            lambda c: c.register_service(
                svc("web3", "web"), [chk("ok", service_id="web3"), chk("bad", service_id="zz")]
            ),
            "not_found",
            id="service-with-check-of-unknown-service",
        ),
        pytest.param(
            lambda c: c.register_checks([chk("c", service_id="nope")]), "not_found", id="check-unknown-service"
        ),
        pytest.param(
            lambda c: c.register_checks([chk("ok"), chk("c", "nowhere")]), "not_found", id="check-unknown-node"
        ),
        pytest.param(lambda c: c.deregister_service("n1", "nope"), "not_found", id="deregister-unknown-service"),
        pytest.param(lambda c: c.deregister_check("n1", "nope"), "not_found", id="deregister-unknown-check"),
        pytest.param(lambda c: c.update_check("n1", "nope", PASSING, ""), "not_found", id="update-unknown-check"),
        pytest.param(lambda c: c.update_check("n1", "service:web1", "sleepy", ""), "invalid", id="bad-status"),
    ],
)
def test_refused_writes_change_nothing(write: Callable[[Catalog], ChangeSet], kind: str) -> None:
    c = populated()
    before = _state(c)
    recorder = Recorder(c, [WEB, CATALOG_SERVICES, CATALOG_NODES])
    with pytest.raises(CatalogError) as info:
        write(c)
    assert info.value.kind == kind
    assert _state(c) == before
    assert recorder.fired == set()


def test_deregister_messages_match_consul() -> None:
    c = populated()
    with pytest.raises(CatalogError, match=r'Unknown service ID "web". Ensure that the service ID is passed'):
        c.deregister_service("n1", "web")
    with pytest.raises(CatalogError, match=r'Unknown check ID "x". Ensure that the check ID is passed'):
        c.deregister_check("n1", "x")


def test_replace_existing_checks_drops_only_unlisted_checks_of_that_service() -> None:
    c = populated()
    commit(c, c.register_checks([chk("extra", service_id="web1"), chk("nodecheck")]))
    commit(c, c.register_service(svc("web1", "web", tags=("v1",), port=80), [chk("new", service_id="web1")]))
    assert {k.check_id for k in c.checks_of_instance("n1", "web1")} == {"service:web1", "extra", "new"}
    commit(
        c,
        c.register_service(
            svc("web1", "web", tags=("v1",), port=80), [chk("new", service_id="web1")], replace_existing_checks=True
        ),
    )
    assert [k.check_id for k in c.checks_of_instance("n1", "web1")] == ["new"]
    assert c.check("n1", "nodecheck") is not None


def test_renaming_an_instance_moves_it_and_its_checks() -> None:
    c = populated()
    change = commit(c, c.register_service(svc("web1", "api", tags=("v1",))))
    assert c.instances("web") == []
    assert [s.id for s in c.instances("api")] == ["web1"]
    check = c.check("n1", "service:web1")
    assert check is not None
    assert check.service_name == "api"
    assert check.modify_index == change.index
    assert c.checks_of_service("api") == [check]
    assert {health_service_topic("web"), health_service_topic("api"), CATALOG_SERVICES} <= change.topics


def test_check_moved_to_another_service() -> None:
    c = populated()
    commit(c, c.register_service(svc("web2", "web2name")))
    recorder = Recorder(c, [WEB, health_service_topic("web2name")])
    commit(c, c.register_checks([chk("service:web1", service_id="web2")]))
    assert recorder.fired == {WEB, health_service_topic("web2name")}
    assert c.checks_of_instance("n1", "web1") == []
    assert [k.check_id for k in c.checks_of_instance("n1", "web2")] == ["service:web1"]


def test_topic_index_never_below_floor_and_load_restores_indexes() -> None:
    c = populated()
    commit(c, c.kv_put("k", b"v", flags=3))
    commit(c, c.update_check("n1", "service:web1", WARNING, "slow"))
    records: list[Node | Service | Check | KVEntry] = [
        *c.nodes(),
        *(s for n in c.nodes() for s in c.services_on(n.name)),
        *c.all_checks(),
        *c.kv_list(""),
    ]
    # The stored meta index may lag the records (it never does, but load must not trust it).
    restored = Catalog(agent_node="n1")
    restored.load(records, 2)
    assert restored.index == c.index == restored.floor
    assert _state(restored) == _state(c)
    for topic in (WEB, CATALOG_SERVICES, health_service_topic("never"), kv_key_topic("zz")):
        assert restored.topic_index([topic]) == restored.floor
    assert restored.kv_key_index("k") == c.kv_get("k").modify_index  # type: ignore[union-attr]
    assert restored.kv_key_index("never") == restored.floor
    assert restored.kv_prefix_index("nothing/") == restored.floor
    nxt = commit(restored, restored.kv_put("k", b"w"))
    assert nxt.index == c.index + 1
    assert restored.topic_index([WEB]) == restored.floor
    fresh = Catalog(floor=40)
    assert fresh.topic_index([WEB]) == 40
    assert fresh.kv_key_index("a") == 40
    assert commit(fresh, fresh.kv_put("a", b"")).index == 41


def test_load_accepts_a_meta_index_ahead_of_the_records() -> None:
    c = Catalog()
    c.load([node()], 77)
    assert c.index == c.floor == 77
    assert commit(c, c.kv_put("x", b"")).index == 78


# === property: random write sequences against a naive model ===

NODES = ("n1", "n2", "n3")
SIDS = ("s1", "s2", "s3")
NAMES = ("web", "db")
CIDS = ("c1", "c2", "c3")
KEYS = ("a", "a/b", "a/c", "ab", "b")
PREFIXES = ("", "a", "a/", "b")
STATES = ("any", PASSING, WARNING, CRITICAL)

statuses = st.sampled_from((PASSING, WARNING, CRITICAL))
defs = st.sampled_from((CheckDefinition(), CheckDefinition(ttl=10.0), CheckDefinition(tcp="h:1", interval=5.0)))


@dataclass(frozen=True)
class Op:
    name: str
    args: tuple[Any, ...]

    def __repr__(self) -> str:
        return f"{self.name}{self.args!r}"


ops = st.one_of(
    st.builds(lambda n, a: Op("node", (n, a)), st.sampled_from(NODES), st.sampled_from(("10.0.0.1", "10.0.0.2"))),
    st.builds(
        lambda n, sid, name, tags, port, checks, repl, with_node: Op(
            "service", (n, sid, name, tags, port, checks, repl, with_node)
        ),
        st.sampled_from(NODES),
        st.sampled_from(SIDS),
        st.sampled_from(NAMES),
        st.lists(st.sampled_from(("a", "b")), max_size=2, unique=True).map(tuple),
        st.sampled_from((80, 81)),
        st.lists(st.tuples(st.sampled_from(CIDS), statuses, defs), max_size=2, unique_by=lambda t: t[0]),
        st.booleans(),
        st.sampled_from((None, "10.0.0.1", "10.0.0.3")),
    ),
    st.builds(
        lambda n, cid, sid, status, d: Op("check", (n, cid, sid, status, d)),
        st.sampled_from(NODES),
        st.sampled_from(CIDS),
        st.sampled_from(("", *SIDS)),
        statuses,
        defs,
    ),
    st.builds(
        lambda n, cid, status, out: Op("update", (n, cid, status, out)),
        st.sampled_from(NODES),
        st.sampled_from(CIDS),
        statuses,
        st.sampled_from(("", "out")),
    ),
    st.builds(lambda n, sid: Op("dereg_service", (n, sid)), st.sampled_from(NODES), st.sampled_from(SIDS)),
    st.builds(lambda n, cid: Op("dereg_check", (n, cid)), st.sampled_from(NODES), st.sampled_from(CIDS)),
    st.builds(lambda n: Op("dereg_node", (n,)), st.sampled_from(NODES)),
    st.builds(
        lambda k, v, f, cas: Op("put", (k, v, f, cas)),
        st.sampled_from(KEYS),
        st.sampled_from((b"", b"1")),
        st.sampled_from((0, 1)),
        st.sampled_from((None, 0, "current", "stale")),
    ),
    st.builds(lambda k, cas: Op("delete", (k, cas)), st.sampled_from(KEYS), st.sampled_from((None, 0, "current"))),
    st.builds(lambda p: Op("tree", (p,)), st.sampled_from(PREFIXES)),
)


def _cas(c: Catalog, key: str, choice: Any) -> int | None:
    entry = c.kv_get(key)
    if choice == "current":
        return entry.modify_index if entry else 0
    if choice == "stale":
        return (entry.modify_index if entry else 0) + 1
    return choice  # type: ignore[no-any-return]


def apply_op(c: Catalog, op: Op) -> ChangeSet:
    a = op.args
    if op.name == "node":
        return c.ensure_node(node(a[0], a[1]))
    if op.name == "service":
        n, sid, name, tags, port, checks, repl, with_node = a
        return c.register_service(
            svc(sid, name, n, tags=tags, port=port),
            [chk(cid, n, service_id=sid, status=st_, definition=d) for cid, st_, d in checks],
            replace_existing_checks=repl,
            node=node(n, with_node) if with_node else None,
        )
    if op.name == "check":
        n, cid, sid, status, d = a
        return c.register_checks([chk(cid, n, service_id=sid, status=status, definition=d)])
    if op.name == "update":
        return c.update_check(*a)
    if op.name == "dereg_service":
        return c.deregister_service(*a)
    if op.name == "dereg_check":
        return c.deregister_check(*a)
    if op.name == "dereg_node":
        return c.deregister_node(*a)
    if op.name == "put":
        key, value, flags, cas = a
        return c.kv_put(key, value, flags=flags, cas=_cas(c, key, cas))
    if op.name == "delete":
        key, cas = a
        return c.kv_delete(key, cas=_cas(c, key, cas))
    return c.kv_delete_tree(a[0])


@dataclass
class Records:
    nodes: dict[str, Node]
    services: list[Service]  # sorted by (node, id)
    checks: list[Check]  # sorted by (node, check id)
    kv: list[KVEntry]  # sorted by key


def records_of(c: Catalog) -> Records:
    """The primary records, read without the catalog's derived indexes."""
    nodes = {n.name: n for n in c.nodes()}
    services = sorted((s for n in nodes for s in c.services_on(n)), key=lambda s: (s.node, s.id))
    checks = sorted(c.all_checks(), key=lambda k: (k.node, k.check_id))
    return Records(nodes, services, checks, c.kv_list(""))


def naive_views(r: Records) -> dict[Topic, Any]:
    """Each blocking query's result recomputed from scratch."""
    by_key = {(s.node, s.id): s for s in r.services}

    def tags(k: Check) -> tuple[str, ...]:
        s = by_key.get((k.node, k.service_id)) if k.service_id else None
        return s.tags if s else ()

    def shown(k: Check) -> tuple[Check, tuple[str, ...]]:
        return (k, tags(k))

    views: dict[Topic, Any] = {
        CATALOG_NODES: [r.nodes[n] for n in sorted(r.nodes)],
        CATALOG_SERVICES: {
            name: sorted({t for s in r.services if s.name == name for t in s.tags})
            for name in sorted({s.name for s in r.services})
        },
    }
    for name in NAMES:
        instances = [s for s in r.services if s.name == name]
        views[catalog_service_topic(name)] = [(s, r.nodes[s.node]) for s in instances]
        views[health_service_topic(name)] = [
            (
                r.nodes[s.node],
                s,
                [shown(k) for k in r.checks if k.node == s.node and k.service_id == s.id],
                [k for k in r.checks if k.node == s.node and not k.service_id],
            )
            for s in instances
        ]
    for n in NODES:
        views[catalog_node_topic(n)] = (r.nodes.get(n), [s for s in r.services if s.node == n])
        views[health_node_topic(n)] = [shown(k) for k in r.checks if k.node == n]
    for state in STATES:
        views[health_state_topic(state)] = [shown(k) for k in r.checks if state in ("any", k.status)]
    for key in KEYS:
        views[kv_key_topic(key)] = [e for e in r.kv if e.key == key]
    for prefix in PREFIXES:
        views[kv_prefix_topic(prefix)] = [e for e in r.kv if e.key.startswith(prefix)]
    return views


def assert_queries_match(c: Catalog, r: Records) -> None:
    """The catalog's own query methods (built on derived indexes) agree with the records."""
    assert c.nodes() == [r.nodes[n] for n in sorted(r.nodes)]
    assert c.service_names() == naive_views(r)[CATALOG_SERVICES]
    for name in NAMES:
        assert c.instances(name) == [s for s in r.services if s.name == name]
        assert c.checks_of_service(name) == [
            k for s in r.services if s.name == name for k in r.checks if (k.node, k.service_id) == (s.node, s.id)
        ]
    for s in r.services:
        assert s.node in r.nodes, "every instance has its node"
        assert c.checks_of_instance(s.node, s.id) == [k for k in r.checks if (k.node, k.service_id) == (s.node, s.id)]
    by_key = {(s.node, s.id): s for s in r.services}
    for k in r.checks:
        assert k.node in r.nodes, "every check has its node"
        if k.service_id:
            owner = by_key.get((k.node, k.service_id))
            assert owner is not None, f"check {k.check_id} points at a missing service"
            assert k.service_name == owner.name
            assert c.service_tags(k) == owner.tags
    for n in NODES:
        assert c.node_checks(n) == [k for k in r.checks if k.node == n and not k.service_id]
    for state in STATES:
        assert c.checks_in_state(state) == [k for k in r.checks if state in ("any", k.status)]
    for prefix in PREFIXES:
        assert c.kv_list(prefix) == [e for e in r.kv if e.key.startswith(prefix)]


def all_records(r: Records) -> list[Node | Service | Check | KVEntry]:
    return [*r.nodes.values(), *r.services, *r.checks, *r.kv]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=1, max_size=40))
def test_random_writes_agree_with_a_naive_model(sequence: list[Op]) -> None:
    c = Catalog(agent_node="n1")
    index = c.index
    records = records_of(c)
    views = naive_views(records)
    for op in sequence:
        recorder = Recorder(c, views)
        try:
            change = apply_op(c, op)
        except CatalogError:
            assert records_of(c) == records, f"{op} was refused but changed the catalog"
            assert c.index == index
            recorder.cancel()
            continue
        c.publish(change)
        recorder.cancel()
        after = records_of(c)
        after_views = naive_views(after)
        changed = {t for t in views if views[t] != after_views[t]}
        if change.changed:
            assert change.index == index + 1 == c.index, op
            for write in change.writes:
                if isinstance(write, Upsert):
                    assert write.record.modify_index == change.index
        else:
            assert c.index == index, f"{op} changed nothing but took an index"
            assert after == records
        assert recorder.fired == changed, f"{op}: fired {recorder.fired ^ changed} wrongly"
        for topic in changed:
            if topic[0] == "kv":
                assert c.kv_key_index(topic[1]) == change.index
            elif topic[0] == "kv-prefix":
                assert c.kv_prefix_index(topic[1]) == change.index
            else:
                assert c.topic_index([topic]) == change.index
        for record in all_records(after):
            assert record.create_index <= record.modify_index <= c.index
        for topic in after_views:
            assert c.floor <= c.topic_index([topic]) <= c.index
        assert_queries_match(c, after)
        index, records, views = c.index, after, after_views

    restored = Catalog(agent_node="n1")
    restored.load(all_records(records), c.index)  # the store keeps the index
    assert restored.index == max(c.index, 1)
    assert records_of(restored) == records
    assert_queries_match(restored, records)
    for topic in views:
        assert restored.topic_index([topic]) == restored.index


def test_changeset_write_shapes() -> None:
    c = Catalog()
    change = c.ensure_node(node())
    assert change.writes == [Upsert(replace(node(), create_index=2, modify_index=2))]
    assert ChangeSet().changed is False
