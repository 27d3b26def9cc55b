"""Deadline arithmetic: a retry never outlives the route timeout."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from sidecar.resilience.timeouts import NO_DEADLINE, attempt_deadline, remaining, retry_fits, route_deadline


def test_route_deadline() -> None:
    assert route_deadline(100.0, 15.0) == 115.0
    assert route_deadline(100.0, None) == NO_DEADLINE
    assert route_deadline(100.0, 0.0) == NO_DEADLINE


def test_attempt_deadline_never_past_the_route() -> None:
    assert attempt_deadline(100.0, 110.0, 2.0) == 102.0
    assert attempt_deadline(109.0, 110.0, 2.0) == 110.0
    assert attempt_deadline(100.0, 110.0, None) == 110.0
    assert attempt_deadline(100.0, NO_DEADLINE, 0.5) == 100.5
    assert math.isinf(attempt_deadline(100.0, NO_DEADLINE, None))


def test_retry_fits() -> None:
    assert retry_fits(100.0, 0.5, 101.0)
    assert not retry_fits(100.0, 1.0, 101.0)
    assert retry_fits(100.0, 1e6, NO_DEADLINE)
    assert remaining(100.0, 99.0) == 0.0
    assert remaining(100.0, 100.25) == 0.25


@given(
    start=st.floats(0, 1e6),
    timeout=st.one_of(st.none(), st.floats(0.001, 100)),
    per_try=st.one_of(st.none(), st.floats(0.001, 100)),
    offsets=st.lists(st.floats(0, 200), max_size=10),
)
def test_every_attempt_ends_by_the_route_deadline(
    start: float, timeout: float | None, per_try: float | None, offsets: list[float]
) -> None:
    deadline = route_deadline(start, timeout)
    for offset in sorted(offsets):
        now = start + offset
        if not retry_fits(now, 0.0, deadline):
            break
        assert attempt_deadline(now, deadline, per_try) <= deadline
