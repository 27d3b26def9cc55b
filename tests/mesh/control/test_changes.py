"""Apply and delete plans: actions, versions, resourceVersion preconditions, atomic validation."""

from __future__ import annotations

import pytest

from mesh.control.changes import Conflict, NotFound, plan_apply, plan_delete
from mesh.control.state import ConfigState
from mesh.rules.documents import RuleError
from mesh.rules.resource import ResourceKey
from tests.mesh.rules.helpers import dr, parse, vs, with_path

NOW = "2026-01-01T00:00:00Z"


def applied(*docs: dict[str, object], state: ConfigState | None = None) -> ConfigState:
    plan = plan_apply(state or ConfigState(), [parse(d) for d in docs], NOW)
    return plan.state


def test_create_configure_unchanged_and_versions() -> None:
    first = plan_apply(ConfigState(), [parse(dr()), parse(vs())], NOW)
    assert [o.action for o in first.outcomes] == ["created", "created"]
    assert first.version == 1
    assert first.changed
    again = plan_apply(first.state, [parse(dr()), parse(vs())], NOW)
    assert [o.action for o in again.outcomes] == ["unchanged", "unchanged"]
    assert not again.changed
    assert again.version == 1
    edited = with_path(vs(), "spec.http[0].timeout", "3s")
    third = plan_apply(first.state, [parse(dr()), parse(edited)], NOW)
    assert [o.action for o in third.outcomes] == ["unchanged", "configured"]
    stored = third.state.get(ResourceKey("VirtualService", "default", "reviews"))
    assert stored is not None
    assert (stored.created_version, stored.modified_version, stored.generation) == (1, 2, 2)
    assert stored.document()["metadata"]["resourceVersion"] == "2"


def test_resource_version_must_match() -> None:
    state = applied(vs())
    current = with_path(vs(), "metadata.resourceVersion", "1")
    current = with_path(current, "spec.http[0].timeout", "1s")
    assert plan_apply(state, [parse(current)], NOW).version == 2
    stale = with_path(current, "metadata.resourceVersion", "0")
    with pytest.raises(Conflict) as info:
        plan_apply(state, [parse(stale)], NOW)
    assert info.value.path == "metadata.resourceVersion"
    assert "out of date" in info.value.message
    with pytest.raises(Conflict, match="does not exist"):
        plan_apply(ConfigState(), [parse(current)], NOW)


def test_a_failing_cross_check_rejects_the_whole_apply() -> None:
    bad_route = vs(http=[{"route": [{"destination": {"host": "reviews", "subset": "v7"}}]}])
    state = ConfigState()
    with pytest.raises(RuleError) as info:
        plan_apply(state, [parse(dr()), parse(bad_route)], NOW)
    assert info.value.document == 1
    assert state.version == 0
    assert not state.items


def test_delete_plans() -> None:
    state = applied(dr(), vs(http=[{"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]))
    with pytest.raises(RuleError, match="after this change"):
        plan_delete(state, ResourceKey("DestinationRule", "default", "reviews"))
    plan = plan_delete(state, ResourceKey("VirtualService", "default", "reviews"))
    assert plan.version == 2
    assert plan.deletes == (ResourceKey("VirtualService", "default", "reviews"),)
    with pytest.raises(NotFound):
        plan_delete(state, ResourceKey("VirtualService", "default", "nope"))
    with pytest.raises(Conflict):
        plan_delete(state, ResourceKey("VirtualService", "default", "reviews"), "9")
