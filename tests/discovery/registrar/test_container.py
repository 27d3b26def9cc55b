"""Container.from_inspect: lenient about nulls and missing fields."""

from __future__ import annotations

from discovery.registrar.container import Container, PortBinding
from tests.discovery.registrar.samples import CID, inspect_json


def test_full_inspect() -> None:
    data = inspect_json(
        env=["A=1"],
        labels={"l": "v"},
        exposed=["80/tcp"],
        ports={
            "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}, {"HostIp": "::1", "HostPort": "8080"}],
            "81/tcp": None,
        },
        health="healthy",
    )
    c = Container.from_inspect(data)
    assert (c.id, c.name, c.image) == (CID, "web-1", "registry.example:5000/team/nginx:1.25")
    assert c.ports == {"80/tcp": PortBinding("127.0.0.1", "8080"), "81/tcp": None}
    assert (c.running, c.paused, c.status, c.health, c.health_output) == (True, False, "running", "healthy", "ok")
    assert c.short_id == CID[:12]
    assert c.raw is data


def test_nulls_and_missing_sections() -> None:
    c = Container.from_inspect(
        {"Id": "x", "Config": {"Env": None, "Labels": None, "ExposedPorts": None}, "NetworkSettings": None}
    )
    assert (c.env, c.labels, c.exposed_ports, c.ports, c.networks) == ((), {}, (), {}, {})
    assert (c.running, c.health, c.network_mode) == (False, None, "default")


def test_health_none_means_no_healthcheck_and_network_container() -> None:
    data = inspect_json(health="none", network_mode="container:0123456789ab")
    c = Container.from_inspect(data)
    assert c.health is None
    assert c.network_container == "0123456789ab"
    assert Container.from_inspect(inspect_json(labels={"com.docker.compose.service": "db"})).compose_service == "db"


def test_create_time_configuration() -> None:
    data = inspect_json(
        port_bindings={
            "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
            "53/udp": [{"HostIp": "", "HostPort": ""}, {"HostIp": "::1", "HostPort": "5353"}],
            "81/tcp": None,
        },
        publish_all=True,
        healthcheck=["CMD-SHELL", "true"],
    )
    c = Container.from_inspect(data)
    assert c.port_bindings == {
        "80/tcp": (PortBinding("127.0.0.1", "8080"),),
        "53/udp": (PortBinding("", ""), PortBinding("::1", "5353")),
        "81/tcp": (),
    }
    assert (c.publish_all, c.healthcheck) == (True, True)


def test_healthcheck_none_or_absent_is_no_healthcheck() -> None:
    for test in (["NONE"], [], None):
        assert not Container.from_inspect(inspect_json(healthcheck=test)).healthcheck, test
    assert Container.from_inspect(inspect_json(healthcheck=["CMD", "probe"])).healthcheck
