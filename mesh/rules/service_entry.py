"""``ServiceEntry`` (networking.istio.io/v1): hosts outside the registry, with their endpoints (pure).

The usual use: an external API (``api.example.com``) reached through the sidecar, with static
endpoints (``resolution: STATIC``), endpoints given by name (``DNS``), or none (``DNS``/``NONE``:
the sidecar connects to the host name itself, resolved by DNS when it connects).

Port protocols: ``HTTP`` ports are routed by Host like registry services; ``TCP`` and the opaque
TCP protocols (``TLS``, ``HTTPS``, ``MONGO``, ``MYSQL``, ``REDIS``) become TCP clusters an
``--upstream NAME=PORT`` listener can use. ``HTTP2``/``GRPC``/``GRPC-WEB``/``UDP`` and
``workloadSelector`` are refused: the sidecar does not serve them yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mesh.model.reader import ConfigError
from mesh.rules.fields import Reader, check_dns_label, is_ip, not_supported, parse_host, parse_ip_or_cidr
from mesh.rules.virtual_service import parse_hosts

HTTP_PROTOCOLS = frozenset({"HTTP"})
TCP_PROTOCOLS = frozenset({"TCP", "TLS", "HTTPS", "MONGO", "MYSQL", "REDIS"})
UNSUPPORTED_PROTOCOLS = frozenset({"HTTP2", "GRPC", "GRPC-WEB", "UDP"})
LOCATIONS = ("MESH_EXTERNAL", "MESH_INTERNAL")
RESOLUTIONS = ("NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN")

Resolution = Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"]


@dataclass(frozen=True, slots=True)
class ServicePort:
    number: int
    protocol: str  # upper-case
    name: str
    target_port: int | None = None

    @property
    def is_http(self) -> bool:
        return self.protocol in HTTP_PROTOCOLS


@dataclass(frozen=True, slots=True)
class WorkloadEntry:
    address: str
    ports: tuple[tuple[str, int], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    weight: int = 1

    def port_for(self, port: ServicePort) -> int:
        """The endpoint's port for a service port: its own mapping, else targetPort, else the number."""
        for name, number in self.ports:
            if name == port.name:
                return number
        return port.target_port or port.number


@dataclass(frozen=True, slots=True)
class ServiceEntrySpec:
    hosts: tuple[str, ...]
    ports: tuple[ServicePort, ...]
    resolution: Resolution = "NONE"
    location: str = "MESH_EXTERNAL"
    addresses: tuple[str, ...] = ()
    endpoints: tuple[WorkloadEntry, ...] = ()
    export_to: tuple[str, ...] = ()

    def port(self, number: int | None) -> ServicePort | None:
        """The port ``number`` names, or the only/first HTTP port when ``number`` is None."""
        if number is None:
            http = [p for p in self.ports if p.is_http]
            candidates = http or list(self.ports)
            return candidates[0] if candidates else None
        for port in self.ports:
            if port.number == number:
                return port
        return None


def parse_service_entry(spec: Reader) -> ServiceEntrySpec:
    hosts = parse_hosts(spec, "hosts", wildcard=True)
    if not hosts:
        raise ConfigError(spec.at("hosts"), "needs at least one host")
    addresses = tuple(parse_ip_or_cidr(a, spec.at(f"addresses[{i}]")) for i, a in enumerate(spec.strings("addresses")))
    ports = spec.items("ports", _parse_port, required=True)
    if not ports:
        raise ConfigError(spec.at("ports"), "needs at least one port")
    _check_unique(spec, ports)
    location = spec.enum("location", LOCATIONS) or "MESH_EXTERNAL"
    resolution = spec.enum("resolution", RESOLUTIONS) or "NONE"
    endpoints = spec.items("endpoints", _parse_endpoint)
    if spec.take("workloadSelector", None) is not None:
        raise not_supported(spec.at("workloadSelector"), "workloadSelector")
    export_to = spec.export_to()
    spec.strings("subjectAltNames")
    _check_resolution(spec, resolution, hosts, endpoints, ports)
    return ServiceEntrySpec(hosts, ports, resolution, location, addresses, endpoints, export_to)  # type: ignore[arg-type]


def _parse_port(obj: Reader) -> ServicePort:
    number = obj.whole("number", 1, 65535, required=True)
    protocol = (obj.text("protocol") or "TCP").upper()
    name = obj.text("name", required=True) or ""
    check_dns_label(name, obj.at("name"), "port name")
    target = obj.whole("targetPort", 1, 65535)
    if protocol in UNSUPPORTED_PROTOCOLS:
        raise not_supported(obj.at("protocol"), f"protocol {protocol}")
    if protocol not in HTTP_PROTOCOLS | TCP_PROTOCOLS:
        known = sorted(HTTP_PROTOCOLS | TCP_PROTOCOLS | UNSUPPORTED_PROTOCOLS)
        raise ConfigError(obj.at("protocol"), f"unknown protocol {protocol!r} (expected one of {', '.join(known)})")
    assert number is not None
    return ServicePort(number, protocol, name, target)


def _check_unique(spec: Reader, ports: tuple[ServicePort, ...]) -> None:
    numbers: dict[int, int] = {}
    names: dict[str, int] = {}
    for i, port in enumerate(ports):
        if port.number in numbers:
            raise ConfigError(
                spec.at(f"ports[{i}].number"), f"port {port.number} is already ports[{numbers[port.number]}]"
            )
        if port.name in names:
            raise ConfigError(
                spec.at(f"ports[{i}].name"), f"port name {port.name!r} is already ports[{names[port.name]}]"
            )
        numbers[port.number] = i
        names[port.name] = i


def _parse_endpoint(obj: Reader) -> WorkloadEntry:
    address = obj.text("address", required=True) or ""
    if address.startswith("unix://"):
        raise not_supported(obj.at("address"), "a unix socket endpoint")
    if not is_ip(address):
        parse_host(address, obj.at("address"), wildcard=False)
    ports = obj.mapping_of("ports", _endpoint_port)
    labels = obj.labels("labels")
    weight = obj.whole("weight", 0, 2**32 - 1)
    for key in ("network", "locality", "serviceAccount"):
        obj.text(key)
    return WorkloadEntry(address, ports, labels, weight or 1)


def _endpoint_port(data: object, path: str) -> int:
    if isinstance(data, bool) or not isinstance(data, int) or not 1 <= data <= 65535:
        raise ConfigError(path, f"must be a port number in 1..65535, got {data!r}")
    return data


def _check_resolution(
    spec: Reader,
    resolution: str,
    hosts: tuple[str, ...],
    endpoints: tuple[WorkloadEntry, ...],
    ports: tuple[ServicePort, ...],
) -> None:
    names = {port.name for port in ports}
    for i, endpoint in enumerate(endpoints):
        for name, _ in endpoint.ports:
            if name not in names:
                raise ConfigError(
                    spec.at(f"endpoints[{i}].ports.{name}"),
                    f"no service port is named {name!r} (ports: {', '.join(sorted(names))})",
                )
        if resolution == "STATIC" and not is_ip(endpoint.address):
            raise ConfigError(spec.at(f"endpoints[{i}].address"), "resolution STATIC needs IP addresses")
    if resolution == "STATIC" and not endpoints:
        raise ConfigError(spec.at("endpoints"), "resolution STATIC needs at least one endpoint")
    if resolution in ("DNS", "DNS_ROUND_ROBIN") and not endpoints:
        for i, host in enumerate(hosts):
            if host.startswith("*"):
                raise ConfigError(
                    spec.at(f"hosts[{i}]"), f"resolution {resolution} without endpoints cannot resolve a wildcard host"
                )
    if resolution == "NONE" and endpoints:
        raise ConfigError(spec.at("endpoints"), "resolution NONE takes no endpoints (use STATIC or DNS)")


__all__ = [
    "HTTP_PROTOCOLS",
    "TCP_PROTOCOLS",
    "ServiceEntrySpec",
    "ServicePort",
    "WorkloadEntry",
    "parse_service_entry",
]
