"""The load-balancing policy settings, their validation, and parsing from config data.

Field names and defaults follow Envoy (ring_hash minimum/maximum ring size 1024 / 8M, Maglev table
size 65537, 50 % healthy panic threshold, least-request choice count 2 and active request bias 1.0)
and Linkerd (peak-EWMA decay 10 s). Errors name the field: ``lb.kind: unknown policy 'foo' ...``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import cast

from lb.affinity import AFFINITY_KINDS, Affinity

POLICY_KINDS = (
    "round_robin",
    "weighted_round_robin",
    "random",
    "least_request",
    "peak_ewma",
    "ring_hash",
    "maglev",
)
HASH_POLICY_KINDS = frozenset({"ring_hash", "maglev"})
RING_SIZE_LIMIT = 8 * 1024 * 1024  # Envoy's hard cap on ring_hash maximum_ring_size
MAGLEV_TABLE_LIMIT = 5_000_011  # Envoy's largest accepted Maglev table size


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """Which policy balances a cluster, with its knobs. ``validate()`` before use (``build_balancer`` does).

    ``panic_threshold`` is a fraction: when fewer than that share of endpoints is healthy, the
    balancer uses all endpoints (Envoy's healthy_panic_threshold); 0 disables panic mode.
    ``affinity`` needs a hashing policy (ring_hash or maglev).
    """

    kind: str = "round_robin"
    choice_count: int = 2
    active_request_bias: float = 1.0
    ring_min_size: int = 1024
    ring_max_size: int = RING_SIZE_LIMIT
    maglev_table_size: int = 65537
    panic_threshold: float = 0.5
    ewma_decay_s: float = 10.0
    affinity: Affinity | None = None

    def validate(self, path: str = "lb") -> PolicySpec:
        """Raise ``ValueError`` naming the first bad field (``lb.ring_min_size: ...``); return self."""
        if self.kind not in POLICY_KINDS:
            raise ValueError(f"{path}.kind: unknown policy {self.kind!r} (expected one of {', '.join(POLICY_KINDS)})")
        _check_int(self.choice_count, f"{path}.choice_count", 2, 64)
        _check_number(self.active_request_bias, f"{path}.active_request_bias", 0.0, 16.0)
        _check_int(self.ring_min_size, f"{path}.ring_min_size", 1, RING_SIZE_LIMIT)
        _check_int(self.ring_max_size, f"{path}.ring_max_size", 1, RING_SIZE_LIMIT)
        if self.ring_min_size > self.ring_max_size:
            raise ValueError(
                f"{path}.ring_min_size: {self.ring_min_size} is larger than ring_max_size {self.ring_max_size}"
            )
        _check_int(self.maglev_table_size, f"{path}.maglev_table_size", 3, MAGLEV_TABLE_LIMIT)
        if not is_prime(self.maglev_table_size):
            raise ValueError(
                f"{path}.maglev_table_size: must be a prime (Maglev's permutations need one), "
                f"got {self.maglev_table_size}"
            )
        _check_number(self.panic_threshold, f"{path}.panic_threshold", 0.0, 1.0)
        _check_number(self.ewma_decay_s, f"{path}.ewma_decay_s", 0.0, None)
        if self.ewma_decay_s <= 0:
            raise ValueError(f"{path}.ewma_decay_s: must be > 0, got {self.ewma_decay_s!r}")
        if self.affinity is not None:
            if self.kind not in HASH_POLICY_KINDS:
                raise ValueError(
                    f"{path}.affinity: session affinity needs a hashing policy (ring_hash or maglev), "
                    f"but kind is {self.kind!r}"
                )
            self.affinity.validate(f"{path}.affinity")
        return self


def policy_from_dict(data: object, path: str = "lb") -> PolicySpec:
    """Parse and validate a policy from decoded JSON/YAML; keys are the ``PolicySpec`` field names.

    Missing keys take the defaults; unknown keys and wrong types raise ``ValueError`` with the path.
    """
    mapping = _mapping(data, path)
    known = {f.name for f in fields(PolicySpec)}
    values: dict[str, object] = {}
    for name, value in mapping.items():
        if name not in known:
            raise ValueError(f"{path}.{name}: unknown field (expected one of {', '.join(sorted(known))})")
        values[name] = value
    kind = values.get("kind", "round_robin")
    if not isinstance(kind, str):
        raise ValueError(f"{path}.kind: must be a string, got {kind!r}")
    affinity = values.pop("affinity", None)
    if affinity is not None:
        values["affinity"] = affinity_from_dict(affinity, f"{path}.affinity")
    spec = PolicySpec(**values)  # type: ignore[arg-type]  # types are checked by validate() below
    return spec.validate(path)


def affinity_from_dict(data: object, path: str = "lb.affinity") -> Affinity:
    """Parse and validate ``{"kind": "cookie", "name": "sid", "cookie_ttl_s": 3600, "cookie_path": "/"}``."""
    mapping = _mapping(data, path)
    known = {f.name for f in fields(Affinity)}
    for field_name in mapping:
        if field_name not in known:
            raise ValueError(f"{path}.{field_name}: unknown field (expected one of {', '.join(sorted(known))})")
    kind = mapping.get("kind")
    if kind not in AFFINITY_KINDS:
        raise ValueError(f"{path}.kind: unknown affinity {kind!r} (expected one of {', '.join(AFFINITY_KINDS)})")
    name = mapping.get("name", "")
    if not isinstance(name, str):
        raise ValueError(f"{path}.name: must be a string, got {name!r}")
    cookie_path = mapping.get("cookie_path", "/")
    if not isinstance(cookie_path, str):
        raise ValueError(f"{path}.cookie_path: must be a string, got {cookie_path!r}")
    ttl = mapping.get("cookie_ttl_s")
    affinity = Affinity(kind, name, cast("float | None", ttl), cookie_path)
    return affinity.validate(path)


def is_prime(n: int) -> bool:
    """Trial division; table sizes are at most ~5M, so this is at most ~1,100 divisions."""
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    return all(n % d for d in range(3, math.isqrt(n) + 1, 2))


def _mapping(data: object, path: str) -> Mapping[str, object]:
    if not isinstance(data, Mapping) or not all(isinstance(k, str) for k in data):
        raise ValueError(f"{path}: must be an object with string keys, got {type(data).__name__}")
    return cast(Mapping[str, object], data)


def _check_int(value: object, path: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{path}: must be an integer in {low}..{high}, got {value!r}")


def _check_number(value: object, path: str, low: float, high: float | None) -> None:
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value) and value >= low
    if not ok or (high is not None and cast(float, value) > high):
        bound = f"in {low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{path}: must be a number {bound}, got {value!r}")
