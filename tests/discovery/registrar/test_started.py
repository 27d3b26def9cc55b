"""predict_started: a created container's running state, only where its configuration fixes it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from discovery.registrar.container import Container, PortBinding
from discovery.registrar.desired import Rules, desired_services
from discovery.registrar.started import predict_started
from discovery.registrar.tags_template import TagsTemplate
from tests.discovery.registrar.samples import RULES, inspect_json

ENV = ["SERVICE_NAME=shop", "SERVICE_TAGS=a,b", "SERVICE_REGION=eu", "SERVICE_CHECK_HTTP=/health"]


def created_and_started(
    bindings: dict[str, list[dict[str, str]] | None],
    shown: dict[str, list[dict[str, str]] | None],
    exposed: list[str],
    **kwargs: Any,
) -> tuple[Container, Container]:
    """The same container inspected before its start (no IP, no Ports) and after (as Docker shows it)."""
    common: dict[str, Any] = {"env": ENV, "exposed": exposed, "port_bindings": bindings, **kwargs}
    created = Container.from_inspect(inspect_json(status="created", ports={}, ip="", networks={"bridge": ""}, **common))
    started = Container.from_inspect(inspect_json(status="running", ports=shown, **common))
    return created, started


@pytest.mark.parametrize(
    "rules",
    [
        RULES,
        replace(RULES, ip="192.0.2.7"),
        replace(RULES, heartbeat_ttl=30.0, tags=TagsTemplate.parse("static,tags")),
        replace(RULES, use_ip_from_label="addr"),
    ],
)
def test_fixed_ports_predict_the_registrations_an_inspect_after_start_gives(rules: Rules) -> None:
    created, started = created_and_started(
        # Docker shows a binding for every address ("" host IP) as 0.0.0.0 and ::, and unpublished exposed ports as null
        bindings={
            "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
            "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}],
        },
        shown={
            "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}],
            "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}],
            "9000/tcp": None,
        },
        exposed=["80/tcp", "53/udp", "9000/tcp"],
        labels={"addr": "198.51.100.1/24"},
    )
    predicted = predict_started(created, rules)
    assert predicted is not None
    assert (predicted.running, predicted.status, predicted.ports["9000/tcp"]) == (True, "running", None)
    want = desired_services(started, rules)
    assert len(want.services) == 2
    assert desired_services(predicted, rules).services == want.services  # same bodies, same digests


def test_host_network_predicts_its_exposed_ports() -> None:
    created, started = created_and_started(bindings={}, shown={}, exposed=["8081/tcp"], network_mode="host")
    predicted = predict_started(created, RULES)
    assert predicted is not None
    services = desired_services(predicted, RULES).services
    assert services == desired_services(started, RULES).services
    assert [(s.registration.address, s.registration.port) for s in services] == [("10.0.0.9", 8081)]


@pytest.mark.parametrize(
    ("why", "bindings", "kwargs"),
    [
        ("ephemeral host port (127.0.0.1::80)", {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}, {}),
        ("host port 0", {"80/tcp": [{"HostIp": "", "HostPort": "0"}]}, {}),
        ("host port range", {"80/tcp": [{"HostIp": "", "HostPort": "8000-8010"}]}, {}),
        ("two bindings of one port", {"80/tcp": [{"HostPort": "8080"}, {"HostPort": "8081"}]}, {}),
        ("-P", {"80/tcp": [{"HostPort": "8080"}]}, {"publish_all": True}),
        ("HEALTHCHECK", {"80/tcp": [{"HostPort": "8080"}]}, {"healthcheck": ["CMD", "true"]}),
        ("another container's network", {"80/tcp": [{"HostPort": "8080"}]}, {"network_mode": "container:abc"}),
        ("no network", {"80/tcp": [{"HostPort": "8080"}]}, {"network_mode": "none"}),
    ],
)
def test_what_docker_decides_at_start_is_not_predicted(
    why: str, bindings: dict[str, list[dict[str, str]] | None], kwargs: dict[str, Any]
) -> None:
    created, _ = created_and_started(bindings=bindings, shown={}, exposed=["80/tcp"], **kwargs)
    assert predict_started(created, RULES) is None, why


def test_rules_that_read_run_time_state_are_not_predicted() -> None:
    created, _ = created_and_started(bindings={"80/tcp": [{"HostPort": "8080"}]}, shown={}, exposed=["80/tcp"])
    assert predict_started(created, RULES) is not None
    assert predict_started(created, replace(RULES, internal=True)) is None  # the container IP comes at start
    assert predict_started(created, replace(RULES, tags=TagsTemplate.parse("{{.State.Pid}}"))) is None


def test_a_stopped_or_paused_inspect_predicts_a_fresh_start() -> None:
    stopped = Container.from_inspect(
        inspect_json(status="exited", exit_code=137, health=None, port_bindings={"80/tcp": [{"HostPort": "8080"}]})
    )
    predicted = predict_started(replace(stopped, paused=True), RULES)
    assert predicted is not None
    assert (predicted.running, predicted.paused, predicted.exit_code) == (True, False, 0)
    assert predicted.ports == {"80/tcp": PortBinding("0.0.0.0", "8080")}
