"""The `mesh` command: one entry point that wires the parts together.

Every flag also reads an environment variable (``MESH_<FLAG>``), shown in
``--help``; the registry address and token use Consul's own variables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from discovery.runtime.http import run_until_signalled
from discovery.runtime.logs import configure_logging
from discovery.server import RegistryConfig, serve

app = typer.Typer(
    name="mesh",
    help="Service discovery and service mesh: Consul-compatible registry, cluster DNS, sidecars, control plane.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEFAULT_DATA_DIR = Path("mesh-data")

HttpAddr = Annotated[
    str,
    typer.Option("--http-addr", envvar="MESH_HTTP_ADDR", help="HOST:PORT the registry's HTTP API listens on."),
]
DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="MESH_DATA_DIR",
        help="Directory for durable state (SQLite, WAL mode); created if missing.",
    ),
]
LogLevel = Annotated[
    str,
    typer.Option("--log-level", envvar="MESH_LOG_LEVEL", help="debug, info, warning or error (JSON lines on stderr)."),
]
NodeName = Annotated[
    str,
    typer.Option("--node", envvar="MESH_NODE", help="This agent's node name in the catalog (default: the hostname)."),
]
Advertise = Annotated[
    str,
    typer.Option(
        "--advertise",
        envvar="MESH_ADVERTISE",
        help="Address other parts should use for this node (default: the HTTP bind address).",
    ),
]
Datacenter = Annotated[
    str, typer.Option("--datacenter", envvar="MESH_DATACENTER", help="Datacenter name reported by the registry.")
]
AclToken = Annotated[
    str,
    typer.Option(
        "--acl-token",
        envvar="MESH_ACL_TOKEN",
        help="When set, every API call must present this token (X-Consul-Token, Bearer, or ?token=); "
        "otherwise 403. Empty: open API (bind to loopback).",
    ),
]


def _registry_config(
    http_addr: str, data_dir: Path, node: str, advertise: str, datacenter: str, acl_token: str
) -> RegistryConfig:
    return RegistryConfig(
        data_dir=data_dir,
        http_addr=http_addr,
        node_name=node,
        advertise=advertise,
        datacenter=datacenter,
        acl_token=acl_token,
    )


@app.command("registry")
def registry_command(
    http_addr: HttpAddr = "127.0.0.1:8500",
    data_dir: DataDir = DEFAULT_DATA_DIR,
    node: NodeName = "",
    advertise: Advertise = "",
    datacenter: Datacenter = "dc1",
    acl_token: AclToken = "",
    log_level: LogLevel = "info",
) -> None:
    """Run the Consul-compatible registry: agent, catalog, health, KV, blocking queries, health checks."""
    configure_logging(log_level)
    config = _registry_config(http_addr, data_dir, node, advertise, datacenter, acl_token)
    run_until_signalled(lambda stop: serve(config, stop))


@app.command("up")
def up_command(
    http_addr: HttpAddr = "127.0.0.1:8500",
    data_dir: DataDir = DEFAULT_DATA_DIR,
    node: NodeName = "",
    advertise: Advertise = "",
    datacenter: Datacenter = "dc1",
    acl_token: AclToken = "",
    log_level: LogLevel = "info",
) -> None:
    """Run everything in one process on its embedded defaults (today: the registry on 127.0.0.1:8500).

    DNS, the control plane and the registrar join this command as they land; see the README.
    """
    configure_logging(log_level)
    config = _registry_config(http_addr, data_dir, node, advertise, datacenter, acl_token)
    typer.echo(
        f"mesh up: registry on http://{http_addr} (data in {data_dir}); "
        f"try: curl -s http://{http_addr}/v1/catalog/services",
        err=True,
    )
    run_until_signalled(lambda stop: serve(config, stop))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
