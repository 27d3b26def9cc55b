"""The `mesh` command: one entry point that wires the parts together.

Every flag also reads an environment variable (``MESH_<FLAG>``), shown in
``--help``; the registry address and token use Consul's own variables.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Annotated

import typer

from discovery.client_config import ClientConfig
from discovery.runtime.addresses import split_host_port
from discovery.runtime.lifecycle import run_until_signalled
from discovery.runtime.logs import configure_logging
from discovery.server import RegistryConfig, serve
from dnsserver.config import DEFAULT_DNS_ADDR, DEFAULT_METRICS_ADDR, DnsConfig
from dnsserver.server import DnsServerConfig
from dnsserver.server import serve as serve_dns
from mesh.cli_control import add_control_commands
from mesh.cli_gateway import gateway_command
from mesh.cli_intercept import add_intercept_commands
from mesh.cli_registrar import registrar_command
from mesh.cli_sidecar import sidecar_command
from mesh.cli_workloads import add_workload_commands
from mesh.control.auth import ControlAuth
from mesh.control.server import DEFAULT_HTTP_ADDR as DEFAULT_CONTROL_ADDR
from mesh.control.server import ControlConfig
from mesh.control.tokens import TOKEN_ENV, TokenError, resolve_token
from mesh.demo.plan import DEFAULT_BASE_PORT as DEFAULT_DEMO_BASE_PORT
from mesh.demo.plan import plan_workloads
from mesh.demo.processes import free_port
from mesh.up import DemoConfig, run_up

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


DnsAddr = Annotated[
    str,
    typer.Option(
        "--dns-addr", envvar="MESH_DNS_ADDR", help="HOST:PORT for DNS over UDP and TCP (use port 53 when asked)."
    ),
]
MetricsAddr = Annotated[
    str,
    typer.Option(
        "--metrics-addr", envvar="MESH_METRICS_ADDR", help="HOST:PORT of the DNS server's /metrics, /healthz, /readyz."
    ),
]
Domain = Annotated[
    str, typer.Option("--domain", envvar="MESH_DOMAIN", help="Zone of Consul-style names (<svc>.service.<domain>).")
]
ClusterDomain = Annotated[
    str,
    typer.Option(
        "--cluster-domain", envvar="MESH_CLUSTER_DOMAIN", help="Zone of Kubernetes-style names (<svc>.<ns>.svc.<zone>)."
    ),
]
OnlyPassing = Annotated[
    bool,
    typer.Option(
        "--only-passing/--include-warning",
        envvar="MESH_ONLY_PASSING",
        help="Answer only passing instances (Consul's only_passing); by default warning instances are answered too "
        "and only critical ones are dropped.",
    ),
]
ConsulTtl = Annotated[
    int,
    typer.Option("--service-ttl-default", envvar="MESH_SERVICE_TTL_DEFAULT", help="TTL (s) of Consul service answers."),
]
NodeTtl = Annotated[int, typer.Option("--node-ttl", envvar="MESH_NODE_TTL", help="TTL (s) of Consul node answers.")]
ClusterTtl = Annotated[
    int, typer.Option("--cluster-ttl", envvar="MESH_CLUSTER_TTL", help="TTL (s) of cluster-domain answers.")
]
ServiceTtl = Annotated[
    list[str],
    typer.Option(
        "--service-ttl",
        envvar="MESH_SERVICE_TTL",
        help="Per-service TTL override NAME=SECONDS (repeatable; in the variable, space-separated).",
    ),
]
Upstream = Annotated[
    list[str],
    typer.Option(
        "--upstream",
        envvar="MESH_UPSTREAM",
        help="Resolver HOST:PORT for names outside our zones (repeatable); none: those queries get REFUSED.",
    ),
]


def _dns_config(
    domain: str,
    cluster_domain: str,
    datacenter: str,
    only_passing: bool,
    service_ttl_default: int,
    node_ttl: int,
    cluster_ttl: int,
    service_ttl: list[str],
    upstream: list[str],
    ns_address: str,
) -> DnsConfig:
    ttls: dict[str, int] = {}
    for item in service_ttl:
        name, sep, value = item.partition("=")
        if not sep or not name or not value.isdigit():
            raise typer.BadParameter(f"expected NAME=SECONDS, got {item!r}", param_hint="--service-ttl")
        ttls[name.lower()] = int(value)
    return DnsConfig(
        domain=domain.strip(".").lower(),
        cluster_domain=cluster_domain.strip(".").lower(),
        datacenter=datacenter,
        only_passing=only_passing,
        consul_ttl=service_ttl_default,
        node_ttl=node_ttl,
        cluster_ttl=cluster_ttl,
        service_ttls=MappingProxyType(ttls),
        upstreams=tuple(upstream),
        ns_address=ns_address,
    )


@app.command("dns")
def dns_command(
    dns_addr: DnsAddr = DEFAULT_DNS_ADDR,
    metrics_addr: MetricsAddr = DEFAULT_METRICS_ADDR,
    domain: Domain = "consul",
    cluster_domain: ClusterDomain = "cluster.local",
    datacenter: Datacenter = "dc1",
    only_passing: OnlyPassing = False,
    service_ttl_default: ConsulTtl = 0,
    node_ttl: NodeTtl = 0,
    cluster_ttl: ClusterTtl = 5,
    service_ttl: ServiceTtl = [],  # noqa: B006 - typer reads the default, never mutates it
    upstream: Upstream = [],  # noqa: B006
    log_level: LogLevel = "info",
) -> None:
    """Run cluster DNS: Consul and Kubernetes names from the registry at CONSUL_HTTP_ADDR (token: CONSUL_HTTP_TOKEN)."""
    configure_logging(log_level)
    dns = _dns_config(
        domain,
        cluster_domain,
        datacenter,
        only_passing,
        service_ttl_default,
        node_ttl,
        cluster_ttl,
        service_ttl,
        upstream,
        split_host_port(dns_addr, 8600)[0],
    )
    config = DnsServerConfig(dns=dns, dns_addr=dns_addr, metrics_addr=metrics_addr)
    run_until_signalled(lambda stop: serve_dns(config, stop))


ControlHttpAddr = Annotated[
    str,
    typer.Option(
        "--control-http-addr",
        envvar="MESH_CONTROL_HTTP_ADDR",
        help="HOST:PORT of the control plane's HTTP API (rules, status, explain, sidecar sync).",
    ),
]


ControlToken = Annotated[
    str,
    typer.Option(
        "--control-token",
        envvar=TOKEN_ENV,
        help="Token the control plane requires for writes and sidecar registration (as `mesh control --token`); "
        "empty: its API is open on loopback.",
        show_default=False,
    ),
]


Demo = Annotated[
    bool,
    typer.Option(
        "--demo",
        envvar="MESH_DEMO",
        help="Also start a Bookinfo-like demo (productpage, details, reviews v1/v2/v3, ratings), each app a process "
        "with its own `mesh sidecar`, registered in the registry; prints what to try next.",
    ),
]
DemoBasePort = Annotated[
    int,
    typer.Option(
        "--demo-base-port",
        envvar="MESH_DEMO_BASE_PORT",
        help="First port of the demo's blocks of ten (app, then sidecar inbound/outbound/admin at +1/+2/+3); "
        "0 picks free ports (listed in DATA_DIR/demo.json).",
    ),
]


@app.command("up")
def up_command(
    http_addr: HttpAddr = "127.0.0.1:8500",
    data_dir: DataDir = DEFAULT_DATA_DIR,
    node: NodeName = "",
    advertise: Advertise = "",
    datacenter: Datacenter = "dc1",
    acl_token: AclToken = "",
    dns_addr: DnsAddr = DEFAULT_DNS_ADDR,
    metrics_addr: MetricsAddr = DEFAULT_METRICS_ADDR,
    upstream: Upstream = [],  # noqa: B006
    control_http_addr: ControlHttpAddr = DEFAULT_CONTROL_ADDR,
    control_token: ControlToken = "",
    demo: Demo = False,
    demo_base_port: DemoBasePort = DEFAULT_DEMO_BASE_PORT,
    log_level: LogLevel = "info",
) -> None:
    """Run everything in one process on its embedded defaults: the registry (127.0.0.1:8500), DNS (127.0.0.1:8600),
    the control plane (127.0.0.1:15010) and, when a Docker daemon answers, the registrar.
    With --demo, also Bookinfo-like workloads behind their own sidecars (child processes, stopped with it).
    """
    configure_logging(log_level)
    registry = _registry_config(http_addr, data_dir, node, advertise, datacenter, acl_token)
    dns_host, dns_port = split_host_port(dns_addr, 8600)
    dns = _dns_config(
        "consul", "cluster.local", datacenter, False, 0, 0, 5, [], upstream, split_host_port(dns_addr, 8600)[0]
    )
    dns_server = DnsServerConfig(
        dns=dns,
        dns_addr=dns_addr,
        metrics_addr=metrics_addr,
        registry=ClientConfig.from_address(f"http://{http_addr}", token=acl_token or None),
    )
    try:
        control_auth = ControlAuth(resolve_token(control_token, None))
    except TokenError as exc:
        raise typer.BadParameter(str(exc), param_hint="--control-token") from None
    control = ControlConfig(data_dir=data_dir, http_addr=control_http_addr, auth=control_auth)
    typer.echo(
        f"mesh up: registry on http://{http_addr} (data in {data_dir}), DNS on {dns_addr}, "
        f"control plane on http://{control_http_addr}\n"
        f"  try: curl -s http://{http_addr}/v1/catalog/services\n"
        f"       dig @{dns_host} -p {dns_port} web.service.consul   (after registering a service named web)",
        err=True,
    )
    demo_config = None
    if demo:
        try:
            workloads = plan_workloads(demo_base_port, free_port)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--demo-base-port") from None
        demo_config = DemoConfig(workloads, log_level=log_level if log_level == "debug" else "warning")
    run_until_signalled(lambda stop: run_up(registry, dns_server, control, stop, demo_config))


app.command("registrar")(registrar_command)

add_control_commands(app)

app.command("sidecar")(sidecar_command)
app.command("gateway")(gateway_command)
add_workload_commands(app)
add_intercept_commands(app)

from mesh.cli_observe import add_observe_commands  # noqa: E402 (registered with the commands above)

add_observe_commands(app)

from mesh.cli_rollout import add_rollout_commands  # noqa: E402 (registered with the commands above)

add_rollout_commands(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
