"""What the deploy/ files may name: the `mesh` commands with their flags and environment variables."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import typer.main

from discovery.registrar.config import ENV_VARS as REGISTRAR_ENV_VARS
from mesh.cli import app

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# Read by the processes themselves rather than by a flag: the control plane's address (sidecars,
# `mesh apply`), the sidecar's state dir, whether `mesh up` starts the registrar.
PROCESS_ENV = frozenset({"MESH_CONTROL_ADDR", "MESH_DATA_DIR", "MESH_UP_REGISTRAR", "MESH_CONTROL_TOKEN"})


@dataclass(frozen=True)
class CommandSpec:
    flags: frozenset[str]
    envvars: frozenset[str]


@cache
def command_spec(name: str) -> CommandSpec:
    commands: dict[str, Any] = getattr(typer.main.get_command(app), "commands", {})
    command = commands.get(name)
    assert command is not None, f"`mesh {name}` is not a command"
    flags: set[str] = set()
    envvars: set[str] = set(PROCESS_ENV)
    for param in command.params:
        flags.update(param.opts)
        flags.update(getattr(param, "secondary_opts", []))
        env = getattr(param, "envvar", None)
        envvars.update([env] if isinstance(env, str) else env or [])
    if name == "registrar":
        envvars.update(REGISTRAR_ENV_VARS.values())
    return CommandSpec(frozenset(flags), frozenset(envvars))


def check_invocation(argv: list[str], env: dict[str, str], where: str) -> None:
    """``mesh ARGV`` with ``env``: a real command, real flags, and MESH_* variables it reads."""
    name, *rest = argv
    spec = command_spec(name)
    for arg in rest:
        if arg.startswith("--"):
            flag = arg.split("=", 1)[0]
            assert flag in spec.flags, f"{where}: `mesh {name}` has no flag {flag}"
    for var in env:
        if var.startswith("MESH_"):
            assert var in spec.envvars, f"{where}: `mesh {name}` does not read {var}"
