"""``SERVICE_CHECK_*`` attributes into one registry check, as Registrator's Consul adapter builds it.

The first kind present wins, in Registrator's order: ``check_http``, ``check_https``, ``check_cmd``,
``check_script``, ``check_ttl``, ``check_tcp``, ``check_grpc``. HTTP and TCP checks target the
registered address and port (never a UDP port: Registrator would build a check that can only
fail); ``check_interval`` defaults to 10s. Options: ``check_timeout``,
``check_http_method`` / ``check_https_method``, ``check_initial_status``, ``check_deregister_after``.

Script (``check_cmd``, ``check_script``) and gRPC checks are reported and skipped: the registry
runs HTTP, TCP and TTL checks only (as a Consul agent with script checks disabled), and a
registration carrying one would be refused whole. A bad value (``check_interval=abc``) is
reported and that option skipped, so the check and the service are still registered. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Final

from discovery.client_models import CheckRegistration
from discovery.durations import DurationError, parse_duration
from discovery.registrar.attributes import PortAttributes, Problem

DEFAULT_INTERVAL: Final = 10.0
KINDS: Final = ("check_http", "check_https", "check_cmd", "check_script", "check_ttl", "check_tcp", "check_grpc")
OPTIONS: Final = frozenset(
    {
        "check_interval",
        "check_timeout",
        "check_http_method",
        "check_https_method",
        "check_initial_status",
        "check_deregister_after",
        "check_grpc_use_tls",
        "check_tls_skip_verify",
    }
)
_UNSUPPORTED: Final = {
    "check_cmd": "script checks are not run by the mesh registry (as Consul with script checks disabled)",
    "check_script": "script checks are not run by the mesh registry (as Consul with script checks disabled)",
    "check_grpc": "gRPC checks are not supported by the mesh registry; use SERVICE_CHECK_TCP or SERVICE_CHECK_HTTP",
}
_STATUSES: Final = frozenset({"passing", "warning", "critical"})
_METHOD: Final = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True, slots=True)
class Target:
    """Where an HTTP/TCP check connects, and the IDs it is filed under."""

    address: str
    port: int
    service_id: str
    service_name: str
    proto: str = "tcp"


def unknown_check_keys(attrs: PortAttributes) -> list[Problem]:
    """``check_*`` keys that are neither a kind nor an option (e.g. a typo such as ``check_intervall``)."""
    return [
        Problem(attrs.source(key), "is not a known check attribute; ignored")
        for key in attrs.values
        if key.startswith("check_") and key not in OPTIONS and key not in KINDS
    ]


def build_check(attrs: PortAttributes, target: Target) -> tuple[CheckRegistration | None, list[Problem]]:
    """The service's check from its attributes (``None`` when it asks for none), plus problems found."""
    problems = unknown_check_keys(attrs)
    kind = next((k for k in KINDS if attrs.get(k)), None)
    if kind is None:
        return None, problems
    if kind in _UNSUPPORTED:
        problems.append(Problem(attrs.source(kind), _UNSUPPORTED[kind] + "; check skipped"))
        return None, problems
    value = attrs.get(kind)
    check = CheckRegistration(
        name=f"Service '{target.service_name}' check",
        check_id=f"service:{target.service_id}",
        status=_status(attrs, problems),
        deregister_critical_service_after=_duration(attrs, "check_deregister_after", problems),
    )
    host = f"[{target.address}]" if ":" in target.address else target.address
    if kind == "check_ttl":
        ttl = _duration(attrs, "check_ttl", problems)
        if ttl is None:
            return None, problems  # the problem says why; a TTL check without a TTL cannot exist
        return _with(check, ttl=ttl), problems
    if target.proto != "tcp":
        problems.append(
            Problem(
                attrs.source(kind),
                f"an HTTP or TCP check cannot probe a {target.proto} port; check skipped for this port "
                "(use SERVICE_<port>_CHECK_* on the TCP port)",
            )
        )
        return None, problems
    interval = _duration(attrs, "check_interval", problems) or DEFAULT_INTERVAL
    timeout = _duration(attrs, "check_timeout", problems)
    if kind == "check_tcp":
        return _with(check, tcp=f"{host}:{target.port}", interval=interval, timeout=timeout), problems
    if not value.startswith("/"):
        problems.append(Problem(attrs.source(kind), f"must be a path starting with '/', got {value!r}; check skipped"))
        return None, problems
    scheme = "https" if kind == "check_https" else "http"
    method_key = f"{kind}_method"
    method = attrs.get(method_key) or None
    if method is not None and not _METHOD.fullmatch(method):
        problems.append(Problem(attrs.source(method_key), f"{method!r} is not an HTTP method; using GET"))
        method = None
    url = f"{scheme}://{host}:{target.port}{value}"
    return _with(check, http=url, method=method, interval=interval, timeout=timeout), problems


def _with(check: CheckRegistration, **changes: object) -> CheckRegistration:
    return replace(check, **changes)  # type: ignore[arg-type]


def _status(attrs: PortAttributes, problems: list[Problem]) -> str | None:
    status = attrs.get("check_initial_status")
    if not status:
        return None
    if status not in _STATUSES:
        problems.append(
            Problem(attrs.source("check_initial_status"), f"{status!r} is not passing, warning or critical; ignored")
        )
        return None
    return status


def _duration(attrs: PortAttributes, key: str, problems: list[Problem]) -> float | None:
    """A positive Go duration, or ``None`` (unset, or bad: then a problem names the attribute)."""
    text = attrs.get(key)
    if not text:
        return None
    try:
        seconds = parse_duration(text)
    except DurationError as exc:
        problems.append(Problem(attrs.source(key), f"{exc}; ignored"))
        return None
    if seconds <= 0:
        problems.append(Problem(attrs.source(key), f"must be a positive duration, got {text!r}; ignored"))
        return None
    return seconds


__all__ = ["DEFAULT_INTERVAL", "KINDS", "OPTIONS", "Target", "build_check", "unknown_check_keys"]
