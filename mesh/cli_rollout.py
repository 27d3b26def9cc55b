"""`mesh rollout`: progressive delivery driven by the control plane (``mesh.control.rollout_*``).

``canary`` and ``bluegreen`` create a rollout and return (``--watch`` follows its event log until
it ends: exit 0 when promoted, 1 otherwise); the control plane runs it, so it goes on after this
command exits and after a control-plane restart. ``status`` shows one rollout or all of them,
``abort`` sends all traffic back to the stable subset. The control plane is found as by
``mesh apply`` (``--control-addr`` / ``MESH_CONTROL_ADDR``, token from ``MESH_CONTROL_TOKEN``).
"""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mesh.cli_control import ControlAddr, ControlToken, Namespace
from mesh.control.client import ControlApiError, ControlClient
from mesh.control.rollout_spec import (
    DEFAULT_INTERVAL,
    DEFAULT_MAX_EXTENSIONS,
    DEFAULT_MIN_REQUESTS,
    parse_error_rate,
)
from mesh.control.tokens import cli_token

rollout_app = typer.Typer(
    name="rollout",
    help="Progressive delivery: canary and blue-green rollouts with automatic rollback (run by the control plane).",
    no_args_is_help=True,
)

_out = Console(soft_wrap=True)
_err = Console(stderr=True)
TERMINAL = ("promoted", "rolled_back", "aborted", "failed")

To = Annotated[str, typer.Option("--to", help="The subset to roll out (defined by the service's DestinationRule).")]
From = Annotated[
    str,
    typer.Option(
        "--from", help="The stable subset (default: the one the VirtualService routes to now).", show_default=False
    ),
]
Interval = Annotated[
    str, typer.Option("--interval", envvar="MESH_ROLLOUT_INTERVAL", help="How long each step is analysed.")
]
MaxErrorRate = Annotated[
    str,
    typer.Option(
        "--max-error-rate",
        envvar="MESH_ROLLOUT_MAX_ERROR_RATE",
        help="Roll back when the canary's 5xx share is above this (1% or 0.01).",
    ),
]
MaxP99 = Annotated[
    str,
    typer.Option(
        "--max-p99",
        envvar="MESH_ROLLOUT_MAX_P99",
        help="Roll back when the canary's p99 latency is above this (200ms); empty: not checked.",
        show_default=False,
    ),
]
MinRequests = Annotated[
    int,
    typer.Option(
        "--min-requests",
        envvar="MESH_ROLLOUT_MIN_REQUESTS",
        help="Fewest canary requests a step decides on; with fewer the step is extended by another interval.",
    ),
]
MaxExtensions = Annotated[
    int,
    typer.Option(
        "--max-extensions",
        envvar="MESH_ROLLOUT_MAX_EXTENSIONS",
        help="How often a step may be extended for lack of traffic before the rollout rolls back.",
    ),
]
Name = Annotated[str, typer.Option("--name", help="The rollout's name (default: the service's).", show_default=False)]
VirtualService = Annotated[
    str,
    typer.Option(
        "--virtual-service", help="The VirtualService to change (default: the service's name).", show_default=False
    ),
]
Watch = Annotated[bool, typer.Option("--watch", "-w", help="Follow the event log until the rollout ends.")]
Output = Annotated[str, typer.Option("--output", "-o", help="table or json.")]


class RolloutClient(ControlClient):
    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._change("/v1/mesh/rollouts", None, body)

    def _change(self, path: str, params: dict[str, str] | None, body: dict[str, Any]) -> dict[str, Any]:
        """POST; a replica that does not run the rollouts answers 503 naming the one that does: go there."""
        data = json.dumps(body).encode()
        try:
            return self._call("POST", path, params, data, "application/json")
        except ControlApiError as exc:
            leader = exc.details.get("leader")
            if exc.status != 503 or not isinstance(leader, str) or not leader or leader == self.address:
                raise
            self.address = leader
            return self._call("POST", path, params, data, "application/json")

    def rollouts(self, namespace: str | None) -> dict[str, Any]:
        return self._call("GET", "/v1/mesh/rollouts", {"namespace": namespace} if namespace else None)

    def rollout(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/mesh/rollouts/{_seg(name)}", {"namespace": namespace})

    def abort(self, namespace: str, name: str, reason: str) -> dict[str, Any]:
        return self._change(f"/v1/mesh/rollouts/{_seg(name)}/abort", {"namespace": namespace}, {"reason": reason})


def _seg(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _rollout_client(control_addr: str, token: str) -> RolloutClient:
    try:
        return RolloutClient(control_addr or None, token=cli_token(token))
    except ControlApiError as exc:
        raise _fail(str(exc)) from exc


def _fail(message: str) -> typer.Exit:
    _err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


def _start(
    strategy: str,
    service: str,
    *,
    to: str,
    stable: str,
    steps: str | None,
    interval: str,
    max_error_rate: str,
    max_p99: str,
    min_requests: int,
    max_extensions: int,
    name: str,
    virtual_service: str,
    namespace: str,
    watch: bool,
    control_addr: str,
    token: str,
) -> None:
    try:
        rate = parse_error_rate(max_error_rate)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--max-error-rate") from None
    body: dict[str, Any] = {
        "service": service,
        "canary": to,
        "strategy": strategy,
        "interval": interval,
        "max_error_rate": rate,
        "min_requests": min_requests,
        "max_extensions": max_extensions,
        "namespace": namespace,
    }
    optional = {"stable": stable, "steps": steps, "max_p99": max_p99, "name": name, "virtual_service": virtual_service}
    body.update({k: v for k, v in optional.items() if v})
    client = _rollout_client(control_addr, token)
    try:
        rollout = client.create(body)
    except ControlApiError as exc:
        path = str(exc.details.get("path", ""))
        flag = _FLAG.get(path.split("[")[0])
        where = path if "[" in path else ""
        raise _fail(f"{flag}: {where + ': ' if where else ''}{exc.error}" if flag else str(exc)) from exc
    spec = rollout["spec"]
    _out.print(
        f"rollout {rollout['namespace']}/{rollout['name']} created: {spec['service']} {spec['stable']} → "
        f"{spec['canary']}, steps {','.join(str(s) for s in spec['steps'])}, {spec['interval']} each",
        highlight=False,
    )
    if watch:
        _follow(client, rollout["namespace"], rollout["name"])
    else:
        _out.print(f"follow it with: mesh rollout status {rollout['name']} --watch", highlight=False)


_FLAG = {  # API field → the flag that sets it, for error messages
    "service": "SERVICE",
    "canary": "--to",
    "stable": "--from",
    "steps": "--steps",
    "interval": "--interval",
    "max_p99": "--max-p99",
    "min_requests": "--min-requests",
    "max_extensions": "--max-extensions",
    "name": "--name",
    "virtual_service": "--virtual-service",
    "namespace": "--namespace",
}


def canary_command(
    service: Annotated[str, typer.Argument(help="The service whose traffic moves (its VirtualService's host).")],
    to: To,
    stable: From = "",
    steps: Annotated[
        str, typer.Option("--steps", envvar="MESH_ROLLOUT_STEPS", help="Canary percentages, increasing, ending at 100.")
    ] = "10,25,50,100",
    interval: Interval = f"{DEFAULT_INTERVAL:g}s",
    max_error_rate: MaxErrorRate = "1%",
    max_p99: MaxP99 = "",
    min_requests: MinRequests = DEFAULT_MIN_REQUESTS,
    max_extensions: MaxExtensions = DEFAULT_MAX_EXTENSIONS,
    name: Name = "",
    virtual_service: VirtualService = "",
    namespace: Namespace = "default",
    watch: Watch = False,
    control_addr: ControlAddr = "",
    token: ControlToken = "",
) -> None:
    """Shift SERVICE's traffic to the --to subset step by step; roll back on a breach, promote at the end."""
    _start(
        "canary",
        service,
        to=to,
        stable=stable,
        steps=steps,
        interval=interval,
        max_error_rate=max_error_rate,
        max_p99=max_p99,
        min_requests=min_requests,
        max_extensions=max_extensions,
        name=name,
        virtual_service=virtual_service,
        namespace=namespace,
        watch=watch,
        control_addr=control_addr,
        token=token,
    )


def bluegreen_command(
    service: Annotated[str, typer.Argument(help="The service whose traffic switches.")],
    to: To,
    stable: From = "",
    interval: Interval = f"{DEFAULT_INTERVAL:g}s",
    max_error_rate: MaxErrorRate = "1%",
    max_p99: MaxP99 = "",
    min_requests: MinRequests = DEFAULT_MIN_REQUESTS,
    max_extensions: MaxExtensions = DEFAULT_MAX_EXTENSIONS,
    name: Name = "",
    virtual_service: VirtualService = "",
    namespace: Namespace = "default",
    watch: Watch = False,
    control_addr: ControlAddr = "",
    token: ControlToken = "",
) -> None:
    """Switch all of SERVICE's traffic to --to once it has passing instances; switch back on a breach."""
    _start(
        "bluegreen",
        service,
        to=to,
        stable=stable,
        steps=None,
        interval=interval,
        max_error_rate=max_error_rate,
        max_p99=max_p99,
        min_requests=min_requests,
        max_extensions=max_extensions,
        name=name,
        virtual_service=virtual_service,
        namespace=namespace,
        watch=watch,
        control_addr=control_addr,
        token=token,
    )


def status_command(
    name: Annotated[str, typer.Argument(help="A rollout (default: every rollout).", show_default=False)] = "",
    namespace: Namespace = "default",
    watch: Watch = False,
    output: Output = "table",
    control_addr: ControlAddr = "",
    token: ControlToken = "",
) -> None:
    """Show rollouts: phase, step, weight and (with NAME) the event log."""
    client = _rollout_client(control_addr, token)
    if watch:
        if not name:
            raise typer.BadParameter("--watch follows one rollout: name it", param_hint="NAME")
        _follow(client, namespace, name)
        return
    try:
        data = client.rollout(namespace, name) if name else client.rollouts(namespace)
    except ControlApiError as exc:
        raise _fail(str(exc)) from exc
    if output == "json":
        _out.print_json(json.dumps(data))
        return
    if name:
        _print_rollout(data)
        for event in data["events"]:
            _print_event(event)
        return
    table = Table("NAME", "SERVICE", "STRATEGY", "FROM", "TO", "PHASE", "STEP", "WEIGHT", box=None)
    for item in data["items"]:
        spec, status = item["spec"], item["status"]
        step = f"{status['step'] + 1}/{len(spec['steps'])}" if status["step"] >= 0 else "-"
        table.add_row(
            item["name"],
            spec["service"],
            spec["strategy"],
            spec["stable"],
            spec["canary"],
            status["phase"],
            step,
            f"{status['weight']}%",
        )
    _out.print(table)


def abort_command(
    name: Annotated[str, typer.Argument(help="The rollout to abort.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the event log).")] = "",
    namespace: Namespace = "default",
    control_addr: ControlAddr = "",
    token: ControlToken = "",
) -> None:
    """Abort a rollout: all traffic back to the stable subset."""
    client = _rollout_client(control_addr, token)
    try:
        data = client.abort(namespace, name, reason)
    except ControlApiError as exc:
        raise _fail(str(exc)) from exc
    _print_event(data["events"][-1])
    _print_rollout(data)


def _print_rollout(data: dict[str, Any]) -> None:
    spec, status = data["spec"], data["status"]
    line = f"{data['namespace']}/{data['name']}: {status['phase']}, {status['weight']}% to {spec['canary']}"
    if status["phase"] == "progressing":
        line += f" (step {status['step'] + 1}/{len(spec['steps'])}, window ends in {status['window_ends_in_s']:.1f}s)"
    if status.get("reason"):
        line += f": {status['reason']}"
    _out.print(line, highlight=False)


def _print_event(event: dict[str, Any]) -> None:
    _out.print(f"{event['at']}  {event['kind']:<11} {event['message']}", highlight=False)


def _follow(client: RolloutClient, namespace: str, name: str, poll: float = 1.0) -> None:
    """Print events as they come until the rollout ends; exit 1 unless it was promoted."""
    printed = 0
    try:
        while True:
            try:
                data = client.rollout(namespace, name)
            except ControlApiError as exc:
                raise _fail(str(exc)) from exc
            events = data["events"]
            if printed > len(events):  # the log was trimmed: show what is new by time
                printed = 0
            for event in events[printed:]:
                _print_event(event)
            printed = len(events)
            if data["status"]["phase"] in TERMINAL:
                _print_rollout(data)
                if data["status"]["phase"] != "promoted":
                    raise typer.Exit(1)
                return
            time.sleep(poll)
    except KeyboardInterrupt:
        _err.print("stopped watching; the rollout goes on in the control plane", highlight=False)


def add_rollout_commands(app: typer.Typer) -> None:
    rollout_app.command("canary")(canary_command)
    rollout_app.command("bluegreen")(bluegreen_command)
    rollout_app.command("status")(status_command)
    rollout_app.command("abort")(abort_command)
    app.add_typer(rollout_app, name="rollout")


__all__ = ["add_rollout_commands", "rollout_app"]
