"""Health filtering, panic mode and retry exclusion: shared by every policy, so tested across all."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lb import POLICY_KINDS, PickContext, select_candidates
from tests.lb.helpers import build, counts, endpoints, pick_key


@pytest.mark.parametrize("kind", POLICY_KINDS)
def test_empty_set_picks_nothing(kind: str) -> None:
    balancer = build(kind, [])
    assert balancer.pick() is None
    assert balancer.pick(PickContext(hash_key=b"k", exclude=frozenset({"x"}))) is None
    assert balancer.endpoints == ()


@pytest.mark.parametrize("kind", POLICY_KINDS)
def test_only_healthy_endpoints_above_the_panic_threshold(kind: str) -> None:
    eps = endpoints(10, unhealthy=5)  # 50 % healthy: not below the 50 % threshold
    balancer = build(kind, eps, maglev_table_size=5003)
    assert not balancer.in_panic
    healthy = {e.key for e in eps if e.healthy}
    assert set(counts(balancer, 300)) <= healthy
    assert {pick_key(balancer, PickContext(hash_key=str(i).encode())) for i in range(300)} <= healthy


@pytest.mark.parametrize("kind", POLICY_KINDS)
def test_panic_spreads_over_all_endpoints(kind: str) -> None:
    eps = endpoints(10, unhealthy=6)  # 40 % healthy < 50 %
    balancer = build(kind, eps, maglev_table_size=5003)
    assert balancer.in_panic
    assert len(balancer.candidates) == 10
    assert set(counts(balancer, 2000)) == {e.key for e in eps}


@pytest.mark.parametrize("kind", POLICY_KINDS)
def test_all_unhealthy_panics_by_default(kind: str) -> None:
    balancer = build(kind, endpoints(3, unhealthy=3))
    assert balancer.in_panic
    assert balancer.pick() is not None


@pytest.mark.parametrize("kind", POLICY_KINDS)
def test_panic_disabled_uses_only_the_healthy(kind: str) -> None:
    few_up = build(kind, endpoints(10, unhealthy=9), panic_threshold=0.0)
    assert not few_up.in_panic
    assert set(counts(few_up, 50)) == {endpoints(10)[9].key}
    none_up = build(kind, endpoints(3, unhealthy=3), panic_threshold=0.0)
    assert none_up.pick() is None  # Envoy: no healthy host and no panic mode means no host
    assert len(none_up.endpoints) == 3


def test_candidates_do_not_depend_on_discovery_order() -> None:
    eps = endpoints(20, unhealthy=3)
    shuffled = list(eps)
    random.Random(7).shuffle(shuffled)
    assert select_candidates(eps, 0.5) == select_candidates(shuffled, 0.5)


@pytest.mark.parametrize("kind", POLICY_KINDS)
def test_duplicate_keys_are_rejected(kind: str) -> None:
    eps = endpoints(3)
    with pytest.raises(ValueError, match=r"endpoints: duplicate key '10\.0\.0\.1:8080'"):
        build(kind, [*eps, eps[0]])


@pytest.mark.parametrize("kind", POLICY_KINDS)
def test_invalid_spec_is_rejected_at_build(kind: str) -> None:
    with pytest.raises(ValueError, match=r"lb\.choice_count"):
        build(kind, endpoints(3), choice_count=0)


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(POLICY_KINDS),
    count=st.integers(min_value=1, max_value=12),
    weights=st.lists(st.integers(min_value=1, max_value=5), min_size=12, max_size=12),
    excluded=st.sets(st.integers(min_value=0, max_value=11)),
    hashed=st.booleans(),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_exclude_is_honoured_whenever_another_choice_exists(
    kind: str, count: int, weights: list[int], excluded: set[int], hashed: bool, seed: int
) -> None:
    eps = endpoints(count, weights=weights[:count])
    balancer = build(kind, eps, seed=seed, maglev_table_size=503)
    exclude = frozenset(eps[i].key for i in excluded if i < count)
    for i in range(20):
        ctx = PickContext(hash_key=f"k{i}".encode() if hashed else None, exclude=exclude)
        chosen = pick_key(balancer, ctx)
        if len(exclude) < count:
            assert chosen not in exclude
        else:
            assert chosen in exclude  # everything was tried: one is tried again rather than failing
