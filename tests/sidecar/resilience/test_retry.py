"""Retry decisions: conditions, idempotency, backoff bounds, budget arithmetic, body replay."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.model.policies import RetryBudget, RetryPolicy
from sidecar.resilience.retry import (
    CONNECT_FAILURE,
    PER_TRY_TIMEOUT,
    REFUSED_STREAM,
    RESET,
    RESET_BEFORE_REQUEST,
    AttemptResult,
    ReplayBuffer,
    backoff_delay,
    condition_matches,
    method_allows,
    retry_budget_limit,
)


def policy(*conditions: str, codes: tuple[int, ...] = (), **kwargs: object) -> RetryPolicy:
    return RetryPolicy(retry_on=frozenset(conditions), retriable_status_codes=frozenset(codes), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("conditions", "result", "expected"),
    [
        (("5xx",), AttemptResult(500), True),
        (("5xx",), AttemptResult(503), True),
        (("5xx",), AttemptResult(404), False),
        (("5xx",), AttemptResult(failure=CONNECT_FAILURE), True),
        (("5xx",), AttemptResult(failure=RESET), True),
        (("5xx",), AttemptResult(failure=PER_TRY_TIMEOUT), True),
        (("5xx",), AttemptResult(failure=REFUSED_STREAM), True),
        (("gateway-error",), AttemptResult(502), True),
        (("gateway-error",), AttemptResult(504), True),
        (("gateway-error",), AttemptResult(500), False),
        (("gateway-error",), AttemptResult(failure=PER_TRY_TIMEOUT), True),
        (("connect-failure",), AttemptResult(failure=CONNECT_FAILURE), True),
        (("connect-failure",), AttemptResult(failure=RESET), False),
        (("connect-failure",), AttemptResult(503), False),
        (("reset",), AttemptResult(failure=RESET), True),
        (("reset",), AttemptResult(failure=CONNECT_FAILURE), True),
        (("reset",), AttemptResult(503), False),
        (("reset-before-request",), AttemptResult(failure=RESET_BEFORE_REQUEST), True),
        (("reset-before-request",), AttemptResult(failure=RESET), False),
        (("refused-stream",), AttemptResult(failure=REFUSED_STREAM), True),
        (("refused-stream",), AttemptResult(failure=RESET), False),
        (("retriable-4xx",), AttemptResult(409), True),
        (("retriable-4xx",), AttemptResult(429), False),
        (("unavailable",), AttemptResult(200, grpc_status=14), True),
        (("unavailable",), AttemptResult(200, grpc_status=13), False),
        (("internal", "cancelled"), AttemptResult(200, grpc_status=13), True),
        (("deadline-exceeded",), AttemptResult(200, grpc_status=4), True),
        (("resource-exhausted",), AttemptResult(200, grpc_status=8), True),
        ((), AttemptResult(503), False),
        (("5xx",), AttemptResult(503, overloaded=True), False),  # the next hop shed it: never retried
    ],
)
def test_conditions(conditions: tuple[str, ...], result: AttemptResult, expected: bool) -> None:
    assert condition_matches(policy(*conditions), result) is expected


def test_retriable_status_codes_need_the_condition() -> None:
    assert condition_matches(policy("retriable-status-codes", codes=(418,)), AttemptResult(418))
    assert not condition_matches(policy(codes=(418,)), AttemptResult(418))
    assert not condition_matches(policy("retriable-status-codes", codes=(418,)), AttemptResult(503))
    # a per-try timeout is a 504 for retriable-status-codes
    assert condition_matches(policy("retriable-status-codes", codes=(504,)), AttemptResult(failure=PER_TRY_TIMEOUT))


def test_default_istio_policy_retries_connect_failures_and_503() -> None:
    default = RetryPolicy()
    assert condition_matches(default, AttemptResult(failure=CONNECT_FAILURE))
    assert condition_matches(default, AttemptResult(503))
    assert not condition_matches(default, AttemptResult(500))
    assert not condition_matches(default, AttemptResult(failure=RESET))


def test_local_status_of_failures() -> None:
    assert AttemptResult(503).local_status == 503
    assert AttemptResult(failure=PER_TRY_TIMEOUT).local_status == 504
    assert AttemptResult(failure=CONNECT_FAILURE).local_status == 502
    assert AttemptResult(failure=RESET).local_status == 502


def test_non_idempotent_methods_only_on_unseen_failures() -> None:
    p = policy("5xx")
    assert method_allows(p, "GET", AttemptResult(503))
    assert method_allows(p, "PUT", AttemptResult(failure=RESET))
    assert not method_allows(p, "POST", AttemptResult(503))
    assert not method_allows(p, "POST", AttemptResult(failure=RESET))
    assert not method_allows(p, "PATCH", AttemptResult(failure=PER_TRY_TIMEOUT))
    assert method_allows(p, "POST", AttemptResult(failure=CONNECT_FAILURE))
    assert method_allows(p, "POST", AttemptResult(failure=RESET_BEFORE_REQUEST))
    assert method_allows(policy("5xx", retry_non_idempotent=True), "POST", AttemptResult(503))


@given(
    base_ms=st.integers(1, 1000),
    cap_factor=st.one_of(st.none(), st.integers(1, 50)),
    retry=st.integers(1, 80),
    seed=st.integers(0, 2**32),
)
def test_backoff_is_full_jitter_within_bounds(base_ms: int, cap_factor: int | None, retry: int, seed: int) -> None:
    base = base_ms / 1000
    p = RetryPolicy(base_interval_s=base, max_interval_s=None if cap_factor is None else base * cap_factor)
    delay = backoff_delay(p, retry, random.Random(seed))
    ceiling = min(p.backoff_max_s, base * 2 ** (retry - 1))
    assert 0.0 <= delay < ceiling or delay == ceiling == 0
    assert delay <= p.backoff_max_s


def test_backoff_defaults_match_envoy_and_spread() -> None:
    p = RetryPolicy()
    rng = random.Random(7)
    first = [backoff_delay(p, 1, rng) for _ in range(2000)]
    assert max(first) < 0.025
    assert 0.0115 < sum(first) / len(first) < 0.0135  # uniform on [0, 25 ms): mean 12.5 ms
    late = [backoff_delay(p, 10, rng) for _ in range(2000)]
    assert max(late) < 0.25  # capped at 10 x base
    assert max(late) > 0.2


@given(
    percent=st.floats(0, 100),
    minimum=st.integers(0, 10),
    active=st.integers(0, 10_000),
    pending=st.integers(0, 1000),
)
def test_budget_limit(percent: float, minimum: int, active: int, pending: int) -> None:
    limit = retry_budget_limit(RetryBudget(percent, minimum), active, pending)
    assert limit >= minimum
    assert limit <= max(minimum, percent * (active + pending) / 100)


def test_budget_example_from_envoy_docs() -> None:
    assert retry_budget_limit(RetryBudget(20.0, 3), 100, 0) == 20
    assert retry_budget_limit(RetryBudget(20.0, 3), 5, 0) == 3
    assert retry_budget_limit(RetryBudget(25.0, 0), 10, 2) == 3


def test_replay_buffer_keeps_the_body_up_to_the_limit() -> None:
    buffer = ReplayBuffer(10)
    assert buffer.add(b"hello")
    assert buffer.add(b"world")
    assert buffer.body() == b"helloworld"
    assert not buffer.add(b"!")
    assert not buffer.replayable
    assert buffer.body() == b""
    assert not buffer.add(b"")  # once gone, gone
    empty = ReplayBuffer(0)
    assert empty.replayable
    assert empty.add(b"")
    assert not empty.add(b"x")
