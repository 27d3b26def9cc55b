from __future__ import annotations

import math
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from lb import PickContext
from lb.weighted_round_robin import CYCLE_LIMIT, SmoothSchedule
from tests.lb.helpers import build, endpoints, pick_key

weight_lists = st.lists(st.integers(min_value=1, max_value=20), min_size=1, max_size=12)


def nginx_reference(weights: list[int], picks: int) -> list[int]:
    """nginx's smooth weighted round robin, naively, straight from its definition."""
    current = [0] * len(weights)
    total = sum(weights)
    out = []
    for _ in range(picks):
        best = -1
        for i, w in enumerate(weights):
            current[i] += w
            if best < 0 or current[i] > current[best]:
                best = i
        current[best] -= total
        out.append(best)
    return out


@settings(max_examples=60, deadline=None)
@given(weights=weight_lists)
def test_schedule_is_exactly_nginx(weights: list[int]) -> None:
    reduced = [w // math.gcd(*weights) for w in weights]
    schedule = SmoothSchedule(weights)
    picks = 2 * sum(reduced)
    assert [schedule.step() for _ in range(picks)] == nginx_reference(reduced, picks)


@settings(max_examples=60, deadline=None)
@given(weights=weight_lists, seed=st.integers(min_value=0, max_value=2**32))
def test_exact_shares_in_every_full_cycle_and_smooth_interleaving(weights: list[int], seed: int) -> None:
    eps = endpoints(len(weights), weights=weights)
    balancer = build("weighted_round_robin", eps, seed=seed)
    divisor = math.gcd(*weights)
    cycle = sum(weights) // divisor
    picks = [pick_key(balancer) for _ in range(2 * cycle)]
    share = {e.key: e.weight // divisor for e in eps}
    for window_start in (0, cycle // 3, cycle):  # any window of one cycle, wherever the build started
        assert Counter(picks[window_start : window_start + cycle]) == share
    # Smoothness: after the first t picks of a cycle each endpoint is within about one pick of its
    # exact share t * w / W (searches found at most 1.35 with up to 40 endpoints); plain weighted
    # round robin, which serves each endpoint's picks in one block, is off by up to w (1 - w / W).
    schedule = SmoothSchedule(weights)
    seen = Counter[int]()
    for t in range(1, cycle + 1):
        seen[schedule.step()] += 1
        for index, weight in enumerate(weights):
            assert abs(seen[index] - t * (weight // divisor) / cycle) < 1.5


def test_heavy_endpoint_is_spread_out() -> None:
    eps = endpoints(3, weights=[5, 1, 1])
    schedule = SmoothSchedule([5, 1, 1])
    assert [schedule.step() for _ in range(7)] == [0, 0, 1, 0, 2, 0, 0]
    balancer = build("weighted_round_robin", eps)
    picks = [pick_key(balancer) for _ in range(14)]
    heavy = eps[0].key
    # Plain weighted round robin sends a a a a a b c: five in a row. Smooth never gives more than
    # two in a row inside a cycle, four across the wrap (a a | a a b ...).
    assert max(len(run) for run in "".join("H" if p == heavy else "." for p in picks).split(".")) <= 4


def test_long_cycles_step_live_with_the_same_shares() -> None:
    weights = [CYCLE_LIMIT + 1, CYCLE_LIMIT + 2, 1]  # cycle too long to precompute
    eps = endpoints(3, weights=weights)
    balancer = build("weighted_round_robin", eps)
    picks = Counter(pick_key(balancer) for _ in range(20_000))
    assert abs(picks[eps[0].key] - picks[eps[1].key]) <= 2
    assert picks[eps[2].key] <= 1


def test_exclude_continues_the_schedule() -> None:
    eps = endpoints(3, weights=[3, 2, 1])
    balancer = build("weighted_round_robin", eps)
    first = pick_key(balancer)
    second = pick_key(balancer, PickContext(exclude=frozenset({first})))
    assert second != first
