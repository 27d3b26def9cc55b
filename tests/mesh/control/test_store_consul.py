"""The Consul KV store against the embedded registry: CAS commits, watches, objects, two replicas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from discovery.client import RegistryClient
from discovery.server import RegistryServer
from mesh.control.changes import plan_apply, plan_delete
from mesh.control.state import ConfigState
from mesh.control.store import StaleState
from mesh.control.store_consul import ConsulRuleStore
from mesh.rules.resource import ResourceKey
from tests.mesh.rules.helpers import dr, parse, vs

NOW = "2026-01-01T00:00:00Z"


@pytest.fixture
async def clients(registry: RegistryServer) -> AsyncIterator[tuple[RegistryClient, RegistryClient]]:
    a = RegistryClient(registry.url, max_connections=0)
    b = RegistryClient(registry.url, max_connections=0)
    yield a, b
    await a.close()
    await b.close()


async def test_two_stores_share_one_configuration_with_cas(clients: tuple[RegistryClient, RegistryClient]) -> None:
    a = ConsulRuleStore(clients[0], "test/mesh", wait=2.0)
    b = ConsulRuleStore(clients[1], "test/mesh", wait=2.0)
    base_a = await a.open()
    base_b = await b.open()
    await a.commit(plan_apply(base_a, [parse(dr()), parse(vs())], NOW))
    with pytest.raises(StaleState):  # b planned on version 0
        await b.commit(plan_apply(base_b, [parse(vs("ratings"))], NOW))
    fresh = await b.refresh()
    assert fresh.version == 1
    assert len(fresh.items) == 2
    await b.commit(plan_apply(fresh, [parse(vs("ratings"))], NOW))
    seen = await a.refresh()
    assert seen.version == 2
    assert ResourceKey("VirtualService", "default", "ratings") in seen.items
    keys = (await clients[0].kv_keys("test/mesh/objects/")).value
    assert len(keys) == 3  # one object per resource; no orphan from b's lost race


async def test_replaced_and_deleted_objects_are_removed(clients: tuple[RegistryClient, RegistryClient]) -> None:
    store = ConsulRuleStore(clients[0], "gc/mesh", wait=2.0)
    state = await store.open()
    plan = plan_apply(state, [parse(vs())], NOW)
    await store.commit(plan)
    edited = parse({**vs(), "spec": {**vs()["spec"], "exportTo": ["*"]}})
    plan = plan_apply(plan.state, [edited], NOW)
    await store.commit(plan)
    assert len((await clients[0].kv_keys("gc/mesh/objects/")).value) == 1
    await store.commit(plan_delete(plan.state, ResourceKey("VirtualService", "default", "reviews")))
    assert (await clients[0].kv_keys("gc/mesh/objects/")).value == []


async def test_watch_reports_commits_of_other_replicas(clients: tuple[RegistryClient, RegistryClient]) -> None:
    writer = ConsulRuleStore(clients[0], "watch/mesh", wait=2.0)
    follower = ConsulRuleStore(clients[1], "watch/mesh", wait=2.0)
    await writer.open()
    await follower.open()
    seen: asyncio.Queue[ConfigState] = asyncio.Queue()
    task = asyncio.create_task(follower.watch(seen.put_nowait))
    try:
        await asyncio.sleep(0.05)
        await writer.commit(plan_apply(ConfigState(), [parse(dr())], NOW))
        state = await asyncio.wait_for(seen.get(), 5.0)
        assert state.version == 1
        assert ResourceKey("DestinationRule", "default", "reviews") in state.items
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
