"""`mesh intercept init|clean`: the init step of transparent interception (docs/interception.md).

Run in the workload's network namespace before the workload starts (a Kubernetes init container
with NET_ADMIN, `ip netns exec`, or a systemd ExecStartPre), with the sidecar running as
``--proxy-uid``. Exit codes: 0 done, 1 bad settings or iptables refused.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mesh.intercept.rules import (
    DEFAULT_PROXY_UID,
    InterceptionError,
    InterceptionSettings,
    check_port,
    describe,
    parse_cidrs,
    parse_ports,
    restore_text,
    validate,
)

intercept_app = typer.Typer(help="Transparent interception: redirect a workload's TCP traffic through its sidecar.")

ProxyUid = Annotated[
    int,
    typer.Option(
        "--proxy-uid", envvar="MESH_PROXY_UID", help="User id the sidecar runs as; its own traffic is not redirected."
    ),
]
ProxyGid = Annotated[
    int,
    typer.Option("--proxy-gid", envvar="MESH_PROXY_GID", help="Group id the sidecar runs as (-1: match by uid only)."),
]
OutboundPort = Annotated[
    int, typer.Option("--outbound-port", envvar="MESH_OUTBOUND_PORT", help="The sidecar's outbound listener port.")
]
InboundPort = Annotated[
    int, typer.Option("--inbound-port", envvar="MESH_INBOUND_PORT", help="The sidecar's inbound listener port.")
]
InboundPorts = Annotated[
    str,
    typer.Option(
        "--inbound-ports",
        envvar="MESH_INTERCEPT_INBOUND_PORTS",
        help="Inbound ports to redirect: * (all), empty (none) or a comma-separated list.",
    ),
]
ExcludeInboundPorts = Annotated[
    str,
    typer.Option(
        "--exclude-inbound-ports",
        envvar="MESH_INTERCEPT_EXCLUDE_INBOUND_PORTS",
        help="Inbound ports never redirected (comma-separated), e.g. 22.",
    ),
]
OutboundCidrs = Annotated[
    str,
    typer.Option(
        "--outbound-cidrs",
        envvar="MESH_INTERCEPT_OUTBOUND_CIDRS",
        help="Destinations to redirect: * (all), empty (none) or comma-separated IPv4 CIDRs.",
    ),
]
ExcludeOutboundCidrs = Annotated[
    str,
    typer.Option(
        "--exclude-outbound-cidrs",
        envvar="MESH_INTERCEPT_EXCLUDE_OUTBOUND_CIDRS",
        help="Destinations never redirected (comma-separated IPv4 CIDRs).",
    ),
]
ExcludeOutboundPorts = Annotated[
    str,
    typer.Option(
        "--exclude-outbound-ports",
        envvar="MESH_INTERCEPT_EXCLUDE_OUTBOUND_PORTS",
        help="Destination ports never redirected (comma-separated), e.g. a database's.",
    ),
]
DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        envvar="MESH_INTERCEPT_DRY_RUN",
        help="Print what would be redirected and the iptables-restore input; change nothing.",
    ),
]


def _settings(
    proxy_uid: int,
    proxy_gid: int,
    outbound_port: int,
    inbound_port: int,
    inbound_ports: str,
    exclude_inbound_ports: str,
    outbound_cidrs: str,
    exclude_outbound_cidrs: str,
    exclude_outbound_ports: str,
) -> InterceptionSettings:
    try:
        return validate(
            InterceptionSettings(
                proxy_uid=proxy_uid,
                proxy_gid=None if proxy_gid < 0 else proxy_gid,
                outbound_port=check_port("--outbound-port", outbound_port),
                inbound_port=check_port("--inbound-port", inbound_port),
                inbound_ports=parse_ports("--inbound-ports", inbound_ports),
                exclude_inbound_ports=parse_ports("--exclude-inbound-ports", exclude_inbound_ports) or (),
                outbound_cidrs=parse_cidrs("--outbound-cidrs", outbound_cidrs),
                exclude_outbound_cidrs=parse_cidrs("--exclude-outbound-cidrs", exclude_outbound_cidrs) or (),
                exclude_outbound_ports=parse_ports("--exclude-outbound-ports", exclude_outbound_ports) or (),
            )
        )
    except InterceptionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@intercept_app.command("init")
def init_command(
    proxy_uid: ProxyUid = DEFAULT_PROXY_UID,
    proxy_gid: ProxyGid = -1,
    outbound_port: OutboundPort = 15001,
    inbound_port: InboundPort = 15006,
    inbound_ports: InboundPorts = "*",
    exclude_inbound_ports: ExcludeInboundPorts = "",
    outbound_cidrs: OutboundCidrs = "*",
    exclude_outbound_cidrs: ExcludeOutboundCidrs = "",
    exclude_outbound_ports: ExcludeOutboundPorts = "",
    dry_run: DryRun = False,
) -> None:
    """Install the redirect rules in this network namespace (replacing earlier ones: running it twice is harmless)."""
    from mesh.intercept.apply import InterceptionFailed, install

    settings = _settings(
        proxy_uid,
        proxy_gid,
        outbound_port,
        inbound_port,
        inbound_ports,
        exclude_inbound_ports,
        outbound_cidrs,
        exclude_outbound_cidrs,
        exclude_outbound_ports,
    )
    if dry_run:
        typer.echo("".join(f"# {line}\n" for line in describe(settings)) + restore_text(settings), nl=False)
        return
    try:
        install(settings)
    except InterceptionFailed as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for line in describe(settings):
        typer.echo(line)


@intercept_app.command("clean")
def clean_command() -> None:
    """Remove the redirect rules from this network namespace (nothing to do is not an error)."""
    from mesh.intercept.apply import InterceptionFailed, clean

    try:
        removed = clean()
    except InterceptionFailed as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo("interception removed" if removed else "no interception was installed")


def add_intercept_commands(app: typer.Typer) -> None:
    app.add_typer(intercept_app, name="intercept")
