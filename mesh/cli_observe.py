"""`mesh top`: the live topology in the terminal (rich), from the control plane's ``/v1/mesh/topology``.

Two tables: edges (who calls whom: rps, 5xx share, p50/p99, per-version split) and services
(healthy/total instances, sidecars, requests in and out). ``--once`` prints them once and exits
(for scripts); otherwise they refresh every ``--interval`` seconds until Ctrl-C.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from mesh.cli_control import ControlAddr, ControlToken
from mesh.control.client import ControlApiError, ControlClient
from mesh.control.tokens import cli_token


def _rps(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def edges_table(topology: dict[str, Any]) -> Table:
    window = float(topology.get("window_s") or 0.0)
    title = f"edges (last {window:.1f} s)" if window else "edges (waiting for two scrapes)"
    table = Table(title=title, title_justify="left")
    table.add_column("source")
    table.add_column("destination")
    for name in ("rps", "errors", "p50 ms", "p99 ms"):
        table.add_column(name, justify="right")
    table.add_column("versions")
    for edge in topology.get("edges", []):
        versions = ", ".join(
            f"{version} {_rps(t['rps'])} rps {_pct(t['error_rate'])}" for version, t in edge["versions"].items()
        )
        errors = Text(_pct(edge["error_rate"]), style="red" if (edge["error_rate"] or 0) > 0 else "")
        table.add_row(
            edge["source"],
            edge["destination"],
            _rps(edge["rps"]),
            errors,
            _ms(edge["p50_ms"]),
            _ms(edge["p99_ms"]),
            versions,
        )
    return table


def services_table(topology: dict[str, Any], services: dict[str, Any]) -> Table:
    """Registry services with health, plus the rps into and out of each (summed over its edges)."""
    inbound: dict[str, float] = {}
    outbound: dict[str, float] = {}
    for edge in topology.get("edges", []):
        inbound[edge["destination"]] = inbound.get(edge["destination"], 0.0) + edge["rps"]
        outbound[edge["source"]] = outbound.get(edge["source"], 0.0) + edge["rps"]
    table = Table(title="services", title_justify="left")
    table.add_column("service")
    table.add_column("healthy", justify="right")
    table.add_column("sidecars", justify="right")
    table.add_column("rps in", justify="right")
    table.add_column("rps out", justify="right")
    for service in services.get("services", []):
        nodes = [f"{service['name']}.{ns}" for ns in service.get("namespaces") or ["default"]]
        healthy, total = service["healthy"], service["total"]
        style = "green" if total and healthy == total else "red" if total and not healthy else "yellow"
        table.add_row(
            service["name"],
            Text(f"{healthy}/{total}", style=style if total else "dim"),
            str(service["sidecars"]),
            _rps(sum(inbound.get(n, 0.0) for n in nodes)),
            _rps(sum(outbound.get(n, 0.0) for n in nodes)),
        )
    return table


def render(topology: dict[str, Any], services: dict[str, Any]) -> Group:
    failing = [t for t in topology.get("targets", []) if t.get("error")]
    parts: list[Any] = [edges_table(topology), services_table(topology, services)]
    if failing:
        parts.append(Text("scrape errors: " + "; ".join(f"{t['sidecar']}: {t['error']}" for t in failing), "red"))
    return Group(*parts)


def _fetch(client: ControlClient) -> Group:
    return render(client.topology(), client.services())


def top_command(
    control_addr: ControlAddr = "",
    token: ControlToken = "",  # needed when the control plane runs with --token-reads
    interval: Annotated[
        float, typer.Option("--interval", envvar="MESH_TOP_INTERVAL", help="Seconds between refreshes.")
    ] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="Print the tables once and exit (for scripts).")] = False,
) -> None:
    """Live edges (rps, errors, p50/p99, versions) and services, from the sidecars' metrics via the control plane."""
    if not interval > 0:
        raise typer.BadParameter(f"expected seconds > 0, got {interval}", param_hint="--interval")
    err = Console(stderr=True)
    try:
        client = ControlClient(control_addr or None, token=cli_token(token), timeout=10.0)
        if once:
            Console(soft_wrap=True).print(_fetch(client))
            return
        with Live(_fetch(client), refresh_per_second=4, screen=False) as live:
            while True:
                time.sleep(interval)
                live.update(_fetch(client))
    except ControlApiError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        return


def add_observe_commands(app: typer.Typer) -> None:
    """Register ``top`` on the ``mesh`` app."""
    app.command("top")(top_command)


__all__ = ["add_observe_commands", "edges_table", "render", "services_table", "top_command"]
