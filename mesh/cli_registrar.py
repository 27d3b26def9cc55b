"""`mesh registrar`: Registrator's flags with two dashes, each also read from a ``MESH_*`` variable.

The registry comes from ``CONSUL_HTTP_ADDR`` / ``CONSUL_HTTP_TOKEN`` (Consul's own variables), or
from Registrator's positional backend URI (``consul://host:8500``), so an existing Registrator
command line needs only its dashes doubled. Docker is ``DOCKER_HOST`` (default the local socket).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from discovery.client_config import ClientConfig, ClientConfigError
from discovery.registrar.config import DEFAULT_METRICS_ADDR, ENV_VARS, ConfigError, RegistrarConfig
from discovery.registrar.server import RegistrarError, serve
from discovery.runtime.lifecycle import run_until_signalled
from discovery.runtime.logs import configure_logging

_BACKENDS = {"consul": "http://", "consul-tls": "https://", "consul-unix": "unix://"}


def registry_from_uri(uri: str) -> ClientConfig:
    """Registrator's ``<backend>://<addr>`` (consul, consul-tls, consul-unix); the token still comes from
    ``CONSUL_HTTP_TOKEN`` and TLS files from ``CONSUL_CACERT`` etc., as with Registrator."""
    scheme, sep, address = uri.partition("://")
    if not sep or scheme not in _BACKENDS:
        raise ClientConfigError(
            f"registry URI {uri!r}: expected consul://HOST:PORT, consul-tls://HOST:PORT or consul-unix:///PATH "
            "(Registrator's other backends - etcd, zookeeper, skydns2, consulkv - are not supported)"
        )
    target = ClientConfig.from_address(_BACKENDS[scheme] + address.rstrip("/"))
    return replace(
        ClientConfig.from_env(),
        scheme=target.scheme,
        host=target.host,
        port=target.port,
        unix_socket=target.unix_socket,
    )


def _env(name: str) -> str:
    return ENV_VARS[name]


def registrar_command(
    registry_uri: Annotated[
        str,
        typer.Argument(
            help="Optional Registrator-style registry URI: consul://HOST:PORT, consul-tls://..., consul-unix:///PATH. "
            "Default: CONSUL_HTTP_ADDR (http://127.0.0.1:8500).",
            show_default=False,
        ),
    ] = "",
    internal: Annotated[
        bool,
        typer.Option(
            "--internal",
            envvar=_env("internal"),
            help="Register exposed ports (published or not) at the container's own IP instead of published host ports.",
        ),
    ] = False,
    explicit: Annotated[
        bool,
        typer.Option(
            "--explicit", envvar=_env("explicit"), help="Register only ports with SERVICE_NAME or SERVICE_<port>_NAME."
        ),
    ] = False,
    ip: Annotated[
        str,
        typer.Option(
            "--ip",
            envvar=_env("ip"),
            help="IP address to register for published ports (default: the address the host name resolves to).",
        ),
    ] = "",
    use_ip_from_label: Annotated[
        str,
        typer.Option(
            "--use-ip-from-label",
            envvar=_env("use_ip_from_label"),
            help="Take the address from this container label when present (a '/prefix' suffix is dropped).",
        ),
    ] = "",
    tags: Annotated[
        str,
        typer.Option(
            "--tags",
            envvar=_env("tags"),
            help="Tags added to every service, comma-separated; may use {{.Config.Hostname}}, "
            '{{index .Config.Labels "k"}}, {{toLower ...}}/{{toUpper ...}} over the inspected container.',
        ),
    ] = "",
    resync: Annotated[
        float,
        typer.Option(
            "--resync",
            envvar=_env("resync"),
            help="Seconds between full syncs with Docker and the registry (0: only at start and after reconnects).",
        ),
    ] = 0.0,
    cleanup: Annotated[
        bool,
        typer.Option(
            "--cleanup",
            envvar=_env("cleanup"),
            help="At each sync also remove Registrator-style leftovers (<hostname>:<container>:<port> IDs without our "
            "Meta) of containers that do not run, and services kept by --deregister on-success.",
        ),
    ] = False,
    deregister: Annotated[
        str,
        typer.Option(
            "--deregister",
            envvar=_env("deregister"),
            help="always: remove a container's services when it dies; on-success: keep them when it exited non-zero "
            "(not killed by a signal) until it is removed or restarted.",
        ),
    ] = "always",
    deregister_on_exit: Annotated[
        bool,
        typer.Option(
            "--deregister-on-exit",
            envvar=_env("deregister_on_exit"),
            help="Remove every service this registrar owns when it stops (default: leave them; a restart adopts them).",
        ),
    ] = False,
    ttl: Annotated[
        float,
        typer.Option(
            "--ttl",
            envvar=_env("ttl"),
            help="Give every service a heartbeat TTL check of this many seconds (needs --ttl-refresh).",
        ),
    ] = 0.0,
    ttl_refresh: Annotated[
        float,
        typer.Option(
            "--ttl-refresh", envvar=_env("ttl_refresh"), help="Seconds between heartbeats; must be less than --ttl."
        ),
    ] = 0.0,
    retry_attempts: Annotated[
        int,
        typer.Option(
            "--retry-attempts",
            envvar=_env("retry_attempts"),
            help="Extra tries to reach the registry at startup before giving up (-1: forever).",
        ),
    ] = 0,
    retry_interval: Annotated[
        int,
        typer.Option(
            "--retry-interval", envvar=_env("retry_interval"), help="Milliseconds between those tries (must be > 0)."
        ),
    ] = 2000,
    hostname: Annotated[
        str,
        typer.Option(
            "--hostname",
            envvar=_env("hostname"),
            help="Host name used in service IDs and ownership (default: this machine's); keep it stable across "
            "restarts, or the registrar cannot adopt its own services.",
        ),
    ] = "",
    metrics_addr: Annotated[
        str,
        typer.Option(
            "--metrics-addr",
            envvar="MESH_METRICS_ADDR",
            help="HOST:PORT of the registrar's /metrics, /healthz, /readyz.",
        ),
    ] = DEFAULT_METRICS_ADDR,
    log_level: Annotated[
        str,
        typer.Option(
            "--log-level", envvar="MESH_LOG_LEVEL", help="debug, info, warning or error (JSON lines on stderr)."
        ),
    ] = "info",
) -> None:
    """Register the services of running Docker containers (Registrator-compatible) and keep them in step."""
    configure_logging(log_level)
    try:
        config = RegistrarConfig(
            internal=internal,
            explicit=explicit,
            ip=ip,
            use_ip_from_label=use_ip_from_label,
            tags=tags,
            resync=resync,
            cleanup=cleanup,
            deregister=deregister,  # type: ignore[arg-type]  # validated below
            deregister_on_exit=deregister_on_exit,
            ttl=ttl,
            ttl_refresh=ttl_refresh,
            retry_attempts=retry_attempts,
            retry_interval=retry_interval / 1000.0,
            hostname=hostname,
            metrics_addr=metrics_addr or None,
        ).validate()
        registry = registry_from_uri(registry_uri) if registry_uri else None
    except ConfigError as exc:
        raise typer.BadParameter(str(exc).split(": ", 1)[1], param_hint=exc.flag) from None
    except ClientConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="REGISTRY_URI") from None
    try:
        run_until_signalled(lambda stop: serve(config, stop, registry))
    except RegistrarError as exc:
        typer.echo(f"mesh registrar: {exc}", err=True)
        raise typer.Exit(1) from None
