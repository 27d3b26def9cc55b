"""Shared test helpers for lb/: endpoint sets, a hand-driven clock, one-line balancer builds."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from lb import NO_HINTS, Balancer, Endpoint, LoadTracker, PickContext, PolicySpec, build_balancer


def endpoints(count: int, *, weights: Sequence[int] | None = None, unhealthy: int = 0) -> list[Endpoint]:
    """``count`` endpoints 10.0.x.y:8080; the first ``unhealthy`` are marked unhealthy."""
    made = []
    for i in range(count):
        host = f"10.0.{i // 250}.{i % 250 + 1}"
        weight = weights[i] if weights is not None else 1
        made.append(Endpoint(f"{host}:8080", host, 8080, weight=weight, healthy=i >= unhealthy))
    return made


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def build(
    kind: str,
    eps: Sequence[Endpoint],
    *,
    seed: int = 1,
    load: LoadTracker | None = None,
    clock: FakeClock | None = None,
    **spec: object,
) -> Balancer:
    clock = clock or FakeClock()
    return build_balancer(
        PolicySpec(kind, **spec),  # type: ignore[arg-type]
        eps,
        load=load if load is not None else LoadTracker(clock),
        rng=random.Random(seed),
        clock=clock,
    )


def pick_key(balancer: Balancer, ctx: PickContext = NO_HINTS) -> str:
    chosen = balancer.pick(ctx)
    assert chosen is not None
    return chosen.key


def counts(balancer: Balancer, picks: int, ctx: PickContext = NO_HINTS) -> Counter[str]:
    return Counter(pick_key(balancer, ctx) for _ in range(picks))


def key_owners(balancer: Balancer, keys: Sequence[bytes]) -> dict[bytes, str]:
    return {k: pick_key(balancer, PickContext(hash_key=k)) for k in keys}


def sample_keys(count: int, salt: str = "") -> list[bytes]:
    return [f"user-{salt}{i}".encode() for i in range(count)]
