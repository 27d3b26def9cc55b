"""Immutable records of the catalog: nodes, service instances, checks and KV entries.

Every record is a frozen dataclass. The catalog replaces records, never mutates
them, so a reader holding one (a request in flight, a cached answer) never sees
it change. ``to_record``/``from_record`` give the JSON-able form the store
persists; the HTTP shapes live in ``discovery.api.render``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Final

PASSING: Final = "passing"
WARNING: Final = "warning"
CRITICAL: Final = "critical"
MAINTENANCE: Final = "maintenance"
CHECK_STATUSES: Final = (PASSING, WARNING, CRITICAL)
_SEVERITY: Final = {PASSING: 0, WARNING: 1, CRITICAL: 2, MAINTENANCE: 3}

SERF_CHECK_ID: Final = "serfHealth"
EMPTY_MAP: Final[Mapping[str, Any]] = MappingProxyType({})


def _empty_map() -> Mapping[str, Any]:
    return EMPTY_MAP


def worst_status(statuses: Any) -> str:
    """Aggregate health: critical beats warning beats passing (Consul's rule)."""
    worst = PASSING
    for status in statuses:
        if _SEVERITY.get(status, 2) > _SEVERITY[worst]:
            worst = status
    return worst


@dataclass(frozen=True, slots=True)
class Weights:
    passing: int = 1
    warning: int = 1


@dataclass(frozen=True, slots=True)
class TaggedAddress:
    address: str
    port: int


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    address: str
    id: str = ""
    datacenter: str = "dc1"
    tagged_addresses: Mapping[str, str] = field(default_factory=_empty_map)
    meta: Mapping[str, str] = field(default_factory=_empty_map)
    create_index: int = 0
    modify_index: int = 0

    def same_content(self, other: Node) -> bool:
        return _content(self) == _content(other)


@dataclass(frozen=True, slots=True)
class Service:
    """One service instance on one node (Consul's ServiceNode / AgentService)."""

    node: str
    id: str
    name: str
    tags: tuple[str, ...] = ()
    address: str = ""
    port: int = 0
    meta: Mapping[str, str] = field(default_factory=_empty_map)
    tagged_addresses: Mapping[str, TaggedAddress] = field(default_factory=_empty_map)
    weights: Weights = Weights()
    enable_tag_override: bool = False
    kind: str = ""
    create_index: int = 0
    modify_index: int = 0

    def same_content(self, other: Service) -> bool:
        return _content(self) == _content(other)


@dataclass(frozen=True, slots=True)
class CheckDefinition:
    """How the registry runs a check. Empty ``http``/``tcp``/``ttl`` means not of that kind."""

    http: str = ""
    method: str = ""
    header: Mapping[str, tuple[str, ...]] = field(default_factory=_empty_map)
    body: str = ""
    tls_skip_verify: bool = False
    tls_server_name: str = ""
    tcp: str = ""
    ttl: float = 0.0
    interval: float = 0.0
    timeout: float = 0.0
    deregister_critical_after: float = 0.0
    success_before_passing: int = 0
    failures_before_critical: int = 0

    @property
    def kind(self) -> str:
        if self.http:
            return "http"
        if self.tcp:
            return "tcp"
        if self.ttl:
            return "ttl"
        return ""


@dataclass(frozen=True, slots=True)
class Check:
    node: str
    check_id: str
    name: str
    status: str = CRITICAL
    notes: str = ""
    output: str = ""
    service_id: str = ""
    service_name: str = ""
    definition: CheckDefinition = CheckDefinition()
    # Registered through the agent API, so this registry runs it; catalog-registered
    # checks are records of someone else's checks and are never run (as Consul).
    agent_check: bool = False
    create_index: int = 0
    modify_index: int = 0

    def same_content(self, other: Check) -> bool:
        return _content(self) == _content(other)


@dataclass(frozen=True, slots=True)
class KVEntry:
    key: str
    value: bytes = b""
    flags: int = 0
    create_index: int = 0
    modify_index: int = 0
    lock_index: int = 0
    session: str = ""


def _shallow(record: Any) -> dict[str, Any]:
    """Field values without deep copies (dataclasses.asdict cannot copy mappingproxy)."""
    return {f.name: getattr(record, f.name) for f in fields(record)}


def _content(record: Node | Service | Check) -> tuple[Any, ...]:
    """The record's fields without its indexes, for change detection."""
    values = _shallow(record)
    values.pop("create_index")
    values.pop("modify_index")
    return tuple((k, _plain(v)) for k, v in values.items())


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((k, _plain(v)) for k, v in value.items()))
    if isinstance(value, CheckDefinition | Weights | TaggedAddress):
        return _content_of(value)
    return value


def _content_of(value: Any) -> tuple[Any, ...]:
    return tuple((k, _plain(v)) for k, v in _shallow(value).items())


# === persistence form ===


def node_to_record(node: Node) -> dict[str, Any]:
    data = _shallow(node)
    data["tagged_addresses"] = dict(node.tagged_addresses)
    data["meta"] = dict(node.meta)
    return data


def node_from_record(data: Mapping[str, Any]) -> Node:
    return Node(
        **{
            **data,
            "tagged_addresses": _frozen(data.get("tagged_addresses")),
            "meta": _frozen(data.get("meta")),
        }
    )


def service_to_record(service: Service) -> dict[str, Any]:
    data = _shallow(service)
    data["tags"] = list(service.tags)
    data["meta"] = dict(service.meta)
    data["tagged_addresses"] = {k: [v.address, v.port] for k, v in service.tagged_addresses.items()}
    data["weights"] = [service.weights.passing, service.weights.warning]
    return data


def service_from_record(data: Mapping[str, Any]) -> Service:
    passing, warning = data.get("weights", (1, 1))
    tagged = {k: TaggedAddress(a, p) for k, (a, p) in data.get("tagged_addresses", {}).items()}
    return Service(
        **{
            **data,
            "tags": tuple(data.get("tags", ())),
            "meta": _frozen(data.get("meta")),
            "tagged_addresses": _frozen(tagged),
            "weights": Weights(passing, warning),
        }
    )


def check_to_record(check: Check) -> dict[str, Any]:
    data = _shallow(check)
    definition = _shallow(check.definition)
    definition["header"] = {k: list(v) for k, v in check.definition.header.items()}
    data["definition"] = definition
    return data


def check_from_record(data: Mapping[str, Any]) -> Check:
    raw = dict(data.get("definition", {}))
    raw["header"] = _frozen({k: tuple(v) for k, v in raw.get("header", {}).items()})
    return Check(**{**data, "definition": CheckDefinition(**raw)})


def kv_to_record(entry: KVEntry) -> dict[str, Any]:
    data = _shallow(entry)
    data["value"] = entry.value.hex()
    return data


def kv_from_record(data: Mapping[str, Any]) -> KVEntry:
    return KVEntry(**{**data, "value": bytes.fromhex(data.get("value", ""))})


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping)) if mapping else EMPTY_MAP


__all__ = [
    "CHECK_STATUSES",
    "CRITICAL",
    "EMPTY_MAP",
    "MAINTENANCE",
    "PASSING",
    "SERF_CHECK_ID",
    "WARNING",
    "Check",
    "CheckDefinition",
    "KVEntry",
    "Node",
    "Service",
    "TaggedAddress",
    "Weights",
    "worst_status",
]
