from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lb import PickContext
from tests.lb.helpers import build, endpoints, pick_key


@settings(max_examples=30, deadline=None)
@given(count=st.integers(min_value=1, max_value=30), seed=st.integers(min_value=0, max_value=2**32))
def test_each_endpoint_once_per_turn_in_a_fixed_order(count: int, seed: int) -> None:
    eps = endpoints(count, weights=[1 + i % 4 for i in range(count)])  # weights are ignored
    balancer = build("round_robin", eps, seed=seed)
    picks = [pick_key(balancer) for _ in range(3 * count)]
    assert sorted(picks[:count]) == sorted(e.key for e in eps)
    assert picks[:count] == picks[count : 2 * count] == picks[2 * count :]


def test_start_is_random_per_build() -> None:
    eps = endpoints(10)
    firsts = {pick_key(build("round_robin", eps, seed=s)) for s in range(20)}
    assert len(firsts) > 3


def test_exclude_skips_to_the_next_in_turn() -> None:
    eps = endpoints(4)
    balancer = build("round_robin", eps)
    order = [pick_key(balancer) for _ in range(4)]  # one full turn; the next turn repeats it
    assert pick_key(balancer) == order[0]
    assert pick_key(balancer, PickContext(exclude=frozenset({order[1]}))) == order[2]
    assert pick_key(balancer) == order[3]
