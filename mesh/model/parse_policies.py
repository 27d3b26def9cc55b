"""Reading the resilience policies of routes and clusters from config data (pure).

Each ``parse_*`` takes the decoded value and its field path and returns a ``mesh.model.policies``
value or raises ``ConfigError`` naming the field (``clusters[1].outlier_detection.interval``).
The format is documented in ``docs/sidecar-config.md`` ("Resilience"); ``mesh.model.dump`` writes
it back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

from mesh.model.policies import (
    DEFAULT_BACKOFF_BASE_S,
    DEFAULT_CIRCUIT_BREAKERS,
    DEFAULT_RETRY_BUFFER_LIMIT,
    ISTIO_DEFAULT_RETRY_ON,
    REDIRECT_CODES,
    RETRY_ON_CONDITIONS,
    CircuitBreakers,
    FaultAbort,
    FaultDelay,
    FaultPolicy,
    HealthCheck,
    HealthCheckKind,
    MirrorPolicy,
    OutlierDetection,
    Redirect,
    RetryBudget,
    RetryPolicy,
)
from mesh.model.reader import REQUIRED, ConfigError, Fields, list_items, show

T = TypeVar("T")
_UINT32 = 2**32 - 1


def _built(path: str, build: Callable[[], T]) -> T:
    """Run a policy constructor; its ``field: message`` errors become ``ConfigError`` at ``path``."""
    try:
        return build()
    except ValueError as exc:
        message = str(exc)
        _, sep, rest = message.partition(": ")
        raise ConfigError(path, rest if sep else message) from exc


def _percentage(obj: Fields, key: str, default: float = 100.0) -> float:
    value = obj.take(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise ConfigError(obj.at(key), f"must be a percentage in 0..100, got {show(value)}")
    return float(value)


def _positive_duration(obj: Fields, key: str, default: object) -> float:
    value = obj.duration(key, default)  # type: ignore[arg-type]
    if value <= 0:
        raise ConfigError(obj.at(key), "must be > 0")
    return value


def _number(obj: Fields, key: str, default: float, low: float) -> float:
    value = obj.take(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= low or value != value:
        raise ConfigError(obj.at(key), f"must be a number >= {low:g}, got {show(value)}")
    return float(value)


# === routes ===


def parse_retry_policy(data: object, path: str) -> RetryPolicy:
    """``retry_policy: {retry_on, num_retries, per_try_timeout, retriable_status_codes, retry_back_off,
    retry_previous_hosts, retry_non_idempotent, buffer_limit_bytes}``.

    ``retry_on`` is a list or Envoy's comma-separated string; numeric entries (Istio style
    ``"503,connect-failure"``) go to ``retriable_status_codes`` and turn on
    ``retriable-status-codes``.
    """
    obj = Fields(data, path)
    raw_on = obj.take("retry_on", None)
    codes_given = obj.take("retriable_status_codes", None)
    codes = (
        set() if codes_given is None else set(list_items(codes_given, obj.at("retriable_status_codes"), _status_code))
    )
    if raw_on is None:
        retry_on = set(ISTIO_DEFAULT_RETRY_ON)
        if codes_given is None:
            codes = {503}
    else:
        retry_on = _parse_retry_on(raw_on, obj.at("retry_on"), codes)
    num_retries = obj.integer("num_retries", 1, 0, 1000)
    per_try = obj.duration("per_try_timeout", 0.0, allow_none=True)
    no_back_off: tuple[float, float | None] = (DEFAULT_BACKOFF_BASE_S, None)
    base, cap = obj.nested("retry_back_off", _parse_back_off, no_back_off)
    previous_hosts = obj.flag("retry_previous_hosts", True)
    non_idempotent = obj.flag("retry_non_idempotent", False)
    buffer_limit = obj.integer("buffer_limit_bytes", DEFAULT_RETRY_BUFFER_LIMIT, 0, 1 << 30)
    obj.finish()
    return _built(
        path,
        lambda: RetryPolicy(
            retry_on=frozenset(retry_on),
            num_retries=num_retries,
            per_try_timeout_s=per_try or None,
            retriable_status_codes=frozenset(codes),
            base_interval_s=base,
            max_interval_s=cap,
            retry_previous_hosts=previous_hosts,
            retry_non_idempotent=non_idempotent,
            buffer_limit_bytes=buffer_limit,
        ),
    )


def _parse_retry_on(raw: object, path: str, codes: set[int]) -> set[str]:
    """Conditions from a list or a comma-separated string; status codes among them go to ``codes``."""
    if isinstance(raw, str):
        items: list[tuple[object, str]] = [(part.strip(), path) for part in raw.split(",") if part.strip()]
    elif isinstance(raw, list | tuple):
        items = [(item, f"{path}[{i}]") for i, item in enumerate(raw)]
    else:
        raise ConfigError(path, f"must be a list of conditions or a comma-separated string, got {show(raw)}")
    conditions: set[str] = set()
    for item, where in items:
        if isinstance(item, str) and item.isdigit():
            item = int(item)
        if isinstance(item, int) and not isinstance(item, bool):
            codes.add(_status_code(item, where))
            conditions.add("retriable-status-codes")
        elif isinstance(item, str) and item in RETRY_ON_CONDITIONS:
            conditions.add(item)
        else:
            known = ", ".join(sorted(RETRY_ON_CONDITIONS))
            raise ConfigError(where, f"unknown retry condition {show(item)} (expected a status code or one of {known})")
    return conditions


def _status_code(data: object, path: str) -> int:
    if isinstance(data, bool) or not isinstance(data, int) or not 100 <= data <= 599:
        raise ConfigError(path, f"must be an HTTP status code in 100..599, got {show(data)}")
    return data


def _parse_back_off(data: object, path: str) -> tuple[float, float | None]:
    obj = Fields(data, path)
    base = _positive_duration(obj, "base_interval", DEFAULT_BACKOFF_BASE_S)
    cap = None
    if obj.take("max_interval", None) is not None:
        cap = _positive_duration(obj, "max_interval", None)
        if cap < base:
            raise ConfigError(obj.at("max_interval"), "must be >= base_interval")
    obj.finish()
    return base, cap


def parse_fault(data: object, path: str) -> FaultPolicy:
    """``fault: {delay: {fixed_delay, percentage}, abort: {http_status, percentage}}``."""
    obj = Fields(data, path)
    delay = obj.nested("delay", _parse_fault_delay, None)
    abort = obj.nested("abort", _parse_fault_abort, None)
    obj.finish()
    if delay is None and abort is None:
        raise ConfigError(path, "needs delay or abort")
    return FaultPolicy(delay=delay, abort=abort)


def _parse_fault_delay(data: object, path: str) -> FaultDelay:
    obj = Fields(data, path)
    delay = obj.duration("fixed_delay", REQUIRED)
    percentage = _percentage(obj, "percentage")
    obj.finish()
    return FaultDelay(delay, percentage)


def _parse_fault_abort(data: object, path: str) -> FaultAbort:
    obj = Fields(data, path)
    status = obj.integer("http_status", REQUIRED, 200, 599)
    percentage = _percentage(obj, "percentage")
    obj.finish()
    return FaultAbort(status, percentage)


def parse_mirror(data: object, path: str) -> MirrorPolicy:
    """One of ``mirrors: [{cluster, percentage}]``."""
    obj = Fields(data, path)
    cluster = obj.string("cluster", REQUIRED)
    if not cluster:
        raise ConfigError(obj.at("cluster"), "must be a cluster name")
    percentage = _percentage(obj, "percentage")
    obj.finish()
    return MirrorPolicy(cluster, percentage)


def parse_redirect(data: object, path: str) -> Redirect:
    """``redirect: {scheme, host, port, path, prefix_rewrite, response_code, strip_query}``."""
    obj = Fields(data, path)
    scheme = obj.take("scheme", None)
    if scheme is not None and scheme not in ("http", "https"):
        raise ConfigError(obj.at("scheme"), f"must be http or https, got {show(scheme)}")
    host = obj.optional_string("host")
    if host is not None and (not host or any(c in host for c in " /\r\n\t")):
        raise ConfigError(obj.at("host"), f"must be a host name (without port or path), got {host!r}")
    port = obj.take("port", None)
    if port is not None:
        port = obj.integer("port", None, 1, 65535)
    new_path = obj.optional_string("path")
    prefix = obj.optional_string("prefix_rewrite")
    for key, value in (("path", new_path), ("prefix_rewrite", prefix)):
        if value is not None and not value.startswith("/"):
            raise ConfigError(obj.at(key), f"must start with '/', got {value!r}")
    if new_path is not None and prefix is not None:
        raise ConfigError(obj.at("prefix_rewrite"), "give path or prefix_rewrite, not both")
    code = obj.take("response_code", 301)
    if code not in REDIRECT_CODES or isinstance(code, bool):
        raise ConfigError(obj.at("response_code"), f"must be one of 301, 302, 303, 307, 308, got {show(code)}")
    strip_query = obj.flag("strip_query", False)
    obj.finish()
    return Redirect(cast(str | None, scheme), host, port, new_path, prefix, code, strip_query)


# === clusters ===


def parse_circuit_breakers(data: object, path: str) -> CircuitBreakers:
    """``circuit_breakers: {max_connections, max_pending_requests, max_requests, max_retries, retry_budget}``."""
    obj = Fields(data, path)
    d = DEFAULT_CIRCUIT_BREAKERS
    values = {
        name: obj.integer(name, getattr(d, name), 0, _UINT32)
        for name in ("max_connections", "max_pending_requests", "max_requests", "max_retries")
    }
    budget = obj.nested("retry_budget", _parse_retry_budget, None)
    obj.finish()
    return CircuitBreakers(retry_budget=budget, **values)


def _parse_retry_budget(data: object, path: str) -> RetryBudget:
    obj = Fields(data, path)
    percent = _percentage(obj, "budget_percent", 20.0)
    minimum = obj.integer("min_retry_concurrency", 3, 0, 1_000_000)
    obj.finish()
    return RetryBudget(percent, minimum)


def parse_outlier_detection(data: object, path: str) -> OutlierDetection:
    """``outlier_detection: {consecutive_5xx, consecutive_gateway_errors, interval, ...}`` (see the docs)."""
    obj = Fields(data, path)
    d = OutlierDetection()
    five = obj.integer("consecutive_5xx", d.consecutive_5xx, 0, _UINT32)
    gateway = obj.integer("consecutive_gateway_errors", d.consecutive_gateway_errors, 0, _UINT32)
    interval = _positive_duration(obj, "interval", d.interval_s)
    base = _positive_duration(obj, "base_ejection_time", d.base_ejection_time_s)
    cap = _positive_duration(obj, "max_ejection_time", max(d.max_ejection_time_s, base))
    if cap < base:
        raise ConfigError(obj.at("max_ejection_time"), "must be >= base_ejection_time")
    percents = {
        name: _percentage(obj, name, getattr(d, name))
        for name in (
            "max_ejection_percent",
            "enforcing_consecutive_5xx",
            "enforcing_consecutive_gateway_errors",
            "enforcing_success_rate",
        )
    }
    min_hosts = obj.integer("success_rate_minimum_hosts", d.success_rate_minimum_hosts, 1, _UINT32)
    volume = obj.integer("success_rate_request_volume", d.success_rate_request_volume, 1, _UINT32)
    factor = _number(obj, "success_rate_stdev_factor", d.success_rate_stdev_factor, 0.0)
    obj.finish()
    return OutlierDetection(
        consecutive_5xx=five,
        consecutive_gateway_errors=gateway,
        interval_s=interval,
        base_ejection_time_s=base,
        max_ejection_time_s=cap,
        success_rate_minimum_hosts=min_hosts,
        success_rate_request_volume=volume,
        success_rate_stdev_factor=factor,
        **percents,
    )


def parse_health_check(data: object, path: str) -> HealthCheck:
    """``health_check: {interval, timeout, interval_jitter, healthy_threshold, unhealthy_threshold,
    http: {path, host, expected_statuses: [{start, end}]} | tcp: {}}``."""
    obj = Fields(data, path)
    d = HealthCheck()
    interval = _positive_duration(obj, "interval", d.interval_s)
    timeout = _positive_duration(obj, "timeout", d.timeout_s)
    jitter = obj.duration("interval_jitter", d.interval_jitter_s)
    healthy = obj.integer("healthy_threshold", d.healthy_threshold, 1, 1000)
    unhealthy = obj.integer("unhealthy_threshold", d.unhealthy_threshold, 1, 1000)
    http = obj.take("http", None)
    tcp = obj.take("tcp", None)
    obj.finish()
    if http is not None and tcp is not None:
        raise ConfigError(obj.at("tcp"), "give http or tcp, not both")
    kind: HealthCheckKind = "tcp" if tcp is not None else "http"
    probe_path, host, statuses = d.path, d.host, d.expected_statuses
    if tcp is not None:
        Fields(tcp, obj.at("tcp")).finish()  # nothing to set for a TCP connect check
    elif http is not None:
        probe_path, host, statuses = _parse_http_check(http, obj.at("http"))
    return HealthCheck(
        kind=kind,
        interval_s=interval,
        timeout_s=timeout,
        interval_jitter_s=jitter,
        healthy_threshold=healthy,
        unhealthy_threshold=unhealthy,
        path=probe_path,
        host=host,
        expected_statuses=statuses,
    )


def _parse_http_check(data: object, path: str) -> tuple[str, str, tuple[tuple[int, int], ...]]:
    obj = Fields(data, path)
    probe_path = obj.string("path", "/")
    if not probe_path.startswith("/") or any(c in probe_path for c in " \r\n\t"):
        raise ConfigError(obj.at("path"), f"must start with '/' and hold no spaces, got {probe_path!r}")
    host = obj.string("host", "")
    if any(c in host for c in " /\r\n\t"):
        raise ConfigError(obj.at("host"), f"must be a host name, got {host!r}")
    ranges = obj.list_of("expected_statuses", _parse_status_range)
    obj.finish()
    if obj.data.get("expected_statuses") is not None and not ranges:
        raise ConfigError(obj.at("expected_statuses"), "needs at least one range")
    return probe_path, host, tuple(ranges) or HealthCheck().expected_statuses


def _parse_status_range(data: object, path: str) -> tuple[int, int]:
    obj = Fields(data, path)
    start = obj.integer("start", REQUIRED, 100, 599)
    end = obj.integer("end", REQUIRED, 101, 600)
    obj.finish()
    if end <= start:
        raise ConfigError(obj.at("end"), f"must be above start ({start}); the range is [start, end)")
    return start, end


__all__ = [
    "parse_circuit_breakers",
    "parse_fault",
    "parse_health_check",
    "parse_mirror",
    "parse_outlier_detection",
    "parse_redirect",
    "parse_retry_policy",
]
