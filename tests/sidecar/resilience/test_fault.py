"""Fault injection: decisions by percentage, within statistical tolerance."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.model.policies import FaultAbort, FaultDelay, FaultPolicy
from sidecar.resilience.fault import NO_FAULT, FaultDecision, decide_fault, rolls


def test_no_policy_no_fault() -> None:
    assert decide_fault(None, random.Random(1)) is NO_FAULT


def test_always_and_never() -> None:
    rng = random.Random(3)
    always = FaultPolicy(FaultDelay(0.5, 100.0), FaultAbort(503, 100.0))
    never = FaultPolicy(FaultDelay(0.5, 0.0), FaultAbort(503, 0.0))
    for _ in range(1000):
        assert decide_fault(always, rng) == FaultDecision(0.5, 503)
        assert decide_fault(never, rng) is NO_FAULT


@settings(max_examples=25, deadline=None)
@given(percentage=st.floats(0.5, 99.5), seed=st.integers(0, 2**32))
def test_percentages_within_tolerance(percentage: float, seed: int) -> None:
    rng = random.Random(seed)
    policy = FaultPolicy(abort=FaultAbort(500, percentage))
    n = 20_000
    hits = sum(1 for _ in range(n) if decide_fault(policy, rng).abort_status)
    p = percentage / 100
    tolerance = 5 * math.sqrt(n * p * (1 - p))  # 5 sigma: a false failure is ~1 in 3.5 million
    assert abs(hits - n * p) <= tolerance


def test_delay_and_abort_roll_independently() -> None:
    rng = random.Random(11)
    policy = FaultPolicy(FaultDelay(1.0, 50.0), FaultAbort(503, 50.0))
    outcomes = [decide_fault(policy, rng) for _ in range(20_000)]
    both = sum(1 for d in outcomes if d.delay_s and d.abort_status)
    assert both / len(outcomes) == pytest.approx(0.25, abs=0.02)


def test_fractional_percentages() -> None:
    rng = random.Random(5)
    n = 200_000
    hits = sum(1 for _ in range(n) if rolls(0.1, rng))
    assert 100 < hits < 300  # expected 200
