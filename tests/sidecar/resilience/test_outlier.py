"""Passive outlier detection: consecutive errors, success rate, ejection time, max percent, decay."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.model.policies import OutlierDetection
from sidecar.resilience.outlier import CONSECUTIVE_5XX, CONSECUTIVE_GATEWAY, SUCCESS_RATE, OutlierDetector
from sidecar.resilience.retry import CONNECT_FAILURE, PER_TRY_TIMEOUT, AttemptResult

OK = AttemptResult(200)
E500 = AttemptResult(500)
E503 = AttemptResult(503)
DOWN = AttemptResult(failure=CONNECT_FAILURE)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def detector(keys: int = 4, **settings_: object) -> tuple[OutlierDetector, Clock]:
    clock = Clock()
    config = OutlierDetection(**{"max_ejection_percent": 100.0, **settings_})  # type: ignore[arg-type]
    return OutlierDetector(config, [f"h{i}" for i in range(keys)], clock=clock, rng=random.Random(1)), clock


def test_consecutive_5xx_ejects_at_the_threshold() -> None:
    det, _ = detector(consecutive_5xx=3)
    assert not det.on_result("h0", E500)
    assert not det.on_result("h0", DOWN)  # local failures count as 5xx
    assert det.on_result("h0", AttemptResult(failure=PER_TRY_TIMEOUT))
    assert det.ejected == frozenset({"h0"})
    assert det.version == 1
    assert det.ejections_enforced == {CONSECUTIVE_5XX: 1}


def test_a_success_resets_the_streak() -> None:
    det, _ = detector(consecutive_5xx=3)
    for _ in range(10):
        det.on_result("h1", E500)
        det.on_result("h1", E500)
        det.on_result("h1", OK)
    assert det.ejected == frozenset()


def test_consecutive_gateway_errors() -> None:
    det, _ = detector(consecutive_5xx=0, consecutive_gateway_errors=2)
    det.on_result("h0", E500)  # not a gateway error
    det.on_result("h0", E500)
    assert det.ejected == frozenset()
    det.on_result("h0", E503)
    assert det.on_result("h0", DOWN)
    assert det.ejections_enforced == {CONSECUTIVE_GATEWAY: 1}


def test_ejection_ends_and_grows_with_repeats() -> None:
    det, clock = detector(consecutive_5xx=1, base_ejection_time_s=30.0, interval_s=10.0)
    det.on_result("h0", E500)
    assert det.endpoint_state("h0")["ejected_for_s"] == 30.0
    assert det.next_tick_at() == clock.now + 10.0
    clock.now += 29.9
    det.tick()
    assert "h0" in det.ejected
    clock.now += 0.1
    assert det.tick()
    assert det.ejected == frozenset()
    det.on_result("h0", E500)  # fails again at once: twice as long
    assert det.endpoint_state("h0")["ejected_for_s"] == 60.0
    assert det.endpoint_state("h0")["ejections"] == 2


def test_ejection_count_decays_per_clean_interval_and_is_capped() -> None:
    det, clock = detector(consecutive_5xx=1, base_ejection_time_s=10.0, max_ejection_time_s=25.0, interval_s=10.0)
    for expected in (10.0, 20.0, 25.0, 25.0):
        det.on_result("h0", E500)
        assert det.endpoint_state("h0")["ejected_for_s"] == expected
        clock.now += expected
        det.tick()
    assert det.endpoint_state("h0")["ejections"] == 4
    for _ in range(3):
        clock.now += 10.0
        det.tick()
    assert det.endpoint_state("h0")["ejections"] == 1
    det.on_result("h0", E500)
    assert det.endpoint_state("h0")["ejected_for_s"] == 20.0


def test_max_ejection_percent_but_always_one() -> None:
    det, _ = detector(keys=3, consecutive_5xx=1, max_ejection_percent=10.0)
    assert det.on_result("h0", E500)  # 33 % > 10 %, but one may always be ejected (Envoy)
    assert not det.on_result("h1", E500)
    assert det.ejected == frozenset({"h0"})
    assert det.ejections_overflow == 1
    half, _ = detector(keys=4, consecutive_5xx=1, max_ejection_percent=50.0)
    for key in ("h0", "h1", "h2", "h3"):
        half.on_result(key, E500)
    assert len(half.ejected) == 2


def test_enforcing_percentage() -> None:
    never, _ = detector(consecutive_5xx=1, enforcing_consecutive_5xx=0.0)
    for _ in range(50):
        never.on_result("h0", E500)
    assert never.ejected == frozenset()
    assert never.ejections_detected == {CONSECUTIVE_5XX: 50}


def test_success_rate_ejects_the_outlier() -> None:
    det, clock = detector(
        keys=6,
        consecutive_5xx=0,
        enforcing_success_rate=100.0,
        success_rate_minimum_hosts=5,
        success_rate_request_volume=100,
        success_rate_stdev_factor=1.9,
        interval_s=10.0,
    )
    for i in range(6):
        failures = 40 if i == 5 else (i % 2)  # h5: 60 % success, the others ~100 %
        for n in range(100):
            det.on_result(f"h{i}", E500 if n < failures else OK)
    clock.now += 10.0
    assert det.tick()
    assert det.ejected == frozenset({"h5"})
    assert det.ejections_enforced == {SUCCESS_RATE: 1}


def test_success_rate_needs_volume_and_hosts() -> None:
    det, clock = detector(keys=6, consecutive_5xx=0, enforcing_success_rate=100.0, success_rate_request_volume=100)
    for i in range(6):
        for _ in range(99):  # one short of the volume
            det.on_result(f"h{i}", E500 if i == 5 else OK)
    clock.now += 10.0
    det.tick()
    assert det.ejected == frozenset()
    few, clock2 = detector(keys=3, consecutive_5xx=0, enforcing_success_rate=100.0, success_rate_request_volume=10)
    for i in range(3):
        for _ in range(20):
            few.on_result(f"h{i}", E500 if i == 2 else OK)
    clock2.now += 10.0
    few.tick()
    assert few.ejected == frozenset()  # fewer than success_rate_minimum_hosts (5)


def test_endpoint_set_changes_keep_history() -> None:
    det, _ = detector(keys=2, consecutive_5xx=2)
    det.on_result("h0", E500)
    det.set_endpoints(["h0", "h1", "h9"])
    assert det.on_result("h0", E500)  # the streak survived
    assert det.set_endpoints(["h1", "h9"])  # the ejected one left: the set changes
    assert det.ejected == frozenset()
    assert not det.on_result("gone", E500)
    assert det.endpoint_state("gone") == {}


@settings(max_examples=60, deadline=None)
@given(
    hosts=st.integers(1, 20),
    percent=st.sampled_from([0.0, 10.0, 25.0, 50.0, 99.0, 100.0]),
    events=st.lists(st.tuples(st.integers(0, 19), st.booleans(), st.floats(0, 5)), max_size=400),
)
def test_never_above_max_ejection_percent(hosts: int, percent: float, events: list[tuple[int, bool, float]]) -> None:
    clock = Clock()
    config = OutlierDetection(
        consecutive_5xx=2, consecutive_gateway_errors=1, max_ejection_percent=percent, base_ejection_time_s=3.0
    )
    det = OutlierDetector(config, [f"h{i}" for i in range(hosts)], clock=clock, rng=random.Random(0))
    allowed = max(1, int(percent * hosts / 100 + 1e-9))
    for index, failed, advance in events:
        det.on_result(f"h{index % hosts}", E503 if failed else OK)
        clock.now += advance
        det.tick()
        assert len(det.ejected) <= allowed


def test_config_update_keeps_ejections() -> None:
    det, _ = detector(consecutive_5xx=1)
    det.on_result("h0", E500)
    det.update_config(OutlierDetection(consecutive_5xx=10))
    assert det.ejected == frozenset({"h0"})


@pytest.mark.parametrize("status", [200, 301, 404, 499])
def test_non_5xx_is_success(status: int) -> None:
    det, _ = detector(consecutive_5xx=1)
    det.on_result("h0", AttemptResult(status))
    assert det.ejected == frozenset()
