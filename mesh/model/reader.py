"""Reading decoded config data field by field, with errors that name the field (pure).

``ConfigError(path, message)`` is the one error type of the config model. ``Fields`` wraps one
mapping: each field is taken by name with its type check, and ``finish()`` rejects keys nobody
took, naming them. ``load_text`` decodes YAML or JSON, rejecting duplicate keys.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, cast

from discovery.durations import DurationError, parse_duration

T = TypeVar("T")
Format = Literal["yaml", "json"]

MAX_REGEX_LENGTH = 4096
REQUIRED: Any = object()
"""Pass as a field's default to make it required."""
_NAME = re.compile(r"[^\s\x00-\x1f\x7f]+")


class ConfigError(ValueError):
    """Invalid configuration. ``path`` is the field (``clusters[2].lb.kind``), empty for the whole text."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def load_text(raw: bytes, fmt: Format | None = None) -> object:
    """Decode YAML (one document) or JSON, rejecting duplicate keys; errors say line and column."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"config is not UTF-8 text: {exc}") from exc
    if fmt is None:
        fmt = "json" if text.lstrip().startswith("{") else "yaml"
    if fmt == "json":
        try:
            return json.loads(text, object_pairs_hook=_json_object)
        except json.JSONDecodeError as exc:
            raise ConfigError("", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    from mesh.model.yaml_text import load_yaml  # PyYAML only when YAML comes (a sidecar fed JSON skips it)

    return load_yaml(text)


def content_version(raw: bytes) -> str:
    """A version that changes exactly when the content does."""
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:16]


class Fields:
    """One mapping being read: fields are taken by name, and ``finish`` rejects what is left."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(path, f"must be a mapping (key: value), got {show(data)}")
        for key in data:
            if not isinstance(key, str):
                raise ConfigError(path, f"keys must be strings, got {show(key)}")
        self.data = cast(Mapping[str, object], data)
        self.path = path
        self.taken: list[str] = []

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def take(self, key: str, default: object) -> Any:
        """The raw value (``default`` when absent; ``REQUIRED`` as default makes the key required)."""
        self.taken.append(key)
        if key in self.data:
            return self.data[key]
        if default is REQUIRED:
            raise ConfigError(self.at(key), "is required")
        return default

    def finish(self) -> None:
        for key in self.data:
            if key not in self.taken:
                raise ConfigError(self.at(key), f"unknown key {key!r} (expected one of {', '.join(self.taken)})")

    def name(self) -> str:
        value = self.take("name", REQUIRED)
        if not isinstance(value, str) or not _NAME.fullmatch(value):
            raise ConfigError(self.at("name"), f"must be a non-empty name without spaces, got {show(value)}")
        return value

    def string(self, key: str, default: object) -> str:
        value = self.take(key, default)
        if not isinstance(value, str):
            raise ConfigError(self.at(key), f"must be a string, got {show(value)}")
        return value

    def optional_string(self, key: str) -> str | None:
        value = self.take(key, None)
        if value is not None and not isinstance(value, str):
            raise ConfigError(self.at(key), f"must be a string, got {show(value)}")
        return value

    def optional_regex(self, key: str) -> re.Pattern[str] | None:
        pattern = self.optional_string(key)
        if pattern is None:
            return None
        if len(pattern) > MAX_REGEX_LENGTH:
            raise ConfigError(self.at(key), f"regex is longer than {MAX_REGEX_LENGTH} characters")
        try:
            return re.compile(pattern)
        except re.error as exc:
            raise ConfigError(self.at(key), f"invalid regex {pattern!r}: {exc}") from exc

    def flag(self, key: str, default: bool) -> bool:
        value = self.take(key, default)
        if not isinstance(value, bool):
            raise ConfigError(self.at(key), f"must be true or false, got {show(value)}")
        return value

    def optional_flag(self, key: str) -> bool | None:
        value = self.take(key, None)
        if value is not None and not isinstance(value, bool):
            raise ConfigError(self.at(key), f"must be true or false, got {show(value)}")
        return value

    def integer(self, key: str, default: object, low: int, high: int) -> int:
        value = self.take(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(self.at(key), f"must be an integer in {low}..{high}, got {show(value)}")
        return value

    def choice(self, key: str, options: tuple[str, ...], default: object = REQUIRED) -> str:
        value = self.take(key, default)
        if value not in options:
            raise ConfigError(self.at(key), f"must be one of {', '.join(options)}, got {show(value)}")
        return cast(str, value)

    def duration(self, key: str, default: float, *, allow_none: bool = False) -> float:
        """Seconds from ``"5s"``/``"250ms"``/a number; ``null`` → 0 when ``allow_none`` (no limit)."""
        value = self.take(key, default)
        if value is None and allow_none:
            return 0.0
        return parse_seconds(value, self.at(key))

    def nested(self, key: str, parse: Callable[[object, str], T], default: T) -> T:
        value = self.take(key, REQUIRED if default is REQUIRED else None)
        return default if value is None else parse(value, self.at(key))

    def list_of(self, key: str, parse: Callable[[object, str], T], *, required: bool = False) -> list[T]:
        value = self.take(key, REQUIRED if required else None)
        return [] if value is None else list_items(value, self.at(key), parse)


def parse_seconds(value: object, path: str) -> float:
    """A duration field: Go syntax (``"1m30s"``, ``"250ms"``) or a number of seconds; finite and >= 0."""
    if isinstance(value, bool):
        raise ConfigError(path, f'must be a duration such as "5s" or "250ms", got {show(value)}')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except DurationError as exc:
            raise ConfigError(path, str(exc)) from exc
    else:
        raise ConfigError(path, f'must be a duration such as "5s" or "250ms", got {show(value)}')
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(path, f"must be a finite duration >= 0, got {show(value)}")
    return seconds


def list_items(value: object, path: str, parse: Callable[[object, str], T]) -> list[T]:
    if not isinstance(value, list | tuple):
        raise ConfigError(path, f"must be a list, got {show(value)}")
    return [parse(item, f"{path}[{i}]") for i, item in enumerate(value)]


def show(value: object) -> str:
    if value is REQUIRED:
        return "nothing"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return repr(value)
    return f"a {type(value).__name__}"


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ConfigError("", f"invalid JSON: duplicate key {key!r}")
        out[key] = value
    return out


def located(exc: Exception, path: str) -> ConfigError:
    """Turn ``lb``'s ``"lb.kind: message"`` errors into a ``ConfigError`` with that path."""
    text = str(exc)
    if text.startswith(path):
        field_path, sep, message = text.partition(": ")
        if sep:
            return ConfigError(field_path, message)
    return ConfigError(path, text)


__all__ = [
    "MAX_REGEX_LENGTH",
    "REQUIRED",
    "ConfigError",
    "Fields",
    "Format",
    "content_version",
    "list_items",
    "load_text",
    "located",
    "parse_seconds",
    "show",
]
