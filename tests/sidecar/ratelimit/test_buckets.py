"""Envoy's token bucket per client key: properties with an injected clock (hypothesis)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mesh.rules.ratelimit import TokenBucket
from sidecar.ratelimit.buckets import TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_starts_full_refuses_when_empty_and_refills_per_interval() -> None:
    clock = Clock()
    buckets = TokenBuckets(TokenBucket(max_tokens=3, tokens_per_fill=2, fill_interval_s=1.0), clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == 1.0  # the next fill is a whole interval away
    clock.now += 0.4
    assert abs(buckets.take("a") - 0.6) < 1e-9
    clock.now += 0.6
    assert buckets.take("a") == 0.0
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0.0
    clock.now += 10.0
    assert buckets.remaining("a") == 0  # computed on use
    assert buckets.take("a") == 0.0
    assert buckets.remaining("a") == 2  # capped at max_tokens, then one taken


def test_keys_are_independent() -> None:
    buckets = TokenBuckets(TokenBucket(1, 1, 1.0), Clock())
    assert buckets.take("alice") == 0.0
    assert buckets.take("alice") > 0.0
    assert buckets.take("bob") == 0.0


def test_memory_is_bounded_idle_keys_go_first() -> None:
    clock = Clock()
    buckets = TokenBuckets(TokenBucket(2, 1, 1.0), clock, max_keys=4)
    buckets.take("busy")
    buckets.take("busy")
    for key in ("a", "b", "c"):
        buckets.take(key)
    clock.now += 1.0  # a, b, c are full again; busy is not
    buckets.take("new")
    assert len(buckets) == 2  # the refilled ones were dropped
    assert buckets.take("busy") == 0.0
    assert buckets.take("busy") > 0.0


@given(
    max_tokens=st.integers(1, 20),
    per_fill=st.integers(1, 20),
    steps=st.lists(st.floats(0.0, 2.0, allow_nan=False), min_size=1, max_size=200),
)
def test_never_admits_more_than_the_bucket_allows(max_tokens: int, per_fill: int, steps: list[float]) -> None:
    clock = Clock()
    interval = 0.5
    buckets = TokenBuckets(TokenBucket(max_tokens, per_fill, interval), clock)
    start = clock.now
    admitted = 0
    for step in steps:
        clock.now += step
        wait = buckets.take("k")
        if wait == 0.0:
            admitted += 1
        else:
            assert 0.0 < wait <= interval
    fills = int((clock.now - start) / interval)
    assert admitted <= max_tokens + fills * per_fill
