"""The registrar's settings (Registrator's flags, two dashes) and their validation.

Every error names the flag, so a typo fails at startup with a message that says what to fix.
Durations are seconds except ``retry_interval``, which Registrator takes in milliseconds.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Final, Literal, get_args

from discovery.registrar.tags_template import TagsTemplate, TemplateError

DeregisterMode = Literal["always", "on-success"]
DEREGISTER_MODES: Final = get_args(DeregisterMode)
DEFAULT_METRICS_ADDR: Final = "127.0.0.1:9154"
DEFAULT_DOCKER_HOST: Final = "unix:///var/run/docker.sock"


class ConfigError(ValueError):
    """A flag value the registrar cannot run with; ``flag`` names it (``--ttl``)."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {message}")
        self.flag = flag


@dataclass(frozen=True, slots=True)
class RegistrarConfig:
    internal: bool = False  # exposed ports at the container's IP instead of published host ports
    explicit: bool = False  # only ports that have a SERVICE_NAME / SERVICE_<port>_NAME
    ip: str = ""  # the address registered for published ports ("" = resolve the host name)
    use_ip_from_label: str = ""  # a container label whose value is the address to register
    tags: str = ""  # forced tags for every service, comma-separated, may hold template actions
    resync: float = 0.0  # seconds between full syncs; 0 = only at start and after reconnects
    cleanup: bool = False  # also remove Registrator-style leftovers and kept services of exited containers
    deregister: DeregisterMode = "always"
    deregister_on_exit: bool = False  # remove every service we own when the registrar stops
    ttl: float = 0.0  # seconds; with ttl_refresh: a heartbeat TTL check per service
    ttl_refresh: float = 0.0
    retry_attempts: int = 0  # registry pings at startup after the first; -1 = forever
    retry_interval: float = 2.0  # seconds between those pings
    hostname: str = ""  # used in service IDs and ownership; "" = this machine's host name
    metrics_addr: str | None = DEFAULT_METRICS_ADDR  # /metrics /healthz /readyz; None = no HTTP site
    docker_host: str = ""  # "" = DOCKER_HOST, else the local socket

    def validate(self) -> RegistrarConfig:
        """Return ``self`` or raise ``ConfigError`` for the first bad flag."""
        if self.deregister not in DEREGISTER_MODES:
            raise ConfigError("--deregister", f"must be 'always' or 'on-success', not {self.deregister!r}")
        if (self.ttl > 0) != (self.ttl_refresh > 0):
            raise ConfigError("--ttl", "--ttl and --ttl-refresh must be given together (both > 0) or not at all")
        if self.ttl < 0 or self.ttl_refresh < 0:
            raise ConfigError("--ttl", "--ttl and --ttl-refresh must not be negative")
        if self.ttl and self.ttl <= self.ttl_refresh:
            raise ConfigError("--ttl", f"must be greater than --ttl-refresh ({self.ttl:g} <= {self.ttl_refresh:g})")
        if self.ttl and self.ttl < 1:
            raise ConfigError("--ttl", "must be at least 1 second")
        if self.resync < 0:
            raise ConfigError("--resync", f"must be >= 0 seconds, not {self.resync:g}")
        if self.retry_attempts < -1:
            raise ConfigError("--retry-attempts", f"must be >= -1 (-1: forever), not {self.retry_attempts}")
        if self.retry_interval <= 0:
            raise ConfigError("--retry-interval", "must be > 0 milliseconds")
        if self.ip:
            try:
                ipaddress.ip_address(self.ip)
            except ValueError:
                raise ConfigError("--ip", f"{self.ip!r} is not an IP address") from None
        try:
            TagsTemplate.parse(self.tags)
        except TemplateError as exc:
            raise ConfigError("--tags", str(exc)) from None
        return self

    def docker_url(self, environ: Mapping[str, str] | None = None) -> str:
        env = os.environ if environ is None else environ
        return self.docker_host or env.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


# Flag name, environment variable: one table so `mesh registrar` and `mesh up` read the same names.
ENV_VARS: Final[Mapping[str, str]] = {
    "internal": "MESH_INTERNAL",
    "explicit": "MESH_EXPLICIT",
    "ip": "MESH_IP",
    "use_ip_from_label": "MESH_USE_IP_FROM_LABEL",
    "tags": "MESH_TAGS",
    "resync": "MESH_RESYNC",
    "cleanup": "MESH_CLEANUP",
    "deregister": "MESH_DEREGISTER",
    "deregister_on_exit": "MESH_DEREGISTER_ON_EXIT",
    "ttl": "MESH_TTL",
    "ttl_refresh": "MESH_TTL_REFRESH",
    "retry_attempts": "MESH_RETRY_ATTEMPTS",
    "retry_interval": "MESH_RETRY_INTERVAL",
    "hostname": "MESH_HOSTNAME",
}
_TRUE: Final = frozenset({"1", "t", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "f", "false", "no", "off", ""})


def config_from_env(environ: Mapping[str, str] | None = None, **overrides: object) -> RegistrarConfig:
    """Settings from ``MESH_*`` variables (as ``mesh registrar`` reads them), for ``mesh up``."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    kinds = {f.name: f.type for f in fields(RegistrarConfig)}
    for name, var in ENV_VARS.items():
        raw = env.get(var)
        if raw is None:
            continue
        flag = "--" + name.replace("_", "-")
        kind = str(kinds[name])
        try:
            if kind == "bool":
                lowered = raw.strip().lower()
                if lowered not in _TRUE | _FALSE:
                    raise ValueError(f"expected true or false, got {raw!r}")
                values[name] = lowered in _TRUE
            elif kind == "int":
                values[name] = int(raw)
            elif kind == "float":
                values[name] = float(raw) / (1000.0 if name == "retry_interval" else 1.0)
            else:
                values[name] = raw
        except ValueError as exc:
            raise ConfigError(flag, f"{var}: {exc}") from None
    values.update(overrides)
    return RegistrarConfig(**values).validate()  # type: ignore[arg-type]


__all__ = [
    "DEFAULT_DOCKER_HOST",
    "DEFAULT_METRICS_ADDR",
    "DEREGISTER_MODES",
    "ENV_VARS",
    "ConfigError",
    "DeregisterMode",
    "RegistrarConfig",
    "config_from_env",
]
