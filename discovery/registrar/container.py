"""What the registrar needs from ``GET /containers/{id}/json``, as a typed, immutable value.

Lenient like the registry client's models: Docker versions differ in which fields they send
and whether empty collections are ``null``. Pure: parsing only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

COMPOSE_SERVICE_LABEL: Final = "com.docker.compose.service"


@dataclass(frozen=True, slots=True)
class PortBinding:
    host_ip: str
    host_port: str  # "" when the port is exposed but not published


@dataclass(frozen=True, slots=True)
class Container:
    """One inspected container. ``ports`` maps "80/tcp" to its first host binding (if any)."""

    id: str
    name: str  # without Docker's leading "/"
    image: str
    env: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    exposed_ports: tuple[str, ...] = ()  # Config.ExposedPorts keys, e.g. "80/tcp"
    ports: Mapping[str, PortBinding | None] = field(default_factory=dict)  # NetworkSettings.Ports
    network_mode: str = "default"
    ip_address: str = ""  # NetworkSettings.IPAddress (default bridge)
    networks: Mapping[str, str] = field(default_factory=dict)  # network name -> container IP
    status: str = ""  # created, running, paused, restarting, removing, exited, dead
    running: bool = False
    paused: bool = False
    exit_code: int = 0
    health: str | None = None  # starting, healthy, unhealthy; None without a HEALTHCHECK
    health_output: str = ""  # output of the last health probe
    network_container_ip: str = ""  # for NetworkMode container:<id>, that container's IP (the edge fills it)
    # Fixed at create time (HostConfig / Config), what the start fast path (``started``) reads:
    port_bindings: Mapping[str, tuple[PortBinding, ...]] = field(default_factory=dict)  # HostConfig.PortBindings
    publish_all: bool = False  # HostConfig.PublishAllPorts (-P): every exposed port on an ephemeral host port
    healthcheck: bool = False  # a Docker HEALTHCHECK is configured (its status exists only once started)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)  # for --tags templates

    @classmethod
    def from_inspect(cls, data: Mapping[str, Any]) -> Container:
        config = data.get("Config") or {}
        settings = data.get("NetworkSettings") or {}
        host_config = data.get("HostConfig") or {}
        state = data.get("State") or {}
        health = state.get("Health")
        if not isinstance(health, Mapping):
            health = {}
        health_status = str(health.get("Status") or "")
        log = health.get("Log") or []
        networks = {
            str(name): str((net or {}).get("IPAddress") or "") for name, net in (settings.get("Networks") or {}).items()
        }
        return cls(
            id=str(data["Id"]),
            name=str(data.get("Name") or "").removeprefix("/"),
            image=str(config.get("Image") or data.get("Image") or ""),
            env=tuple(str(e) for e in config.get("Env") or ()),
            labels={str(k): str(v) for k, v in (config.get("Labels") or {}).items()},
            exposed_ports=tuple(str(p) for p in config.get("ExposedPorts") or ()),
            ports={str(port): _first_binding(bindings) for port, bindings in (settings.get("Ports") or {}).items()},
            network_mode=str(host_config.get("NetworkMode") or "default"),
            ip_address=str(settings.get("IPAddress") or ""),
            networks=networks,
            status=str(state.get("Status") or ""),
            running=bool(state.get("Running")),
            paused=bool(state.get("Paused")),
            exit_code=int(state.get("ExitCode") or 0),
            health=health_status if health_status and health_status != "none" else None,
            health_output=str((log[-1] or {}).get("Output") or "").strip() if log else "",
            port_bindings={
                str(port): tuple(_binding(b) for b in bindings or ())
                for port, bindings in (host_config.get("PortBindings") or {}).items()
            },
            publish_all=bool(host_config.get("PublishAllPorts")),
            healthcheck=_has_healthcheck(config.get("Healthcheck")),
            raw=data,
        )

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def network_container(self) -> str:
        """The container whose network this one shares (NetworkMode ``container:<id>``), else ""."""
        mode, sep, target = self.network_mode.partition(":")
        return target if sep and mode == "container" else ""

    @property
    def compose_service(self) -> str:
        return self.labels.get(COMPOSE_SERVICE_LABEL, "")


def _first_binding(bindings: Any) -> PortBinding | None:
    return _binding(bindings[0]) if bindings else None


def _binding(binding: Any) -> PortBinding:
    binding = binding or {}
    return PortBinding(host_ip=str(binding.get("HostIp") or ""), host_port=str(binding.get("HostPort") or ""))


def _has_healthcheck(healthcheck: Any) -> bool:
    """Config.Healthcheck (the image's merged in by Docker): configured unless absent, empty or ``NONE``."""
    test = healthcheck.get("Test") if isinstance(healthcheck, Mapping) else None
    return isinstance(test, list) and bool(test) and str(test[0]).upper() != "NONE"


__all__ = ["COMPOSE_SERVICE_LABEL", "Container", "PortBinding"]
