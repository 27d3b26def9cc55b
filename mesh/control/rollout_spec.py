"""What a rollout is asked to do: ``RolloutSpec``, parsed and validated from the API's JSON (pure).

A **canary** shifts the VirtualService's weight for ``service`` from the ``stable`` subset to
``canary`` in ``steps`` (percentages, increasing, ending at 100), holding each step for
``interval`` while the canary's own traffic is analysed. A **blue-green** is the same with one
step, 100: once the new subset has passing instances, all traffic switches, is analysed for one
interval, and is switched back on a breach.

Thresholds: ``max_error_rate`` is a fraction (0.01 is 1 %) of 5xx answers; ``max_p99_ms`` the
99th-percentile latency in milliseconds (None: not checked). ``min_requests`` is the fewest canary
requests a step decides on: with fewer the step's window extends by another interval (up to
``max_extensions`` times, then the rollout rolls back: no promotion without evidence).
Errors are ``ConfigError`` naming the JSON field.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from discovery.durations import DurationError, format_duration, parse_duration
from mesh.model.reader import ConfigError, show
from mesh.rules.fields import check_dns_label, check_resource_name
from mesh.rules.resource import DEFAULT_NAMESPACE

Strategy = Literal["canary", "bluegreen"]
STRATEGIES: tuple[Strategy, ...] = ("canary", "bluegreen")
DEFAULT_STEPS = (10, 25, 50, 100)
DEFAULT_INTERVAL = 30.0
DEFAULT_MAX_ERROR_RATE = 0.01
DEFAULT_MIN_REQUESTS = 20
DEFAULT_MAX_EXTENSIONS = 10
MIN_INTERVAL = 0.2  # shorter windows see too few scrapes to mean anything

_FIELDS = frozenset(
    {
        "name",
        "namespace",
        "service",
        "virtual_service",
        "strategy",
        "stable",
        "canary",
        "steps",
        "interval",
        "max_error_rate",
        "max_p99",
        "max_p99_ms",
        "min_requests",
        "max_extensions",
    }
)


@dataclass(frozen=True, slots=True)
class RolloutSpec:
    name: str
    namespace: str
    service: str  # the destination host's service (short name)
    virtual_service: str  # the VirtualService whose weights move
    strategy: Strategy
    stable: str  # subset serving now ("" at creation: taken from the VirtualService)
    canary: str  # subset rolled out
    steps: tuple[int, ...]
    interval: float  # seconds per analysis window
    max_error_rate: float  # fraction 0..1
    max_p99_ms: float | None
    min_requests: int
    max_extensions: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "service": self.service,
            "virtual_service": self.virtual_service,
            "strategy": self.strategy,
            "stable": self.stable,
            "canary": self.canary,
            "steps": list(self.steps),
            "interval": format_duration(self.interval),
            "max_error_rate": self.max_error_rate,
            "max_p99_ms": self.max_p99_ms,
            "min_requests": self.min_requests,
            "max_extensions": self.max_extensions,
        }

    def with_stable(self, stable: str) -> RolloutSpec:
        return replace(self, stable=stable)


def parse_rollout_spec(data: object) -> RolloutSpec:
    """Validate the body of ``POST /v1/mesh/rollouts`` (also the stored form, ``to_json``)."""
    if not isinstance(data, dict):
        raise ConfigError("", f"a rollout must be a JSON object, got {show(data)}")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ConfigError(unknown[0], f"unknown field (known: {', '.join(sorted(_FIELDS))})")
    service = _text(data, "service", required=True)
    check_dns_label(service, "service", "service name")
    name = _text(data, "name") or service
    check_dns_label(name, "name", "rollout name")
    namespace = _text(data, "namespace") or DEFAULT_NAMESPACE
    check_dns_label(namespace, "namespace", "namespace")
    virtual_service = _text(data, "virtual_service") or service
    check_resource_name(virtual_service, "virtual_service")
    strategy = _text(data, "strategy") or "canary"
    if strategy not in STRATEGIES:
        raise ConfigError("strategy", f"must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    canary = _text(data, "canary", required=True)
    check_dns_label(canary, "canary", "subset name")
    stable = _text(data, "stable")
    if stable:
        check_dns_label(stable, "stable", "subset name")
        if stable == canary:
            raise ConfigError("stable", f"the stable subset must differ from the canary, both are {canary!r}")
    steps = _steps(data.get("steps"), strategy)
    interval = _duration(data.get("interval", DEFAULT_INTERVAL), "interval")
    if interval < MIN_INTERVAL:
        raise ConfigError("interval", f"must be at least {MIN_INTERVAL}s, got {format_duration(interval)}")
    max_error_rate = _number(data.get("max_error_rate", DEFAULT_MAX_ERROR_RATE), "max_error_rate")
    if not 0.0 <= max_error_rate <= 1.0:
        raise ConfigError("max_error_rate", f"must be a fraction between 0 and 1 (0.01 is 1 %), got {max_error_rate}")
    max_p99_ms = _p99(data)
    min_requests = _count(data.get("min_requests", DEFAULT_MIN_REQUESTS), "min_requests", 1)
    max_extensions = _count(data.get("max_extensions", DEFAULT_MAX_EXTENSIONS), "max_extensions", 0)
    return RolloutSpec(
        name,
        namespace,
        service,
        virtual_service,
        strategy,  # checked against STRATEGIES above
        stable,
        canary,
        steps,
        interval,
        max_error_rate,
        max_p99_ms,
        min_requests,
        max_extensions,
    )


def _text(data: dict[str, Any], field: str, *, required: bool = False) -> str:
    value = data.get(field)
    if value is None or value == "":
        if required:
            raise ConfigError(field, "is required")
        return ""
    if not isinstance(value, str):
        raise ConfigError(field, f"must be a string, got {show(value)}")
    return value


def _steps(value: object, strategy: str) -> tuple[int, ...]:
    if value is None:
        return (100,) if strategy == "bluegreen" else DEFAULT_STEPS
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not value:
        raise ConfigError("steps", f"must be a non-empty list of percentages ending at 100, got {show(value)}")
    steps: list[int] = []
    for i, item in enumerate(value):
        try:
            step = int(item) if isinstance(item, str | int) and not isinstance(item, bool) else None
        except ValueError:
            step = None
        if step is None or not 0 < step <= 100:
            raise ConfigError(f"steps[{i}]", f"must be a whole percentage 1-100, got {show(item)}")
        if steps and step <= steps[-1]:
            raise ConfigError(f"steps[{i}]", f"must be larger than the step before ({steps[-1]}), got {step}")
        steps.append(step)
    if steps[-1] != 100:
        raise ConfigError("steps", f"the last step must be 100 (all traffic on the canary), got {steps[-1]}")
    if strategy == "bluegreen" and steps != [100]:
        raise ConfigError("steps", f"a bluegreen rollout has the one step 100, got {steps}")
    return tuple(steps)


def _duration(value: object, field: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(field, f'must be a duration such as "30s", got {show(value)}')
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise ConfigError(field, str(exc)) from exc


def _number(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(field, f"must be a number, got {show(value)}")
    return float(value)


def _count(value: object, field: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(field, f"must be a whole number >= {minimum}, got {show(value)}")
    return value


def _p99(data: dict[str, Any]) -> float | None:
    """``max_p99`` as a duration ("200ms") or ``max_p99_ms`` as a number; neither: not checked."""
    if data.get("max_p99") is not None and data.get("max_p99_ms") is not None:
        raise ConfigError("max_p99", "give max_p99 (a duration) or max_p99_ms (milliseconds), not both")
    if data.get("max_p99") is not None:
        ms = _duration(data["max_p99"], "max_p99") * 1000.0
        field = "max_p99"
    elif data.get("max_p99_ms") is not None:
        ms = _number(data["max_p99_ms"], "max_p99_ms")
        field = "max_p99_ms"
    else:
        return None
    if ms <= 0:
        raise ConfigError(field, f"must be positive, got {ms}ms")
    return ms


def parse_error_rate(text: str) -> float:
    """The CLI's ``--max-error-rate``: ``1%`` or a fraction ``0.01``; ``ValueError`` otherwise."""
    value = text.strip()
    if value.endswith("%"):
        rate = float(value[:-1]) / 100.0
    else:
        rate = float(value)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"must be a percentage (1%) or a fraction 0-1 (0.01), got {text!r}")
    return rate


__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_MAX_ERROR_RATE",
    "DEFAULT_MAX_EXTENSIONS",
    "DEFAULT_MIN_REQUESTS",
    "DEFAULT_STEPS",
    "STRATEGIES",
    "RolloutSpec",
    "Strategy",
    "parse_error_rate",
    "parse_rollout_spec",
]
