from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from lb import PickContext
from tests.lb.helpers import build, counts, endpoints


def assert_shares(observed: dict[str, int], expected: dict[str, float], picks: int) -> None:
    """Each count within 5 standard deviations of its binomial expectation."""
    for key, share in expected.items():
        sigma = math.sqrt(picks * share * (1 - share))
        assert abs(observed.get(key, 0) - picks * share) <= 5 * sigma + 1, (key, observed.get(key), picks * share)


@settings(max_examples=25, deadline=None)
@given(
    weights=st.lists(st.integers(min_value=1, max_value=10), min_size=1, max_size=10),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_weights_are_respected_within_tolerance(weights: list[int], seed: int) -> None:
    eps = endpoints(len(weights), weights=weights)
    picks = 6000
    observed = counts(build("random", eps, seed=seed), picks)
    total = sum(weights)
    assert_shares(observed, {e.key: e.weight / total for e in eps}, picks)


def test_equal_weights_are_uniform() -> None:
    eps = endpoints(8)
    observed = counts(build("random", eps, seed=3), 8000)
    assert_shares(observed, {e.key: 1 / 8 for e in eps}, 8000)


def test_same_seed_same_picks() -> None:
    eps = endpoints(8)
    assert counts(build("random", eps, seed=9), 100) == counts(build("random", eps, seed=9), 100)


def test_exclude_draws_from_the_rest_by_weight() -> None:
    eps = endpoints(3, weights=[8, 1, 3])
    picks = 4000
    observed = counts(build("random", eps, seed=5), picks, PickContext(exclude=frozenset({eps[0].key})))
    assert eps[0].key not in observed
    assert_shares(observed, {eps[1].key: 0.25, eps[2].key: 0.75}, picks)
