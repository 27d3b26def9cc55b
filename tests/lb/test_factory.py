from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

import lb.maglev
import lb.ring_hash
from lb import POLICIES, POLICY_KINDS, Balancer, LoadTracker, PickContext, PolicySpec, build_balancer
from tests.lb.helpers import FakeClock, build, endpoints, pick_key


def test_every_kind_has_a_policy() -> None:
    assert set(POLICIES) == set(POLICY_KINDS)
    assert all(POLICIES[kind].kind == kind for kind in POLICY_KINDS)


@pytest.mark.parametrize("kind", POLICY_KINDS)
def test_builds_a_balancer_over_the_given_endpoints(kind: str) -> None:
    eps = endpoints(5)
    clock = FakeClock()
    balancer: Balancer = build_balancer(
        PolicySpec(kind, maglev_table_size=503), eps, load=LoadTracker(clock), rng=random.Random(1), clock=clock
    )
    assert balancer.endpoints == tuple(eps)
    assert pick_key(balancer) in {e.key for e in eps}
    assert pick_key(balancer, PickContext(hash_key=b"user")) in {e.key for e in eps}


def test_default_clock_is_usable() -> None:
    balancer = build_balancer(PolicySpec("peak_ewma"), endpoints(3), load=LoadTracker(), rng=random.Random(1))
    assert balancer.pick() is not None


@pytest.mark.parametrize(
    ("kind", "module", "name"),
    [("ring_hash", lb.ring_hash, "ring_point_blocks"), ("maglev", lb.maglev, "maglev_table")],
)
def test_structures_are_built_once_per_update_never_per_pick(
    kind: str, module: object, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = getattr(module, name)
    calls = []

    def counting(*args: object) -> Iterator[bytes] | list[int]:
        calls.append(args)
        return real(*args)  # type: ignore[no-any-return]

    monkeypatch.setattr(module, name, counting)
    balancer = build(kind, endpoints(4), maglev_table_size=503)
    built = len(calls)
    assert built > 0
    for i in range(200):
        balancer.pick(PickContext(hash_key=str(i).encode(), exclude=frozenset({endpoints(4)[0].key})))
    assert len(calls) == built
