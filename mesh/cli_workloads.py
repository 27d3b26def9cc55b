"""`mesh env` and `mesh inject`: what a workload needs from the mesh without a code change.

`mesh env SERVICE...` prints Kubernetes-style variables for services in the registry at
``CONSUL_HTTP_ADDR``; `mesh inject -f FILE` adds the sidecar to Kubernetes manifests and compose
files (docs/workloads.md). Exit codes: 0 done, 1 bad input / registry unreachable / ``--check`` found
changes, 2 a named service is unknown (``mesh env``).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mesh.inject.settings import DEFAULT_IMAGE, InjectError, InjectSettings

if TYPE_CHECKING:
    from mesh.envvars import EnvResult

# The registry client, ruamel.yaml and friends are imported by the command that needs them, so other
# `mesh` commands (the sidecar above all) do not pay for them at start.


def _error(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


def env_command(
    services: Annotated[list[str], typer.Argument(help="Service names as registered (e.g. reviews, ratings-db).")],
    output: Annotated[
        str,
        typer.Option(
            "--format",
            "-o",
            envvar="MESH_ENV_FORMAT",
            help="export: `export K=V` lines for `eval`; dotenv: K=V lines (docker --env-file, compose); json.",
        ),
    ] = "export",
    ignore_missing: Annotated[
        bool,
        typer.Option(
            "--ignore-missing",
            envvar="MESH_ENV_IGNORE_MISSING",
            help="Skip services that are unknown or have no healthy instance (named on stderr) instead of failing.",
        ),
    ] = False,
) -> None:
    """Print {SVC}_SERVICE_HOST / _SERVICE_PORT / _SERVICE_PORT_{NAME} (and Docker-link {SVC}_PORT_*) for services
    in the registry at CONSUL_HTTP_ADDR (token: CONSUL_HTTP_TOKEN). An unknown service exits 2.
    """
    from discovery.client_config import ClientConfigError
    from discovery.client_models import RegistryError
    from mesh.envvars import FORMATS, EnvError, render

    if output not in FORMATS:
        raise typer.BadParameter(f"expected one of {', '.join(FORMATS)}, got {output!r}", param_hint="--format")
    try:
        result = asyncio.run(_environment(services, ignore_missing))
    except EnvError as exc:
        _error(str(exc))
        raise typer.Exit(2) from None
    except (RegistryError, ClientConfigError) as exc:
        _error(f"registry: {exc}")
        raise typer.Exit(1) from None
    for skipped in result.missing:
        _error(f"skipped {skipped}")
    sys.stdout.write(render(result.variables, FORMATS[FORMATS.index(output)]))


async def _environment(services: list[str], ignore_missing: bool) -> EnvResult:
    from discovery.client import RegistryClient
    from mesh.envvars import environment

    async with RegistryClient() as client:
        return await environment(client, services, ignore_missing=ignore_missing)


def inject_command(
    filename: Annotated[
        str,
        typer.Option(
            "--filename",
            "-f",
            envvar="MESH_INJECT_FILENAME",
            help="Kubernetes manifests (multi-document YAML) or a compose file; '-': stdin.",
        ),
    ],
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            envvar="MESH_INJECT_CHECK",
            help="Print what would change and exit 1 if anything would, 0 if not; write no manifest.",
        ),
    ] = False,
    image: Annotated[
        str, typer.Option("--image", envvar="MESH_INJECT_IMAGE", help="The sidecar's image (deploy/Dockerfile).")
    ] = DEFAULT_IMAGE,
    control_addr: Annotated[
        str,
        typer.Option(
            "--control-addr",
            envvar="MESH_INJECT_CONTROL_ADDR",
            help="MESH_CONTROL_ADDR given to injected sidecars (default http://mesh-control.mesh:15010 in Kubernetes, "
            "http://control:15010 in compose: the addresses deploy/ uses). Not read from MESH_CONTROL_ADDR, which is "
            "this machine's own control plane.",
            show_default=False,
        ),
    ] = "",
    interception: Annotated[
        bool,
        typer.Option(
            "--interception",
            envvar="MESH_INJECT_INTERCEPTION",
            help="Also add the init step (mesh intercept init) that redirects the workload's TCP through the sidecar, "
            "so the app needs no proxy settings (docs/interception.md).",
        ),
    ] = False,
) -> None:
    """Add the mesh sidecar to Deployments, StatefulSets, DaemonSets, ReplicaSets, Pods and compose services;
    other documents pass through unchanged and an injected file is left byte-identical. Writes to stdout.
    """
    from mesh.inject.documents import describe, inject_text

    try:
        text = sys.stdin.read() if filename == "-" else Path(filename).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        _error(f"cannot read {filename}: {getattr(exc, 'strerror', None) or exc}")
        raise typer.Exit(1) from None
    try:
        result = inject_text(text, InjectSettings(image=image, control_addr=control_addr, interception=interception))
    except InjectError as exc:
        _error(f"{filename}: {exc}")
        raise typer.Exit(1) from None
    if check:
        sys.stdout.write(describe(result))
    else:
        sys.stdout.write(result.text)
    if check and result.changed:
        raise typer.Exit(1)


def add_workload_commands(app: typer.Typer) -> None:
    app.command("env")(env_command)
    app.command("inject")(inject_command)
