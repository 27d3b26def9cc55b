"""Query-string parsing with Consul's rules (pure: takes a mapping, returns values)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from multidict import MultiMapping

from discovery.api.errors import ApiError, bad_request
from discovery.durations import DurationError, parse_duration

DEFAULT_WAIT: Final = 300.0
MAX_WAIT: Final = 600.0
_TRUE: Final = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE: Final = {"0", "f", "F", "FALSE", "false", "False"}
MAX_UINT64: Final = 2**64 - 1


@dataclass(frozen=True, slots=True)
class BlockingParams:
    index: int  # 0 means "answer now"
    wait: float  # seconds, jitter included


def parse_uint(value: str, what: str) -> int:
    try:
        number = int(value, 10)
    except ValueError:
        raise bad_request(f"Invalid {what}: {value!r} is not an unsigned integer") from None
    if not 0 <= number <= MAX_UINT64:
        raise bad_request(f"Invalid {what}: {value!r} is out of range 0..{MAX_UINT64}")
    return number


def parse_blocking(query: Mapping[str, str], rand: float | None = None) -> BlockingParams:
    """``?index=N&wait=D``: wait defaults to 5m, is capped at 10m, plus up to wait/16 jitter."""
    index = parse_uint(query["index"], "index") if query.get("index") else 0
    wait = DEFAULT_WAIT
    if "wait" in query:
        try:
            wait = parse_duration(query["wait"])
        except DurationError:
            raise bad_request(f"Invalid wait time {query['wait']!r}") from None
        if wait < 0:
            raise bad_request(f"Invalid wait time {query['wait']!r}: must not be negative")
    wait = min(wait, MAX_WAIT)
    jitter = (random.random() if rand is None else rand) * wait / 16
    return BlockingParams(index=index, wait=wait + jitter)


def parse_bool_param(query: Mapping[str, str], name: str) -> bool:
    """Go ParseBool semantics; present with an empty value means true."""
    if name not in query:
        return False
    value = query[name]
    if value == "" or value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise bad_request(f"Invalid value for ?{name}: {value!r} (use true or false)")


def flag(query: Mapping[str, str], name: str) -> bool:
    """Presence-only flags (recurse, keys, raw, stale, ...): any value, even empty, means set."""
    return name in query


def consistency(query: Mapping[str, str]) -> str:
    stale, consistent = flag(query, "stale"), flag(query, "consistent")
    if stale and consistent:
        raise bad_request("Cannot specify ?stale with ?consistent, conflicting semantics.")
    if stale:
        return "stale"
    return "consistent" if consistent else "leader"


def tags(query: MultiMapping[str]) -> tuple[str, ...]:
    return tuple(query.getall("tag", ()))


def node_meta(query: MultiMapping[str]) -> dict[str, str]:
    """``?node-meta=key:value`` (repeatable, all must match)."""
    wanted: dict[str, str] = {}
    for item in query.getall("node-meta", ()):
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise bad_request(f"Invalid node-meta filter {item!r}: expected key:value")
        wanted[key] = value
    return wanted


def reject_unsupported(query: Mapping[str, str], datacenter: str) -> None:
    """Refuse parameters we would otherwise silently ignore and so answer wrongly."""
    if query.get("filter"):
        raise bad_request("?filter expressions are not supported by this registry; use tag/node-meta filters")
    dc = query.get("dc")
    if dc and dc != datacenter:
        raise ApiError(500, f"No path to datacenter {dc!r}")
