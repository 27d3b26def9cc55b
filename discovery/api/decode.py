"""Request bodies into catalog records, with Consul's lenient key matching and precise errors.

Consul decodes JSON keys case-insensitively and accepts snake_case (py-consul
sends ``name``, ``id``, ``tagged_addresses``...). Keys of user maps (Meta,
Header) are data and are kept exactly. Every error names the field's path,
e.g. ``Invalid Checks[1].Interval: ...``. Pure functions: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlsplit

from discovery.api.errors import ApiError, bad_request
from discovery.durations import DurationError, parse_duration
from discovery.models import (
    CHECK_STATUSES,
    CRITICAL,
    EMPTY_MAP,
    Check,
    CheckDefinition,
    Node,
    Service,
    TaggedAddress,
    Weights,
)

DEFAULT_CHECK_TIMEOUT: Final = 10.0
MIN_CHECK_INTERVAL: Final = 1.0
MAX_META_PAIRS: Final = 64
MAX_META_KEY: Final = 128
MAX_META_VALUE: Final = 512
_META_KEY: Final = re.compile(r"^[A-Za-z0-9_-]+$")


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise bad_request("Request decode failed: empty body, expected a JSON object")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_request(f"Request decode failed: {exc}") from None


def _norm(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


class Fields:
    """A JSON object read with Consul's key rules; ``path`` prefixes error messages."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise bad_request(f"Invalid {path or 'request body'}: expected a JSON object, got {_kind(data)}")
        self.path = path
        self._data = {_norm(k): v for k, v in data.items()}

    def where(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def has(self, *names: str) -> bool:
        return any(self._data.get(_norm(n)) is not None for n in names)

    def raw(self, *names: str) -> Any:
        for name in names:
            value = self._data.get(_norm(name))
            if value is not None:
                return value
        return None

    def error(self, name: str, reason: str) -> ApiError:
        return bad_request(f"Invalid {self.where(name)}: {reason}")

    def text(self, name: str, *aliases: str, default: str = "") -> str:
        value = self.raw(name, *aliases)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.error(name, f"expected a string, got {_kind(value)}")
        return value

    def integer(self, name: str, *, default: int = 0, low: int = 0, high: int = 2**63 - 1) -> int:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
            raise self.error(name, f"expected an integer, got {_kind(value)} {json.dumps(value)}")
        if not low <= int(value) <= high:
            raise self.error(name, f"must be between {low} and {high}, got {int(value)}")
        return int(value)

    def boolean(self, name: str) -> bool:
        value = self.raw(name)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self.error(name, f"expected true or false, got {_kind(value)}")
        return value

    def str_list(self, name: str) -> tuple[str, ...]:
        value = self.raw(name)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(name, "expected a list of strings")
        return tuple(value)

    def str_map(self, name: str, *aliases: str) -> Mapping[str, str]:
        value = self.raw(name, *aliases)
        if value is None:
            return EMPTY_MAP
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self.error(name, "expected an object of string values")
        return MappingProxyType(dict(value))

    def duration(self, name: str, *aliases: str) -> float:
        value = self.raw(name, *aliases)
        if value is None or value == "":
            return 0.0
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value) / 1e9  # Go encodes time.Duration as integer nanoseconds
        if not isinstance(value, str):
            raise self.error(name, f'expected a duration such as "10s", got {_kind(value)}')
        try:
            seconds = parse_duration(value)
        except DurationError as exc:
            raise self.error(name, str(exc)) from None
        if seconds < 0:
            raise self.error(name, f"must not be negative, got {value!r}")
        return seconds

    def obj(self, name: str) -> Fields | None:
        value = self.raw(name)
        return None if value is None else Fields(value, self.where(name))

    def objs(self, name: str) -> list[Fields]:
        value = self.raw(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(name, f"expected a list of objects, got {_kind(value)}")
        # py-consul sends ``Checks: [null]`` when no check is given; Consul skips nulls.
        return [Fields(item, f"{self.where(name)}[{i}]") for i, item in enumerate(value) if item is not None]


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


# === services ===


@dataclass(frozen=True, slots=True)
class ServiceRequest:
    service: Service
    checks: tuple[Check, ...]


def decode_agent_service(data: Any, node: str) -> ServiceRequest:
    """PUT /v1/agent/service/register body."""
    f = Fields(data, "")
    name = f.text("Name")
    if not name:
        raise bad_request("Missing service name: Name is required")
    service = _service_fields(f, node=node, name=name, service_id=f.text("ID") or name)
    check_fields = ([c] if (c := f.obj("Check")) is not None and not _empty(c) else []) + f.objs("Checks")
    checks = [
        decode_check(c, node=node, service=service, ordinal=(i + 1 if len(check_fields) > 1 else 0))
        for i, c in enumerate(check_fields)
    ]
    _unique_check_ids(checks)
    return ServiceRequest(service, tuple(checks))


def _service_fields(f: Fields, *, node: str, name: str, service_id: str) -> Service:
    weights = Weights()
    if (w := f.obj("Weights")) is not None:
        weights = Weights(
            passing=w.integer("Passing", default=1, low=1, high=2**31 - 1),
            warning=w.integer("Warning", default=1, low=0, high=2**31 - 1),
        )
    tagged: dict[str, TaggedAddress] = {}
    raw_tagged = f.raw("TaggedAddresses")
    if raw_tagged is not None:
        if not isinstance(raw_tagged, dict):
            raise f.error("TaggedAddresses", f"expected an object, got {_kind(raw_tagged)}")
        for key, value in raw_tagged.items():  # keys ("lan", "lan_ipv4", ...) are data: keep them verbatim
            entry = Fields(value, f"{f.where('TaggedAddresses')}.{key}")
            tagged[key] = TaggedAddress(entry.text("Address"), entry.integer("Port", high=65535))
    return Service(
        node=node,
        id=service_id,
        name=name,
        tags=f.str_list("Tags"),
        address=f.text("Address"),
        port=f.integer("Port", high=65535),
        meta=_meta(f, "Meta"),
        tagged_addresses=MappingProxyType(tagged) if tagged else EMPTY_MAP,
        weights=weights,
        enable_tag_override=f.boolean("EnableTagOverride"),
        kind=f.text("Kind"),
    )


def _meta(f: Fields, name: str, *aliases: str) -> Mapping[str, str]:
    meta = f.str_map(name, *aliases)
    if len(meta) > MAX_META_PAIRS:
        raise f.error(name, f"at most {MAX_META_PAIRS} key/value pairs are allowed, got {len(meta)}")
    for key, value in meta.items():
        if not _META_KEY.match(key):
            raise f.error(f"{name}[{key!r}]", "keys may only contain letters, digits, '-' and '_'")
        if len(key) > MAX_META_KEY:
            raise f.error(f"{name}[{key!r}]", f"key longer than {MAX_META_KEY} characters")
        if key.startswith("consul-") and name != "NodeMeta":
            raise f.error(f"{name}[{key!r}]", "the 'consul-' key prefix is reserved")
        if len(value) > MAX_META_VALUE:
            raise f.error(f"{name}[{key!r}]", f"value longer than {MAX_META_VALUE} characters")
    return meta


def _empty(f: Fields) -> bool:
    return not any(v not in (None, "", [], {}) for v in f._data.values())


# === checks ===


def decode_check(
    f: Fields,
    *,
    node: str,
    service: Service | None = None,
    ordinal: int = 0,
    require_name: bool = False,
) -> Check:
    """A check definition (agent service check, or agent/check/register when ``service`` is None)."""
    service_id = service.id if service else f.text("ServiceID")
    name = f.text("Name")
    if not name:
        if require_name:
            raise f.error("Name", "a check needs a Name")
        name = f"Service '{service.name}' check" if service else ""
    check_id = f.text("CheckID", "ID")
    if not check_id:
        if service is not None:
            check_id = f"service:{service.id}" + (f":{ordinal}" if ordinal else "")
        else:
            check_id = name
    status = f.text("Status") or CRITICAL
    if status not in CHECK_STATUSES:
        raise f.error("Status", f"must be one of passing, warning, critical; got {status!r}")
    return Check(
        node=node,
        check_id=check_id,
        name=name,
        status=status,
        notes=f.text("Notes"),
        output=f.text("Output"),
        service_id=service_id,
        service_name=service.name if service else "",
        definition=_definition(f),
        agent_check=True,
    )


def _definition(f: Fields) -> CheckDefinition:
    for unsupported, why in (
        ("Args", "script checks are disabled on this registry (as Consul's enable_script_checks=false)"),
        ("ScriptArgs", "script checks are disabled on this registry (as Consul's enable_script_checks=false)"),
        ("GRPC", "gRPC checks are not supported by this registry"),
        ("H2PING", "H2PING checks are not supported by this registry"),
        ("UDP", "UDP checks are not supported by this registry"),
        ("DockerContainerID", "Docker checks are not supported by this registry"),
        ("AliasService", "alias checks are not supported by this registry"),
        ("AliasNode", "alias checks are not supported by this registry"),
    ):
        if f.has(unsupported):
            raise f.error(unsupported, why)
    http, tcp = f.text("HTTP"), f.text("TCP")
    ttl = f.duration("TTL")
    kinds = [k for k, v in (("HTTP", http), ("TCP", tcp), ("TTL", ttl)) if v]
    if len(kinds) > 1:
        raise f.error(kinds[1], f"a check has one type; got both {kinds[0]} and {kinds[1]}")
    if not kinds:
        raise bad_request(f"Invalid {f.path or 'check'}: must provide TTL, or HTTP or TCP with an Interval")
    interval = f.duration("Interval")
    if http or tcp:
        if interval <= 0:
            raise f.error("Interval", f"required and must be > 0 for {kinds[0]} checks")
        interval = max(interval, MIN_CHECK_INTERVAL)
    if http:
        parts = urlsplit(http)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise f.error("HTTP", f"expected an http:// or https:// URL, got {http!r}")
    if tcp:
        host, sep, port = tcp.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise f.error("TCP", f"expected host:port, got {tcp!r}")
    deregister = f.duration("DeregisterCriticalServiceAfter")
    header: dict[str, tuple[str, ...]] = {}
    raw_header = f.raw("Header")
    if raw_header is not None:
        if not isinstance(raw_header, dict) or not all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in raw_header.values()
        ):
            raise f.error("Header", 'expected an object of string lists, e.g. {"X-Token": ["abc"]}')
        header = {k: tuple(v) for k, v in raw_header.items()}
    return CheckDefinition(
        http=http,
        method=f.text("Method").upper(),
        header=MappingProxyType(header) if header else EMPTY_MAP,
        body=f.text("Body"),
        tls_skip_verify=f.boolean("TLSSkipVerify"),
        tls_server_name=f.text("TLSServerName"),
        tcp=tcp,
        ttl=ttl,
        interval=interval,
        timeout=f.duration("Timeout") or (DEFAULT_CHECK_TIMEOUT if (http or tcp) else 0.0),
        deregister_critical_after=deregister,
        success_before_passing=f.integer("SuccessBeforePassing", high=2**31 - 1),
        failures_before_critical=f.integer("FailuresBeforeCritical", high=2**31 - 1),
    )


def _unique_check_ids(checks: list[Check]) -> None:
    seen: set[str] = set()
    for check in checks:
        if check.check_id in seen:
            raise bad_request(f"Invalid Checks: duplicate CheckID {check.check_id!r}")
        seen.add(check.check_id)


def decode_agent_check(data: Any, node: str) -> Check:
    """PUT /v1/agent/check/register body."""
    return decode_check(Fields(data, ""), node=node, require_name=True)


def decode_check_update(data: Any) -> tuple[str, str]:
    """PUT /v1/agent/check/update/:id body: Status and Output."""
    f = Fields(data, "")
    status = f.text("Status")
    if status not in CHECK_STATUSES:
        raise f.error("Status", f"must be one of passing, warning, critical; got {status!r}")
    return status, f.text("Output")


# === catalog register / deregister ===


@dataclass(frozen=True, slots=True)
class CatalogRegistration:
    node: Node
    service: Service | None
    checks: tuple[Check, ...]
    skip_node_update: bool


def decode_catalog_register(data: Any, datacenter: str) -> CatalogRegistration:
    f = Fields(data, "")
    name = f.text("Node")
    if not name:
        raise bad_request("Missing node name: Node is required")
    address = f.text("Address")
    if not address:
        raise bad_request("Missing node address: Address is required")
    dc = f.text("Datacenter")
    if dc and dc != datacenter:
        raise ApiError(500, f"No path to datacenter {dc!r}")
    node = Node(
        name=name,
        address=address,
        id=f.text("ID"),
        datacenter=datacenter,
        tagged_addresses=f.str_map("TaggedAddresses"),
        meta=_meta(f, "NodeMeta"),
    )
    service = None
    if (s := f.obj("Service")) is not None:
        service_name = s.text("Service", "Name")
        if not service_name:
            raise s.error("Service", "a service needs a name")
        service = _service_fields(s, node=name, name=service_name, service_id=s.text("ID") or service_name)
    check_fields = ([c] if (c := f.obj("Check")) is not None else []) + f.objs("Checks")
    checks = tuple(_catalog_check(c, node_name=name, service=service) for c in check_fields)
    _unique_check_ids(list(checks))
    return CatalogRegistration(node, service, checks, f.boolean("SkipNodeUpdate"))


def _catalog_check(f: Fields, *, node_name: str, service: Service | None) -> Check:
    """Catalog checks are recorded, not run: their Definition is informational."""
    check_node = f.text("Node") or node_name
    if check_node != node_name:
        raise f.error("Node", f"a check must be on the node being registered ({node_name!r})")
    name = f.text("Name")
    check_id = f.text("CheckID", "ID") or name
    if not check_id:
        raise f.error("CheckID", "a check needs a CheckID or a Name")
    status = f.text("Status") or CRITICAL
    if status not in CHECK_STATUSES:
        raise f.error("Status", f"must be one of passing, warning, critical; got {status!r}")
    service_id = f.text("ServiceID")
    definition = CheckDefinition()
    if (d := f.obj("Definition")) is not None:
        definition = CheckDefinition(
            http=d.text("HTTP"),
            tcp=d.text("TCP"),
            interval=d.duration("Interval"),
            timeout=d.duration("Timeout"),
            deregister_critical_after=d.duration("DeregisterCriticalServiceAfter"),
        )
    return Check(
        node=node_name,
        check_id=check_id,
        name=name or check_id,
        status=status,
        notes=f.text("Notes"),
        output=f.text("Output"),
        service_id=service_id,
        service_name=service.name if service and service.id == service_id else "",
        definition=definition,
    )


@dataclass(frozen=True, slots=True)
class CatalogDeregistration:
    node: str
    service_id: str
    check_id: str


def decode_catalog_deregister(data: Any, datacenter: str) -> CatalogDeregistration:
    f = Fields(data, "")
    node = f.text("Node")
    if not node:
        raise bad_request("Missing node name: Node is required")
    dc = f.text("Datacenter")
    if dc and dc != datacenter:
        raise ApiError(500, f"No path to datacenter {dc!r}")
    return CatalogDeregistration(node, f.text("ServiceID"), f.text("CheckID"))
