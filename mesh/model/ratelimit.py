"""The rate limits of a sidecar snapshot: the ``RateLimitPolicy`` specs selecting the workload (pure).

The control plane puts them there (``mesh.control.translate``); a static ``--config`` file may
carry the same section::

    rate_limits:
      - namespace: default
        name: productpage
        spec:
          limits:
          - name: per-user
            key: {header: x-user-id}
            tokenBucket: {maxTokens: 10, tokensPerFill: 10, fillInterval: 1s}

Specs keep their source data, so the snapshot travels as JSON and reads back unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from mesh.model.reader import REQUIRED, Fields, list_items
from mesh.rules.fields import Reader
from mesh.rules.ratelimit import RateLimitPolicySpec, parse_rate_limit_policy


@dataclass(frozen=True, slots=True)
class RateLimitEntry:
    namespace: str
    name: str
    spec: RateLimitPolicySpec
    data: Mapping[str, Any] = field(compare=False, repr=False)

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"


def parse_rate_limits(data: object, path: str = "rate_limits") -> tuple[RateLimitEntry, ...]:
    return tuple(list_items(data, path, _parse_entry))


def _parse_entry(data: object, path: str) -> RateLimitEntry:
    obj = Fields(data, path)
    namespace = obj.string("namespace", REQUIRED)
    name = obj.string("name", REQUIRED)
    spec_data = obj.take("spec", REQUIRED)
    obj.finish()
    reader = Reader(spec_data, obj.at("spec"))
    spec = parse_rate_limit_policy(reader)
    reader.finish()
    return RateLimitEntry(namespace, name, spec, MappingProxyType(dict(reader.data)))


def rate_limits_to_list(entries: tuple[RateLimitEntry, ...]) -> list[dict[str, Any]]:
    return [{"namespace": e.namespace, "name": e.name, "spec": dict(e.data)} for e in entries]


__all__ = ["RateLimitEntry", "parse_rate_limits", "rate_limits_to_list"]
