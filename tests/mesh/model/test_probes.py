"""Probe and workload config: Kubernetes fields, defaults, and errors naming the field."""

from __future__ import annotations

import pytest

from mesh.model.parse import parse_snapshot
from mesh.model.probes import ProbeSpec, parse_probe, parse_probe_text, parse_workload, resolve
from mesh.model.reader import ConfigError


def test_a_kubernetes_probe_is_read_as_is() -> None:
    probe = parse_probe(
        {
            "httpGet": {
                "path": "/healthz",
                "port": 8080,
                "scheme": "HTTPS",
                "httpHeaders": [{"name": "X-Probe", "value": "1"}],
            },
            "initialDelaySeconds": 5,
            "periodSeconds": 2,
            "timeoutSeconds": 3,
            "successThreshold": 2,
            "failureThreshold": 4,
        },
        "readinessProbe",
        role="readiness",
    )
    assert probe == ProbeSpec(
        "http",
        port=8080,
        path="/healthz",
        scheme="HTTPS",
        headers=(("X-Probe", "1"),),
        initial_delay=5.0,
        period=2.0,
        timeout=3.0,
        success_threshold=2,
        failure_threshold=4,
    )
    assert probe.describe() == "HTTP GET https://127.0.0.1:8080/healthz"


def test_defaults_are_kubernetes_defaults() -> None:
    probe = parse_probe({"tcpSocket": {"port": 5432}}, "p", role="liveness")
    assert (probe.period, probe.timeout, probe.success_threshold, probe.failure_threshold) == (10.0, 1.0, 1, 3)
    assert probe.initial_delay == 0.0
    assert probe.host == "127.0.0.1"


def test_flag_text_is_yaml_flow_or_json() -> None:
    yaml_form = parse_probe_text("{exec: {command: [cat, /tmp/ok]}, periodSeconds: 0.5}", "p", role="startup")
    json_form = parse_probe_text('{"exec": {"command": ["cat", "/tmp/ok"]}, "periodSeconds": 0.5}', "p", role="startup")
    assert yaml_form == json_form == ProbeSpec("exec", command=("cat", "/tmp/ok"), period=0.5)
    assert yaml_form.describe() == "exec cat /tmp/ok"


def test_missing_port_is_the_app_port() -> None:
    spec = resolve(parse_workload({"readinessProbe": {"httpGet": {"path": "/r"}}}), 9080)
    assert spec.readiness is not None
    assert spec.readiness.port == 9080
    with pytest.raises(ConfigError, match=r"readinessProbe.httpGet.port: is required when the sidecar has no"):
        resolve(parse_workload({"readinessProbe": {"httpGet": {"path": "/r"}}}), None)


@pytest.mark.parametrize(
    ("probe", "message"),
    [
        ({}, "readinessProbe: needs exactly one of httpGet, tcpSocket, exec (found none)"),
        (
            {"httpGet": {}, "tcpSocket": {}},
            "readinessProbe: needs exactly one of httpGet, tcpSocket, exec (found httpGet, tcpSocket)",
        ),
        ({"grpc": {"port": 1}}, "readinessProbe.grpc: grpc probes are not supported"),
        ({"tcpSocket": {"port": "db"}}, "readinessProbe.tcpSocket.port: named ports are not supported"),
        ({"tcpSocket": {"port": 70000}}, "readinessProbe.tcpSocket.port: must be a port number 1-65535"),
        ({"httpGet": {"path": "healthz"}}, "readinessProbe.httpGet.path: must be an absolute path"),
        ({"httpGet": {"scheme": "FTP"}}, "readinessProbe.httpGet.scheme: must be one of HTTP, HTTPS"),
        ({"exec": {"command": []}}, "readinessProbe.exec.command: must be a non-empty list of strings"),
        ({"tcpSocket": {}, "periodSeconds": 0}, "readinessProbe.periodSeconds: must be a number of seconds"),
        ({"tcpSocket": {}, "failureThreshold": 0}, "readinessProbe.failureThreshold: must be an integer in 1..1000"),
        ({"tcpSocket": {}, "periodSecond": 1}, "readinessProbe.periodSecond: unknown key 'periodSecond'"),
        (
            {"httpGet": {"httpHeaders": [{"name": "Bad Name"}]}},
            "readinessProbe.httpGet.httpHeaders[0].name: not a valid header name",
        ),
    ],
)
def test_errors_name_the_field(probe: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_probe(probe, "readinessProbe", role="readiness")
    assert str(caught.value).startswith(message)


def test_liveness_and_startup_need_success_threshold_one() -> None:
    parse_probe({"tcpSocket": {}, "successThreshold": 3}, "r", role="readiness")
    for role in ("liveness", "startup"):
        with pytest.raises(ConfigError, match=f"successThreshold: must be 1 for a {role} probe"):
            parse_probe({"tcpSocket": {}, "successThreshold": 3}, "p", role=role)


def test_workload_section_of_the_sidecar_config_file() -> None:
    spec = parse_workload(
        {
            "readinessProbe": {"tcpSocket": {"port": 80}},
            "livenessProbe": {"exec": {"command": ["true"]}},
            "register": True,
            "serviceID": "web-1",
            "advertise": "10.0.0.7:15006",
            "shutdownDelay": "500ms",
        }
    )
    assert spec.readiness is not None
    assert spec.liveness is not None
    assert spec.startup is None
    assert (spec.register, spec.service_id, spec.advertise, spec.shutdown_delay) == (
        True,
        "web-1",
        "10.0.0.7:15006",
        0.5,
    )
    assert spec.active
    with pytest.raises(ConfigError, match=r"workload.advertise: must be HOST:PORT"):
        parse_workload({"advertise": "10.0.0.7"})
    # the snapshot parser accepts the section and NACKs a bad one, naming the field
    parse_snapshot({"workload": {"register": True}})
    with pytest.raises(ConfigError, match=r"^workload.startupProbe.exec.command: must be a non-empty list"):
        parse_snapshot({"workload": {"startupProbe": {"exec": {"command": "true"}}}})
