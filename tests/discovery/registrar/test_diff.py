"""plan_container and registrator_leftovers: what to write, pure."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from discovery.client_models import AgentService
from discovery.registrar.desired import DesiredService, desired_services
from discovery.registrar.diff import keeps_services, plan_container, registrator_leftovers
from discovery.registrar.ownership import OwnedService
from tests.discovery.registrar.samples import CID, RULES, bound, container


def wanted(**kwargs: Any) -> tuple[DesiredService, ...]:
    return desired_services(container(**kwargs), RULES).services


def owned_as(services: tuple[DesiredService, ...], health: str | None = None) -> dict[str, OwnedService]:
    return {s.service_id: OwnedService(s.service_id, CID, s.digest, health) for s in services}


def test_missing_services_are_registered() -> None:
    want = wanted(ports=bound("80/tcp", "1"))
    plan = plan_container(container(), want, {})
    assert plan.register == want
    assert plan.deregister == ()
    assert not plan.empty


def test_identical_services_need_no_write() -> None:
    want = wanted(ports=bound("80/tcp", "1"))
    assert plan_container(container(), want, owned_as(want)).empty


def test_a_changed_registration_is_written_again() -> None:
    before = wanted(ports=bound("80/tcp", "1"))
    after = wanted(ports=bound("80/tcp", "2"))  # same ID, new host port (restarted container)
    plan = plan_container(container(), after, owned_as(before))
    assert plan.register == after
    assert plan.deregister == ()


def test_only_a_health_change_updates_the_check() -> None:
    want = wanted(ports=bound("80/tcp", "1"), health="healthy")
    plan = plan_container(container(), want, owned_as(want, health="critical"))
    assert plan.register == ()
    (update,) = plan.health
    assert (update.check_id, update.status) == ("service:host1:web-1:80:docker-health", "passing")
    assert plan_container(container(), want, owned_as(want, health="passing")).empty


def test_services_no_longer_wanted_are_deregistered() -> None:
    both = wanted(ports={**bound("80/tcp", "1"), **bound("81/tcp", "2")})
    one = wanted(ports=bound("80/tcp", "1"))
    plan = plan_container(container(), one, owned_as(both))
    assert plan.deregister == ("host1:web-1:81",)
    # port 80 keeps its ID but is no longer in a group, so its name lost the suffix: written again
    assert [(s.service_id, s.registration.name) for s in plan.register] == [("host1:web-1:80", "nginx")]


def test_a_gone_container_loses_everything() -> None:
    have = owned_as(wanted(ports=bound("80/tcp", "1")))
    assert plan_container(None, (), have, mode="on-success").deregister == ("host1:web-1:80",)


@pytest.mark.parametrize(
    ("exit_code", "status", "cleanup", "sync", "kept"),
    [
        (3, "exited", False, False, True),  # failure: kept
        (0, "exited", False, False, False),  # success: removed
        (137, "exited", False, False, False),  # killed by a signal: removed
        (143, "exited", False, False, False),
        (1, "restarting", True, True, True),  # cleanup keeps restarting containers
        (1, "exited", True, False, True),  # cleanup acts at syncs only, not on the die event
        (1, "exited", True, True, False),
        (1, "dead", True, True, False),
    ],
)
def test_on_success_keeps_failed_containers(exit_code: int, status: str, cleanup: bool, sync: bool, kept: bool) -> None:
    have = owned_as(wanted(ports=bound("80/tcp", "1")))
    stopped = container(status=status, exit_code=exit_code)
    plan = plan_container(stopped, (), have, mode="on-success", cleanup=cleanup, sync=sync)
    assert (plan.kept == ("host1:web-1:80",)) is kept
    assert (plan.deregister == ()) is kept
    assert keeps_services(stopped, "on-success", cleanup=cleanup, sync=sync) is kept
    assert not keeps_services(stopped, "always", cleanup=cleanup, sync=sync)


def test_a_paused_container_is_never_kept() -> None:
    paused = replace(container(status="paused"), exit_code=1)
    assert not keeps_services(paused, "on-success", cleanup=False, sync=False)


def service(service_id: str, meta: dict[str, str] | None = None) -> AgentService:
    return AgentService(id=service_id, name="x", meta=meta or {})


def test_registrator_leftovers_match_this_host_and_dead_containers_only() -> None:
    services = {
        s.id: s
        for s in (
            service("host1:gone:80"),
            service("host1:gone:53:udp"),
            service("host1:alive:80"),
            service("host2:gone:80"),
            service("host1:ours:80", {"registrar-host": "host1"}),
            service("host1:other-registrar:80", {"registrar-host": "host9"}),
            service("web"),
            service("host1.example:gone:80"),
            service("host1:gone:http"),
        )
    }
    found = registrator_leftovers(services, hostname="host1", running_names={"alive"})
    assert found == ["host1:gone:53:udp", "host1:gone:80"]
