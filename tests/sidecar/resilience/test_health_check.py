"""The health-check state machine: first probe decides, thresholds after that, timing with jitter."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from mesh.model.policies import HealthCheck
from sidecar.resilience.health_check import HEALTHY, TRANSITIONS, UNCHECKED, UNHEALTHY, HealthChecker


def checker(**kwargs: object) -> HealthChecker:
    return HealthChecker(HealthCheck(**kwargs), ["a", "b"], clock=lambda: 5.0)  # type: ignore[arg-type]


def test_new_endpoints_are_unchecked_and_unavailable() -> None:
    hc = checker()
    assert hc.unavailable == frozenset({"a", "b"})
    assert hc.state("a") == UNCHECKED


def test_first_probe_decides_at_once() -> None:
    hc = checker(healthy_threshold=3, unhealthy_threshold=3)
    assert hc.record("a", True)
    assert hc.state("a") == HEALTHY
    assert not hc.record("b", False)  # unchecked -> unhealthy: unavailable either way
    assert hc.state("b") == UNHEALTHY
    assert hc.unavailable == frozenset({"b"})


def test_thresholds() -> None:
    hc = checker(healthy_threshold=2, unhealthy_threshold=3)
    hc.record("a", True)
    assert not hc.record("a", False)
    assert not hc.record("a", False)
    assert hc.record("a", False)  # third failure in a row
    assert hc.state("a") == UNHEALTHY
    assert not hc.record("a", True)
    assert hc.record("a", True)
    assert hc.state("a") == HEALTHY
    assert hc.transitions == {HEALTHY: 2, UNHEALTHY: 1}
    assert (hc.passes, hc.failures) == (3, 3)


def test_streaks_must_be_unbroken() -> None:
    hc = checker(unhealthy_threshold=2)
    hc.record("a", True)
    for _ in range(10):
        hc.record("a", False)
        hc.record("a", True)
    assert hc.state("a") == HEALTHY


def test_endpoint_changes() -> None:
    hc = checker()
    hc.record("a", True)
    hc.set_endpoints(["a", "c"])
    assert hc.state("a") == HEALTHY
    assert hc.unavailable == frozenset({"c"})
    assert not hc.record("zzz", True)
    view = hc.endpoint_state("a")
    assert view["status"] == HEALTHY
    assert view["last_result"] == "pass"
    assert hc.endpoint_state("zzz") == {}


def test_timing() -> None:
    hc = HealthChecker(HealthCheck(interval_s=2.0, interval_jitter_s=0.5), ["a"])
    rng = random.Random(3)
    delays = [hc.next_delay(rng) for _ in range(1000)]
    assert min(delays) >= 2.0
    assert max(delays) <= 2.5
    assert max(delays) - min(delays) > 0.4
    assert all(0 <= hc.first_delay(rng) <= 0.5 for _ in range(100))
    assert HealthChecker(HealthCheck(), ["a"]).first_delay(rng) == 0.0


def test_table_covers_every_state_and_result() -> None:
    assert set(TRANSITIONS) == {(s, r) for s in (UNCHECKED, HEALTHY, UNHEALTHY) for r in (True, False)}


@given(
    healthy=st.integers(1, 5),
    unhealthy=st.integers(1, 5),
    results=st.lists(st.booleans(), min_size=1, max_size=200),
)
def test_state_follows_the_last_streak(healthy: int, unhealthy: int, results: list[bool]) -> None:
    """After the first probe, the state changes exactly when a streak reaches its threshold."""
    hc = HealthChecker(HealthCheck(healthy_threshold=healthy, unhealthy_threshold=unhealthy), ["x"])
    state = HEALTHY if results[0] else UNHEALTHY
    streak = 0
    hc.record("x", results[0])
    for passed in results[1:]:
        hc.record("x", passed)
        if (state == HEALTHY) == passed:
            streak = 0
        else:
            streak += 1
            if streak >= (unhealthy if state == HEALTHY else healthy):
                state, streak = (UNHEALTHY if state == HEALTHY else HEALTHY), 0
        assert hc.state("x") == state
        assert ("x" in hc.unavailable) == (state != HEALTHY)
