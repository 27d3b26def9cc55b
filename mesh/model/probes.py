"""Workload probes and registration as the sidecar reads them (pure: parse and validate, no I/O).

Probes use Kubernetes' field names, so a container's ``readinessProbe`` can be copied as is::

    readinessProbe:
      httpGet: {path: /healthz, port: 8080}      # or tcpSocket: {port: 8080}, or exec: {command: [...]}
      initialDelaySeconds: 0
      periodSeconds: 10
      timeoutSeconds: 1
      successThreshold: 1
      failureThreshold: 3

Differences from Kubernetes, all additive: ``port`` may be omitted (the sidecar's ``--app-port``),
``host`` defaults to 127.0.0.1 (the sidecar shares the workload's network namespace), and the
``*Seconds`` fields accept fractions. Named ports and ``grpc`` probes are refused, naming the field.
Errors are ``ConfigError`` whose path names the field (``workload.readinessProbe.periodSeconds``).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from mesh.model.reader import REQUIRED, ConfigError, Fields, load_text, show

ProbeKind = Literal["http", "tcp", "exec"]
ProbeRole = Literal["readiness", "liveness", "startup"]
ROLES: Final[tuple[ProbeRole, ...]] = ("startup", "readiness", "liveness")
ROLE_KEYS: Final[dict[ProbeRole, str]] = {
    "readiness": "readinessProbe",
    "liveness": "livenessProbe",
    "startup": "startupProbe",
}
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_SERVICE_ID: Final = re.compile(r"[^\s/]+")
MAX_SECONDS: Final = 86400.0


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """One probe. ``port`` 0 means the app port (filled in by ``resolve``)."""

    kind: ProbeKind
    host: str = "127.0.0.1"
    port: int = 0
    path: str = "/"
    scheme: Literal["HTTP", "HTTPS"] = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    def describe(self) -> str:
        """What the probe does, for check output and logs."""
        if self.kind == "http":
            return f"HTTP GET {self.scheme.lower()}://{_host_port(self.host, self.port)}{self.path}"
        if self.kind == "tcp":
            return f"TCP connect {_host_port(self.host, self.port)}"
        return f"exec {shlex.join(self.command)}"


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """What the sidecar does for its workload beyond proxying: probes, registration, shutdown."""

    readiness: ProbeSpec | None = None
    liveness: ProbeSpec | None = None
    startup: ProbeSpec | None = None
    register: bool = False  # register the instance even without probes
    service_id: str = ""  # "" : derived from the service name, host name and port
    advertise: str = ""  # HOST:PORT registered; "" : the inbound listener's
    shutdown_delay: float = 2.0  # seconds between failing readiness and closing the listeners
    command: tuple[str, ...] = ()  # the app, run and supervised by the sidecar (`mesh sidecar ... -- CMD`)
    restart_backoff: tuple[float, float] = field(default=(1.0, 30.0))  # first and longest wait before a restart

    def probe(self, role: ProbeRole) -> ProbeSpec | None:
        return {"readiness": self.readiness, "liveness": self.liveness, "startup": self.startup}[role]

    @property
    def registers(self) -> bool:
        """Whether the instance is registered: with ``register`` or any probe (an app command alone is not)."""
        return bool(self.register or self.readiness or self.liveness or self.startup)

    @property
    def active(self) -> bool:
        """Whether anything needs the workload agent (else the sidecar runs as before)."""
        return bool(self.register or self.command or self.readiness or self.liveness or self.startup)


# === parsing ===


def parse_probe(data: object, path: str, *, role: ProbeRole) -> ProbeSpec:
    """A Kubernetes probe object; liveness and startup probes need successThreshold 1, as in Kubernetes."""
    obj = Fields(data, path)
    handlers = [key for key in ("httpGet", "tcpSocket", "exec", "grpc") if key in obj.data]
    if len(handlers) != 1:
        found = ", ".join(handlers) or "none"
        raise ConfigError(path, f"needs exactly one of httpGet, tcpSocket, exec (found {found})")
    handler = handlers[0]
    if handler == "grpc":
        raise ConfigError(obj.at("grpc"), "grpc probes are not supported; use httpGet, tcpSocket or exec")
    base: ProbeSpec
    if handler == "httpGet":
        base = _http(obj.take("httpGet", REQUIRED), obj.at("httpGet"))
    elif handler == "tcpSocket":
        base = _tcp(obj.take("tcpSocket", REQUIRED), obj.at("tcpSocket"))
    else:
        base = _exec(obj.take("exec", REQUIRED), obj.at("exec"))
    initial_delay = _seconds(obj, "initialDelaySeconds", 0.0, low=0.0)
    period = _seconds(obj, "periodSeconds", 10.0, low=0.01)
    timeout = _seconds(obj, "timeoutSeconds", 1.0, low=0.01)
    success = obj.integer("successThreshold", 1, 1, 1000)
    failure = obj.integer("failureThreshold", 3, 1, 1000)
    if role != "readiness" and success != 1:
        raise ConfigError(obj.at("successThreshold"), f"must be 1 for a {role} probe (as in Kubernetes)")
    if "terminationGracePeriodSeconds" in obj.data:
        raise ConfigError(obj.at("terminationGracePeriodSeconds"), "not supported; use --drain-timeout")
    obj.finish()
    return ProbeSpec(
        kind=base.kind,
        host=base.host,
        port=base.port,
        path=base.path,
        scheme=base.scheme,
        headers=base.headers,
        command=base.command,
        initial_delay=initial_delay,
        period=period,
        timeout=timeout,
        success_threshold=success,
        failure_threshold=failure,
    )


def parse_probe_text(text: str, path: str, *, role: ProbeRole) -> ProbeSpec:
    """A probe given on the command line: YAML or JSON, e.g. ``{httpGet: {path: /healthz}, periodSeconds: 2}``."""
    try:
        data = load_text(text.encode(), "yaml")  # YAML reads JSON too, and flow style starts with "{" as well
    except ConfigError as exc:
        raise ConfigError(path, exc.message) from None
    return parse_probe(data, path, role=role)


def parse_workload(data: object, path: str = "workload") -> WorkloadSpec:
    """The ``workload`` section of a sidecar config file (probes, registration, shutdown delay)."""
    obj = Fields(data, path)
    probes: dict[ProbeRole, ProbeSpec | None] = {}
    for role in ROLES:
        value = obj.take(ROLE_KEYS[role], None)
        probes[role] = None if value is None else parse_probe(value, obj.at(ROLE_KEYS[role]), role=role)
    register = obj.flag("register", False)
    service_id = obj.string("serviceID", "")
    if service_id and not _SERVICE_ID.fullmatch(service_id):
        raise ConfigError(obj.at("serviceID"), f"must not contain spaces or '/', got {show(service_id)}")
    advertise = obj.string("advertise", "")
    if advertise:
        check_host_port(advertise, obj.at("advertise"))
    shutdown_delay = obj.duration("shutdownDelay", 2.0)
    if not 0 <= shutdown_delay <= MAX_SECONDS:
        raise ConfigError(obj.at("shutdownDelay"), f"must be between 0 and {MAX_SECONDS:g} seconds")
    obj.finish()
    return WorkloadSpec(
        readiness=probes["readiness"],
        liveness=probes["liveness"],
        startup=probes["startup"],
        register=register,
        service_id=service_id,
        advertise=advertise,
        shutdown_delay=shutdown_delay,
    )


def resolve(spec: WorkloadSpec, app_port: int | None) -> WorkloadSpec:
    """Fill probe ports left out with the app port; a probe needing a port without one is an error."""
    filled: dict[ProbeRole, ProbeSpec | None] = {}
    for role in ROLES:
        probe = spec.probe(role)
        if probe is not None and probe.kind != "exec" and not probe.port:
            if not app_port:
                key = "httpGet" if probe.kind == "http" else "tcpSocket"
                raise ConfigError(f"{ROLE_KEYS[role]}.{key}.port", "is required when the sidecar has no --app-port")
            probe = _with_port(probe, app_port)
        filled[role] = probe
    return replace(spec, readiness=filled["readiness"], liveness=filled["liveness"], startup=filled["startup"])


def check_host_port(value: str, path: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(path, f"must be HOST:PORT with a port 1-65535, got {show(value)}")
    return host, int(port)


# === helpers ===


def _http(data: object, path: str) -> ProbeSpec:
    obj = Fields(data, path)
    probe_path = obj.string("path", "/")
    if not probe_path.startswith("/") or any(c in probe_path for c in "\r\n\x00 "):
        raise ConfigError(obj.at("path"), f"must be an absolute path without spaces, got {show(probe_path)}")
    port = _port(obj)
    host = obj.string("host", "") or "127.0.0.1"
    scheme = obj.choice("scheme", ("HTTP", "HTTPS"), "HTTP")
    headers = tuple(obj.list_of("httpHeaders", _header))
    obj.finish()
    return ProbeSpec(
        "http",
        host=host,
        port=port,
        path=probe_path,
        scheme="HTTPS" if scheme == "HTTPS" else "HTTP",
        headers=headers,
    )


def _tcp(data: object, path: str) -> ProbeSpec:
    obj = Fields(data, path)
    port = _port(obj)
    host = obj.string("host", "") or "127.0.0.1"
    obj.finish()
    return ProbeSpec("tcp", host=host, port=port)


def _exec(data: object, path: str) -> ProbeSpec:
    obj = Fields(data, path)
    command = obj.take("command", REQUIRED)
    if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
        raise ConfigError(obj.at("command"), f"must be a non-empty list of strings, got {show(command)}")
    obj.finish()
    return ProbeSpec("exec", command=tuple(command))


def _port(obj: Fields) -> int:
    value = obj.take("port", None)
    if value is None:
        return 0
    if isinstance(value, str):
        raise ConfigError(obj.at("port"), f"named ports are not supported, give the number (got {show(value)})")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ConfigError(obj.at("port"), f"must be a port number 1-65535, got {show(value)}")
    return value


def _header(data: object, path: str) -> tuple[str, str]:
    obj = Fields(data, path)
    name = obj.string("name", REQUIRED)
    value = obj.string("value", "")
    obj.finish()
    if not _HEADER_NAME.fullmatch(name):
        raise ConfigError(f"{path}.name", f"not a valid header name: {show(name)}")
    if any(c in value for c in "\r\n\x00"):
        raise ConfigError(f"{path}.value", "must not contain CR, LF or NUL")
    return name, value


def _seconds(obj: Fields, key: str, default: float, *, low: float) -> float:
    value = obj.take(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= MAX_SECONDS:
        raise ConfigError(obj.at(key), f"must be a number of seconds in {low:g}..{MAX_SECONDS:g}, got {show(value)}")
    return float(value)


def _with_port(probe: ProbeSpec, port: int) -> ProbeSpec:
    return replace(probe, port=port)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def probes_by_role(spec: WorkloadSpec) -> Mapping[ProbeRole, ProbeSpec]:
    """The configured probes, startup first."""
    return {role: probe for role in ROLES if (probe := spec.probe(role)) is not None}


__all__ = [
    "ROLES",
    "ROLE_KEYS",
    "ProbeKind",
    "ProbeRole",
    "ProbeSpec",
    "WorkloadSpec",
    "check_host_port",
    "parse_probe",
    "parse_probe_text",
    "parse_workload",
    "probes_by_role",
    "resolve",
]
