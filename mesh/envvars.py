"""`mesh env`: Kubernetes / Docker-link style environment variables for services in the registry.

For a service ``reviews-api`` reachable at 10.0.0.7:9080 with a named port ``grpc`` (9090/tcp),
the variables are the ones a Kubernetes pod gets for a Service (names upper-cased, ``-`` → ``_``):

    REVIEWS_API_SERVICE_HOST=10.0.0.7
    REVIEWS_API_SERVICE_PORT=9080
    REVIEWS_API_SERVICE_PORT_GRPC=9090
    REVIEWS_API_PORT=tcp://10.0.0.7:9080
    REVIEWS_API_PORT_9080_TCP=tcp://10.0.0.7:9080        (and _PROTO, _PORT, _ADDR)
    REVIEWS_API_PORT_9090_TCP=tcp://10.0.0.7:9090        (and _PROTO, _PORT, _ADDR)

Which address, decided here once: the service's virtual IP when its instances carry Meta
``k8s-cluster-ip`` (the ClusterIP, as Kubernetes gives it, and the one cluster DNS answers), else
the address of one healthy instance — passing before warning, then by node and service ID, so the
answer is stable; critical instances are never chosen. The port is that instance's port.
Named ports use the convention cluster DNS already reads: Meta ``k8s-port-<name>`` with value
``<proto>`` or ``<port>/<proto>`` (dnsserver/view.py), so one registration feeds DNS SRV records and these variables.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from discovery.client import RegistryClient
from discovery.client_models import HealthServiceEntry
from dnsserver.view import NamedPort
from dnsserver.watcher import endpoint_from_entry

OutputFormat = Literal["export", "dotenv", "json"]
FORMATS: Final[tuple[OutputFormat, ...]] = ("export", "dotenv", "json")
_STATUS_RANK: Final = {"passing": 0, "warning": 1}
_VARIABLE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOTENV_SAFE: Final = re.compile(r"[A-Za-z0-9_./:@\[\]-]*")


class EnvError(ValueError):
    """A service that cannot be turned into variables (unknown, no healthy instance, unusable name)."""

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"service {service!r}: {reason}")
        self.service = service


@dataclass(frozen=True, slots=True)
class ServiceTarget:
    """Where a service is reached, as the variables will say it."""

    service: str
    host: str
    port: int
    named_ports: tuple[NamedPort, ...] = ()
    source: Literal["cluster-ip", "instance"] = "instance"
    instance: str = ""  # the chosen instance's service ID


def variable_prefix(service: str) -> str:
    """``reviews-api`` → ``REVIEWS_API``; any other character that a variable cannot hold also becomes ``_``."""
    prefix = re.sub(r"[^A-Za-z0-9_]", "_", service).upper()
    if not _VARIABLE.fullmatch(prefix):
        raise EnvError(service, f"{prefix!r} is not a valid environment variable name (it starts with a digit)")
    return prefix


def choose_target(service: str, entries: Sequence[HealthServiceEntry]) -> ServiceTarget:
    """The address the variables name (see the module doc); raises EnvError when there is none."""
    if not entries:
        raise EnvError(service, "not found in the registry")
    healthy = [e for e in entries if e.status in _STATUS_RANK]
    if not healthy:
        raise EnvError(service, f"no healthy instance ({len(entries)} registered, all critical)")
    best = min(healthy, key=lambda e: (_STATUS_RANK[e.status], e.node.name, e.service.id))
    endpoint = endpoint_from_entry(best)
    cluster_ip = next((e.service.meta["k8s-cluster-ip"] for e in entries if e.service.meta.get("k8s-cluster-ip")), "")
    return ServiceTarget(
        service=service,
        host=cluster_ip or endpoint.address,
        port=endpoint.port,
        named_ports=endpoint.named_ports(),
        source="cluster-ip" if cluster_ip else "instance",
        instance=best.service.id,
    )


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def service_variables(target: ServiceTarget) -> dict[str, str]:
    """The variables for one service, in Kubernetes' order (``*_SERVICE_*`` first, then Docker-link ``*_PORT*``)."""
    prefix = variable_prefix(target.service)
    variables = {f"{prefix}_SERVICE_HOST": target.host, f"{prefix}_SERVICE_PORT": str(target.port)}
    for named in target.named_ports:
        variables[named_port_variable(target.service, named.name)] = str(named.port)
    variables[f"{prefix}_PORT"] = f"tcp://{_join(target.host, target.port)}"
    ports = [("tcp", target.port)] + [(p.protocol, p.port) for p in target.named_ports]
    for protocol, port in dict.fromkeys(ports):
        base = f"{prefix}_PORT_{port}_{protocol.upper()}"
        variables[base] = f"{protocol}://{_join(target.host, port)}"
        variables[f"{base}_PROTO"] = protocol
        variables[f"{base}_PORT"] = str(port)
        variables[f"{base}_ADDR"] = target.host
    return variables


def named_port_variable(service: str, port_name: str) -> str:
    """``reviews-api`` and ``grpc-web`` → ``REVIEWS_API_SERVICE_PORT_GRPC_WEB``."""
    return f"{variable_prefix(service)}_SERVICE_PORT_{re.sub(r'[^A-Za-z0-9_]', '_', port_name).upper()}"


def render(variables: dict[str, str], output: OutputFormat) -> str:
    """``export K=V`` lines (shell-quoted), ``K=V`` dotenv lines, or one JSON object; ends with a newline."""
    if output == "json":
        return json.dumps(variables, indent=2) + "\n"
    if output == "dotenv":
        lines = [f"{k}={v if _DOTENV_SAFE.fullmatch(v) else json.dumps(v)}" for k, v in variables.items()]
    else:
        lines = [f"export {k}={shlex.quote(v)}" for k, v in variables.items()]
    return "".join(f"{line}\n" for line in lines)


@dataclass(frozen=True, slots=True)
class EnvResult:
    variables: dict[str, str]
    missing: tuple[EnvError, ...]  # services skipped (only non-empty with ignore_missing)


async def environment(client: RegistryClient, services: Sequence[str], *, ignore_missing: bool = False) -> EnvResult:
    """Read each service's instances (one ``/v1/health/service`` read each) and build the variables.

    Raises the first EnvError unless ``ignore_missing``; registry errors propagate.
    """
    variables: dict[str, str] = {}
    missing: list[EnvError] = []
    for service in dict.fromkeys(services):
        try:
            variable_prefix(service)
            result = await client.health_service(service)
            variables.update(service_variables(choose_target(service, result.value)))
        except EnvError as exc:
            if not ignore_missing:
                raise
            missing.append(exc)
    return EnvResult(variables, tuple(missing))
