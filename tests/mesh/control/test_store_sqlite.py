"""The embedded store: atomic commits, durability across reopen, stale-plan detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.control.changes import plan_apply, plan_delete
from mesh.control.state import ConfigState
from mesh.control.store import StaleState
from mesh.control.store_sqlite import SqliteRuleStore
from mesh.rules.resource import ResourceKey
from tests.mesh.rules.helpers import dr, parse, vs

NOW = "2026-01-01T00:00:00Z"


async def test_commits_survive_reopening(tmp_path: Path) -> None:
    store = SqliteRuleStore(tmp_path / "control.db")
    state = await store.open()
    assert state.version == 0
    plan = plan_apply(state, [parse(dr()), parse(vs())], NOW)
    await store.commit(plan)
    delete = plan_delete(plan.state, ResourceKey("VirtualService", "default", "reviews"))
    await store.commit(delete)
    await store.close()
    reopened = SqliteRuleStore(tmp_path / "control.db")
    state = await reopened.open()
    assert state.version == 2
    assert list(state.items) == [ResourceKey("DestinationRule", "default", "reviews")]
    stored = state.items[ResourceKey("DestinationRule", "default", "reviews")]
    assert stored.created_at == NOW
    assert stored.resource.content == parse(dr()).content
    await reopened.close()


async def test_a_plan_made_on_an_old_version_is_stale(tmp_path: Path) -> None:
    store = SqliteRuleStore(tmp_path / "control.db")
    state = await store.open()
    await store.commit(plan_apply(state, [parse(dr())], NOW))
    with pytest.raises(StaleState):
        await store.commit(plan_apply(ConfigState(), [parse(vs("ratings"))], NOW))
    assert (await store.refresh()).version == 1
    await store.close()
