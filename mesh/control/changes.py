"""Applies and deletes as plans: the state they would produce, validated, before anything is stored (pure).

``plan_apply`` takes every resource of one request: each is created, replaced ("configured") or
left alone ("unchanged", same content); ``metadata.resourceVersion``, when given, must be the
stored one, else ``Conflict`` (HTTP 409). The resulting configuration must pass
``mesh.rules.checks``. Only then is a plan returned, with the next config version when anything
changed, so a store commits all of it or nothing. ``plan_delete`` is the same for one resource.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mesh.control.state import ConfigState, StoredResource
from mesh.rules.checks import check_rules
from mesh.rules.documents import RuleError
from mesh.rules.resource import Resource, ResourceKey
from mesh.rules.warnings import Warning, warnings_for


class Conflict(Exception):
    """A ``resourceVersion`` precondition failed (HTTP 409)."""

    def __init__(self, message: str, *, resource: str, document: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = "metadata.resourceVersion"
        self.resource = resource
        self.document = document


class NotFound(Exception):
    """No such resource (HTTP 404)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    key: ResourceKey
    action: str  # created, configured, unchanged, deleted
    resource_version: str
    warnings: tuple[Warning, ...] = ()

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "kind": self.key.kind,
            "namespace": self.key.namespace,
            "name": self.key.name,
            "action": self.action,
            "resourceVersion": self.resource_version,
        }
        if self.warnings:
            out["warnings"] = [w.to_json() for w in self.warnings]
        return out


@dataclass(frozen=True, slots=True)
class Plan:
    base_version: int
    state: ConfigState  # the configuration after the change (``base`` state when nothing changed)
    upserts: tuple[StoredResource, ...]
    deletes: tuple[ResourceKey, ...]
    outcomes: tuple[Outcome, ...]

    @property
    def changed(self) -> bool:
        return bool(self.upserts or self.deletes)

    @property
    def version(self) -> int:
        return self.state.version


def plan_apply(state: ConfigState, resources: Sequence[Resource], now: str) -> Plan:
    """The plan for applying ``resources`` (one request) on top of ``state``."""
    version = state.version + 1
    items = dict(state.items)
    upserts: list[StoredResource] = []
    outcomes: list[Outcome] = []
    index = {resource.key: i for i, resource in enumerate(resources)}
    for i, resource in enumerate(resources):
        existing = items.get(resource.key)
        _check_precondition(resource, existing, i)
        warnings = tuple(warnings_for(resource))
        if existing is not None and existing.resource.content == resource.content:
            outcomes.append(Outcome(resource.key, "unchanged", existing.resource_version, warnings))
            continue
        if existing is None:
            stored = StoredResource(resource, version, version, 1, now)
            action = "created"
        else:
            stored = StoredResource(
                resource, existing.created_version, version, existing.generation + 1, existing.created_at
            )
            action = "configured"
        items[resource.key] = stored
        upserts.append(stored)
        outcomes.append(Outcome(resource.key, action, stored.resource_version, warnings))
    if not upserts:
        return Plan(state.version, state, (), (), tuple(outcomes))
    new_state = ConfigState.build(version, items.values())
    try:
        check_rules(new_state.rules, [stored.key for stored in upserts])
    except RuleError as exc:
        at = _key_of(exc.resource) if exc.resource else None
        exc.document = index.get(at) if at is not None else None
        raise
    return Plan(state.version, new_state, tuple(upserts), (), tuple(outcomes))


def plan_delete(state: ConfigState, key: ResourceKey, resource_version: str | None = None) -> Plan:
    existing = state.get(key)
    if existing is None:
        raise NotFound(f"{key} not found")
    if resource_version is not None and resource_version != existing.resource_version:
        raise Conflict(
            f"{key}: resourceVersion {resource_version} is out of date (the stored one is "
            f"{existing.resource_version}); get it again",
            resource=str(key),
        )
    items = dict(state.items)
    del items[key]
    new_state = ConfigState.build(state.version + 1, items.values())
    check_rules(new_state.rules, (), (key,))
    outcome = Outcome(key, "deleted", str(new_state.version))
    return Plan(state.version, new_state, (), (key,), (outcome,))


def _check_precondition(resource: Resource, existing: StoredResource | None, document: int) -> None:
    wanted = resource.resource_version
    if wanted is None:
        return
    if existing is None:
        raise Conflict(
            f"{resource.key} does not exist, but metadata.resourceVersion {wanted} was given "
            "(it was deleted; remove resourceVersion to create it again)",
            resource=str(resource.key),
            document=document,
        )
    if wanted != existing.resource_version:
        raise Conflict(
            f"{resource.key} was changed since you read it: metadata.resourceVersion {wanted} is out of date, "
            f"the stored one is {existing.resource_version} (get it again and re-apply your edit)",
            resource=str(resource.key),
            document=document,
        )


def _key_of(label: str) -> ResourceKey | None:
    """``"VirtualService ns/name"`` → its key."""
    kind, _, rest = label.partition(" ")
    namespace, _, name = rest.partition("/")
    return ResourceKey(kind, namespace, name) if name else None


__all__ = ["Conflict", "NotFound", "Outcome", "Plan", "plan_apply", "plan_delete"]
