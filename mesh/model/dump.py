"""``Snapshot`` → data in the config file format, for ``/config_dump`` (pure).

``parse_snapshot(snapshot_to_dict(s)) == s``: every field is written in the form the parser
reads, durations in Go syntax when that reads back exactly, defaults mostly left out.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from discovery.durations import format_duration, parse_duration
from lb import Affinity, Endpoint, PolicySpec
from mesh.model.hosts import endpoint_key
from mesh.model.policies import (
    DEFAULT_CIRCUIT_BREAKERS,
    CircuitBreakers,
    FaultPolicy,
    HealthCheck,
    OutlierDetection,
    Redirect,
    RetryPolicy,
)
from mesh.model.ratelimit import rate_limits_to_list
from mesh.model.security import security_to_dict
from mesh.model.snapshot import Cluster, HeaderMatch, Listener, QueryMatch, Route, RouteMatch, RouteTable, Snapshot


def snapshot_to_dict(snapshot: Snapshot) -> dict[str, Any]:
    """The snapshot in the config format (JSON-ready); ``parse_snapshot`` reads it back equal."""
    return {
        "version": snapshot.version,
        "listeners": [_listener_to_dict(listener) for listener in snapshot.listeners],
        "route_tables": [_route_table_to_dict(table) for table in snapshot.route_tables.values()],
        "clusters": [_cluster_to_dict(cluster) for cluster in snapshot.clusters.values()],
        **({"security": security_to_dict(snapshot.security)} if snapshot.security.enabled else {}),
        **({"rate_limits": rate_limits_to_list(snapshot.rate_limits)} if snapshot.rate_limits else {}),
        **(
            {"outbound_traffic_policy": snapshot.outbound_traffic_policy}
            if snapshot.outbound_traffic_policy != "REGISTRY_ONLY"
            else {}
        ),
    }


def _listener_to_dict(listener: Listener) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": listener.name,
        "protocol": listener.protocol,
        "host": listener.host,
        "port": listener.port,
        "direction": listener.direction,
    }
    if listener.protocol == "http":
        out["route_table"] = listener.route_table
    elif listener.sni_routes:
        out["sni_routes"] = [{"server_names": list(r.server_names), "cluster": r.cluster} for r in listener.sni_routes]
    else:
        out["cluster"] = listener.cluster
    if listener.tls:
        out["tls"] = [
            {
                "server_names": list(c.server_names),
                "certificate": c.cert_file,
                "private_key": c.key_file,
                **({"ca_certificates": c.ca_file} if c.ca_file else {}),
            }
            for c in listener.tls
        ]
    return out


def _route_table_to_dict(table: RouteTable) -> dict[str, Any]:
    return {
        "name": table.name,
        "virtual_hosts": [
            {"name": v.name, "domains": list(v.domains), "routes": [_route_to_dict(r) for r in v.routes]}
            for v in table.virtual_hosts
        ],
    }


def _route_to_dict(route: Route) -> dict[str, Any]:
    out: dict[str, Any] = {"name": route.name, "match": _match_to_dict(route.match)}
    if route.redirect is not None:
        out["redirect"] = _redirect_to_dict(route.redirect)
    else:
        out["clusters"] = [{"name": c.name, "weight": c.weight} for c in route.clusters]
    out["timeout"] = None if route.timeout_s is None else _duration_out(route.timeout_s)
    if route.prefix_rewrite is not None:
        out["prefix_rewrite"] = route.prefix_rewrite
    for key, adds in (
        ("request_headers_add", route.request_headers_add),
        ("response_headers_add", route.response_headers_add),
    ):
        if adds:
            out[key] = [{"name": h.name, "value": h.value, "append": h.append} for h in adds]
    for key, removes in (
        ("request_headers_remove", route.request_headers_remove),
        ("response_headers_remove", route.response_headers_remove),
    ):
        if removes:
            out[key] = list(removes)
    if route.host_rewrite is not None:
        out["host_rewrite"] = route.host_rewrite
    if route.retry_policy is not None:
        out["retry_policy"] = _retry_to_dict(route.retry_policy)
    if route.fault is not None:
        out["fault"] = _fault_to_dict(route.fault)
    if route.mirrors:
        out["mirrors"] = [{"cluster": m.cluster, "percentage": m.percentage} for m in route.mirrors]
    return out


def _retry_to_dict(policy: RetryPolicy) -> dict[str, Any]:
    back_off: dict[str, Any] = {"base_interval": _duration_out(policy.base_interval_s)}
    if policy.max_interval_s is not None:
        back_off["max_interval"] = _duration_out(policy.max_interval_s)
    return {
        "retry_on": sorted(policy.retry_on),
        "retriable_status_codes": sorted(policy.retriable_status_codes),
        "num_retries": policy.num_retries,
        "per_try_timeout": None if policy.per_try_timeout_s is None else _duration_out(policy.per_try_timeout_s),
        "retry_back_off": back_off,
        "retry_previous_hosts": policy.retry_previous_hosts,
        "retry_non_idempotent": policy.retry_non_idempotent,
        "buffer_limit_bytes": policy.buffer_limit_bytes,
    }


def _fault_to_dict(fault: FaultPolicy) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if fault.delay is not None:
        out["delay"] = {"fixed_delay": _duration_out(fault.delay.fixed_delay_s), "percentage": fault.delay.percentage}
    if fault.abort is not None:
        out["abort"] = {"http_status": fault.abort.http_status, "percentage": fault.abort.percentage}
    return out


def _redirect_to_dict(redirect: Redirect) -> dict[str, Any]:
    out: dict[str, Any] = {"response_code": redirect.response_code}
    for key in ("scheme", "host", "port", "path", "prefix_rewrite"):
        value = getattr(redirect, key)
        if value is not None:
            out[key] = value
    if redirect.strip_query:
        out["strip_query"] = True
    return out


def _breakers_to_dict(breakers: CircuitBreakers) -> dict[str, Any]:
    out: dict[str, Any] = {
        "max_connections": breakers.max_connections,
        "max_pending_requests": breakers.max_pending_requests,
        "max_requests": breakers.max_requests,
        "max_retries": breakers.max_retries,
    }
    if breakers.retry_budget is not None:
        out["retry_budget"] = {
            "budget_percent": breakers.retry_budget.budget_percent,
            "min_retry_concurrency": breakers.retry_budget.min_retry_concurrency,
        }
    return out


def _outlier_to_dict(outlier: OutlierDetection) -> dict[str, Any]:
    return {
        "consecutive_5xx": outlier.consecutive_5xx,
        "consecutive_gateway_errors": outlier.consecutive_gateway_errors,
        "interval": _duration_out(outlier.interval_s),
        "base_ejection_time": _duration_out(outlier.base_ejection_time_s),
        "max_ejection_time": _duration_out(outlier.max_ejection_time_s),
        "max_ejection_percent": outlier.max_ejection_percent,
        "enforcing_consecutive_5xx": outlier.enforcing_consecutive_5xx,
        "enforcing_consecutive_gateway_errors": outlier.enforcing_consecutive_gateway_errors,
        "enforcing_success_rate": outlier.enforcing_success_rate,
        "success_rate_minimum_hosts": outlier.success_rate_minimum_hosts,
        "success_rate_request_volume": outlier.success_rate_request_volume,
        "success_rate_stdev_factor": outlier.success_rate_stdev_factor,
    }


def _health_check_to_dict(check: HealthCheck) -> dict[str, Any]:
    out: dict[str, Any] = {
        "interval": _duration_out(check.interval_s),
        "timeout": _duration_out(check.timeout_s),
        "interval_jitter": _duration_out(check.interval_jitter_s),
        "healthy_threshold": check.healthy_threshold,
        "unhealthy_threshold": check.unhealthy_threshold,
    }
    if check.kind == "tcp":
        out["tcp"] = {}
    else:
        out["http"] = {
            "path": check.path,
            "host": check.host,
            "expected_statuses": [{"start": start, "end": end} for start, end in check.expected_statuses],
        }
    return out


def _match_to_dict(match: RouteMatch) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if match.path_exact is not None:
        out["path"] = match.path_exact
    if match.path_prefix is not None:
        out["prefix"] = match.path_prefix
    if match.path_regex is not None:
        out["regex"] = match.path_regex.pattern
    if not match.case_sensitive:
        out["case_sensitive"] = False
    if match.methods:
        out["methods"] = sorted(match.methods)
    if match.headers:
        out["headers"] = [_header_match_to_dict(h) for h in match.headers]
    if match.query:
        out["query"] = [_query_match_to_dict(q) for q in match.query]
    return out


def _header_match_to_dict(rule: HeaderMatch) -> dict[str, Any]:
    out: dict[str, Any] = {"name": rule.name}
    for key in ("exact", "prefix", "suffix", "present"):
        value = getattr(rule, key)
        if value is not None:
            out[key] = value
    if rule.regex is not None:
        out["regex"] = rule.regex.pattern
    if rule.invert:
        out["invert"] = True
    return out


def _query_match_to_dict(rule: QueryMatch) -> dict[str, Any]:
    out: dict[str, Any] = {"name": rule.name}
    if rule.exact is not None:
        out["exact"] = rule.exact
    if rule.regex is not None:
        out["regex"] = rule.regex.pattern
    if rule.present is not None:
        out["present"] = rule.present
    return out


def _cluster_to_dict(cluster: Cluster) -> dict[str, Any]:
    out: dict[str, Any] = {"name": cluster.name, "protocol": cluster.protocol}
    if cluster.service:
        out["service"] = cluster.service
    out["lb"] = policy_to_dict(cluster.lb)
    out["endpoints"] = [_endpoint_to_dict(e) for e in cluster.endpoints]
    out["connect_timeout"] = _duration_out(cluster.connect_timeout_s)
    out["idle_timeout"] = _duration_out(cluster.idle_timeout_s)
    out["max_connections_per_endpoint"] = cluster.max_connections_per_endpoint
    if cluster.max_requests_per_connection:
        out["max_requests_per_connection"] = cluster.max_requests_per_connection
    if cluster.circuit_breakers != DEFAULT_CIRCUIT_BREAKERS:
        out["circuit_breakers"] = _breakers_to_dict(cluster.circuit_breakers)
    if cluster.outlier_detection is not None:
        out["outlier_detection"] = _outlier_to_dict(cluster.outlier_detection)
    if cluster.health_check is not None:
        out["health_check"] = _health_check_to_dict(cluster.health_check)
    if cluster.original_destination:
        out["original_destination"] = True
    return out


def policy_to_dict(policy: PolicySpec) -> dict[str, Any]:
    """The policy as ``lb.policy_from_dict`` reads it: ``kind`` plus every field off its default."""
    default = PolicySpec()
    out: dict[str, Any] = {"kind": policy.kind}
    for spec_field in fields(PolicySpec):
        name = spec_field.name
        value = getattr(policy, name)
        if name in ("kind", "affinity") or value == getattr(default, name):
            continue
        out[name] = value
    if policy.affinity is not None:
        out["affinity"] = _affinity_to_dict(policy.affinity)
    return out


def _affinity_to_dict(affinity: Affinity) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": affinity.kind}
    if affinity.name:
        out["name"] = affinity.name
    if affinity.cookie_ttl_s is not None:
        out["cookie_ttl_s"] = affinity.cookie_ttl_s
    if affinity.cookie_path != "/":
        out["cookie_path"] = affinity.cookie_path
    return out


def _endpoint_to_dict(endpoint: Endpoint) -> dict[str, Any]:
    out: dict[str, Any] = {"host": endpoint.host, "port": endpoint.port}
    if endpoint.key != endpoint_key(endpoint.host, endpoint.port):
        out["key"] = endpoint.key
    if endpoint.weight != 1:
        out["weight"] = endpoint.weight
    if not endpoint.healthy:
        out["healthy"] = False
    if endpoint.metadata:
        out["metadata"] = dict(endpoint.metadata)
    return out


def _duration_out(seconds: float) -> str | float:
    """Go syntax when it reads back exactly (``"15s"``, ``"250ms"``), else the number of seconds."""
    text = format_duration(seconds)
    return text if parse_duration(text) == seconds else seconds


__all__ = ["policy_to_dict", "snapshot_to_dict"]
