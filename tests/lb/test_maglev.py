from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from lb import PickContext
from lb.maglev import maglev_table
from tests.lb.helpers import build, counts, endpoints, key_owners, pick_key, sample_keys

KEYS = sample_keys(2000)
SMALL_TABLE = 5003  # prime, > 100 x the endpoints used here (Maglev's guidance): keeps builds fast


def test_default_table_is_balanced_to_one_slot() -> None:
    eps = endpoints(100)
    table = maglev_table([e.key for e in eps], [1] * 100, 65537)
    slots = Counter(table)
    assert len(table) == 65537
    assert max(slots.values()) - min(slots.values()) <= 1  # every round each endpoint claims one slot


@settings(max_examples=20, deadline=None)
@given(weights=st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=12))
def test_weighted_table_shares_within_a_few_percent(weights: list[int]) -> None:
    keys = [e.key for e in endpoints(len(weights))]
    table = maglev_table(keys, weights, SMALL_TABLE)
    slots = Counter(table)
    total = sum(weights)
    for index, weight in enumerate(weights):
        expected = SMALL_TABLE * weight / total
        assert abs(slots[index] - expected) <= 0.03 * expected + 2


@settings(max_examples=20, deadline=None)
@given(count=st.integers(min_value=2, max_value=30), seed=st.integers(min_value=0, max_value=2**32))
def test_same_key_same_endpoint_whatever_the_order_or_seed(count: int, seed: int) -> None:
    eps = endpoints(count)
    shuffled = list(eps)
    random.Random(seed).shuffle(shuffled)
    first = build("maglev", eps, maglev_table_size=SMALL_TABLE)
    second = build("maglev", shuffled, seed=seed, maglev_table_size=SMALL_TABLE)
    assert key_owners(first, KEYS[:300]) == key_owners(second, KEYS[:300])


@settings(max_examples=20, deadline=None)
@given(count=st.integers(min_value=3, max_value=40), data=st.data())
def test_removing_one_of_n_remaps_about_one_nth(count: int, data: st.DataObject) -> None:
    eps = endpoints(count)
    gone = data.draw(st.integers(min_value=0, max_value=count - 1))
    before = key_owners(build("maglev", eps, maglev_table_size=SMALL_TABLE), KEYS)
    after = key_owners(build("maglev", eps[:gone] + eps[gone + 1 :], maglev_table_size=SMALL_TABLE), KEYS)
    moved = sum(before[k] != after[k] for k in KEYS) / len(KEYS)
    assert moved <= 1.5 / count + 0.02
    assert all(after[k] != eps[gone].key for k in KEYS)
    stayers = [k for k in KEYS if before[k] != eps[gone].key]
    assert sum(before[k] != after[k] for k in stayers) / len(stayers) <= 1.0 / count + 0.01  # little collateral
    assert key_owners(build("maglev", eps, maglev_table_size=SMALL_TABLE), KEYS) == before


def test_weights_are_respected_for_keys() -> None:
    eps = endpoints(3, weights=[1, 2, 5])
    owned = Counter(key_owners(build("maglev", eps), sample_keys(16_000)).values())
    for ep in eps:
        assert abs(owned[ep.key] / 16_000 - ep.weight / 8) < 0.03


def test_more_endpoints_than_slots_still_picks() -> None:
    eps = endpoints(7)
    balancer = build("maglev", eps, maglev_table_size=5)
    assert pick_key(balancer, PickContext(hash_key=b"k")) in {e.key for e in eps}
    owned = set(key_owners(balancer, KEYS[:200]).values())
    unowned = [e.key for e in eps if e.key not in owned]
    assert unowned  # only 5 slots for 7 endpoints
    retry = PickContext(hash_key=b"k", exclude=frozenset(owned))
    assert pick_key(balancer, retry) in unowned  # a retry still finds the endpoints the table left out


def test_no_hash_key_spreads_randomly() -> None:
    eps = endpoints(5)
    assert set(counts(build("maglev", eps, maglev_table_size=SMALL_TABLE), 500)) == {e.key for e in eps}


def test_exclude_walks_to_the_next_distinct_endpoint_consistently() -> None:
    eps = endpoints(6)
    balancers = [build("maglev", eps, seed=s, maglev_table_size=SMALL_TABLE) for s in (1, 2)]
    for key in KEYS[:100]:
        owner = pick_key(balancers[0], PickContext(hash_key=key))
        retry = PickContext(hash_key=key, exclude=frozenset({owner}))
        fallbacks = {pick_key(b, retry) for b in balancers}
        assert len(fallbacks) == 1
        assert owner not in fallbacks
