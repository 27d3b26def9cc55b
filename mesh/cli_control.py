"""`mesh control` (the server) and its kubectl-like clients: apply, get, delete, status, explain.

The clients find the control plane at ``--control-addr`` / ``MESH_CONTROL_ADDR``
(``http://127.0.0.1:15010``) and send its token from ``--token`` / ``MESH_CONTROL_TOKEN`` (or
``MESH_CONTROL_TOKEN_FILE``); errors print the field at fault and exit 1.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from discovery.client_config import ClientConfigError
from discovery.runtime.lifecycle import run_until_signalled
from discovery.runtime.logs import configure_logging
from mesh.control.auth import ControlAuth
from mesh.control.certificates import CaSettings
from mesh.control.client import ControlApiError, ControlClient
from mesh.control.explain_policies import describe_cluster_policies, describe_route_policies
from mesh.control.jwks import DEFAULT_REFRESH_S
from mesh.control.plane import PlaneSettings
from mesh.control.server import DEFAULT_HTTP_ADDR, ControlConfig, serve
from mesh.control.store_consul import DEFAULT_PREFIX
from mesh.control.tokens import TOKEN_ENV, TOKEN_FILE_ENV, TokenError, cli_token, resolve_token
from mesh.control.vips import VipRangeError, parse_range
from mesh.model.snapshot import OUTBOUND_POLICIES
from mesh.rules.resource import kind_info, known_kinds
from mesh.security.ca import CaError
from mesh.security.identity import DEFAULT_TRUST_DOMAIN, IdentityError, check_trust_domain

ControlAddr = Annotated[
    str,
    typer.Option(
        "--control-addr",
        envvar="MESH_CONTROL_ADDR",
        help="The control plane's URL (default http://127.0.0.1:15010).",
        show_default=False,
    ),
]
Namespace = Annotated[
    str, typer.Option("--namespace", "-n", envvar="MESH_NAMESPACE", help="Namespace of the resources.")
]
ControlToken = Annotated[
    str,
    typer.Option(
        "--token",
        envvar=TOKEN_ENV,
        help=f"The control plane's token (sent as Authorization: Bearer); {TOKEN_FILE_ENV} names a file holding it.",
        show_default=False,
    ),
]

_out = Console(soft_wrap=True)  # long lines stay whole, so output can be grepped
_err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    _err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


def _client(control_addr: str, token: str) -> ControlClient:
    try:
        return ControlClient(control_addr or None, token=cli_token(token))
    except ControlApiError as exc:
        raise _fail(str(exc)) from exc


# === the server ===


def control_command(
    http_addr: Annotated[
        str,
        typer.Option(
            "--http-addr",
            envvar=["MESH_CONTROL_HTTP_ADDR", "MESH_HTTP_ADDR"],
            help="HOST:PORT of the control plane's HTTP API (config, status, explain, sidecar sync, /metrics).",
        ),
    ] = DEFAULT_HTTP_ADDR,
    data_dir: Annotated[
        Path,
        typer.Option("--data-dir", envvar="MESH_DATA_DIR", help="Directory of the embedded store (control.db)."),
    ] = Path("mesh-data"),
    store: Annotated[
        str,
        typer.Option(
            "--store",
            envvar="MESH_STORE",
            help="sqlite: embedded, durable, in --data-dir. consul: Consul KV at CONSUL_HTTP_ADDR with check-and-set, "
            "so several control planes can share one configuration.",
        ),
    ] = "sqlite",
    consul_prefix: Annotated[
        str, typer.Option("--consul-prefix", envvar="MESH_CONSUL_PREFIX", help="KV prefix of the consul store.")
    ] = DEFAULT_PREFIX,
    replica_id: Annotated[
        str,
        typer.Option(
            "--replica-id",
            envvar="MESH_CONTROL_REPLICA_ID",
            help="This replica's name in `mesh status` and the shared status (default <hostname>:<port>); "
            "unique per replica, without '/'.",
            show_default=False,
        ),
    ] = "",
    token: Annotated[
        str,
        typer.Option(
            "--token",
            envvar=TOKEN_ENV,
            help="Require this token (Authorization: Bearer or X-Mesh-Token) for writes, CA signing and sidecar "
            "registration/sync; each sidecar then also gets a secret of its own. Empty: the API is open.",
            show_default=False,
        ),
    ] = "",
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            envvar=TOKEN_FILE_ENV,
            help="File holding the token (read once at start, whitespace stripped); used instead of --token.",
            show_default=False,
        ),
    ] = None,
    token_reads: Annotated[
        bool,
        typer.Option(
            "--token-reads",
            envvar="MESH_CONTROL_TOKEN_READS",
            help="Require the token for reads too (config, status, explain, openapi, /metrics, the CA bundle); "
            "/healthz and /readyz stay open.",
        ),
    ] = False,
    ca_cert: Annotated[
        Path | None,
        typer.Option(
            "--ca-cert",
            envvar="MESH_CA_CERT",
            help="Your CA certificate (PEM, optionally followed by its chain), instead of the root generated in "
            "--data-dir; give every replica the same one so their certificates verify across replicas.",
            show_default=False,
        ),
    ] = None,
    ca_key: Annotated[
        Path | None,
        typer.Option("--ca-key", envvar="MESH_CA_KEY", help="The CA's private key (mode 0600).", show_default=False),
    ] = None,
    ca_bundle: Annotated[
        Path | None,
        typer.Option(
            "--ca-bundle",
            envvar="MESH_CA_BUNDLE",
            help="Roots sidecars trust (PEM; default: the self-signed certificates in --ca-cert).",
            show_default=False,
        ),
    ] = None,
    trust_domain: Annotated[
        str,
        typer.Option(
            "--trust-domain", envvar="MESH_TRUST_DOMAIN", help="SPIFFE trust domain of the identities the CA issues."
        ),
    ] = DEFAULT_TRUST_DOMAIN,
    scrape_interval: Annotated[
        float,
        typer.Option(
            "--scrape-interval",
            envvar="MESH_CONTROL_SCRAPE_INTERVAL",
            help="Seconds between scrapes of sidecars' /metrics for the topology (GET /v1/mesh/topology, /ui).",
        ),
    ] = 5.0,
    jwks_refresh: Annotated[
        float,
        typer.Option(
            "--jwks-refresh",
            envvar="MESH_CONTROL_JWKS_REFRESH",
            help="Seconds between fetches of each RequestAuthentication key set (jwksUri, OpenID discovery); "
            "a failed fetch keeps the last good keys (Istio's default: 20 minutes).",
        ),
    ] = DEFAULT_REFRESH_S,
    outbound_traffic_policy: Annotated[
        str,
        typer.Option(
            "--outbound-traffic-policy",
            envvar="MESH_OUTBOUND_TRAFFIC_POLICY",
            help="Requests for Hosts no route knows: REGISTRY_ONLY answers 404; ALLOW_ANY sends them where they "
            "were headed (Istio's meshConfig.outboundTrafficPolicy.mode).",
        ),
    ] = "REGISTRY_ONLY",
    service_vip_range: Annotated[
        str,
        typer.Option(
            "--service-vip-range",
            envvar="MESH_SERVICE_VIP_RANGE",
            help="Give every non-headless service a stable virtual IP from this CIDR (kube-proxy's ClusterIPs, "
            "e.g. 240.240.0.0/16), kept in the registry's KV; cluster DNS answers it for svc.cluster.local names.",
        ),
    ] = "",
    log_level: Annotated[
        str, typer.Option("--log-level", envvar="MESH_LOG_LEVEL", help="debug, info, warning or error.")
    ] = "info",
) -> None:
    """Run the control plane: Istio-style routing rules in, per-sidecar snapshots out (registry: CONSUL_HTTP_ADDR)."""
    if store not in ("sqlite", "consul"):
        raise typer.BadParameter(f"expected sqlite or consul, got {store!r}", param_hint="--store")
    if "/" in replica_id or replica_id != replica_id.strip():
        raise typer.BadParameter(
            f"expected a name without '/' or surrounding spaces, got {replica_id!r}", param_hint="--replica-id"
        )
    try:
        auth = ControlAuth(resolve_token(token, token_file), token_reads)
    except TokenError as exc:
        raise typer.BadParameter(str(exc), param_hint="--token-file" if token_file else "--token") from None
    if token_reads and not auth.enforced:
        raise typer.BadParameter("--token-reads needs a token (--token or --token-file)", param_hint="--token-reads")
    if (ca_cert is None) != (ca_key is None):
        raise typer.BadParameter("a CA of your own needs both --ca-cert and --ca-key", param_hint="--ca-key")
    if ca_bundle is not None and ca_cert is None:
        raise typer.BadParameter("--ca-bundle goes with --ca-cert and --ca-key", param_hint="--ca-bundle")
    try:
        check_trust_domain(trust_domain)
    except IdentityError as exc:
        raise typer.BadParameter(str(exc), param_hint="--trust-domain") from None
    if not scrape_interval > 0:
        raise typer.BadParameter(f"expected seconds > 0, got {scrape_interval}", param_hint="--scrape-interval")
    if outbound_traffic_policy not in OUTBOUND_POLICIES:
        raise typer.BadParameter(
            f"expected one of {', '.join(OUTBOUND_POLICIES)}, got {outbound_traffic_policy!r}",
            param_hint="--outbound-traffic-policy",
        )
    if service_vip_range:
        try:
            parse_range(service_vip_range)
        except VipRangeError as exc:
            raise typer.BadParameter(str(exc), param_hint="--service-vip-range") from None
    if not jwks_refresh > 0:
        raise typer.BadParameter(f"expected seconds > 0, got {jwks_refresh}", param_hint="--jwks-refresh")
    configure_logging(log_level)
    config = ControlConfig(
        scrape_interval=scrape_interval,
        data_dir=data_dir,
        http_addr=http_addr,
        store="consul" if store == "consul" else "sqlite",
        consul_prefix=consul_prefix,
        replica_id=replica_id,
        settings=PlaneSettings(
            jwks_refresh=jwks_refresh,
            outbound_traffic_policy=outbound_traffic_policy,
            service_vip_range=service_vip_range,
        ),
        auth=auth,
        ca=CaSettings(trust_domain=trust_domain, cert_file=ca_cert, key_file=ca_key, bundle_file=ca_bundle),
    )
    try:
        run_until_signalled(lambda stop: serve(config, stop))
    except ClientConfigError as exc:
        raise _fail(str(exc)) from exc
    except CaError as exc:
        raise _fail(f"CA: {exc}") from None


# === apply ===


def apply_command(
    filename: Annotated[
        str, typer.Option("--filename", "-f", help="YAML or JSON file with one or more resources; '-' reads stdin.")
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate only; change nothing.")] = False,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Return when every affected sidecar has ACKed the change (or say which did not)."),
    ] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds --wait waits.")] = 60.0,
    namespace: Namespace = "",
    control_addr: ControlAddr = "",
    token: ControlToken = "",
) -> None:
    """Create or replace resources (VirtualService, DestinationRule, ServiceEntry, ...): all or none."""
    try:
        body = sys.stdin.buffer.read() if filename == "-" else Path(filename).read_bytes()
    except OSError as exc:
        raise _fail(f"cannot read {filename}: {exc.strerror or exc}") from exc
    client = _client(control_addr, token)
    try:
        result = client.apply(body, dry_run=dry_run, namespace=namespace)
    except ControlApiError as exc:
        raise _fail(str(exc)) from exc
    suffix = " (dry run)" if dry_run else ""
    for item in result["resources"]:
        _out.print(f"{item['kind']} {item['namespace']}/{item['name']} {item['action']}{suffix}", highlight=False)
    for warning in result.get("warnings", []):
        _err.print(
            f"[yellow]warning:[/] {warning['resource']}: {warning['path']}: {warning['message']}", highlight=False
        )
    if dry_run:
        return
    _out.print(f"config version {result['version']}", style="dim", highlight=False)
    if wait and result.get("changed"):
        _wait_for_acks(client, int(result["version"]), timeout)


def _wait_for_acks(client: ControlClient, version: int, timeout: float) -> None:
    """Poll /v1/mesh/status until every sidecar whose snapshot changed at >= ``version`` ACKed it."""
    deadline = time.monotonic() + timeout
    shown = ""
    pending: list[dict[str, Any]] = []
    while True:
        try:
            status = client.status()
        except ControlApiError as exc:
            raise _fail(str(exc)) from exc
        sidecars = status["sidecars"]
        computed = all(s["config_version"] >= version for s in sidecars)
        affected = [s for s in sidecars if _config_of(s["version"]) >= version]
        pending = [s for s in affected if not s["in_sync"]]
        failed = [s for s in pending if s["last_nack"] and s["last_nack"]["version"] == s["version"]]
        if failed:
            for s in failed:
                _err.print(f"[red]{s['id']}[/] rejected {s['version']}: {s['last_nack']['error']}", highlight=False)
            raise typer.Exit(1)
        if computed and not pending:
            if affected:
                _out.print(f"all {len(affected)} affected sidecars applied config version {version}", highlight=False)
            else:
                _out.print("no sidecar is affected by this change", highlight=False)
            return
        line = f"waiting: {len(affected) - len(pending)}/{len(affected)} affected sidecars applied"
        if line != shown:
            _err.print(line, style="dim", highlight=False)
            shown = line
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    names = ", ".join(f"{s['id']} (applied {s['applied_version'] or 'nothing'})" for s in pending) or "unknown"
    raise _fail(f"timed out after {timeout:g}s; not applied by: {names}")


def _config_of(version: str) -> int:
    head, _, _ = version.partition(".")
    return int(head) if head.isdigit() else -1


# === get / delete ===


def _kind(text: str) -> str:
    info = kind_info(text)
    if info is None:
        raise _fail(f"unknown kind {text!r} (known: {known_kinds()}, or vs, dr, se, pa, ap)")
    return info.kind


def get_command(
    kind: Annotated[str, typer.Argument(help="VirtualService (vs), DestinationRule (dr), ServiceEntry (se), ...")],
    name: Annotated[str, typer.Argument(help="One resource; omit to list them.", show_default=False)] = "",
    output: Annotated[str, typer.Option("--output", "-o", help="table, yaml or json.")] = "",
    namespace: Namespace = "",
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A", help="List every namespace.")] = False,
    control_addr: ControlAddr = "",
    token: ControlToken = "",
) -> None:
    """Show resources (kubectl get style)."""
    canonical = _kind(kind)
    client = _client(control_addr, token)
    try:
        if name:
            items = [client.get(canonical, namespace or "default", name)]
        else:
            listed = client.list(canonical, None if all_namespaces else namespace or "default")
            items = listed["items"]
    except ControlApiError as exc:
        raise _fail(str(exc)) from exc
    fmt = output or ("yaml" if name else "table")
    if fmt == "json":
        typer.echo(json.dumps(items[0] if name else {"apiVersion": "v1", "kind": "List", "items": items}, indent=2))
    elif fmt == "yaml":
        data: Any = items[0] if name else {"apiVersion": "v1", "kind": "List", "items": items}
        typer.echo(yaml.safe_dump(data, sort_keys=False).rstrip())
    elif fmt == "table":
        _resource_table(canonical, items)
    else:
        raise _fail(f"--output: expected table, yaml or json, got {fmt!r}")


def _resource_table(kind: str, items: list[dict[str, Any]]) -> None:
    if not items:
        _err.print(f"no {kind} found", highlight=False)
        return
    table = Table(box=None, header_style="bold")
    for column in ("NAMESPACE", "NAME", "HOSTS", "RESOURCE VERSION", "CREATED"):
        table.add_column(column)
    for item in items:
        spec = item.get("spec", {})
        hosts = spec.get("hosts") or ([spec["host"]] if "host" in spec else [])
        meta = item["metadata"]
        table.add_row(
            meta["namespace"],
            meta["name"],
            ",".join(hosts),
            meta.get("resourceVersion", ""),
            meta.get("creationTimestamp", ""),
        )
    _out.print(table)


def delete_command(
    kind: Annotated[str, typer.Argument(help="VirtualService (vs), DestinationRule (dr), ServiceEntry (se), ...")],
    name: Annotated[str, typer.Argument(help="The resource's name.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check only (e.g. that no route uses its subsets).")
    ] = False,
    namespace: Namespace = "",
    control_addr: ControlAddr = "",
    token: ControlToken = "",
) -> None:
    """Delete one resource."""
    client = _client(control_addr, token)
    try:
        result = client.delete(_kind(kind), namespace or "default", name, dry_run=dry_run)
    except ControlApiError as exc:
        raise _fail(str(exc)) from exc
    suffix = " (dry run)" if dry_run else ""
    for item in result["resources"]:
        _out.print(f"{item['kind']} {item['namespace']}/{item['name']} deleted{suffix}", highlight=False)
    if not dry_run:
        _out.print(f"config version {result['version']}", style="dim", highlight=False)


# === status ===


def status_command(
    output: Annotated[str, typer.Option("--output", "-o", help="table or json.")] = "table",
    control_addr: ControlAddr = "",
    token: ControlToken = "",
) -> None:
    """Every sidecar the control plane knows: snapshot sent, applied, last ACK and NACK."""
    try:
        status = _client(control_addr, token).status()
    except ControlApiError as exc:
        raise _fail(str(exc)) from exc
    if output == "json":
        typer.echo(json.dumps(status, indent=2))
        return
    _out.print(
        f"config version {status['config_version']} (store: {status['store']}), "
        f"{len(status['sidecars'])} sidecars, {len(status['watched_services'])} services watched",
        highlight=False,
    )
    replicas = status.get("replicas")
    if replicas:
        names = ", ".join(str(r["id"]) + (" (this one)" if r.get("self") else "") for r in replicas)
        _out.print(f"{len(replicas)} live control plane replicas: {names}", highlight=False)
    if status.get("shared_status_error"):  # only this replica's own sidecars are listed
        _err.print(
            f"[yellow]warning:[/] {status['shared_status_error']} (showing the sidecars of replica "
            f"{status.get('replica', '?')} only)",
            highlight=False,
        )
    if not status["sidecars"]:
        return
    table = Table(box=None, header_style="bold")
    for column in ("SIDECAR", "SERVICE", "REPLICA", "VERSION", "APPLIED", "STATE", "LAST ACK", "LAST NACK"):
        table.add_column(column, overflow="fold")
    for s in status["sidecars"]:
        nack = s["last_nack"]
        if not s["connected"]:
            state = "[dim]disconnected[/]"
        elif s["in_sync"]:
            state = "[green]in sync[/]"
        elif nack and nack["version"] == s["version"]:
            state = "[red]rejected[/]"
        else:
            state = "[yellow]pending[/]"
        ack = s["last_ack"]
        table.add_row(
            s["id"],
            f"{s['service']}.{s['namespace']}",
            s.get("replica") or "-",
            s["version"],
            s["applied_version"] or "-",
            state,
            ack["at"] if ack else "-",
            f"[red]{nack['version']}: {nack['error']}[/]" if nack else "-",
        )
    _out.print(table)


# === explain ===


def explain_command(
    source: Annotated[str, typer.Option("--from", help="The calling service (whose sidecar routes the request).")],
    to: Annotated[str, typer.Option("--to", help="The URL the app calls, e.g. http://reviews/api?x=1.")],
    header: Annotated[list[str], typer.Option("--header", "-H", help="Request header name:value (repeatable).")] = [],  # noqa: B006
    method: Annotated[str, typer.Option("--request", "-X", help="HTTP method.")] = "GET",
    namespace: Namespace = "",
    output: Annotated[str, typer.Option("--output", "-o", help="text or json.")] = "text",
    control_addr: ControlAddr = "",
    token: ControlToken = "",
) -> None:
    """Which rule and route a request matches, which subset and endpoints it can reach, and why."""
    target = to if "://" in to else f"http://{to}"
    scheme, _, rest = target.partition("://")
    host, slash, tail = rest.partition("/")
    if not host:
        raise _fail(f"--to: expected a URL such as http://reviews/path, got {to!r}")
    for item in header:
        if ":" not in item:
            raise _fail(f"--header: expected name:value, got {item!r}")
    params = {"source": source, "host": host, "path": slash + tail or "/", "method": method.upper()}
    if header:
        params["headers"] = ",".join(header)
    if namespace:
        params["namespace"] = namespace
    try:
        result = _client(control_addr, token).explain(params)
    except ControlApiError as exc:
        raise _fail(str(exc)) from exc
    if output == "json":
        typer.echo(json.dumps(result, indent=2))
        return
    del scheme
    _print_explanation(result)


def _print_explanation(result: dict[str, Any]) -> None:
    source = result["source"]
    basis = (
        f"sidecar {source['sidecar']}, snapshot {source['snapshot_version']}"
        if source.get("sidecar")
        else source.get("computed", "")
    )
    p = _out.print
    p(
        f"[bold]config version {result['config_version']}[/], from [bold]{source['service']}[/] ({basis})",
        highlight=False,
    )
    request = result["request"]
    shown_headers = ", ".join(f"{k}: {v}" for k, v in request["headers"].items() if k != "host")
    query = f"?{request['query']}" if request["query"] else ""
    p(
        f"request: {request['method']} http://{request['host']}{request['path']}{query}"
        + (f" ({shown_headers})" if shown_headers else ""),
        highlight=False,
    )
    vhost = result.get("virtual_host")
    if vhost:
        p(f"virtual host: {vhost['name']}", highlight=False)
    for skipped in result.get("skipped_routes", []):
        p(f"  [dim]skipped {skipped['route']}: {skipped['why']}[/]", highlight=False)
    route = result.get("route")
    if route:
        origin = f"{route['rule']} {route.get('rule_path', '')}" if route.get("rule") else route.get("why", "")
        timeout = "none" if route["timeout_s"] is None else f"{route['timeout_s']:g}s"
        p(f"route: [bold]{route['name']}[/] ← {origin} (timeout {timeout})", highlight=False)
        for edit in route.get("request_headers", []):
            p(f"  request header: {edit}", highlight=False)
        if route.get("prefix_rewrite"):
            p(f"  rewrite prefix → {route['prefix_rewrite']}", highlight=False)
        for line in describe_route_policies(route):
            p(f"  {line}", highlight=False)
        for note in route.get("not_enforced", []):
            p(f"  [yellow]not enforced:[/] {note['path']}: {note['message']}", highlight=False)
    for dest in result.get("destinations", []):
        subset = f" subset {dest['subset']} {dest.get('subset_labels', {})}" if dest.get("subset") else ""
        rule = f" ({dest['destination_rule']})" if dest.get("destination_rule") else ""
        p(f"  {dest['percent']:g}% → {dest['cluster']}{subset}{rule} [{dest.get('policy', '')}]", highlight=False)
        for line in describe_cluster_policies(dest):
            p(f"      {line}", highlight=False)
        for endpoint in dest["endpoints"]:
            p(f"      [green]endpoint[/] {endpoint['address']} weight {endpoint['weight']}", highlight=False)
        for excluded in dest.get("excluded", []):
            p(f"      [dim]excluded {excluded['instance']}: {excluded['reason']}[/]", highlight=False)
        if dest.get("problem"):
            p(f"      [red]{dest['problem']}[/]", highlight=False)
    colour = "green" if result.get("status") == 200 else "red"
    p(f"result: [{colour}]{result['result']}[/]", highlight=False)
    if result.get("not_shown"):
        p(f"[dim]note: {result['not_shown']}[/]", highlight=False)


def add_control_commands(app: typer.Typer) -> None:
    """Register ``control``, ``apply``, ``get``, ``delete``, ``status`` and ``explain`` on the ``mesh`` app."""
    app.command("control")(control_command)
    app.command("apply")(apply_command)
    app.command("get")(get_command)
    app.command("delete")(delete_command)
    app.command("status")(status_command)
    app.command("explain")(explain_command)


__all__ = ["add_control_commands"]
