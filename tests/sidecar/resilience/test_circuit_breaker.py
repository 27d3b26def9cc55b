"""Circuit breakers: limits, releases, overflow answers, and the retry budget never exceeded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mesh.model.policies import CircuitBreakers, RetryBudget
from sidecar.resilience.circuit_breaker import (
    MAX_PENDING,
    MAX_REQUESTS,
    MAX_RETRIES,
    RETRY_BUDGET,
    CircuitBreaker,
    overflow_response,
)
from sidecar.resilience.retry import retry_budget_limit


def test_requests_limit_and_release() -> None:
    breaker = CircuitBreaker("api", CircuitBreakers(max_requests=2))
    assert breaker.try_acquire_request()
    assert breaker.try_acquire_request()
    assert not breaker.try_acquire_request()
    assert breaker.overflows == {MAX_REQUESTS: 1}
    breaker.release_request()
    assert breaker.try_acquire_request()
    for _ in range(5):
        breaker.release_request()
    assert breaker.requests == 0  # never negative, even on a double release


def test_pending_and_connections() -> None:
    breaker = CircuitBreaker("api", CircuitBreakers(max_pending_requests=1, max_connections=1))
    assert breaker.try_acquire_pending()
    assert not breaker.try_acquire_pending()
    breaker.release_pending()
    assert breaker.try_acquire_pending()
    assert breaker.try_acquire_connection()
    assert not breaker.try_acquire_connection()
    breaker.release_connection()
    assert breaker.try_acquire_connection()
    assert breaker.overflows == {MAX_PENDING: 1, "max_connections": 1}


def test_zero_limits_refuse_everything() -> None:
    breaker = CircuitBreaker("api", CircuitBreakers(0, 0, 0, 0))
    assert not breaker.try_acquire_request()
    assert not breaker.try_acquire_pending()
    assert not breaker.try_acquire_connection()
    assert not breaker.try_acquire_retry()


def test_max_retries_without_budget() -> None:
    breaker = CircuitBreaker("api", CircuitBreakers(max_retries=2))
    assert breaker.try_acquire_retry()
    assert breaker.try_acquire_retry()
    assert not breaker.try_acquire_retry()
    assert breaker.overflows == {MAX_RETRIES: 1}


def test_budget_follows_the_load() -> None:
    breaker = CircuitBreaker("api", CircuitBreakers(max_retries=0, retry_budget=RetryBudget(20.0, 3)))
    assert breaker.retry_limit() == 3  # the minimum concurrency with no load
    for _ in range(50):
        assert breaker.try_acquire_request()
    assert breaker.retry_limit() == 10
    taken = 0
    while breaker.try_acquire_retry():
        taken += 1
    assert taken == 10
    assert breaker.overflows == {RETRY_BUDGET: 1}


def test_overflow_response_is_exact() -> None:
    breaker = CircuitBreaker("api", CircuitBreakers(max_requests=512))
    assert overflow_response(breaker, MAX_REQUESTS) == (
        503,
        (("x-mesh-overflow", "max_requests"),),
        "upstream overflow: cluster 'api' is at max_requests (512)",
    )


def test_state_for_admin() -> None:
    breaker = CircuitBreaker("api", CircuitBreakers(max_requests=4, retry_budget=RetryBudget(50.0, 1)))
    breaker.try_acquire_request()
    state = breaker.state()
    assert state["requests"] == {"active": 1, "max": 4}
    assert state["retries"] == {"active": 0, "max": 1, "budget": True}
    assert state["overflows"] == {}


_op = st.sampled_from(["req+", "req-", "pend+", "pend-", "retry+", "retry-"])


@given(ops=st.lists(_op, max_size=300), percent=st.floats(0, 100), minimum=st.integers(0, 5))
def test_retry_budget_never_exceeded(ops: list[str], percent: float, minimum: int) -> None:
    """Whatever the interleaving, a retry is only granted while active retries are under the
    budget computed from the load at that moment; counters never go negative."""
    budget = RetryBudget(percent, minimum)
    breaker = CircuitBreaker("c", CircuitBreakers(max_requests=10_000, retry_budget=budget))
    for op in ops:
        if op == "req+":
            breaker.try_acquire_request()
        elif op == "req-":
            breaker.release_request()
        elif op == "pend+":
            breaker.try_acquire_pending()
        elif op == "pend-":
            breaker.release_pending()
        elif op == "retry+":
            before = breaker.retries
            limit = retry_budget_limit(budget, breaker.requests, breaker.pending)
            granted = breaker.try_acquire_retry()
            assert granted == (before < limit)
            assert breaker.retries <= max(limit, before)
        else:
            breaker.release_retry()
        assert min(breaker.requests, breaker.pending, breaker.retries) >= 0
