"""`mesh gateway`: an ingress gateway (Istio's istio-ingressgateway), the sidecar's engine at the edge.

It registers with the control plane (``--control-addr`` / ``MESH_CONTROL_ADDR``) as a gateway with
its labels; its listeners, TLS certificates and routes come from the ``Gateway`` resources those
labels select and the VirtualServices bound to them (docs/gateway.md). ``--config FILE`` runs it
from a static snapshot instead. The process is the sidecar's (``python -m sidecar.main``).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer

from mesh.cli_sidecar import AccessLogMode, AccessLogPath, ConfigFile, DrainTimeout, LogLevel
from mesh.model.reader import ConfigError
from mesh.rules.fields import check_label_key, parse_labels
from sidecar.main import OPTIONS_ENV
from sidecar.workers import plan_from_options

DEFAULT_GATEWAY_ADMIN = "127.0.0.1:15020"


def parse_label_list(text: str) -> dict[str, str]:
    """``istio=ingressgateway,app=edge`` as a label map (Kubernetes label syntax); ``ValueError`` says why."""
    labels: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--labels: expected key=value, got {item!r}")
        try:
            check_label_key(key, f"--labels {key}")
            parse_labels({key: value}, "--labels")
        except ConfigError as exc:
            raise ValueError(f"{exc.path}: {exc.message}") from None
        labels[key] = value
    return labels


def gateway_command(
    name: Annotated[
        str, typer.Option("--name", envvar="MESH_GATEWAY_NAME", help="The gateway's service name (metrics, status).")
    ] = "istio-ingressgateway",
    labels: Annotated[
        str,
        typer.Option(
            "--labels",
            envvar="MESH_GATEWAY_LABELS",
            help="Labels Gateway selectors match, comma-separated key=value (Istio's default gateway's).",
        ),
    ] = "istio=ingressgateway",
    namespace: Annotated[
        str, typer.Option("--namespace", envvar="MESH_GATEWAY_NAMESPACE", help="The gateway's namespace.")
    ] = "istio-system",
    bind_addr: Annotated[
        str,
        typer.Option(
            "--bind-addr",
            envvar="MESH_GATEWAY_BIND_ADDR",
            help="Address the Gateway servers' ports listen on (each server's port.number).",
        ),
    ] = "0.0.0.0",
    control_addr: Annotated[
        str,
        typer.Option(
            "--control-addr", envvar="MESH_CONTROL_ADDR", help="The control plane (required unless --config)."
        ),
    ] = "",
    admin_addr: Annotated[
        str,
        typer.Option("--admin-addr", envvar="MESH_GATEWAY_ADMIN_ADDR", help="HOST:PORT of the admin API and /metrics."),
    ] = DEFAULT_GATEWAY_ADMIN,
    config: ConfigFile = None,
    drain_timeout: DrainTimeout = 10.0,
    log_level: LogLevel = "info",
    access_log: AccessLogMode = "off",
    access_log_path: AccessLogPath = "-",
) -> None:
    """Run an ingress gateway: listeners, certificates and routes from Gateway resources (docs/gateway.md)."""
    if not control_addr and config is None:
        raise typer.BadParameter("a gateway follows the control plane: give --control-addr (or --config FILE)")
    try:
        label_map = parse_label_list(labels)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--labels") from None
    options = {
        "service": name,
        "admin_addr": admin_addr,
        "config": str(config) if config is not None else None,
        "drain_timeout": drain_timeout,
        "log_level": log_level,
        "access_log": access_log,
        "access_log_path": access_log_path,
        "gateway_bind": bind_addr,
        "gateway_labels": label_map,
        "gateway_namespace": namespace,
    }
    try:
        plan_from_options(options)  # every option checked before the process is replaced
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if control_addr:
        os.environ["MESH_CONTROL_ADDR"] = control_addr
    os.environ[OPTIONS_ENV] = json.dumps(options)
    os.execv(sys.executable, [sys.executable, "-m", "sidecar.main"])


__all__ = ["gateway_command", "parse_label_list"]
