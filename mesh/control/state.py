"""The configuration in force: every stored resource plus the global config version (pure, immutable).

The **config version** counts accepted changes: each apply or delete that changes something
takes the next one, in every store (SQLite or Consul KV), so it is monotonic and shared by
replicas. A resource's ``resourceVersion`` is the config version that last changed it, which
is what optimistic concurrency compares.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from mesh.rules.resource import Resource, ResourceKey
from mesh.rules.ruleset import RuleSet


@dataclass(frozen=True, slots=True)
class StoredResource:
    """A resource as stored: its content plus the server's bookkeeping."""

    resource: Resource
    created_version: int
    modified_version: int
    generation: int = 1
    created_at: str = ""  # RFC 3339, UTC

    @property
    def key(self) -> ResourceKey:
        return self.resource.key

    @property
    def resource_version(self) -> str:
        return str(self.modified_version)

    def document(self) -> dict[str, Any]:
        """What ``GET`` answers: the resource with Kubernetes-style server metadata."""
        data = self.resource.document()
        metadata = data["metadata"]
        metadata["resourceVersion"] = self.resource_version
        metadata["generation"] = self.generation
        if self.created_at:
            metadata["creationTimestamp"] = self.created_at
        return data

    def to_record(self) -> dict[str, Any]:
        """Storage form (both stores): the content and the bookkeeping."""
        return {
            "content": self.resource.content,
            "created": self.created_version,
            "modified": self.modified_version,
            "generation": self.generation,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class ConfigState:
    """Every resource in force at ``version``; ``rules`` is the typed index built from them."""

    version: int = 0
    items: Mapping[ResourceKey, StoredResource] = field(default_factory=lambda: MappingProxyType({}))
    rules: RuleSet = field(default_factory=RuleSet)

    @classmethod
    def build(cls, version: int, items: Iterable[StoredResource]) -> ConfigState:
        by_key = {item.key: item for item in sorted(items, key=lambda i: i.key.id)}
        return cls(version, MappingProxyType(by_key), RuleSet.build(item.resource for item in by_key.values()))

    def get(self, key: ResourceKey) -> StoredResource | None:
        return self.items.get(key)

    def listing(self, kind: str | None = None, namespace: str | None = None) -> list[StoredResource]:
        return [
            item
            for key, item in self.items.items()
            if (kind is None or key.kind == kind) and (namespace is None or key.namespace == namespace)
        ]


__all__ = ["ConfigState", "StoredResource"]
