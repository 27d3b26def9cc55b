"""The values a balancer works on: an upstream endpoint and the per-request pick hints."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One upstream instance.

    ``key`` identifies the endpoint across endpoint-set updates (load state, hash rings and session
    cookies are keyed by it), so it must be unique and stable, e.g. ``"10.0.0.7:8080"``.
    ``weight`` is a positive integer like Consul's ``Weights.Passing`` or Envoy's
    ``load_balancing_weight``.
    """

    key: str
    host: str
    port: int
    weight: int = 1
    healthy: bool = True
    metadata: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("endpoint.key: must not be empty")
        if isinstance(self.weight, bool) or not isinstance(self.weight, int) or self.weight < 1:
            raise ValueError(f"endpoint.weight: must be an integer >= 1, got {self.weight!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"endpoint.port: must be an integer in 0..65535, got {self.port!r}")


@dataclass(frozen=True, slots=True)
class PickContext:
    """Optional hints for one pick; every policy works when they are absent (like Envoy's LB context).

    ``hash_key`` feeds the hashing policies (ring_hash, maglev); other policies ignore it.
    ``exclude`` holds the keys of endpoints already tried by this request (retry host selection):
    a policy avoids them whenever any other candidate exists.
    """

    hash_key: bytes | None = None
    exclude: frozenset[str] = frozenset()


NO_HINTS = PickContext()
"""The context for a plain first attempt: no hash key, nothing excluded."""
