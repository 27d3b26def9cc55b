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
from typing import Any

from mesh.model.reader import list_items
from mesh.rules.fields import named_spec_to_dict, parse_named_spec
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
    return RateLimitEntry(*parse_named_spec(data, path, parse_rate_limit_policy))


def rate_limits_to_list(entries: tuple[RateLimitEntry, ...]) -> list[dict[str, Any]]:
    return [named_spec_to_dict(e.namespace, e.name, e.data) for e in entries]


__all__ = ["RateLimitEntry", "parse_rate_limits", "rate_limits_to_list"]
