"""`mesh sidecar`'s workload flags and the config file's `workload` section → WorkloadSpec; bad input named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mesh.cli import app
from sidecar.probes.options import workload_from_options


def test_no_workload_flag_means_no_agent() -> None:
    assert workload_from_options({"service": "web"}, app_port=8080) is None


def test_flags_build_the_spec_with_the_app_port_filled_in() -> None:
    spec = workload_from_options(
        {
            "readiness_probe": "{httpGet: {path: /ready}, periodSeconds: 2}",
            "liveness_probe": '{"tcpSocket": {}}',
            "service_id": "web-7",
            "advertise_addr": "10.0.0.7:15006",
            "shutdown_delay": 0.5,
            "app_command": ["sh", "app.sh"],
        },
        app_port=8080,
    )
    assert spec is not None
    assert spec.readiness is not None
    assert (spec.readiness.kind, spec.readiness.port, spec.readiness.period) == ("http", 8080, 2.0)
    assert spec.liveness is not None
    assert spec.liveness.port == 8080
    assert (spec.service_id, spec.advertise, spec.shutdown_delay) == ("web-7", "10.0.0.7:15006", 0.5)
    assert spec.command == ("sh", "app.sh")


def test_the_config_file_section_and_flags_over_it(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.json"
    path.write_text(
        json.dumps(
            {
                "listeners": [],
                "workload": {"readinessProbe": {"tcpSocket": {"port": 9000}}, "shutdownDelay": "3s"},
            }
        )
    )
    spec = workload_from_options({"config": str(path), "advertise_addr": "10.0.0.7:9000"}, app_port=None)
    assert spec is not None
    assert spec.readiness is not None
    assert spec.readiness.port == 9000
    assert spec.shutdown_delay == 3.0
    spec = workload_from_options({"config": str(path), "shutdown_delay": 0.0}, app_port=9000)
    assert spec is not None
    assert spec.shutdown_delay == 0.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"readiness_probe": "{grpc: {port: 1}}"}, "--readiness-probe: readinessProbe.grpc: grpc probes are not"),
        (
            {"liveness_probe": "{tcpSocket: {}, successThreshold: 2}"},
            "--liveness-probe: livenessProbe.successThreshold",
        ),
        ({"startup_probe": "[1, 2]"}, "--startup-probe: startupProbe: must be a mapping"),
        ({"readiness_probe": "{tcpSocket: {}"}, "--readiness-probe: readinessProbe: "),
        ({"register": True, "advertise_addr": "nowhere"}, "--advertise-addr: must be HOST:PORT"),
        ({"register": True, "service_id": "a b"}, "--service-id: must not contain spaces"),
        ({"register": True, "shutdown_delay": -1}, "--shutdown-delay: must be between 0 and 3600"),
        ({"app_command": ["/nonexistent/app", "x"]}, "-- CMD: '/nonexistent/app' is not an executable program"),
    ],
)
def test_bad_flags_are_named(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace("[", r"\[")):
        workload_from_options(options, app_port=8080)


def test_a_probe_port_is_needed_without_app_port_and_workers_must_be_one() -> None:
    with pytest.raises(ValueError, match=r"readinessProbe.tcpSocket.port: is required when the sidecar has no"):
        workload_from_options({"readiness_probe": "{tcpSocket: {}}"}, app_port=None)
    with pytest.raises(ValueError, match=r"^--workers: probes, --register and a supervised app"):
        workload_from_options({"register": True}, app_port=8080, workers=2)
    with pytest.raises(ValueError, match=r"^--advertise-addr: needed to register a workload that has no --app-port"):
        workload_from_options({"register": True}, app_port=None)
    with pytest.raises(ValueError, match=r"^--advertise-addr: needed when --inbound-addr has no fixed port"):
        workload_from_options({"register": True, "inbound_addr": "127.0.0.1:0"}, app_port=8080)


def test_the_cli_refuses_bad_probe_flags_before_starting() -> None:
    result = CliRunner().invoke(app, ["sidecar", "--app-port", "8080", "--readiness-probe", "{exec: {}}"])
    assert result.exit_code == 2
    assert "--readiness-probe" in result.output
    assert "exec.command" in result.output
