from __future__ import annotations

import math

import pytest

from lb import LoadTracker
from tests.lb.helpers import FakeClock, build, endpoints


def test_active_counts_requests_in_flight() -> None:
    load = LoadTracker(FakeClock())
    load.start("a")
    load.start("a")
    load.start("b")
    assert (load.active("a"), load.active("b"), load.active("c")) == (2, 1, 0)
    load.finish("a", 0.01, ok=True)
    assert load.active("a") == 1
    load.finish("c", 0.01, ok=True)  # a finish without a start (e.g. after a prune) never goes negative
    assert load.active("c") == 0


def test_new_endpoint_starts_at_default_rtt() -> None:
    load = LoadTracker(FakeClock(), default_rtt_s=0.03)
    assert load.ewma_s("never-seen") == 0.03
    assert load.cost("never-seen") == 0.03


def test_peak_is_taken_at_once_and_decays() -> None:
    clock = FakeClock()
    load = LoadTracker(clock, decay_s=10.0, default_rtt_s=0.03)
    load.start("a")
    load.finish("a", 0.5, ok=True)
    assert load.ewma_s("a") == 0.5
    clock.advance(10.0)
    assert load.ewma_s("a") == pytest.approx(0.5 * math.exp(-1))


def test_lower_latency_is_averaged_by_elapsed_time() -> None:
    clock = FakeClock()
    load = LoadTracker(clock, decay_s=10.0, default_rtt_s=0.1)
    load.slot("a")
    clock.advance(5.0)
    load.finish("a", 0.02, ok=True)
    w = math.exp(-0.5)
    assert load.ewma_s("a") == pytest.approx(0.1 * w + 0.02 * (1 - w))


def test_cost_scales_with_in_flight() -> None:
    load = LoadTracker(FakeClock(), default_rtt_s=0.03)
    for _ in range(3):
        load.start("a")
    assert load.cost("a") == pytest.approx(0.03 * 4)


def test_fast_failures_count_as_no_observation() -> None:
    clock = FakeClock()
    load = LoadTracker(clock, default_rtt_s=0.2)
    load.slot("a")
    load.slot("idle")
    for _ in range(50):
        clock.advance(0.01)
        load.start("a")
        load.finish("a", 0.001, ok=False)
    # Fast failures did not make "a" look faster than an endpoint that saw no traffic at all.
    assert load.ewma_s("a") == pytest.approx(load.ewma_s("idle"), rel=1e-9)
    slot = load.slot("a")
    assert (slot.requests, slot.failures) == (50, 50)
    load.finish("a", 0.9, ok=False)  # a slow failure does raise it
    assert load.ewma_s("a") == 0.9


def test_bad_latency_does_not_poison_the_estimate() -> None:
    load = LoadTracker(FakeClock(), default_rtt_s=0.03)
    load.finish("a", float("nan"), ok=True)
    load.finish("a", -1.0, ok=True)
    assert 0.0 <= load.ewma_s("a") <= 0.03


def test_prune_keeps_busy_and_wanted_endpoints() -> None:
    load = LoadTracker(FakeClock())
    for key in ("a", "b", "c"):
        load.slot(key)
    load.start("b")
    load.prune({"a"})
    assert len(load) == 2  # "c" dropped; "b" kept while a request is in flight
    load.finish("b", 0.01, ok=True)
    load.prune({"a"})
    assert len(load) == 1


def test_slot_is_shared_state() -> None:
    load = LoadTracker(FakeClock())
    slot = load.slot("a")
    load.start("a")
    assert slot.active == 1
    assert load.slot("a") is slot


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="decay_s"):
        LoadTracker(decay_s=0)


def test_latency_is_tracked_only_for_peak_ewma_balancing() -> None:
    clock = FakeClock()
    load = LoadTracker(clock, default_rtt_s=0.03)
    build("round_robin", endpoints(2), load=load, clock=clock)
    load.start("e0")
    load.finish("e0", 0.5, ok=False)
    assert load.ewma_s("e0") == 0.03  # no exp() per request when nothing reads the estimate
    assert load.slot("e0").failures == 1
    assert load.slot("e0").requests == 1
    build("peak_ewma", endpoints(2), load=load, clock=clock)
    load.start("e0")
    load.finish("e0", 0.5, ok=True)
    assert load.ewma_s("e0") == 0.5
