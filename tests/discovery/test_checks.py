"""The check runner's pure decisions: HTTP status mapping, hysteresis, jitter, and what to reap when."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from discovery.catalog import Catalog
from discovery.checks import CheckRunner, Debouncer, http_status_to_check, next_delay
from discovery.models import CRITICAL, PASSING, WARNING, Check, CheckDefinition, Node, Service
from discovery.registry import AgentIdentity, Registry


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (200, PASSING),
        (201, PASSING),
        (204, PASSING),
        (299, PASSING),
        (429, WARNING),
        (199, CRITICAL),
        (300, CRITICAL),
        (301, CRITICAL),
        (404, CRITICAL),
        (428, CRITICAL),
        (430, CRITICAL),
        (500, CRITICAL),
        (503, CRITICAL),
    ],
)
def test_http_status_to_check(code: int, status: str) -> None:
    assert http_status_to_check(code) == status


def run(debouncer: Debouncer, start: str, observed: list[str]) -> list[str]:
    current, seen = start, []
    for result in observed:
        current = debouncer.decide(current, result)
        seen.append(current)
    return seen


P, W, C = PASSING, WARNING, CRITICAL


def test_without_thresholds_every_result_applies() -> None:
    assert run(Debouncer(), C, [P, C, W, P, C]) == [P, C, W, P, C]


def test_first_result_applies_at_once_as_consul() -> None:
    # Consul's StatusHandler starts its counters at the thresholds.
    assert run(Debouncer(3, 3), C, [P]) == [P]
    assert run(Debouncer(3, 3), P, [C]) == [C]


def test_failures_before_critical() -> None:
    d = Debouncer(0, 3)
    assert run(d, C, [P, C, C, P, C, C, C, C]) == [P, P, P, P, P, P, C, C]


def test_success_before_passing() -> None:
    d = Debouncer(2, 0)
    assert run(d, P, [C, P, C, P, P, P]) == [C, C, C, C, P, P]


def test_both_thresholds_hysteresis() -> None:
    d = Debouncer(2, 2)
    assert run(d, C, [P, C, P, C, C, P, P]) == [P, P, P, P, C, C, P]


def test_warning_counts_as_success_and_resets_failures() -> None:
    d = Debouncer(2, 2)
    # a warning between two failures breaks the failure streak; alone it is not enough successes to show
    assert run(d, C, [P, C, W, C, C]) == [P, P, P, P, C]
    d = Debouncer(2, 0)
    # from critical: a warning then a pass make two successes in a row
    assert run(d, C, [C, W, P]) == [C, C, P]
    # once enough successes are in a row, a warning shows as warning
    assert run(Debouncer(2, 2), C, [P, W]) == [P, W]


@given(st.integers(0, 5), st.integers(0, 5), st.lists(st.sampled_from((P, W, C)), max_size=30))
def test_debouncer_only_moves_to_a_status_backed_by_a_streak(successes: int, failures: int, results: list[str]) -> None:
    """A status shows only after its streak (passing/warning vs critical) is long enough;
    the very first streak counts as long enough from its first result (Consul's counters start full)."""
    d = Debouncer(successes, failures)
    current = C
    start = 0
    for i, observed in enumerate(results):
        if i > 0 and (observed == C) != (results[i - 1] == C):
            start = i
        new = d.decide(current, observed)
        assert new in (current, observed)
        needed = failures if observed == C else successes
        if new != current and start > 0:
            assert i - start + 1 >= needed
        if start == 0 or i - start + 1 >= needed:
            assert new == observed
        current = new


@pytest.mark.parametrize(("rand", "expected"), [(0.0, 9.5), (0.5, 10.0), (1.0, 10.5), (0.25, 9.75)])
def test_next_delay_is_the_interval_jittered_by_five_percent(rand: float, expected: float) -> None:
    assert next_delay(10.0, rand) == pytest.approx(expected)


@given(st.floats(0.001, 3600), st.floats(0, 1))
def test_next_delay_bounds(interval: float, rand: float) -> None:
    assert interval * 0.95 - 1e-9 <= next_delay(interval, rand) <= interval * 1.05 + 1e-9


# === reaping, on an injected clock ===


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_runner(tmp_path: Path, *, min_after: float = 60.0) -> tuple[CheckRunner, Catalog, Clock]:
    registry = Registry(tmp_path, AgentIdentity("n1", "127.0.0.1"))  # never opened: no I/O
    clock = Clock()
    runner = CheckRunner(registry, min_deregister_after=min_after, clock=clock)
    c = registry.catalog
    c.ensure_node(Node("n1", "127.0.0.1"))
    c.ensure_node(Node("n2", "127.0.0.2"))
    return runner, c, clock


def add_service(c: Catalog, sid: str, *, after: float, status: str = CRITICAL, node: str = "n1", **kw: object) -> None:
    c.register_service(
        Service(node, sid, sid),
        [
            Check(
                node,
                f"service:{sid}",
                "chk",
                status=status,
                service_id=sid,
                definition=CheckDefinition(ttl=5, deregister_critical_after=after),
                agent_check=True,
            )
        ],
        **kw,  # type: ignore[arg-type]
    )


def test_reap_after_staying_critical_for_the_configured_time(tmp_path: Path) -> None:
    runner, c, clock = make_runner(tmp_path)
    add_service(c, "web", after=90)
    assert runner.services_to_reap() == []  # first seen critical now
    clock.now += 89.9
    assert runner.services_to_reap() == []
    clock.now += 0.1
    assert runner.services_to_reap() == ["web"]


def test_recovery_resets_the_critical_timer(tmp_path: Path) -> None:
    runner, c, clock = make_runner(tmp_path)
    add_service(c, "web", after=90)
    assert runner.services_to_reap() == []
    clock.now += 80
    c.update_check("n1", "service:web", PASSING, "")
    assert runner.services_to_reap() == []
    clock.now += 20
    c.update_check("n1", "service:web", CRITICAL, "")
    assert runner.services_to_reap() == [], "the earlier critical spell does not count"
    clock.now += 89
    assert runner.services_to_reap() == []
    clock.now += 1
    assert runner.services_to_reap() == ["web"]


def test_warning_is_not_critical(tmp_path: Path) -> None:
    runner, c, clock = make_runner(tmp_path)
    add_service(c, "web", after=60, status=WARNING)
    assert runner.services_to_reap() == []
    clock.now += 3600
    assert runner.services_to_reap() == []


def test_minimum_deregister_time_is_enforced(tmp_path: Path) -> None:
    runner, c, clock = make_runner(tmp_path, min_after=60)
    add_service(c, "web", after=1)
    runner.services_to_reap()
    clock.now += 59
    assert runner.services_to_reap() == []
    clock.now += 1
    assert runner.services_to_reap() == ["web"]


def test_only_service_checks_of_this_agent_with_a_deregister_time_count(tmp_path: Path) -> None:
    runner, c, clock = make_runner(tmp_path, min_after=0)
    add_service(c, "keep", after=0)  # no DeregisterCriticalServiceAfter
    add_service(c, "elsewhere", after=1, node="n2")  # not this agent's node
    c.register_checks(
        [Check("n1", "nodecheck", "n", definition=CheckDefinition(deregister_critical_after=1), agent_check=True)]
    )
    add_service(c, "two", after=0)
    c.register_checks(
        [
            Check(
                "n1",
                "second",
                "s",
                service_id="two",
                definition=CheckDefinition(ttl=1, deregister_critical_after=5),
                agent_check=True,
            )
        ]
    )
    catalog_check = CheckDefinition(ttl=5, deregister_critical_after=1)
    c.register_service(  # a catalog-registered record of a check: never run, never reaped
        Service("n1", "catalog", "catalog"),
        [Check("n1", "service:catalog", "chk", service_id="catalog", definition=catalog_check)],
    )
    runner.services_to_reap()
    clock.now += 10
    assert runner.services_to_reap() == ["two"], "any one check of a service may reap it"


def test_several_services_reaped_in_order(tmp_path: Path) -> None:
    runner, c, clock = make_runner(tmp_path, min_after=0)
    for sid in ("b", "a", "c"):
        add_service(c, sid, after=5)
    runner.services_to_reap()
    clock.now += 5
    assert runner.services_to_reap() == ["a", "b", "c"]
