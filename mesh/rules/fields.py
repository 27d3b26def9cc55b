"""Field readers for Istio resources (pure): the shapes Istio's API uses, each with a precise error.

Built on ``mesh.model.reader.Fields`` (the config model's reader: typed ``take``, unknown keys
rejected by ``finish`` with the key named), so rule errors read like snapshot errors:
``spec.http[0].route[1].weight: must be an integer in 0..100, got 120``.

Istio-specific pieces: camelCase keys, Go-syntax durations given as strings (``"1.5s"``,
``"250ms"``), percentages (a double 0-100), ``StringMatch`` (exactly one of exact, prefix,
regex), Kubernetes label maps, host names with an optional leading ``*`` wildcard.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar, cast

from discovery.durations import DurationError, parse_duration
from mesh.model.reader import MAX_REGEX_LENGTH, REQUIRED, ConfigError, Fields, list_items, show
from mesh.model.selectors import Selector, SelectorError, key_problem, selector_from_object, value_problem

T = TypeVar("T")

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_HOST_LABEL = re.compile(r"[a-z0-9_]([-a-z0-9_]{0,61}[a-z0-9_])?")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE_CHARS = re.compile(r"[\r\n\x00]")


@dataclass(frozen=True, slots=True)
class StringMatch:
    """Istio's ``StringMatch``: exactly one of ``exact``, ``prefix``, ``regex`` (a full match, RE2 style).

    All ``None`` stands for Istio's empty match ``{}``, which in header conditions means
    "the header is present".
    """

    exact: str | None = None
    prefix: str | None = None
    regex: re.Pattern[str] | None = None

    @property
    def kind(self) -> str:
        if self.exact is not None:
            return "exact"
        if self.prefix is not None:
            return "prefix"
        if self.regex is not None:
            return "regex"
        return "present"


class Reader(Fields):
    """``Fields`` plus the Istio shapes; the path is always the full field path from the resource root."""

    def child(self, key: str) -> Reader:
        """The mapping under ``key`` (required) as a reader of its own."""
        return Reader(self.take(key, REQUIRED), self.at(key))

    def optional_child(self, key: str) -> Reader | None:
        value = self.take(key, None)
        return None if value is None else Reader(value, self.at(key))

    def text(self, key: str, *, required: bool = False, allow_empty: bool = False) -> str | None:
        value = self.take(key, REQUIRED if required else None)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ConfigError(self.at(key), f"must be a string, got {show(value)}")
        if not value and not allow_empty:
            raise ConfigError(self.at(key), "must not be empty")
        return value

    def boolean(self, key: str) -> bool | None:
        value = self.take(key, None)
        if value is not None and not isinstance(value, bool):
            raise ConfigError(self.at(key), f"must be true or false, got {show(value)}")
        return value

    def whole(self, key: str, low: int, high: int, *, required: bool = False) -> int | None:
        value = self.take(key, REQUIRED if required else None)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(self.at(key), f"must be an integer in {low}..{high}, got {show(value)}")
        return value

    def enum(self, key: str, options: tuple[str, ...], *, required: bool = False) -> str | None:
        value = self.take(key, REQUIRED if required else None)
        if value is None:
            return None
        if value not in options:
            raise ConfigError(self.at(key), f"must be one of {', '.join(options)}, got {show(value)}")
        return cast(str, value)

    def duration_s(self, key: str, *, minimum: float = 0.001, allow_zero: bool = False) -> float | None:
        """A protobuf Duration as Istio reads it: a string in Go syntax; at least 1 ms, in whole ms."""
        value = self.take(key, None)
        if value is None:
            return None
        return parse_istio_duration(value, self.at(key), minimum=minimum, allow_zero=allow_zero)

    def percent(self, key: str) -> float | None:
        """Istio's ``Percent``: ``{value: 0..100}`` (a double)."""
        obj = self.optional_child(key)
        if obj is None:
            return None
        value = obj.take("value", 0.0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ConfigError(obj.at("value"), f"must be a number in 0..100, got {show(value)}")
        if not 0.0 <= float(value) <= 100.0:
            raise ConfigError(obj.at("value"), f"must be a percentage in 0..100, got {show(value)}")
        obj.finish()
        return float(value)

    def strings(self, key: str, *, required: bool = False, non_empty: bool = False) -> tuple[str, ...]:
        value = self.take(key, REQUIRED if required else None)
        if value is None:
            return ()
        items = list_items(value, self.at(key), _plain_string)
        if non_empty and not items:
            raise ConfigError(self.at(key), "needs at least one entry")
        return tuple(items)

    def export_to(self) -> tuple[str, ...]:
        """Istio's ``exportTo``: ``*`` (every namespace), ``.`` (this one), ``~`` (none) or namespace names."""
        entries = self.strings("exportTo")
        for i, entry in enumerate(entries):
            if entry not in ("*", ".", "~"):
                check_dns_label(entry, self.at(f"exportTo[{i}]"), "namespace")
        if "~" in entries and len(entries) > 1:
            raise ConfigError(self.at("exportTo"), "'~' (visible nowhere) cannot be combined with other entries")
        return entries

    def string_map(self, key: str) -> tuple[tuple[str, str], ...]:
        """A map of strings (header values and the like), as sorted pairs."""
        value = self.take(key, None)
        if value is None:
            return ()
        return tuple(sorted(_string_map(value, self.at(key)).items()))

    def labels(self, key: str) -> tuple[tuple[str, str], ...]:
        """A Kubernetes label map (``version: v1``) with label-syntax checks, as sorted pairs."""
        value = self.take(key, None)
        if value is None:
            return ()
        return parse_labels(value, self.at(key))

    def label_selector(self, key: str) -> Selector | None:
        """A Kubernetes ``LabelSelector`` (``matchLabels`` and ``matchExpressions``, ANDed); None when absent.

        Parsed by the shared ``mesh.model.selectors``, so ``In``/``NotIn``/``Exists``/``DoesNotExist``
        mean what they mean in Kubernetes; errors name the field (``spec.selector.matchExpressions[0].operator``).
        """
        value = self.take(key, None)
        if value is None:
            return None
        try:
            return selector_from_object(value, self.at(key))
        except SelectorError as exc:
            raise ConfigError(exc.path or self.at(key), exc.reason) from None

    def string_match(self, key: str) -> StringMatch | None:
        value = self.take(key, None)
        if value is None:
            return None
        return parse_string_match(value, self.at(key))

    def items(self, key: str, parse: Callable[[Reader], T], *, required: bool = False) -> tuple[T, ...]:
        """A list of mappings, each parsed with its own reader (and ``finish``ed afterwards)."""
        value = self.take(key, REQUIRED if required else None)
        if value is None:
            return ()
        return tuple(list_items(value, self.at(key), lambda data, path: _finished(parse, Reader(data, path))))

    def mapping_of(self, key: str, parse: Callable[[object, str], T]) -> tuple[tuple[str, T], ...]:
        """A map from string keys to values parsed by ``parse(value, path)``, in the given order."""
        value = self.take(key, None)
        if value is None:
            return ()
        path = self.at(key)
        if not isinstance(value, Mapping):
            raise ConfigError(path, f"must be a mapping, got {show(value)}")
        out: list[tuple[str, T]] = []
        for name, item in value.items():
            if not isinstance(name, str) or not name:
                raise ConfigError(path, f"keys must be non-empty strings, got {show(name)}")
            out.append((name, parse(item, f"{path}.{name}")))
        return tuple(out)


def _finished(parse: Callable[[Reader], T], reader: Reader) -> T:
    result = parse(reader)
    reader.finish()
    return result


def _plain_string(data: object, path: str) -> str:
    if not isinstance(data, str) or not data:
        raise ConfigError(path, f"must be a non-empty string, got {show(data)}")
    return data


def _string_map(data: object, path: str) -> dict[str, str]:
    if not isinstance(data, Mapping):
        raise ConfigError(path, f"must be a mapping of strings, got {show(data)}")
    out: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(path, f"keys must be non-empty strings, got {show(key)}")
        if not isinstance(value, str):
            raise ConfigError(f"{path}.{key}", f"must be a string, got {show(value)}")
        out[key] = value
    return out


def parse_istio_duration(value: object, path: str, *, minimum: float = 0.001, allow_zero: bool = False) -> float:
    """Seconds from a Go-syntax duration string; Istio's rules: >= 1 ms and a whole number of ms."""
    if not isinstance(value, str):
        raise ConfigError(path, f'must be a duration string such as "5s" or "250ms", got {show(value)}')
    try:
        seconds = parse_duration(value)
    except DurationError as exc:
        raise ConfigError(path, str(exc)) from exc
    if seconds == 0 and allow_zero:
        return 0.0
    if not math.isfinite(seconds) or seconds < minimum:
        raise ConfigError(path, f"must be at least {_ms(minimum)}, got {value!r}")
    if abs(seconds * 1000 - round(seconds * 1000)) > 1e-6:
        raise ConfigError(path, f"only millisecond precision is supported, got {value!r}")
    return seconds


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


def parse_string_match(data: object, path: str) -> StringMatch:
    obj = Reader(data, path)
    exact = obj.text("exact", allow_empty=True)
    prefix = obj.text("prefix", allow_empty=True)
    regex = obj.text("regex", allow_empty=True)
    obj.finish()
    given = [key for key, value in (("exact", exact), ("prefix", prefix), ("regex", regex)) if value is not None]
    if len(given) > 1:
        raise ConfigError(f"{path}.{given[1]}", f"give only one of exact, prefix, regex (also got {given[0]})")
    return StringMatch(exact, prefix, None if regex is None else compile_regex(regex, f"{path}.regex"))


def compile_regex(pattern: str, path: str) -> re.Pattern[str]:
    if len(pattern) > MAX_REGEX_LENGTH:
        raise ConfigError(path, f"regex is longer than {MAX_REGEX_LENGTH} characters")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(path, f"invalid regex {pattern!r}: {exc}") from exc


def parse_labels(data: object, path: str) -> tuple[tuple[str, str], ...]:
    """Kubernetes label syntax: ``[prefix/]name`` (name ≤ 63 chars), values ≤ 63 chars or empty.

    Checked by the shared ``mesh.model.selectors`` rules, so labels and selectors agree on what is valid.
    """
    pairs = _string_map(data, path)
    for key, value in pairs.items():
        check_label_key(key, f"{path}.{key}")
        problem = value_problem(value)
        if problem:
            raise ConfigError(f"{path}.{key}", f"invalid {problem}")
    return tuple(sorted(pairs.items()))


def check_label_key(key: str, path: str) -> None:
    problem = key_problem(key)
    if problem:
        raise ConfigError(path, f"invalid {problem}")


def check_dns_label(value: str, path: str, what: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.fullmatch(value):
        raise ConfigError(
            path,
            f"invalid {what} {value!r} (lower-case letters, digits and '-', at most 63, alphanumeric at both ends)",
        )
    return value


def check_resource_name(value: str, path: str) -> str:
    """A DNS-1123 subdomain, as Kubernetes requires of object names."""
    if len(value) > 253 or not all(_DNS_LABEL.fullmatch(part) for part in value.split(".")):
        raise ConfigError(
            path, f"invalid name {value!r} (lower-case letters, digits, '-' and '.', at most 253, like a DNS name)"
        )
    return value


def parse_host(data: object, path: str, *, wildcard: bool) -> str:
    """A host as Istio writes it: a DNS name (short or fully qualified), lower-cased; with
    ``wildcard`` a leading ``*`` label (``*.example.com``) or ``*`` alone is allowed."""
    if not isinstance(data, str) or not data:
        raise ConfigError(path, f"must be a non-empty host name, got {show(data)}")
    host = data.lower().rstrip(".")
    if host == "*" or host.startswith("*."):
        if not wildcard:
            raise ConfigError(path, f"wildcard host {data!r} is not allowed here")
        rest = host[2:]
    elif "*" in host:
        raise ConfigError(path, f"invalid host {data!r}: a wildcard must be the whole first label ('*.example.com')")
    else:
        rest = host
    if rest and (len(rest) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in rest.split("."))):
        raise ConfigError(
            path, f"invalid host {data!r} (a DNS name such as reviews or reviews.default.svc.cluster.local)"
        )
    return host


def parse_header_name(data: object, path: str) -> str:
    if not isinstance(data, str) or not _HEADER_NAME.fullmatch(data):
        raise ConfigError(path, f"invalid header name {show(data)} (an RFC 9110 token such as x-request-id)")
    return data.lower()


def check_token(value: str, path: str, what: str) -> str:
    """An RFC 9110 token (header and cookie names), case kept."""
    if not _HEADER_NAME.fullmatch(value):
        raise ConfigError(path, f"invalid {what} {value!r} (an RFC 9110 token: letters, digits and !#$%&'*+-.^_`|~)")
    return value


def check_header_value(value: str, path: str) -> str:
    if _BAD_VALUE_CHARS.search(value):
        raise ConfigError(path, "must not contain CR, LF or NUL")
    return value


def parse_ip_or_cidr(data: object, path: str) -> str:
    if not isinstance(data, str) or not data:
        raise ConfigError(path, f"must be an IP address or CIDR block, got {show(data)}")
    try:
        if "/" in data:
            ipaddress.ip_network(data, strict=False)
        else:
            ipaddress.ip_address(data)
    except ValueError as exc:
        raise ConfigError(path, f"invalid IP address or CIDR block {data!r}: {exc}") from exc
    return data


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_named_spec(data: object, path: str, parse: Callable[[Reader], T]) -> tuple[str, str, T, Mapping[str, Any]]:
    """A snapshot's ``{namespace, name, spec}`` entry of a resource (its spec parsed by ``parse``):
    (namespace, name, spec, the spec's source data, kept for the round trip)."""
    obj = Fields(data, path)
    namespace = obj.string("namespace", REQUIRED)
    name = obj.string("name", REQUIRED)
    spec_data = obj.take("spec", REQUIRED)
    obj.finish()
    reader = Reader(spec_data, obj.at("spec"))
    spec = parse(reader)
    reader.finish()
    return namespace, name, spec, MappingProxyType(dict(reader.data))


def named_spec_to_dict(namespace: str, name: str, data: Mapping[str, Any]) -> dict[str, Any]:
    return {"namespace": namespace, "name": name, "spec": dict(data)}


def not_supported(path: str, what: str) -> ConfigError:
    """The one wording for valid Istio that this mesh cannot serve: rejected, never silently ignored."""
    return ConfigError(path, f"{what} is valid Istio but not supported by this mesh's sidecar yet")


__all__ = [
    "Reader",
    "StringMatch",
    "check_dns_label",
    "check_header_value",
    "check_label_key",
    "check_resource_name",
    "check_token",
    "compile_regex",
    "is_ip",
    "not_supported",
    "parse_header_name",
    "parse_host",
    "parse_ip_or_cidr",
    "parse_istio_duration",
    "parse_labels",
    "parse_string_match",
]
