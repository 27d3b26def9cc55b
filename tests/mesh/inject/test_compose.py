"""Injection into docker-compose files: one `<service>-mesh-sidecar` per app, validated by Compose itself."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mesh.inject.compose import inject_compose
from mesh.inject.documents import inject_text
from mesh.inject.settings import InjectError, InjectSettings
from tests.mesh.inject.manifests import COMPOSE

SETTINGS = InjectSettings()


@pytest.fixture(scope="module")
def injected_text() -> str:
    return inject_text(COMPOSE, SETTINGS).text


def test_each_app_service_gets_a_sidecar_right_after_it(injected_text: str) -> None:
    services = yaml.safe_load(injected_text)["services"]
    assert list(services) == [
        "web",
        "web-mesh-sidecar",
        "api",
        "api-mesh-sidecar",
        "db",
        "worker",
        "worker-mesh-sidecar",
        "debug",
    ]
    original = yaml.safe_load(COMPOSE)["services"]
    for name, definition in original.items():
        assert services[name] == definition, name  # the apps themselves are untouched


def test_the_sidecar_shares_the_apps_network_and_runs_mesh_sidecar(injected_text: str) -> None:
    services = yaml.safe_load(injected_text)["services"]
    web = services["web-mesh-sidecar"]
    assert web["network_mode"] == "service:web"
    assert web["command"] == ["sidecar", "--service", "web", "--app-port", "80", "--inbound-addr", "0.0.0.0:15006"]
    assert web["environment"]["MESH_CONTROL_ADDR"] == "http://control:15010"
    assert web["labels"] == {"mesh.io/injected": "true", "SERVICE_IGNORE": "true"}
    assert web["depends_on"] == ["web"]
    assert "http://127.0.0.1:15000/ready" in web["healthcheck"]["test"][-1]
    assert web["deploy"]["resources"]["limits"]["memory"] == "128M"
    # the service name from app.kubernetes.io/name, the port from expose
    assert services["api-mesh-sidecar"]["command"][:5] == ["sidecar", "--service", "orders-api", "--app-port", "9000"]
    assert services["worker-mesh-sidecar"]["command"] == ["sidecar", "--service", "worker"]  # outbound only


def test_skips_are_reported() -> None:
    result = inject_text(COMPOSE, SETTINGS)
    skipped = {c.workload: c.detail for c in result.changes if c.action == "skip"}
    assert skipped == {
        "compose service db": 'sidecar.mesh.io/inject: "false"',
        "compose service debug": "network_mode 'service:api' (shares another network)",
    }


def test_a_second_run_changes_nothing(injected_text: str) -> None:
    again = inject_text(injected_text, SETTINGS)
    assert again.text == injected_text
    assert not again.changed
    assert {c.workload for c in again.changes if c.detail == "already injected"} == {
        "compose service web",
        "compose service api",
        "compose service worker",
    }


@pytest.mark.parametrize(
    ("entry", "port"),
    [
        ("8080:80", 80),
        ("127.0.0.1:8080:80/tcp", 80),
        ("9000-9002:7000-7002", 7000),
        (3000, 3000),
        ({"target": 443, "published": "8443", "protocol": "tcp"}, 443),
        ("::1:8080:80", 80),
    ],
)
def test_the_app_port_is_the_container_side_of_the_first_tcp_port(entry: Any, port: int) -> None:
    outcome = inject_compose({"services": {"app": {"image": "x", "ports": ["53:53/udp", entry]}}}, SETTINGS)
    assert outcome.changed
    document: Any = outcome.document
    assert document["services"]["app-mesh-sidecar"]["command"][4] == str(port)


@pytest.mark.parametrize(
    ("service", "path"),
    [
        ({"image": "x", "ports": ["${PORT}:80x"]}, "services.app.ports[0]"),
        ({"image": "x", "expose": "80"}, "services.app.expose"),
        ({"image": "x", "ports": [{"published": 80}]}, "services.app.ports[0].target"),
        ({"image": "x", "labels": "a=b"}, "services.app.labels"),
    ],
)
def test_bad_services_are_errors_naming_the_field(service: dict[str, Any], path: str) -> None:
    with pytest.raises(InjectError) as caught:
        inject_compose({"services": {"app": service}}, SETTINGS)
    assert caught.value.path == path


def compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_accepts_the_injected_file(injected_text: str, tmp_path: Path) -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (apt-get install docker-compose)")
    path = tmp_path / "docker-compose.yml"
    path.write_text(injected_text)
    result = subprocess.run(
        [*command, "-f", str(path), "config"], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]
    assert resolved["api-mesh-sidecar"]["network_mode"] == "service:api"
    assert set(resolved) == {
        "web",
        "web-mesh-sidecar",
        "api",
        "api-mesh-sidecar",
        "db",
        "worker",
        "worker-mesh-sidecar",
        "debug",
    }


def test_interception_adds_a_one_shot_init_service_the_sidecar_waits_for(tmp_path: Path) -> None:
    text = inject_text(COMPOSE, InjectSettings(interception=True)).text
    services = yaml.safe_load(text)["services"]
    assert list(services)[:3] == ["web", "web-mesh-sidecar", "web-mesh-init"]
    init = services["api-mesh-init"]
    assert init["network_mode"] == "service:api"
    assert init["command"] == ["intercept", "init", "--proxy-uid", "10001"]
    assert init["user"] == "0"
    assert init["cap_add"] == ["NET_ADMIN", "NET_RAW"]
    assert init["restart"] == "no"
    assert services["api-mesh-sidecar"]["depends_on"] == {
        "api": {"condition": "service_started"},
        "api-mesh-init": {"condition": "service_completed_successfully"},
    }
    # Without an app port the sidecar has no inbound listener: only outbound is redirected.
    assert services["worker-mesh-init"]["command"][-2:] == ["--inbound-ports", ""]
    assert inject_text(text, InjectSettings(interception=True)).text == text  # idempotent
    command = compose_command()
    if command is not None:
        path = tmp_path / "docker-compose.yml"
        path.write_text(text)
        result = subprocess.run([*command, "-f", str(path), "config"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
