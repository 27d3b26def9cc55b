"""Typed values the registry client sends and receives, and its error hierarchy.

Responses are parsed from Consul's PascalCase JSON into frozen dataclasses with
snake_case fields (``Service``/``Node`` names become ``name``). Parsers are
lenient about absent optional fields and ``null`` collections, because older
Consul versions and our embedded registry differ there; a body of the wrong
shape raises ``ValueError``/``KeyError``/``TypeError``, which the client turns
into a ``RegistryError``. Requests are rendered with PascalCase keys, the form
every Consul version accepts.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from discovery.durations import format_duration, parse_duration

T = TypeVar("T")

_SEVERITY = {"passing": 0, "warning": 1, "critical": 2}


# === errors ===


class RegistryError(Exception):
    """A registry request failed. ``status`` is the HTTP status, or 0 when no response arrived."""

    def __init__(self, status: int, message: str, method: str, path: str) -> None:
        super().__init__(f"{method} {path}: {status or 'no response'}: {message}")
        self.status = status
        self.message = message
        self.method = method
        self.path = path


class BadRequest(RegistryError):
    """HTTP 400: the registry rejected the request's input."""


class PermissionDenied(RegistryError):
    """HTTP 403: the ACL token lacks the permission."""


class NotFound(RegistryError):
    """HTTP 404 where the endpoint has no "absent" answer (unknown service or check ID)."""


class RegistryUnavailable(RegistryError):
    """No usable answer: connection refused or reset, timeout, or a 5xx status. Worth retrying."""


# === blocking-query results ===


@dataclass(frozen=True, slots=True)
class QueryResult(Generic[T]):
    """A read's value plus the headers that drive blocking queries and consistency checks."""

    index: int
    value: T
    known_leader: bool = True
    last_contact_ms: int = 0


# === response models ===


@dataclass(frozen=True, slots=True)
class Weights:
    """DNS SRV weights by health state."""

    passing: int = 1
    warning: int = 1

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Weights:
        if not data:
            return cls()
        return cls(passing=int(data.get("Passing", 1)), warning=int(data.get("Warning", 1)))

    def to_json(self) -> dict[str, int]:
        return {"Passing": self.passing, "Warning": self.warning}


@dataclass(frozen=True, slots=True)
class ServiceAddress:
    """One entry of a service's TaggedAddresses (``lan``, ``wan``, ``lan_ipv4`` ...)."""

    address: str
    port: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServiceAddress:
        return cls(address=str(data.get("Address", "")), port=int(data.get("Port", 0)))

    def to_json(self) -> dict[str, Any]:
        return {"Address": self.address, "Port": self.port}


@dataclass(frozen=True, slots=True)
class CatalogNode:
    """A node as the catalog and health endpoints describe it. ``name`` is Consul's ``Node``."""

    name: str
    address: str
    id: str = ""
    datacenter: str = ""
    tagged_addresses: Mapping[str, str] = field(default_factory=dict)
    meta: Mapping[str, str] = field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CatalogNode:
        return cls(
            name=str(data["Node"]),
            address=str(data.get("Address", "")),
            id=str(data.get("ID") or ""),
            datacenter=str(data.get("Datacenter") or ""),
            tagged_addresses=_str_map(data.get("TaggedAddresses")),
            meta=_str_map(data.get("Meta")),
            create_index=int(data.get("CreateIndex", 0)),
            modify_index=int(data.get("ModifyIndex", 0)),
        )


@dataclass(frozen=True, slots=True)
class AgentService:
    """A service instance (agent/services, health/service ``Service``). ``name`` is Consul's ``Service``."""

    id: str
    name: str
    tags: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=dict)
    port: int = 0
    address: str = ""
    tagged_addresses: Mapping[str, ServiceAddress] = field(default_factory=dict)
    weights: Weights = Weights()
    enable_tag_override: bool = False
    datacenter: str = ""
    kind: str = ""
    create_index: int = 0
    modify_index: int = 0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AgentService:
        return cls(
            id=str(data["ID"]),
            name=str(data["Service"]),
            tags=_str_tuple(data.get("Tags")),
            meta=_str_map(data.get("Meta")),
            port=int(data.get("Port") or 0),
            address=str(data.get("Address") or ""),
            tagged_addresses=_service_addresses(data.get("TaggedAddresses")),
            weights=Weights.from_json(data.get("Weights")),
            enable_tag_override=bool(data.get("EnableTagOverride", False)),
            datacenter=str(data.get("Datacenter") or ""),
            kind=str(data.get("Kind") or ""),
            create_index=int(data.get("CreateIndex", 0)),
            modify_index=int(data.get("ModifyIndex", 0)),
        )


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """A check and its current status. Node-level checks have an empty ``service_id``."""

    node: str
    check_id: str
    name: str
    status: str
    notes: str = ""
    output: str = ""
    service_id: str = ""
    service_name: str = ""
    service_tags: tuple[str, ...] = ()
    type: str = ""
    interval: float | None = None
    timeout: float | None = None
    create_index: int = 0
    modify_index: int = 0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HealthCheck:
        return cls(
            node=str(data.get("Node", "")),
            check_id=str(data["CheckID"]),
            name=str(data.get("Name", "")),
            status=str(data["Status"]),
            notes=str(data.get("Notes") or ""),
            output=str(data.get("Output") or ""),
            service_id=str(data.get("ServiceID") or ""),
            service_name=str(data.get("ServiceName") or ""),
            service_tags=_str_tuple(data.get("ServiceTags")),
            type=str(data.get("Type") or ""),
            interval=_optional_duration(data.get("Interval")),
            timeout=_optional_duration(data.get("Timeout")),
            create_index=int(data.get("CreateIndex", 0)),
            modify_index=int(data.get("ModifyIndex", 0)),
        )


@dataclass(frozen=True, slots=True)
class HealthServiceEntry:
    """One instance from ``/v1/health/service``: its node, the service, and its checks plus the node's."""

    node: CatalogNode
    service: AgentService
    checks: tuple[HealthCheck, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HealthServiceEntry:
        return cls(
            node=CatalogNode.from_json(data["Node"]),
            service=AgentService.from_json(data["Service"]),
            checks=tuple(HealthCheck.from_json(c) for c in data.get("Checks") or ()),
        )

    @property
    def status(self) -> str:
        """Aggregated health, worst wins (critical > warning > passing); unknown statuses count as critical."""
        worst = "passing"
        for check in self.checks:
            if _SEVERITY.get(check.status, 2) > _SEVERITY[worst]:
                worst = check.status if check.status in _SEVERITY else "critical"
        return worst

    @property
    def effective_address(self) -> str:
        """Where to connect: the service's own address, else its node's (Consul's rule)."""
        return self.service.address or self.node.address


@dataclass(frozen=True, slots=True)
class CatalogServiceEntry:
    """One instance from ``/v1/catalog/service`` (flat, not health-filtered). ``node`` is the node name."""

    node: str
    address: str
    service_id: str
    service_name: str
    id: str = ""
    datacenter: str = ""
    tagged_addresses: Mapping[str, str] = field(default_factory=dict)
    node_meta: Mapping[str, str] = field(default_factory=dict)
    service_kind: str = ""
    service_tags: tuple[str, ...] = ()
    service_address: str = ""
    service_port: int = 0
    service_meta: Mapping[str, str] = field(default_factory=dict)
    service_tagged_addresses: Mapping[str, ServiceAddress] = field(default_factory=dict)
    service_weights: Weights = Weights()
    service_enable_tag_override: bool = False
    create_index: int = 0
    modify_index: int = 0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CatalogServiceEntry:
        return cls(
            node=str(data["Node"]),
            address=str(data.get("Address", "")),
            service_id=str(data["ServiceID"]),
            service_name=str(data["ServiceName"]),
            id=str(data.get("ID") or ""),
            datacenter=str(data.get("Datacenter") or ""),
            tagged_addresses=_str_map(data.get("TaggedAddresses")),
            node_meta=_str_map(data.get("NodeMeta")),
            service_kind=str(data.get("ServiceKind") or ""),
            service_tags=_str_tuple(data.get("ServiceTags")),
            service_address=str(data.get("ServiceAddress") or ""),
            service_port=int(data.get("ServicePort") or 0),
            service_meta=_str_map(data.get("ServiceMeta")),
            service_tagged_addresses=_service_addresses(data.get("ServiceTaggedAddresses")),
            service_weights=Weights.from_json(data.get("ServiceWeights")),
            service_enable_tag_override=bool(data.get("ServiceEnableTagOverride", False)),
            create_index=int(data.get("CreateIndex", 0)),
            modify_index=int(data.get("ModifyIndex", 0)),
        )

    @property
    def effective_address(self) -> str:
        """Where to connect: ``ServiceAddress``, else the node's ``Address``."""
        return self.service_address or self.address


@dataclass(frozen=True, slots=True)
class CatalogNodeServices:
    """``/v1/catalog/node/:node``: the node and its services keyed by service ID."""

    node: CatalogNode
    services: Mapping[str, AgentService] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CatalogNodeServices:
        services = data.get("Services") or {}
        return cls(
            node=CatalogNode.from_json(data["Node"]),
            services={sid: AgentService.from_json(s) for sid, s in services.items()},
        )


@dataclass(frozen=True, slots=True)
class KVPair:
    """A KV entry. ``value`` is the decoded bytes, ``None`` when the stored value is empty (Consul sends null)."""

    key: str
    value: bytes | None
    flags: int = 0
    create_index: int = 0
    modify_index: int = 0
    lock_index: int = 0
    session: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KVPair:
        raw = data.get("Value")
        return cls(
            key=str(data["Key"]),
            value=None if raw is None else base64.b64decode(raw, validate=True),
            flags=int(data.get("Flags", 0)),
            create_index=int(data.get("CreateIndex", 0)),
            modify_index=int(data.get("ModifyIndex", 0)),
            lock_index=int(data.get("LockIndex", 0)),
            session=str(data["Session"]) if data.get("Session") else None,
        )


# === request models ===


@dataclass(frozen=True, slots=True)
class CheckRegistration:
    """An agent check: inside a service registration, or alone for ``/v1/agent/check/register``.

    Exactly one of ``http``/``tcp``/``ttl`` selects the kind. Durations are seconds and
    are sent in Go syntax. ``None`` fields are omitted so the registry's defaults apply
    (notably ``status``: Consul starts checks ``critical``).
    """

    name: str = ""
    check_id: str | None = None
    http: str | None = None
    method: str | None = None
    header: Mapping[str, Sequence[str]] = field(default_factory=dict)
    tcp: str | None = None
    ttl: float | None = None
    interval: float | None = None
    timeout: float | None = None
    deregister_critical_service_after: float | None = None
    status: str | None = None
    notes: str | None = None
    service_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        _put(body, "Name", self.name or None)
        _put(body, "CheckID", self.check_id)
        _put(body, "HTTP", self.http)
        _put(body, "Method", self.method)
        if self.header:
            body["Header"] = {k: list(v) for k, v in self.header.items()}
        _put(body, "TCP", self.tcp)
        for key, seconds in (
            ("TTL", self.ttl),
            ("Interval", self.interval),
            ("Timeout", self.timeout),
            ("DeregisterCriticalServiceAfter", self.deregister_critical_service_after),
        ):
            if seconds is not None:
                body[key] = format_duration(seconds)
        _put(body, "Status", self.status)
        _put(body, "Notes", self.notes)
        _put(body, "ServiceID", self.service_id)
        return body


@dataclass(frozen=True, slots=True)
class ServiceRegistration:
    """A service for ``/v1/agent/service/register``. ``id`` defaults to ``name`` on the agent."""

    name: str
    id: str | None = None
    tags: Sequence[str] = ()
    address: str | None = None
    port: int | None = None
    meta: Mapping[str, str] = field(default_factory=dict)
    tagged_addresses: Mapping[str, ServiceAddress] = field(default_factory=dict)
    weights: Weights | None = None
    enable_tag_override: bool = False
    checks: Sequence[CheckRegistration] = ()

    def to_json(self) -> dict[str, Any]:
        body = {"Name": self.name, **self._common_json()}
        if self.checks:
            body["Checks"] = [check.to_json() for check in self.checks]
        return body

    def to_catalog_json(self) -> dict[str, Any]:
        """The ``Service`` object of ``/v1/catalog/register``, which names the service ``Service``."""
        if self.checks:
            raise ValueError("catalog registrations take checks as CatalogCheck, not in the service")
        return {"Service": self.name, **self._common_json()}

    def _common_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        _put(body, "ID", self.id)
        if self.tags:
            body["Tags"] = list(self.tags)
        _put(body, "Address", self.address)
        _put(body, "Port", self.port)
        if self.meta:
            body["Meta"] = dict(self.meta)
        if self.tagged_addresses:
            body["TaggedAddresses"] = {k: v.to_json() for k, v in self.tagged_addresses.items()}
        if self.weights is not None:
            body["Weights"] = self.weights.to_json()
        if self.enable_tag_override:
            body["EnableTagOverride"] = True
        return body


@dataclass(frozen=True, slots=True)
class CatalogCheck:
    """A check written straight into the catalog; the registry stores its status but never runs it."""

    name: str
    check_id: str | None = None
    status: str | None = None
    notes: str | None = None
    output: str | None = None
    service_id: str | None = None

    def to_json(self, node: str) -> dict[str, Any]:
        body: dict[str, Any] = {"Node": node, "Name": self.name}
        _put(body, "CheckID", self.check_id)
        _put(body, "Status", self.status)
        _put(body, "Notes", self.notes)
        _put(body, "Output", self.output)
        _put(body, "ServiceID", self.service_id)
        return body


@dataclass(frozen=True, slots=True)
class CatalogRegistration:
    """A ``/v1/catalog/register`` body: a node, optionally one service and some checks."""

    node: str
    address: str
    id: str | None = None
    datacenter: str | None = None
    tagged_addresses: Mapping[str, str] = field(default_factory=dict)
    node_meta: Mapping[str, str] = field(default_factory=dict)
    service: ServiceRegistration | None = None
    checks: Sequence[CatalogCheck] = ()
    skip_node_update: bool = False

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"Node": self.node, "Address": self.address}
        _put(body, "ID", self.id)
        _put(body, "Datacenter", self.datacenter)
        if self.tagged_addresses:
            body["TaggedAddresses"] = dict(self.tagged_addresses)
        if self.node_meta:
            body["NodeMeta"] = dict(self.node_meta)
        if self.service is not None:
            body["Service"] = self.service.to_catalog_json()
        if self.checks:
            body["Checks"] = [check.to_json(self.node) for check in self.checks]
        if self.skip_node_update:
            body["SkipNodeUpdate"] = True
        return body


# === JSON helpers ===


def _put(body: dict[str, Any], key: str, value: object) -> None:
    if value is not None:
        body[key] = value


def _str_tuple(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value or ())


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in (value or {}).items()}


def _service_addresses(value: Any) -> dict[str, ServiceAddress]:
    return {str(k): ServiceAddress.from_json(v) for k, v in (value or {}).items()}


def _optional_duration(value: Any) -> float | None:
    """Check ``Interval``/``Timeout``: a Go duration string, empty or absent for TTL and catalog checks."""
    if not value:
        return None
    return parse_duration(str(value))


__all__ = [
    "AgentService",
    "BadRequest",
    "CatalogCheck",
    "CatalogNode",
    "CatalogNodeServices",
    "CatalogRegistration",
    "CatalogServiceEntry",
    "CheckRegistration",
    "HealthCheck",
    "HealthServiceEntry",
    "KVPair",
    "NotFound",
    "PermissionDenied",
    "QueryResult",
    "RegistryError",
    "RegistryUnavailable",
    "ServiceAddress",
    "ServiceRegistration",
    "Weights",
]
