"""`mesh sidecar`: the per-workload proxy (Envoy's role), wired from flags and environment.

Config source: ``--config FILE`` (a static snapshot, re-read on change and SIGHUP), else the
registry at ``CONSUL_HTTP_ADDR`` (the standard listeners from ``--outbound-addr``,
``--inbound-addr``/``--app-port`` and ``--upstream``, services learnt on first use).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from sidecar.main import OPTIONS_ENV
from sidecar.probes.options import workload_from_options
from sidecar.server import DEFAULT_ADMIN_ADDR
from sidecar.sources.defaults import DEFAULT_INBOUND_ADDR, DEFAULT_OUTBOUND_ADDR
from sidecar.tracing import settings_from_options as tracing_settings
from sidecar.workers import plan_from_options

Service = Annotated[
    str, typer.Option("--service", envvar="MESH_SERVICE", help="The workload's own service name (labels logs).")
]
AppPort = Annotated[
    int,
    typer.Option(
        "--app-port",
        envvar="MESH_APP_PORT",
        help="Port the app listens on at 127.0.0.1; the inbound listener forwards to it (0: no inbound listener).",
    ),
]
AdminAddr = Annotated[
    str,
    typer.Option(
        "--admin-addr",
        envvar="MESH_ADMIN_ADDR",
        help="HOST:PORT of the admin API: /ready /metrics /config_dump /clusters /listeners, POST /drain "
        "(loopback only, unless --admin-allow-remote).",
    ),
]
AdminAllowRemote = Annotated[
    bool,
    typer.Option(
        "--admin-allow-remote",
        envvar="MESH_ADMIN_ALLOW_REMOTE",
        help="Allow --admin-addr on a non-loopback address (the admin API has no authentication).",
    ),
]
OutboundAddr = Annotated[
    str,
    typer.Option(
        "--outbound-addr",
        envvar="MESH_OUTBOUND_ADDR",
        help="HOST:PORT the app calls out through (routes by Host; also usable as http_proxy).",
    ),
]
InboundAddr = Annotated[
    str,
    typer.Option(
        "--inbound-addr", envvar="MESH_INBOUND_ADDR", help="HOST:PORT others reach the app through (with --app-port)."
    ),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        envvar="MESH_CONFIG",
        help="Static snapshot file (YAML or JSON, docs/sidecar-config.md); re-read on change and SIGHUP. "
        "Without it, the registry at CONSUL_HTTP_ADDR is the config source.",
    ),
]
Upstream = Annotated[
    list[str],
    typer.Option(
        "--upstream",
        envvar="MESH_UPSTREAM",
        help="L4 upstream NAME=LOCALPORT: 127.0.0.1:LOCALPORT forwards to service NAME (repeatable; "
        "in the variable, space-separated). Registry mode only; a --config file declares its own listeners.",
    ),
]
Workers = Annotated[
    int,
    typer.Option(
        "--workers",
        envvar="MESH_WORKERS",
        min=1,
        help="Processes sharing the listener ports (SO_REUSEPORT), each with its own event loop.",
    ),
]
HeaderTimeout = Annotated[
    float,
    typer.Option(
        "--header-timeout",
        envvar="MESH_HEADER_TIMEOUT",
        help="Seconds a client may take to send a request head (slowloris defence; then 408 and close).",
    ),
]
IdleTimeout = Annotated[
    float,
    typer.Option(
        "--idle-timeout", envvar="MESH_IDLE_TIMEOUT", help="Seconds a client keep-alive connection may sit idle."
    ),
]
DrainTimeout = Annotated[
    float,
    typer.Option(
        "--drain-timeout",
        envvar="MESH_DRAIN_TIMEOUT",
        help="On SIGTERM, seconds to let in-flight requests finish before closing what is left.",
    ),
]
AccessLogMode = Annotated[
    str,
    typer.Option(
        "--access-log",
        envvar="MESH_ACCESS_LOG",
        help="JSON access log lines: off, on, or sampled:<ratio> (e.g. sampled:0.1); docs/observability.md.",
    ),
]
AccessLogPath = Annotated[
    str,
    typer.Option(
        "--access-log-path", envvar="MESH_ACCESS_LOG_PATH", help="Where access log lines go: - (stdout) or a file."
    ),
]
AccessLogFields = Annotated[
    str,
    typer.Option(
        "--access-log-fields",
        envvar="MESH_ACCESS_LOG_FIELDS",
        help="Comma-separated access log fields (empty: the default set in docs/observability.md).",
    ),
]
OtlpEndpoint = Annotated[
    str,
    typer.Option(
        "--otlp-endpoint",
        envvar="MESH_OTLP_ENDPOINT",
        help="Export a span per sampled request to this OpenTelemetry collector (OTLP/HTTP, e.g. "
        "http://127.0.0.1:4318); needs opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http. Empty: off.",
    ),
]
TraceSampling = Annotated[
    str,
    typer.Option(
        "--trace-sampling",
        envvar="MESH_TRACE_SAMPLING",
        help="Share of requests traced with --otlp-endpoint: a ratio (0.01) or a percentage (1%); requests whose "
        "traceparent is already sampled are always traced.",
    ),
]
ReadinessProbe = Annotated[
    str,
    typer.Option(
        "--readiness-probe",
        envvar="MESH_READINESS_PROBE",
        help="Kubernetes readinessProbe for the app, YAML or JSON, e.g. "
        "'{httpGet: {path: /healthz}, periodSeconds: 5}' (httpGet, tcpSocket or exec; port defaults to "
        "--app-port). Registers the instance with a TTL check "
        "'readiness': failing takes it out of DNS and load balancing (docs/workloads.md).",
    ),
]
LivenessProbe = Annotated[
    str,
    typer.Option(
        "--liveness-probe",
        envvar="MESH_LIVENESS_PROBE",
        help="Kubernetes livenessProbe (as --readiness-probe); failing restarts the app run with -- CMD, else turns "
        "the registry check 'liveness' critical.",
    ),
]
StartupProbe = Annotated[
    str,
    typer.Option(
        "--startup-probe",
        envvar="MESH_STARTUP_PROBE",
        help="Kubernetes startupProbe (as --readiness-probe): the other probes wait until it passes.",
    ),
]
Register = Annotated[
    bool,
    typer.Option(
        "--register",
        envvar="MESH_REGISTER",
        help="Register the workload's instance in the registry (CONSUL_HTTP_ADDR) even without probes; it is "
        "deregistered on shutdown, after the drain.",
    ),
]
ServiceId = Annotated[
    str,
    typer.Option(
        "--service-id",
        envvar="MESH_SERVICE_ID",
        help="The instance's registry ID (default <service>-<hostname>-<port>); if the agent already has it (e.g. "
        "from the registrar), the sidecar only adds its checks.",
    ),
]
AdvertiseAddr = Annotated[
    str,
    typer.Option(
        "--advertise-addr",
        envvar="MESH_ADVERTISE_ADDR",
        help="HOST:PORT registered for the instance (default: --inbound-addr).",
    ),
]
ShutdownDelay = Annotated[
    float | None,
    typer.Option(
        "--shutdown-delay",
        envvar="MESH_SHUTDOWN_DELAY",
        help="On SIGTERM, seconds between failing the readiness check and closing the listeners, for the change "
        "to reach DNS and other sidecars (default 2).",
    ),
]
AppCommand = Annotated[
    list[str] | None,
    typer.Argument(
        envvar="MESH_APP_COMMAND",
        help="The app to run and supervise, after --: restarted when its liveness probe fails or it exits, "
        "stopped after the drain.",
        show_default=False,
    ),
]
LogLevel = Annotated[
    str,
    typer.Option("--log-level", envvar="MESH_LOG_LEVEL", help="debug, info, warning or error (JSON lines on stderr)."),
]


def sidecar_command(
    service: Service = "",
    app_port: AppPort = 0,
    admin_addr: AdminAddr = DEFAULT_ADMIN_ADDR,
    admin_allow_remote: AdminAllowRemote = False,
    outbound_addr: OutboundAddr = DEFAULT_OUTBOUND_ADDR,
    inbound_addr: InboundAddr = DEFAULT_INBOUND_ADDR,
    config: ConfigFile = None,
    upstream: Upstream = [],  # noqa: B006 - typer reads the default, never mutates it
    workers: Workers = 1,
    header_timeout: HeaderTimeout = 10.0,
    idle_timeout: IdleTimeout = 300.0,
    drain_timeout: DrainTimeout = 10.0,
    log_level: LogLevel = "info",
    access_log: AccessLogMode = "off",
    access_log_path: AccessLogPath = "-",
    access_log_fields: AccessLogFields = "",
    otlp_endpoint: OtlpEndpoint = "",
    trace_sampling: TraceSampling = "0.01",
    readiness_probe: ReadinessProbe = "",
    liveness_probe: LivenessProbe = "",
    startup_probe: StartupProbe = "",
    register: Register = False,
    service_id: ServiceId = "",
    advertise_addr: AdvertiseAddr = "",
    shutdown_delay: ShutdownDelay = None,
    app_command: AppCommand = None,
) -> None:
    """Run the sidecar proxy: outbound 127.0.0.1:15001, inbound 127.0.0.1:15006, admin 127.0.0.1:15000.

    HTTP/1.1 (keep-alive pools, streaming, WebSocket, routing by Host/path/headers, weighted clusters, load balancing)
    and L4 TCP listeners. SIGTERM drains, then exits 0.
    """
    options = {
        "service": service,
        "app_port": app_port,
        "admin_addr": admin_addr,
        "admin_allow_remote": admin_allow_remote,
        "outbound_addr": outbound_addr,
        "inbound_addr": inbound_addr,
        "config": str(config) if config is not None else None,
        "upstream": list(upstream),
        "workers": workers,
        "header_timeout": header_timeout,
        "idle_timeout": idle_timeout,
        "drain_timeout": drain_timeout,
        "log_level": log_level,
        "access_log": access_log,
        "access_log_path": access_log_path,
        "access_log_fields": access_log_fields,
        "otlp_endpoint": otlp_endpoint,
        "trace_sampling": trace_sampling,
        "readiness_probe": readiness_probe,
        "liveness_probe": liveness_probe,
        "startup_probe": startup_probe,
        "register": register,
        "service_id": service_id,
        "advertise_addr": advertise_addr,
        "shutdown_delay": shutdown_delay,
        "app_command": list(app_command or ()),
    }
    try:
        plan = plan_from_options(options)  # every flag checked here, before the process is replaced
        workload_from_options(options, app_port=plan.settings.app_port, workers=plan.workers)  # probes, -- CMD
        tracing_settings(options)  # and the tracing flags (with the OpenTelemetry packages when exporting)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    # The proxy runs in a fresh interpreter that imports only the sidecar (see sidecar.main).
    os.environ[OPTIONS_ENV] = json.dumps(options)
    os.execv(sys.executable, [sys.executable, "-m", "sidecar.main"])
