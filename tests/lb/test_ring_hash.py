from __future__ import annotations

import itertools
import random
import struct
from bisect import bisect_left
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from lb import Endpoint, PickContext
from lb.hashing import ring_point_blocks
from lb.ring_hash import POINTS_PER_ENDPOINT, key_position, ring_point_counts, ring_position
from tests.lb.helpers import build, counts, endpoints, key_owners, pick_key, sample_keys

KEYS = sample_keys(2000)


def reference_owner(eps: list[Endpoint], key: bytes) -> str:
    """Ring hash from its definition: the endpoint of the first point at or after the key's hash."""
    per_endpoint = ring_point_counts([e.weight for e in eps], 1024, 8 * 1024 * 1024)
    points: list[tuple[float, str]] = []
    for ep, count in zip(eps, per_endpoint, strict=True):
        raw = b"".join(itertools.islice(ring_point_blocks(ep.key), (count + 7) // 8))
        points += [(ring_position(p), ep.key) for p in struct.unpack(f"<{count}Q", raw[: 8 * count])]
    points.sort()
    slot = bisect_left(points, (key_position(key), ""))
    return points[slot % len(points)][1]


def test_matches_the_definition() -> None:
    eps = endpoints(7, weights=[1, 2, 1, 3, 1, 1, 2])
    balancer = build("ring_hash", eps)
    for key in KEYS[:300]:
        assert pick_key(balancer, PickContext(hash_key=key)) == reference_owner(eps, key)


def test_point_counts() -> None:
    assert ring_point_counts([1] * 10, 1024, 8 << 20) == [POINTS_PER_ENDPOINT] * 10
    assert ring_point_counts([1, 1], 1024, 8 << 20) == [512, 512]  # raised to ring_min_size
    assert ring_point_counts([1] * 10, 1024, 500) == [50] * 10  # capped at ring_max_size
    assert ring_point_counts([1, 3], 1024, 8 << 20) == [256, 768]  # proportional to weight
    assert sum(ring_point_counts([1] * 5 + [1000], 1, 100)) <= 100


@settings(max_examples=20, deadline=None)
@given(count=st.integers(min_value=2, max_value=30), seed=st.integers(min_value=0, max_value=2**32))
def test_same_key_same_endpoint_whatever_the_order_or_seed(count: int, seed: int) -> None:
    eps = endpoints(count)
    shuffled = list(eps)
    random.Random(seed).shuffle(shuffled)
    first = build("ring_hash", eps, seed=1)
    second = build("ring_hash", shuffled, seed=seed)
    assert key_owners(first, KEYS[:300]) == key_owners(second, KEYS[:300])


@settings(max_examples=20, deadline=None)
@given(count=st.integers(min_value=3, max_value=40), data=st.data())
def test_removing_one_moves_only_its_keys_and_adding_back_restores(count: int, data: st.DataObject) -> None:
    # At the default ring_min_size (1024) an endpoint keeps 160 points while 7 or more remain; below
    # that the minimum raises everyone's count, so ring_min_size=1 checks small sets exactly.
    min_size = data.draw(st.sampled_from([1, 1024])) if count >= 8 else 1
    eps = endpoints(count)
    gone = data.draw(st.integers(min_value=0, max_value=count - 1))
    before = key_owners(build("ring_hash", eps, ring_min_size=min_size), KEYS)
    after = key_owners(build("ring_hash", eps[:gone] + eps[gone + 1 :], ring_min_size=min_size), KEYS)
    moved = [k for k in KEYS if before[k] != after[k]]
    assert all(before[k] == eps[gone].key for k in moved)  # nobody else's keys move
    assert len(moved) / len(KEYS) <= 1.5 / count + 0.02  # and the leaver owned about 1/N
    assert key_owners(build("ring_hash", eps, ring_min_size=min_size), KEYS) == before


def test_small_sets_at_the_minimum_ring_size_move_somewhat_more() -> None:
    # 5 -> 4 endpoints at ring_min_size 1024: 205 -> 256 points each, the documented extra movement.
    eps = endpoints(5)
    before = key_owners(build("ring_hash", eps), KEYS)
    after = key_owners(build("ring_hash", eps[1:]), KEYS)
    moved = sum(before[k] != after[k] for k in KEYS) / len(KEYS)
    assert 0.15 <= moved <= 2.5 / 5


def test_weights_are_respected() -> None:
    eps = endpoints(4, weights=[1, 2, 3, 4])
    balancer = build("ring_hash", eps, ring_min_size=40_000)
    owned = Counter(key_owners(balancer, sample_keys(20_000)).values())
    for ep in eps:
        assert abs(owned[ep.key] / 20_000 - ep.weight / 10) < 0.03


def test_no_hash_key_spreads_randomly() -> None:
    eps = endpoints(5)
    assert set(counts(build("ring_hash", eps), 500)) == {e.key for e in eps}


def test_exclude_falls_back_to_the_next_endpoint_on_the_ring_consistently() -> None:
    eps = endpoints(8)
    balancers = [build("ring_hash", eps, seed=s) for s in (1, 2)]
    for key in KEYS[:100]:
        owner = pick_key(balancers[0], PickContext(hash_key=key))
        retry = PickContext(hash_key=key, exclude=frozenset({owner}))
        fallbacks = {pick_key(b, retry) for b in balancers}
        assert len(fallbacks) == 1
        assert owner not in fallbacks
        # the fallback is where the key lands once the owner is gone
        without_owner = build("ring_hash", [e for e in eps if e.key != owner])
        assert fallbacks == {pick_key(without_owner, PickContext(hash_key=key))}
