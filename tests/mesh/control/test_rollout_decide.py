"""The rollout state machine (mesh.control.rollout_decide): pure, with the clock passed in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mesh.control.rollout_decide import (
    RolloutState,
    RouteAction,
    WindowStats,
    created,
    on_abort,
    on_failure,
    on_precheck,
    on_resume,
    on_window,
    window_due,
)
from mesh.control.rollout_spec import RolloutSpec, parse_rollout_spec


def spec(**overrides: object) -> RolloutSpec:
    body: dict[str, object] = {
        "service": "reviews",
        "canary": "v2",
        "stable": "v1",
        "steps": [10, 50, 100],
        "interval": "30s",
        "max_error_rate": 0.01,
        "max_p99": "200ms",
        "min_requests": 20,
        "max_extensions": 2,
    }
    body.update(overrides)
    return parse_rollout_spec(body)


GOOD = WindowStats(requests=100, errors=0, p99_ms=50.0, seconds=30)


def started(s: RolloutSpec, now: float = 1000.0) -> RolloutState:
    state, _ = created(now)
    return on_precheck(s, state, ready=1, now=now).state


def test_pending_waits_for_a_passing_canary_instance_then_shifts_to_the_first_step() -> None:
    s = spec()
    state, event = created(1000.0)
    assert (state.phase, event.kind) == ("pending", "created")
    assert on_precheck(s, state, ready=0, now=1010.0).verdict == "wait"
    decision = on_precheck(s, state, ready=2, now=1011.0)
    assert decision.verdict == "start"
    assert decision.route == RouteAction("shift", 10)
    assert (decision.state.phase, decision.state.step, decision.state.weight) == ("progressing", 0, 10)
    assert decision.state.window_started == 1011.0
    assert "step 1/3: 10% to v2" in decision.events[0].message


def test_pending_fails_when_the_canary_never_has_a_passing_instance() -> None:
    s = spec()  # interval 30 s, 2 extensions: gives up after 90 s
    state, _ = created(1000.0)
    assert on_precheck(s, state, ready=0, now=1089.0).verdict == "wait"
    decision = on_precheck(s, state, ready=0, now=1090.0)
    assert decision.verdict == "fail"
    assert decision.state.phase == "failed"
    assert decision.route.kind == "none"  # nothing was shifted yet
    assert "no passing instance" in decision.state.reason


def test_healthy_windows_advance_step_by_step_and_promote_after_the_last() -> None:
    s = spec()
    state = started(s)
    weights = [state.weight]
    now = 1000.0
    verdicts = []
    while not state.done:
        now = window_due(s, state)
        decision = on_window(s, state, GOOD, now)
        verdicts.append(decision.verdict)
        state = decision.state
        weights.append(state.weight)
        if decision.verdict == "advance":
            assert decision.route == RouteAction("shift", state.weight)
            assert state.window_started == now
    assert verdicts == ["advance", "advance", "promote"]
    assert weights == [10, 50, 100, 100]
    assert state.phase == "promoted"
    assert now == 1000.0 + 3 * 30


def test_a_window_is_not_decided_before_its_end() -> None:
    s = spec()
    state = started(s)
    assert on_window(s, state, GOOD, 1029.9).verdict == "wait"
    assert on_window(s, state, GOOD, 1030.0).verdict == "advance"


def test_error_rate_above_the_threshold_rolls_back_to_stable() -> None:
    s = spec()
    state = started(s)
    decision = on_window(s, state, WindowStats(200, 3, 20.0), 1030.0)  # 1.5 % > 1 %
    assert decision.verdict == "rollback"
    assert decision.route == RouteAction("restore")
    assert (decision.state.phase, decision.state.weight) == ("rolled_back", 0)
    assert "error rate 1.50% of v2 is above 1.00%" in decision.state.reason
    assert decision.events[0].kind == "rolled_back"
    assert decision.events[0].stats is not None


def test_error_rate_at_the_threshold_passes() -> None:
    s = spec()
    decision = on_window(s, started(s), WindowStats(200, 2, 20.0), 1030.0)  # exactly 1 %
    assert decision.verdict == "advance"


def test_p99_above_the_threshold_rolls_back() -> None:
    s = spec()
    decision = on_window(s, started(s), WindowStats(200, 0, 250.0), 1030.0)
    assert decision.verdict == "rollback"
    assert "p99 250.0ms of v2 is above 200ms" in decision.state.reason


def test_too_few_requests_extend_the_window_then_roll_back() -> None:
    s = spec()  # min 20 requests, 2 extensions
    state = started(s)
    first = on_window(s, state, WindowStats(5, 5, 900.0), 1030.0)  # all errors, but only 5: noise
    assert first.verdict == "extend"
    assert first.route.kind == "none"
    assert (first.state.extensions, first.state.window_started, first.state.weight) == (1, 1000.0, 10)
    assert window_due(s, first.state) == 1060.0
    second = on_window(s, first.state, None, 1060.0)  # no metrics at all counts as no requests
    assert second.verdict == "extend"
    third = on_window(s, second.state, WindowStats(19, 0, 1.0), 1090.0)
    assert third.verdict == "rollback"
    assert "not enough traffic" in third.state.reason


def test_an_extended_window_decides_once_enough_requests_accumulated() -> None:
    s = spec()
    extended = on_window(s, started(s), WindowStats(5, 0, 10.0), 1030.0).state
    decision = on_window(s, extended, WindowStats(25, 0, 10.0), 1060.0)
    assert decision.verdict == "advance"
    assert decision.state.extensions == 0


def test_abort_restores_stable_and_a_finished_rollout_ignores_it() -> None:
    s = spec()
    decision = on_abort(s, started(s), "bad feeling", 1005.0)
    assert decision.verdict == "abort"
    assert decision.route == RouteAction("restore")
    assert decision.state.phase == "aborted"
    assert on_abort(s, decision.state, "again", 1006.0).verdict == "wait"


def test_a_route_failure_ends_the_rollout_failed_keeping_the_weight_in_force() -> None:
    state = started(spec())
    decision = on_failure(state, "VirtualService default/reviews was deleted", 1001.0)
    assert (decision.state.phase, decision.state.weight) == ("failed", 10)
    assert on_failure(decision.state, "again", 1002.0).verdict == "wait"


def test_resume_restarts_the_window_and_reasserts_the_weight() -> None:
    s = spec()
    state = on_window(s, started(s), WindowStats(5, 0, 10.0), 1030.0).state  # extended once
    decision = on_resume(s, state, 5000.0)
    assert decision.route == RouteAction("shift", 10)
    assert (decision.state.window_started, decision.state.extensions) == (5000.0, 0)
    assert on_resume(s, created(1.0)[0], 2.0).verdict == "wait"


def test_bluegreen_switches_everything_after_the_checks_and_promotes_after_one_window() -> None:
    s = spec(strategy="bluegreen", steps=None)
    assert s.steps == (100,)
    state = started(s)
    assert state.weight == 100
    decision = on_window(s, state, GOOD, window_due(s, state))
    assert decision.verdict == "promote"
    assert decision.route == RouteAction("promote", 100)


stats_strategy = st.one_of(
    st.none(),
    st.builds(
        WindowStats,
        requests=st.integers(0, 10_000).map(float),
        errors=st.integers(0, 10_000).map(float),
        p99_ms=st.one_of(st.none(), st.floats(0, 5_000)),
    ),
)


@given(
    steps=st.lists(st.integers(1, 99), unique=True, max_size=5).map(lambda s: [*sorted(s), 100]),
    windows=st.lists(stats_strategy, min_size=1, max_size=40),
    max_error_rate=st.floats(0, 1),
    min_requests=st.integers(1, 500),
    max_extensions=st.integers(0, 3),
)
def test_invariants_for_any_sequence_of_windows(
    steps: list[int],
    windows: list[WindowStats | None],
    max_error_rate: float,
    min_requests: int,
    max_extensions: int,
) -> None:
    s = spec(steps=steps, max_error_rate=max_error_rate, min_requests=min_requests, max_extensions=max_extensions)
    state = started(s, 0.0)
    for stats in windows:
        if state.done:
            break
        before = state
        decision = on_window(s, state, stats, window_due(s, state))
        state = decision.state
        requests = 0.0 if stats is None else stats.requests
        # Weights only move forward through the steps, or back to stable on a rollback.
        assert state.weight in (*s.steps, 0)
        if decision.verdict == "advance":
            assert s.steps.index(state.weight) == s.steps.index(before.weight) + 1
        # Never promoted or advanced on fewer requests than the minimum.
        if decision.verdict in ("advance", "promote"):
            assert stats is not None
            assert requests >= min_requests
            assert (stats.error_rate or 0.0) <= max_error_rate
            assert stats.p99_ms is None or s.max_p99_ms is None or stats.p99_ms <= s.max_p99_ms
        if decision.verdict == "promote":
            assert before.step == len(s.steps) - 1
            assert decision.route.kind == "promote"
        if decision.verdict == "rollback":
            assert decision.route.kind == "restore"
            assert state.weight == 0
        assert state.extensions <= max_extensions
        assert len(decision.events) == 1
