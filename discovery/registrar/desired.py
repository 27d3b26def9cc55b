"""The services a container should have in the registry: a pure function of its inspected state.

Registrator's rules (``bridge/bridge.go``), restated:
- Only a running, unpaused container has services; one per port that survives:
  published ports (``-p``) by default, every exposed port with ``--internal``. A host-network
  container's exposed ports count as published on the same number.
- Name: ``SERVICE_<port>_NAME``, else ``SERVICE_NAME``, else the Compose service
  (``com.docker.compose.service``), else the image's base name without tag (``nginx``). With more
  than one port, a name not set per port gets ``-<port>`` appended (``nginx-80``, ``nginx-443``).
  ``--explicit``: ports without a SERVICE_NAME are skipped.
- ID: ``<hostname>:<container name>:<port>`` plus ``:udp`` for UDP, unless ``SERVICE_ID`` is set.
- Address and port: the published host binding (a wildcard binding gets ``--ip``, else the
  resolved host name); with ``--internal`` the container's IP and exposed port. A label named
  by ``--use-ip-from-label`` and a ``container:<id>`` network mode override the address.
- Tags: ``SERVICE_TAGS`` (comma-separated, ``\\,`` escapes), then ``--tags``, then ``udp``.
- Meta: every other ``SERVICE_*`` key (``SERVICE_REGION=eu`` -> ``region: eu``), plus our
  ownership keys. ``SERVICE_IGNORE`` (any non-empty value) skips the container or the port.
- Checks: ``SERVICE_CHECK_*`` (``service_checks``); a container with a Docker HEALTHCHECK also
  gets a TTL check whose status mirrors Docker's health; ``--ttl`` adds a heartbeat TTL check.

Differences from Registrator, on purpose: on a user-defined network a published port is
registered at its host binding like on the default bridge (Registrator pairs the network's
container IP with the *host* port, which only works when both ports are equal; use
``--internal`` for container IPs); bad attributes are reported and skipped instead of
becoming odd Meta keys or failed registrations.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from discovery.client_models import CheckRegistration, ServiceRegistration
from discovery.registrar.attributes import RESERVED, PortAttributes, Problem, attributes_for_port, read_attributes
from discovery.registrar.config import RegistrarConfig
from discovery.registrar.container import Container, PortBinding
from discovery.registrar.ownership import (
    CONTAINER_KEY,
    DIGEST_KEY,
    HOST_KEY,
    OWNERSHIP_KEYS,
    digest,
    health_check_id,
    heartbeat_check_id,
)
from discovery.registrar.service_checks import KINDS, OPTIONS, Target, build_check
from discovery.registrar.tags_template import TagsTemplate, dedupe, split_tags

# A Docker-health check's status comes from events, not from a heartbeat: without --ttl its TTL is
# long enough that a stopped registrar leaves the last known status in place (fail static).
FAIL_STATIC_TTL: Final = 365 * 24 * 3600.0
WILDCARD_IPS: Final = frozenset({"", "0.0.0.0", "::"})
HEALTH_STATUS: Final[Mapping[str, str]] = {"healthy": "passing", "starting": "critical", "unhealthy": "critical"}
# Consul's Meta limits (the registry refuses a whole registration that breaks one).
_META_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")
MAX_META_PAIRS: Final = 64
MAX_META_KEY: Final = 128
MAX_META_VALUE: Final = 512
_OUTPUT_LIMIT: Final = 4096


@dataclass(frozen=True, slots=True)
class Rules:
    """Everything ``desired_services`` needs besides the container: flags plus host facts."""

    hostname: str
    host_ip: str  # where wildcard bindings are reachable when --ip is not given
    ip: str = ""
    internal: bool = False
    explicit: bool = False
    use_ip_from_label: str = ""
    tags: TagsTemplate = field(default_factory=TagsTemplate)
    heartbeat_ttl: float = 0.0
    health_ttl: float = FAIL_STATIC_TTL

    @classmethod
    def from_config(cls, config: RegistrarConfig, *, hostname: str, host_ip: str) -> Rules:
        return cls(
            hostname=hostname,
            host_ip=host_ip,
            ip=config.ip,
            internal=config.internal,
            explicit=config.explicit,
            use_ip_from_label=config.use_ip_from_label,
            tags=TagsTemplate.parse(config.tags),
            heartbeat_ttl=config.ttl,
            health_ttl=config.ttl or FAIL_STATIC_TTL,
        )


@dataclass(frozen=True, slots=True)
class DesiredService:
    """One registration we want, with the state its TTL checks should show."""

    registration: ServiceRegistration
    container_id: str
    digest: str
    health: str | None = None  # passing / critical for the docker-health check; None: no such check
    health_output: str = ""
    heartbeat: bool = False

    @property
    def service_id(self) -> str:
        return self.registration.id or self.registration.name

    def body(self) -> ServiceRegistration:
        """The registration to send: the docker-health check starts at the current status."""
        if self.health is None:
            return self.registration
        check_id = health_check_id(self.service_id)
        checks = tuple(
            replace(c, status=self.health) if c.check_id == check_id else c for c in self.registration.checks
        )
        return replace(self.registration, checks=checks)


@dataclass(frozen=True, slots=True)
class Desired:
    """The result for one container: services, bad attributes (to warn about), and skipped ports (why)."""

    services: tuple[DesiredService, ...] = ()
    problems: tuple[Problem, ...] = ()
    skipped: tuple[str, ...] = ()


def desired_services(container: Container, rules: Rules) -> Desired:
    if not container.running or container.paused:
        return Desired(skipped=(f"container is {container.status or 'not running'}",))
    attributes, problems = read_attributes(container.env, container.labels)
    found: list[Problem] = list(problems)
    skipped: list[str] = []
    ports = _candidate_ports(container)
    if not rules.internal:
        for key in [k for k, b in ports.items() if b is None or not b.host_port]:
            skipped.append(f"port {key} is not published on the host")
            del ports[key]
    if not ports:
        skipped.append("no published ports" if not rules.internal else "no exposed ports")
    group = len(ports) > 1
    services: list[DesiredService] = []
    for key in sorted(ports, key=_port_order):
        number, _ = _split_port(key)
        attrs = attributes_for_port(attributes, number)
        if attrs.get("ignore"):
            skipped.append(f"port {key}: {attrs.source('ignore')} is set")
            continue
        name = attrs.get("name")
        if not name:
            if rules.explicit:
                skipped.append(f"port {key}: no SERVICE_NAME (--explicit)")
                continue
            name = default_name(container)
        if group and "name" not in attrs.from_port:
            name = f"{name}-{number}"
        service = _service(container, rules, key, ports[key], attrs, name, found)
        if service is not None:
            services.append(service)
    return Desired(tuple(services), tuple(dict.fromkeys(found)), tuple(skipped))


def default_name(container: Container) -> str:
    """The Compose service name, else the image's base name without registry, path, tag or digest."""
    if container.compose_service:
        return container.compose_service
    image = container.image
    if not image or image.startswith("sha256:"):
        return container.name
    base = image.rsplit("/", 1)[-1]
    return base.split("@", 1)[0].split(":", 1)[0] or container.name


def container_ip(container: Container) -> str:
    """The container's own IP: the default bridge's, else its network mode's, else any (sorted by name)."""
    if container.ip_address:
        return container.ip_address
    if container.networks.get(container.network_mode):
        return container.networks[container.network_mode]
    return next((ip for _, ip in sorted(container.networks.items()) if ip), "")


def _candidate_ports(container: Container) -> dict[str, PortBinding | None]:
    """Exposed ports as if bound to the same host port (host networking), then Docker's real bindings."""
    ports: dict[str, PortBinding | None] = {}
    for key in container.exposed_ports:
        number, _ = _split_port(key)
        ports[key] = PortBinding("0.0.0.0", str(number)) if number else None
    ports.update(container.ports)
    return {k: v for k, v in ports.items() if _split_port(k)[0]}


def _service(
    container: Container,
    rules: Rules,
    key: str,
    binding: PortBinding | None,
    attrs: PortAttributes,
    name: str,
    problems: list[Problem],
) -> DesiredService | None:
    number, proto = _split_port(key)
    host_ip = binding.host_ip if binding is not None else ""
    if host_ip in WILDCARD_IPS:
        host_ip = rules.host_ip
    if rules.ip:
        host_ip = rules.ip
    if rules.internal:
        address, port = container_ip(container) or host_ip, number
    else:
        address = host_ip
        port = int(binding.host_port) if binding is not None and binding.host_port.isdigit() else 0
        if not 0 < port < 65536:
            return None
    if rules.use_ip_from_label and (labelled := container.labels.get(rules.use_ip_from_label, "")):
        address = labelled.rsplit("/", 1)[0] if "/" in labelled else labelled
    if container.network_container_ip:
        address = container.network_container_ip
    service_id = attrs.get("id") or f"{rules.hostname}:{container.name}:{number}" + (
        f":{proto}" if proto != "tcp" else ""
    )
    tags = dedupe(
        (*split_tags(attrs.get("tags")), *rules.tags.render(container.raw), *([proto] if proto != "tcp" else []))
    )
    checks: list[CheckRegistration] = []
    check, check_problems = build_check(attrs, Target(address, port, service_id, name, proto))
    problems.extend(check_problems)
    if check is not None:
        checks.append(check)
    health = HEALTH_STATUS.get(container.health or "") if container.health else None
    if container.health is not None:
        checks.append(
            CheckRegistration(
                name="Docker health",
                check_id=health_check_id(service_id),
                ttl=rules.health_ttl,
                notes=f"status of container {container.name}'s Docker HEALTHCHECK, set by mesh registrar",
            )
        )
    if rules.heartbeat_ttl:
        checks.append(
            CheckRegistration(
                name="Registrar heartbeat",
                check_id=heartbeat_check_id(service_id),
                ttl=rules.heartbeat_ttl,
                status="passing",
                notes="passed by mesh registrar every --ttl-refresh while the container runs",
            )
        )
    meta = _meta(attrs, problems)
    meta.update({HOST_KEY: rules.hostname, CONTAINER_KEY: container.id})
    registration = ServiceRegistration(
        name=name, id=service_id, tags=tags, address=address, port=port, meta=meta, checks=tuple(checks)
    )
    hashed = digest(registration.to_json())
    registration = replace(registration, meta={**meta, DIGEST_KEY: hashed})
    output = f"docker health: {container.health}"
    if container.health_output:
        output += f"; last probe: {container.health_output}"
    return DesiredService(
        registration=registration,
        container_id=container.id,
        digest=hashed,
        health=health if container.health is not None else None,
        health_output=output[:_OUTPUT_LIMIT],
        heartbeat=bool(rules.heartbeat_ttl),
    )


def _meta(attrs: PortAttributes, problems: list[Problem]) -> dict[str, str]:
    """The non-reserved attributes as Meta, within the registry's limits (else reported and skipped)."""
    room = MAX_META_PAIRS - len(OWNERSHIP_KEYS)
    meta: dict[str, str] = {}
    for key, value in sorted(attrs.values.items()):
        source = attrs.source(key)
        if key in RESERVED or (key.startswith("check_") and key not in KINDS and key not in OPTIONS):
            continue  # reserved keys are used above; unknown check keys were reported by build_check
        reason = ""
        if not _META_KEY.fullmatch(key):
            reason = "Meta keys may only contain letters, digits, '-' and '_'"
        elif len(key) > MAX_META_KEY:
            reason = f"Meta keys are at most {MAX_META_KEY} characters"
        elif key in OWNERSHIP_KEYS or key.startswith("consul-"):
            reason = "this Meta key is reserved"
        elif len(value) > MAX_META_VALUE:
            reason = f"Meta values are at most {MAX_META_VALUE} characters"
        elif len(meta) >= room:
            reason = f"a service has at most {MAX_META_PAIRS} Meta pairs"
        if reason:
            problems.append(Problem(source, f"{reason}; not added to Meta"))
            continue
        meta[key] = value
    return meta


def _split_port(key: str) -> tuple[int, str]:
    number, _, proto = key.partition("/")
    return (int(number) if number.isdigit() and 0 < int(number) < 65536 else 0), (proto or "tcp").lower()


def _port_order(key: str) -> tuple[int, str]:
    return _split_port(key)


__all__ = [
    "FAIL_STATIC_TTL",
    "HEALTH_STATUS",
    "Desired",
    "DesiredService",
    "Rules",
    "container_ip",
    "default_name",
    "desired_services",
]
