"""``SERVICE_*`` environment variables and labels, read the way Registrator reads them.

Rules (Registrator ``bridge/util.go`` serviceMetaData):
- Sources are the container's env, then its labels (sorted by key here, for determinism), so a
  label beats an env var with the same key. Only keys starting with ``SERVICE_`` (upper case) count.
- The prefix is stripped and the rest lower-cased: ``SERVICE_REGION`` -> ``region``.
- ``SERVICE_<port>_<key>`` applies only to that exposed port and beats the generic ``SERVICE_<key>``
  whatever the order.

Registrator would also turn malformed keys into Meta: ``SERVICE_80x_NAME`` becomes ``80x_name``,
``SERVICE_80`` becomes ``80``. Those are always typos, so we report them as problems (the caller
logs a warning naming the container and the attribute) and skip them. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

PREFIX: Final = "SERVICE_"
RESERVED: Final = frozenset({"name", "tags", "id", "ignore"})
_DIGITS: Final = re.compile(r"[0-9]+")
_PORTISH: Final = re.compile(r"[+-]?[0-9].*")  # starts like a number: meant as a port


@dataclass(frozen=True, slots=True)
class Problem:
    """A bad attribute, skipped: ``attribute`` is what the user wrote (``SERVICE_80x_NAME``)."""

    attribute: str
    message: str


@dataclass(frozen=True, slots=True)
class Attribute:
    source: str  # as written, e.g. "SERVICE_80_NAME"
    key: str  # lower-cased, without prefix and port: "name"
    value: str
    port: int | None = None  # set for SERVICE_<port>_<key>


@dataclass(frozen=True, slots=True)
class PortAttributes:
    """The attributes that apply to one exposed port, after precedence."""

    values: Mapping[str, str] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)  # key -> attribute as written
    from_port: frozenset[str] = frozenset()  # keys set by SERVICE_<port>_<key>

    def get(self, key: str) -> str:
        """The value, "" when unset (Registrator treats empty as unset)."""
        return self.values.get(key, "")

    def source(self, key: str) -> str:
        return self.sources.get(key, PREFIX + key.upper())


def read_attributes(env: Iterable[str], labels: Mapping[str, str]) -> tuple[tuple[Attribute, ...], tuple[Problem, ...]]:
    """Every ``SERVICE_*`` attribute of a container in precedence order, and the malformed ones."""
    pairs: list[tuple[str, str]] = []
    for entry in env:
        name, sep, value = entry.partition("=")
        if sep:
            pairs.append((name, value))
    pairs.extend(sorted(labels.items()))
    attributes: list[Attribute] = []
    problems: list[Problem] = []
    for name, value in pairs:
        if not name.startswith(PREFIX):
            continue
        parsed = _parse_key(name, value)
        if isinstance(parsed, Problem):
            problems.append(parsed)
        else:
            attributes.append(parsed)
    return tuple(attributes), tuple(problems)


def attributes_for_port(attributes: Iterable[Attribute], port: int) -> PortAttributes:
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    from_port: set[str] = set()
    for attr in attributes:
        if attr.port is None:
            if attr.key in from_port:
                continue
        elif attr.port != port:
            continue
        else:
            from_port.add(attr.key)
        values[attr.key] = attr.value
        sources[attr.key] = attr.source
    return PortAttributes(values, sources, frozenset(from_port))


def _parse_key(name: str, value: str) -> Attribute | Problem:
    key = name[len(PREFIX) :].lower()
    if not key:
        return Problem(name, "names no attribute")
    first, sep, rest = key.partition("_")
    if _DIGITS.fullmatch(first):
        port = int(first)
        if not rest:
            return Problem(name, f"names no attribute after port {first} (e.g. SERVICE_{first}_NAME)")
        if not 0 < port < 65536:
            return Problem(name, f"port {first} is out of range 1-65535")
        return Attribute(name, rest, value, port)
    if sep and rest and _PORTISH.fullmatch(first):
        written = name[len(PREFIX) :].split("_", 1)[0]
        return Problem(name, f"port {written!r} is not a number (expected SERVICE_<port>_{rest.upper()})")
    return Attribute(name, key, value)


__all__ = ["PREFIX", "RESERVED", "Attribute", "PortAttributes", "Problem", "attributes_for_port", "read_attributes"]
