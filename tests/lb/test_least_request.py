from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from lb import LoadTracker, PickContext
from tests.lb.helpers import FakeClock, build, counts, endpoints, pick_key


def loaded(count: int, actives: list[int], weights: list[int] | None = None) -> tuple[list[str], LoadTracker]:
    eps = endpoints(count, weights=weights)
    load = LoadTracker(FakeClock())
    for ep, active in zip(eps, actives, strict=True):
        for _ in range(active):
            load.start(ep.key)
    return [e.key for e in eps], load


@settings(max_examples=40, deadline=None)
@given(
    actives=st.lists(st.integers(min_value=0, max_value=50), min_size=2, max_size=2),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_two_endpoints_always_the_less_loaded(actives: list[int], seed: int) -> None:
    keys, load = loaded(2, actives)
    balancer = build("least_request", endpoints(2), load=load, seed=seed)
    picked = {pick_key(balancer) for _ in range(20)}
    if actives[0] != actives[1]:
        assert picked == {keys[actives.index(min(actives))]}


@settings(max_examples=25, deadline=None)
@given(count=st.integers(min_value=3, max_value=12), seed=st.integers(min_value=0, max_value=2**32))
def test_p2c_prefers_the_less_loaded(count: int, seed: int) -> None:
    # Loads 0, 1, 2, ...: with two distinct random choices, rank k (0 = least loaded) wins with
    # probability 2 (n - 1 - k) / (n (n - 1)); the most loaded never wins.
    actives = list(range(count))
    random.Random(seed).shuffle(actives)
    keys, load = loaded(count, actives)
    balancer = build("least_request", endpoints(count), load=load, seed=seed)
    picks = 6000
    observed = counts(balancer, picks)
    for key, rank in zip(keys, actives, strict=True):
        share = 2 * (count - 1 - rank) / (count * (count - 1))
        sigma = math.sqrt(picks * share * (1 - share))
        assert abs(observed.get(key, 0) - picks * share) <= 5 * sigma + 1
    assert keys[actives.index(count - 1)] not in observed


def test_load_survives_a_rebuild() -> None:
    keys, load = loaded(3, [5, 0, 5])
    for seed in range(5):
        rebuilt = build("least_request", endpoints(3), load=load, seed=seed)
        assert counts(rebuilt, 30)[keys[1]] >= 15


def test_more_choices_get_closer_to_least_loaded() -> None:
    keys, load = loaded(10, list(range(10)))
    two = counts(build("least_request", endpoints(10), load=load), 3000)[keys[0]]
    five = counts(build("least_request", endpoints(10), load=load, choice_count=5), 3000)[keys[0]]
    assert five > two


def test_unequal_weights_follow_weights_when_idle() -> None:
    keys, load = loaded(3, [0, 0, 0], weights=[3, 1, 2])
    observed = counts(build("least_request", endpoints(3, weights=[3, 1, 2]), load=load), 6000)
    assert [observed[k] for k in keys] == [3000, 1000, 2000]


def test_unequal_weights_shift_away_from_busy_endpoints() -> None:
    keys, load = loaded(2, [9, 0], weights=[2, 1])  # effective weights 2/10 and 1/1
    observed = counts(build("least_request", endpoints(2, weights=[2, 1]), load=load), 1200)
    assert observed[keys[0]] == 200
    assert observed[keys[1]] == 1000
    keys, load = loaded(2, [9, 0], weights=[2, 1])
    unbiased = build("least_request", endpoints(2, weights=[2, 1]), load=load, active_request_bias=0.0)
    assert counts(unbiased, 1200)[keys[0]] == 800  # bias 0: plain weighted round robin


def test_exclude_compares_the_rest() -> None:
    keys, load = loaded(4, [0, 1, 2, 3])
    balancer = build("least_request", endpoints(4), load=load)
    observed = counts(balancer, 200, PickContext(exclude=frozenset({keys[0]})))
    assert keys[0] not in observed
    assert observed[keys[1]] > observed[keys[3]]


def test_single_endpoint() -> None:
    balancer = build("least_request", endpoints(1))
    assert pick_key(balancer) == endpoints(1)[0].key
