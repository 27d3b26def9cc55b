"""deploy/compose/docker-compose.yml: valid for Compose (``docker compose config`` or v1 ``docker-compose
config``), and every service runs a real `mesh` command with real flags and variables."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.helpers import DEPLOY, ROOT, check_invocation

COMPOSE_FILE = DEPLOY / "compose" / "docker-compose.yml"
INFRA = {"registry", "dns", "control", "registrar"}
APPS = {"ratings", "reviews"}


def compose_command() -> list[str] | None:
    """The Compose v2 plugin if present, else v1's docker-compose (Debian's ``docker-compose`` package)."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    """The file as Compose itself resolves it (anchors merged, paths made absolute)."""
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (apt-get install docker-compose)")
    result = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config"], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # Compose may print KEY=VALUE lists
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_compose_accepts_the_file_with_every_part(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert set(services) == INFRA | APPS | {f"{app}-sidecar" for app in APPS}
    for name, service in services.items():
        assert service["image"] == "pymesh:dev", name
        build = service["build"]
        assert (Path(build["context"]) / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile", name


def test_each_service_runs_a_real_mesh_command(resolved: dict[str, Any]) -> None:
    for name, service in resolved["services"].items():
        if name in APPS:
            assert service["entrypoint"] == ["python", "-m", "mesh.demo.app"]
            assert service["command"][:2] == ["--service", name]
            continue
        check_invocation(list(service["command"]), environment(service), f"compose service {name}")


def test_the_registrar_reads_the_docker_socket_and_apps_are_registered_at_their_sidecars(
    resolved: dict[str, Any],
) -> None:
    services = resolved["services"]
    mounts = services["registrar"]["volumes"]
    assert any(
        m.get("source", m) == "/var/run/docker.sock" if isinstance(m, dict) else m.startswith("/var/run/docker.sock:")
        for m in mounts
    )
    for app in APPS:
        env = environment(services[app])
        assert env["SERVICE_15006_NAME"] == app  # the sidecar's inbound port, the only one exposed
        assert [str(p) for p in services[app]["expose"]] == ["15006"]
        assert env["SERVICE_VERSION"]
        sidecar = services[f"{app}-sidecar"]
        assert sidecar["network_mode"] == f"service:{app}"  # one network namespace, like a pod
        assert "--inbound-addr=0.0.0.0:15006" in sidecar["command"]
        assert environment(sidecar)["MESH_CONTROL_ADDR"] == "http://control:15010"
        assert "MESH_CONTROL_TOKEN" in environment(sidecar)  # from the caller's environment, as the control's
    assert "MESH_CONTROL_TOKEN" in environment(services["control"])
    for name in INFRA | {f"{app}-sidecar" for app in APPS}:
        assert services[name]["labels"]["SERVICE_IGNORE"] == "true", name  # the registrar leaves them out
