"""A route's and a cluster's resilience settings as ``explain`` shows them (pure, JSON-ready).

Only what is in force is shown, in Istio's words next to the model's, so an operator can check
that a VirtualService's ``retries`` / ``fault`` / ``mirror`` and a DestinationRule's
``connectionPool`` / ``outlierDetection`` reached the sidecar as meant.
"""

from __future__ import annotations

from typing import Any

from mesh.control.policy import UNLIMITED
from mesh.model.policies import CircuitBreakers, OutlierDetection, Redirect, RetryPolicy
from mesh.model.snapshot import Cluster, Route


def route_policies(route: Route) -> dict[str, Any]:
    """``retries`` (``None``: off), and ``fault``, ``mirrors``, ``host_rewrite``, ``redirect`` when set."""
    out: dict[str, Any] = {"retries": None if route.retry_policy is None else _retries(route.retry_policy)}
    fault = route.fault
    if fault is not None:
        view: dict[str, Any] = {}
        if fault.delay is not None:
            view["delay"] = {"fixed_delay_s": fault.delay.fixed_delay_s, "percent": fault.delay.percentage}
        if fault.abort is not None:
            view["abort"] = {"http_status": fault.abort.http_status, "percent": fault.abort.percentage}
        out["fault"] = view
    if route.mirrors:
        out["mirrors"] = [{"cluster": m.cluster, "percent": m.percentage} for m in route.mirrors]
    if route.host_rewrite is not None:
        out["host_rewrite"] = route.host_rewrite
    if route.redirect is not None:
        out["redirect"] = redirect_view(route.redirect)
    return out


def _retries(policy: RetryPolicy) -> dict[str, Any]:
    return {
        "attempts": policy.num_retries,
        "retry_on": sorted(policy.retry_on),
        "retriable_status_codes": sorted(policy.retriable_status_codes),
        "per_try_timeout_s": policy.per_try_timeout_s,
        "retry_previous_hosts": policy.retry_previous_hosts,
        "retry_non_idempotent": policy.retry_non_idempotent,
    }


def redirect_view(redirect: Redirect) -> dict[str, Any]:
    """The redirect's status and the parts of ``Location`` it replaces (the rest are the request's)."""
    view: dict[str, Any] = {"status": redirect.response_code}
    for name, value in (
        ("scheme", redirect.scheme),
        ("host", redirect.host),
        ("port", redirect.port),
        ("path", redirect.path),
        ("prefix_rewrite", redirect.prefix_rewrite),
    ):
        if value is not None:
            view[name] = value
    return view


def cluster_policies(cluster: Cluster) -> dict[str, Any]:
    """``circuit_breakers`` (limits that are set; ``{}``: unlimited, Istio's default),
    ``max_requests_per_connection`` (0: unlimited), ``outlier_detection`` (``None``: off) and the
    balancer's panic threshold."""
    return {
        "circuit_breakers": _breakers(cluster.circuit_breakers),
        "max_requests_per_connection": cluster.max_requests_per_connection,
        "outlier_detection": None if cluster.outlier_detection is None else _outlier(cluster.outlier_detection),
        "panic_threshold_percent": round(cluster.lb.panic_threshold * 100, 2),
    }


def _breakers(breakers: CircuitBreakers) -> dict[str, int]:
    limits = {
        "max_connections": breakers.max_connections,
        "max_pending_requests": breakers.max_pending_requests,
        "max_requests": breakers.max_requests,
        "max_retries": breakers.max_retries,
    }
    return {name: value for name, value in limits.items() if value != UNLIMITED}


def _outlier(detection: OutlierDetection) -> dict[str, Any]:
    return {
        "consecutive_5xx": detection.consecutive_5xx,
        "consecutive_gateway_errors": detection.consecutive_gateway_errors,
        "interval_s": detection.interval_s,
        "base_ejection_time_s": detection.base_ejection_time_s,
        "max_ejection_percent": detection.max_ejection_percent,
    }


# === as text (``mesh explain`` without --json) ===


def describe_route_policies(view: dict[str, Any]) -> list[str]:
    """One line per setting of a ``route_policies`` view."""
    lines = []
    retries = view.get("retries")
    if retries is None:
        lines.append("retries: off")
    else:
        codes = ",".join(map(str, retries["retriable_status_codes"]))
        per_try = "" if retries["per_try_timeout_s"] is None else f", per try {retries['per_try_timeout_s']:g}s"
        conditions = ",".join(retries["retry_on"])
        lines.append(f"retries: {retries['attempts']} on {conditions} (status {codes or '-'}{per_try})")
    fault = view.get("fault", {})
    if "delay" in fault:
        lines.append(f"fault: delay {fault['delay']['fixed_delay_s']:g}s for {fault['delay']['percent']:g}%")
    if "abort" in fault:
        lines.append(f"fault: abort {fault['abort']['http_status']} for {fault['abort']['percent']:g}%")
    lines += [f"mirror: {m['percent']:g}% → {m['cluster']}" for m in view.get("mirrors", [])]
    if view.get("host_rewrite"):
        lines.append(f"rewrite host → {view['host_rewrite']}")
    redirect = view.get("redirect")
    if redirect:
        parts = ", ".join(f"{k} {v}" for k, v in redirect.items() if k != "status")
        lines.append(f"redirect {redirect['status']}: {parts or 'same URL'}")
    return lines


def describe_cluster_policies(view: dict[str, Any]) -> list[str]:
    """One line per setting of a ``cluster_policies`` view that is not Istio's default."""
    lines = []
    breakers = view.get("circuit_breakers")
    if breakers:
        lines.append("circuit breakers: " + ", ".join(f"{k} {v}" for k, v in breakers.items()))
    per_connection = view.get("max_requests_per_connection")
    if per_connection:
        lines.append(f"upstream connections closed after {per_connection} requests each")
    outlier = view.get("outlier_detection")
    if outlier:
        lines.append(
            f"outlier detection: {outlier['consecutive_5xx']} consecutive 5xx, "
            f"{outlier['consecutive_gateway_errors']} gateway errors, every {outlier['interval_s']:g}s, "
            f"eject {outlier['base_ejection_time_s']:g}s, at most {outlier['max_ejection_percent']:g}%"
        )
    return lines


__all__ = [
    "cluster_policies",
    "describe_cluster_policies",
    "describe_route_policies",
    "redirect_view",
    "route_policies",
]
