from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from lb import LoadTracker, PickContext
from tests.lb.helpers import FakeClock, build, endpoints, pick_key


def simulate(latencies: dict[str, float], picks: int, seed: int, clock: FakeClock, load: LoadTracker) -> Counter[str]:
    """Sequential requests: pick, run for the endpoint's latency, record it."""
    balancer = build("peak_ewma", endpoints(len(latencies)), load=load, clock=clock, seed=seed)
    chosen: Counter[str] = Counter()
    for _ in range(picks):
        key = pick_key(balancer)
        load.start(key)
        clock.advance(latencies[key])
        load.finish(key, latencies[key], ok=True)
        chosen[key] += 1
    return chosen


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32), slow=st.integers(min_value=0, max_value=3))
def test_avoids_a_slow_endpoint(seed: int, slow: int) -> None:
    keys = [e.key for e in endpoints(4)]
    latencies = {k: 0.002 for k in keys}
    latencies[keys[slow]] = 0.400
    clock = FakeClock()
    chosen = simulate(latencies, 2000, seed, clock, LoadTracker(clock))
    assert chosen[keys[slow]] < 0.02 * 2000
    assert min(chosen[k] for k in keys if k != keys[slow]) > 0.25 * 2000


def test_prefers_fewer_requests_in_flight_at_equal_latency() -> None:
    clock = FakeClock()
    load = LoadTracker(clock)
    keys = [e.key for e in endpoints(2)]
    for _ in range(3):
        load.start(keys[0])
    balancer = build("peak_ewma", endpoints(2), load=load, clock=clock)
    assert {pick_key(balancer) for _ in range(10)} == {keys[1]}


def test_a_slow_endpoint_is_tried_again_once_its_estimate_decays() -> None:
    clock = FakeClock()
    load = LoadTracker(clock)
    keys = [e.key for e in endpoints(2)]
    load.finish(keys[0], 1.0, ok=True)  # the peak: 1 s
    load.finish(keys[1], 0.05, ok=True)
    balancer = build("peak_ewma", endpoints(2), load=load, clock=clock, ewma_decay_s=10.0)
    assert pick_key(balancer) == keys[1]
    clock.advance(40.0)  # 1 s * e^-4 = 18 ms, now below 50 ms * e^-4
    load.finish(keys[1], 0.05, ok=True)  # keys[1] keeps answering in 50 ms
    assert pick_key(balancer) == keys[0]


def test_build_sets_the_trackers_decay_period() -> None:
    load = LoadTracker(FakeClock(), decay_s=10.0)
    build("peak_ewma", endpoints(2), load=load, ewma_decay_s=3.0)
    assert load.decay_s == 3.0


def test_weight_divides_the_apparent_load() -> None:
    clock = FakeClock()
    load = LoadTracker(clock)
    eps = endpoints(2, weights=[4, 1])
    for _ in range(3):
        load.start(eps[0].key)  # 3 in flight on weight 4: cost 4 x rtt / 4 = rtt ...
    balancer = build("peak_ewma", eps, load=load, clock=clock)
    load.start(eps[1].key)  # ... against 2 x rtt / 1 on the light endpoint with one in flight
    assert {pick_key(balancer) for _ in range(10)} == {eps[0].key}
    for _ in range(5):
        load.start(eps[0].key)  # 8 in flight on weight 4: 9 / 4 rtt, now dearer than 2 rtt
    assert {pick_key(balancer) for _ in range(10)} == {eps[1].key}


def test_exclude() -> None:
    clock = FakeClock()
    load = LoadTracker(clock)
    eps = endpoints(3)
    load.finish(eps[1].key, 5.0, ok=True)
    balancer = build("peak_ewma", eps, load=load, clock=clock)
    picked = {pick_key(balancer, PickContext(exclude=frozenset({eps[0].key}))) for _ in range(20)}
    assert picked == {eps[2].key}
    assert {pick_key(balancer, PickContext(exclude=frozenset({eps[0].key, eps[2].key})))} == {eps[1].key}
