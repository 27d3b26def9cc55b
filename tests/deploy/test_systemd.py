"""deploy/systemd/: one hardened unit per long-running command, each checked by ``systemd-analyze verify``
(with ExecStart pointed at this checkout's `mesh`, since /opt/mesh is where an install puts it)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.helpers import DEPLOY, check_invocation

SYSTEMD = DEPLOY / "systemd"
INSTALLED_MESH = "/opt/mesh/venv/bin/mesh"
UNITS = {
    "mesh-registry.service": "registry",
    "mesh-dns.service": "dns",
    "mesh-control.service": "control",
    "mesh-registrar.service": "registrar",
    "mesh-sidecar@.service": "sidecar",
    "mesh-up.service": "up",
}
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "SystemCallFilter": "@system-service",
    "CapabilityBoundingSet": "",
    "User": "mesh",
}


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file; a key given several times (Environment=) keeps every value."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def test_one_unit_per_long_running_command() -> None:
    assert {p.name for p in SYSTEMD.glob("*.service")} == set(UNITS)


@pytest.mark.parametrize("name", sorted(UNITS))
def test_units_are_hardened_and_run_the_command_they_are_named_for(name: str) -> None:
    unit = read_unit(SYSTEMD / name)
    service = unit["Service"]
    for key, value in HARDENING.items():
        assert service.get(key) == [value], f"{name}: {key}"
    (exec_start,) = service["ExecStart"]
    program, *argv = shlex.split(exec_start)
    assert program == INSTALLED_MESH
    assert argv[0] == UNITS[name]
    environment = dict(item.split("=", 1) for item in service.get("Environment", []))
    check_invocation(argv, environment, name)
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (Debian: systemd)")
def test_systemd_analyze_verify_finds_nothing_to_say(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    mesh = Path(sys.executable).with_name("mesh")
    paths = []
    for name in UNITS:
        text = (SYSTEMD / name).read_text().replace(INSTALLED_MESH, str(mesh))
        # a template is verified as an instance of it
        target = tmp_path / name.replace("@.", "@reviews.")
        target.write_text(text)
        paths.append(str(target))
    result = subprocess.run([SYSTEMD_ANALYZE, "verify", *paths], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    # verify exits 0 on unknown keys and bad values too: it only warns, so any output is a finding
    assert result.stderr.strip() == "", result.stderr
