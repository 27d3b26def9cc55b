"""The probe state machine without sockets: thresholds, warning, initial delay, restart (fake clock)."""

from __future__ import annotations

from mesh.model.probes import ProbeSpec
from sidecar.probes.state import CRITICAL, PASSING, WARNING, ProbeTracker, Result

OK = Result(PASSING, "ok")
WARN = Result(WARNING, "exit 1")
FAIL = Result(CRITICAL, "503")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def spec(success: int = 1, failure: int = 3, delay: float = 0.0) -> ProbeSpec:
    return ProbeSpec("tcp", port=80, success_threshold=success, failure_threshold=failure, initial_delay=delay)


def current(tracker: ProbeTracker) -> str:
    """The status, read through a call (mypy would keep an attribute narrowed across ``record``)."""
    return tracker.status


def statuses(tracker: ProbeTracker, results: list[Result]) -> list[str]:
    out: list[str] = []
    for result in results:
        tracker.record(result)
        out.append(tracker.status)
    return out


def test_initial_statuses_are_kubernetes_ones() -> None:
    clock = Clock()
    assert ProbeTracker("readiness", spec(), clock).status == CRITICAL  # not ready until a probe passes
    assert ProbeTracker("startup", spec(), clock).status == CRITICAL
    assert ProbeTracker("liveness", spec(), clock).status == PASSING  # alive until probes fail


def test_failure_threshold_holds_the_status_until_n_failures_in_a_row() -> None:
    tracker = ProbeTracker("readiness", spec(failure=3), Clock())
    assert statuses(tracker, [OK, FAIL, FAIL, OK, FAIL, FAIL, FAIL]) == [
        PASSING,
        PASSING,
        PASSING,  # two failures: not yet
        PASSING,  # a success resets the count
        PASSING,
        PASSING,
        CRITICAL,  # the third failure in a row
    ]
    assert tracker.output == "503"


def test_success_threshold_needs_n_successes_in_a_row_to_come_back() -> None:
    tracker = ProbeTracker("readiness", spec(success=2, failure=1), Clock())
    assert statuses(tracker, [OK, FAIL, OK, OK]) == [CRITICAL, CRITICAL, CRITICAL, PASSING]
    tracker.record(FAIL)
    tracker.record(OK)
    assert tracker.output == "1 of 2 successes needed, still critical: ok"  # held while counting


def test_held_status_output_says_what_is_awaited() -> None:
    tracker = ProbeTracker("liveness", spec(failure=2), Clock())
    changed = tracker.record(FAIL)
    assert not changed
    assert tracker.status == PASSING
    assert tracker.output == "1 of 2 failures needed, still passing: 503"
    assert tracker.record(FAIL)
    assert current(tracker) == CRITICAL


def test_warning_counts_as_success_and_is_reported() -> None:
    tracker = ProbeTracker("readiness", spec(failure=2), Clock())
    assert statuses(tracker, [OK, WARN, FAIL, WARN, FAIL, FAIL]) == [
        PASSING,
        WARNING,
        WARNING,
        WARNING,
        WARNING,
        CRITICAL,
    ]


def test_initial_delay_and_restart_use_the_injected_clock() -> None:
    clock = Clock()
    tracker = ProbeTracker("readiness", spec(delay=5.0), clock)
    assert tracker.first_probe_in() == 5.0
    clock.now += 3.0
    assert tracker.first_probe_in() == 2.0
    clock.now += 10.0
    assert tracker.first_probe_in() == 0.0
    tracker.record(OK)
    assert tracker.status == PASSING
    tracker.restart()  # the app restarted: back to the initial status, the delay starts again
    assert current(tracker) == CRITICAL
    assert tracker.first_probe_in() == 5.0


def test_failed_means_failure_threshold_reached() -> None:
    tracker = ProbeTracker("startup", spec(failure=2), Clock())
    tracker.record(FAIL)
    assert not tracker.failed
    tracker.record(FAIL)
    assert tracker.failed
    tracker.record(OK)
    assert not tracker.failed
    assert tracker.status == PASSING
