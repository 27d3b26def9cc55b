"""Resilience policies in the config: parsing, validation with field paths, and the dump round trip."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.model.dump import snapshot_to_dict
from mesh.model.parse import ConfigError, parse_snapshot
from mesh.model.policies import (
    ISTIO_DEFAULT_RETRY_ON,
    RETRY_ON_CONDITIONS,
    CircuitBreakers,
    FaultAbort,
    FaultDelay,
    FaultPolicy,
    HealthCheck,
    MirrorPolicy,
    OutlierDetection,
    Redirect,
    RetryBudget,
    RetryPolicy,
)
from mesh.model.snapshot import Cluster, Listener, Route, RouteMatch, RouteTable, Snapshot, VirtualHost, WeightedCluster

ROUTE = "route_tables[0].virtual_hosts[0].routes[0]"


def config(route: dict[str, Any] | None = None, cluster: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "listeners": [{"name": "out", "protocol": "http", "port": 0, "route_table": "t"}],
        "route_tables": [
            {
                "name": "t",
                "virtual_hosts": [
                    {"name": "v", "domains": ["*"], "routes": [{"name": "r", "cluster": "web", **(route or {})}]}
                ],
            }
        ],
        "clusters": [
            {"name": "web", "endpoints": [{"host": "127.0.0.1", "port": 80}], **(cluster or {})},
            {"name": "shadow", "service": "web"},
            {"name": "db", "protocol": "tcp", "service": "db"},
        ],
    }


def route_of(data: dict[str, Any]) -> Route:
    return parse_snapshot(data).route_tables["t"].virtual_hosts[0].routes[0]


def cluster_of(data: dict[str, Any]) -> Cluster:
    return parse_snapshot(data).clusters["web"]


def rejects(data: dict[str, Any], path: str, message: str = "") -> None:
    with pytest.raises(ConfigError) as caught:
        parse_snapshot(data)
    assert caught.value.path == path, str(caught.value)
    assert message in caught.value.message, str(caught.value)


# === retry policy ===


def test_retry_policy_defaults_follow_istio() -> None:
    policy = route_of(config({"retry_policy": {}})).retry_policy
    assert policy == RetryPolicy()
    assert policy.retry_on == ISTIO_DEFAULT_RETRY_ON
    assert policy.retriable_status_codes == frozenset({503})
    assert policy.num_retries == 1
    assert policy.backoff_max_s == pytest.approx(0.25)  # 10 x the 25 ms base
    assert route_of(config()).retry_policy is None  # no policy: no retries (Envoy)


def test_retry_on_string_with_status_codes_istio_style() -> None:
    policy = route_of(config({"retry_policy": {"retry_on": "5xx, 503,connect-failure,409", "num_retries": 3}}))
    assert policy.retry_policy is not None
    assert policy.retry_policy.retry_on == frozenset({"5xx", "connect-failure", "retriable-status-codes"})
    assert policy.retry_policy.retriable_status_codes == frozenset({503, 409})
    assert policy.retry_policy.num_retries == 3


def test_retry_policy_all_fields() -> None:
    data = {
        "retry_on": ["gateway-error", "reset", "retriable-status-codes"],
        "retriable_status_codes": [502],
        "num_retries": 4,
        "per_try_timeout": "150ms",
        "retry_back_off": {"base_interval": "10ms", "max_interval": "1s"},
        "retry_previous_hosts": False,
        "retry_non_idempotent": True,
        "buffer_limit_bytes": 0,
    }
    policy = route_of(config({"retry_policy": data})).retry_policy
    assert policy == RetryPolicy(
        retry_on=frozenset({"gateway-error", "reset", "retriable-status-codes"}),
        num_retries=4,
        per_try_timeout_s=0.15,
        retriable_status_codes=frozenset({502}),
        base_interval_s=0.01,
        max_interval_s=1.0,
        retry_previous_hosts=False,
        retry_non_idempotent=True,
        buffer_limit_bytes=0,
    )


@pytest.mark.parametrize(
    ("policy", "path", "message"),
    [
        ({"retry_on": "5xx,bogus"}, "retry_policy.retry_on", "unknown retry condition 'bogus'"),
        ({"retry_on": ["5xx", "nope"]}, "retry_policy.retry_on[1]", "unknown retry condition"),
        ({"retry_on": ["700"]}, "retry_policy.retry_on[0]", "100..599"),
        ({"retry_on": 5}, "retry_policy.retry_on", "comma-separated"),
        ({"num_retries": -1}, "retry_policy.num_retries", "0..1000"),
        ({"per_try_timeout": "soon"}, "retry_policy.per_try_timeout", "invalid duration"),
        ({"retriable_status_codes": [99]}, "retry_policy.retriable_status_codes[0]", "100..599"),
        ({"retry_back_off": {"base_interval": 0}}, "retry_policy.retry_back_off.base_interval", "> 0"),
        (
            {"retry_back_off": {"base_interval": "1s", "max_interval": "10ms"}},
            "retry_policy.retry_back_off.max_interval",
            ">= base_interval",
        ),
        ({"retry_back_off": {"jitter": 1}}, "retry_policy.retry_back_off.jitter", "unknown key"),
        ({"attempts": 2}, "retry_policy.attempts", "unknown key 'attempts'"),
        ({"buffer_limit_bytes": "1MB"}, "retry_policy.buffer_limit_bytes", "integer"),
    ],
)
def test_retry_policy_errors_name_the_field(policy: dict[str, Any], path: str, message: str) -> None:
    rejects(config({"retry_policy": policy}), f"{ROUTE}.{path}", message)


# === fault, mirrors, redirect, host rewrite ===


def test_fault_delay_and_abort() -> None:
    route = route_of(
        config({"fault": {"delay": {"fixed_delay": "2s", "percentage": 0.5}, "abort": {"http_status": 418}}})
    )
    assert route.fault == FaultPolicy(FaultDelay(2.0, 0.5), FaultAbort(418, 100.0))


@pytest.mark.parametrize(
    ("fault", "path", "message"),
    [
        ({}, "fault", "needs delay or abort"),
        ({"delay": {}}, "fault.delay.fixed_delay", "is required"),
        ({"delay": {"fixed_delay": "1s", "percentage": 101}}, "fault.delay.percentage", "0..100"),
        ({"abort": {"http_status": 199}}, "fault.abort.http_status", "200..599"),
        ({"abort": {"http_status": 503, "percentage": True}}, "fault.abort.percentage", "percentage"),
        ({"abort": {"http_status": 503, "httpStatus": 503}}, "fault.abort.httpStatus", "unknown key"),
    ],
)
def test_fault_errors(fault: dict[str, Any], path: str, message: str) -> None:
    rejects(config({"fault": fault}), f"{ROUTE}.{path}", message)


def test_mirrors_reference_http_clusters() -> None:
    route = route_of(config({"mirrors": [{"cluster": "shadow", "percentage": 12.5}, {"cluster": "web"}]}))
    assert route.mirrors == (MirrorPolicy("shadow", 12.5), MirrorPolicy("web", 100.0))
    rejects(config({"mirrors": [{"cluster": "gone"}]}), f"{ROUTE}.mirrors[0].cluster", "unknown cluster 'gone'")
    rejects(config({"mirrors": [{"cluster": "db"}]}), f"{ROUTE}.mirrors[0].cluster", "is tcp")
    rejects(config({"mirrors": [{"cluster": "web", "percentage": -1}]}), f"{ROUTE}.mirrors[0].percentage", "0..100")


def test_redirect_route_has_no_clusters() -> None:
    data = config()
    data["route_tables"][0]["virtual_hosts"][0]["routes"] = [
        {"name": "r", "match": {"prefix": "/old/"}, "redirect": {"scheme": "https", "prefix_rewrite": "/new/"}}
    ]
    route = route_of(data)
    assert route.clusters == ()
    assert route.redirect == Redirect(scheme="https", prefix_rewrite="/new/")
    assert route.redirect.response_code == 301


@pytest.mark.parametrize(
    ("route", "path", "message"),
    [
        ({"redirect": {"host": "x"}}, "redirect", "not both"),
        ({"redirect": {"response_code": 200}}, "redirect.response_code", "301, 302, 303, 307, 308"),
        ({"redirect": {"scheme": "ftp"}}, "redirect.scheme", "http or https"),
        ({"redirect": {"port": 0}}, "redirect.port", "1..65535"),
        ({"redirect": {"host": "a/b"}}, "redirect.host", "host name"),
        ({"redirect": {"path": "x"}}, "redirect.path", "must start with '/'"),
        ({"redirect": {"path": "/a", "prefix_rewrite": "/b"}}, "redirect.prefix_rewrite", "not both"),
    ],
)
def test_redirect_errors(route: dict[str, Any], path: str, message: str) -> None:
    rejects(config(route), f"{ROUTE}.{path}", message)


def test_redirect_route_refuses_forwarding_options() -> None:
    data = config()
    data["route_tables"][0]["virtual_hosts"][0]["routes"] = [
        {"name": "r", "redirect": {"host": "x"}, "retry_policy": {}},
    ]
    rejects(data, f"{ROUTE}.retry_policy", "a redirect route answers itself")
    data["route_tables"][0]["virtual_hosts"][0]["routes"] = [
        {"name": "r", "match": {"regex": "/a.*"}, "redirect": {"prefix_rewrite": "/"}},
    ]
    rejects(data, f"{ROUTE}.redirect.prefix_rewrite", "match.regex")


def test_host_rewrite() -> None:
    assert route_of(config({"host_rewrite": "api.internal:8080"})).host_rewrite == "api.internal:8080"
    rejects(config({"host_rewrite": "bad host"}), f"{ROUTE}.host_rewrite", "host name")


# === clusters ===


def test_circuit_breakers_default_to_envoys() -> None:
    assert cluster_of(config()).circuit_breakers == CircuitBreakers(1024, 1024, 1024, 3, None)
    breakers = cluster_of(config(cluster={"circuit_breakers": {"max_requests": 10, "retry_budget": {}}}))
    assert breakers.circuit_breakers == CircuitBreakers(max_requests=10, retry_budget=RetryBudget(20.0, 3))


@pytest.mark.parametrize(
    ("breakers", "path", "message"),
    [
        ({"max_requests": -1}, "max_requests", "0..4294967295"),
        ({"max_connections": 2**32}, "max_connections", "0..4294967295"),
        ({"retry_budget": {"budget_percent": 120}}, "retry_budget.budget_percent", "0..100"),
        ({"retry_budget": {"min_retry_concurrency": 1.5}}, "retry_budget.min_retry_concurrency", "integer"),
        ({"maxRetries": 1}, "maxRetries", "unknown key"),
    ],
)
def test_circuit_breaker_errors(breakers: dict[str, Any], path: str, message: str) -> None:
    rejects(config(cluster={"circuit_breakers": breakers}), f"clusters[0].circuit_breakers.{path}", message)


def test_outlier_detection_defaults_and_values() -> None:
    assert cluster_of(config(cluster={"outlier_detection": {}})).outlier_detection == OutlierDetection()
    detection = cluster_of(
        config(
            cluster={
                "outlier_detection": {
                    "consecutive_5xx": 3,
                    "consecutive_gateway_errors": 2,
                    "interval": "1s",
                    "base_ejection_time": "5s",
                    "max_ejection_percent": 34,
                    "enforcing_success_rate": 100,
                    "success_rate_stdev_factor": 1,
                }
            }
        )
    ).outlier_detection
    assert detection is not None
    assert (detection.consecutive_5xx, detection.consecutive_gateway_errors) == (3, 2)
    assert (detection.interval_s, detection.base_ejection_time_s, detection.max_ejection_time_s) == (1.0, 5.0, 300.0)
    assert detection.max_ejection_percent == 34.0
    assert detection.success_rate_stdev_factor == 1.0


@pytest.mark.parametrize(
    ("outlier", "path", "message"),
    [
        ({"interval": 0}, "interval", "> 0"),
        ({"base_ejection_time": "1m", "max_ejection_time": "30s"}, "max_ejection_time", ">= base_ejection_time"),
        ({"max_ejection_percent": 101}, "max_ejection_percent", "0..100"),
        ({"consecutive_5xx": -1}, "consecutive_5xx", "integer"),
        ({"success_rate_minimum_hosts": 0}, "success_rate_minimum_hosts", "1.."),
        ({"success_rate_stdev_factor": -1}, "success_rate_stdev_factor", ">= 0"),
        ({"consecutive5xxErrors": 1}, "consecutive5xxErrors", "unknown key"),
    ],
)
def test_outlier_errors(outlier: dict[str, Any], path: str, message: str) -> None:
    rejects(config(cluster={"outlier_detection": outlier}), f"clusters[0].outlier_detection.{path}", message)


def test_health_check_http_and_tcp() -> None:
    check = cluster_of(
        config(
            cluster={
                "health_check": {
                    "interval": "2s",
                    "interval_jitter": "100ms",
                    "timeout": "250ms",
                    "healthy_threshold": 1,
                    "unhealthy_threshold": 2,
                    "http": {"path": "/healthz", "host": "web", "expected_statuses": [{"start": 200, "end": 300}]},
                }
            }
        )
    ).health_check
    assert check == HealthCheck("http", 2.0, 0.25, 0.1, 1, 2, "/healthz", "web", ((200, 300),))
    assert check.expects(204)
    assert not check.expects(302)
    tcp = cluster_of(config(cluster={"health_check": {"tcp": {}}})).health_check
    assert tcp is not None
    assert tcp.kind == "tcp"
    assert cluster_of(config(cluster={"health_check": {}})).health_check == HealthCheck()


@pytest.mark.parametrize(
    ("check", "path", "message"),
    [
        ({"http": {}, "tcp": {}}, "tcp", "not both"),
        ({"tcp": {"port": 1}}, "tcp.port", "unknown key"),
        ({"interval": 0}, "interval", "> 0"),
        ({"unhealthy_threshold": 0}, "unhealthy_threshold", "1..1000"),
        ({"http": {"path": "healthz"}}, "http.path", "must start with '/'"),
        ({"http": {"expected_statuses": []}}, "http.expected_statuses", "at least one"),
        ({"http": {"expected_statuses": [{"start": 300, "end": 200}]}}, "http.expected_statuses[0].end", "above start"),
        ({"http": {"expected_statuses": [{"start": 200}]}}, "http.expected_statuses[0].end", "is required"),
    ],
)
def test_health_check_errors(check: dict[str, Any], path: str, message: str) -> None:
    rejects(config(cluster={"health_check": check}), f"clusters[0].health_check.{path}", message)


def test_constructors_validate_too() -> None:
    with pytest.raises(ValueError, match="retry_on: unknown condition"):
        RetryPolicy(retry_on=frozenset({"sometimes"}))
    with pytest.raises(ValueError, match="needs delay or abort"):
        FaultPolicy()
    with pytest.raises(ValueError, match="max_ejection_percent"):
        OutlierDetection(max_ejection_percent=200)
    with pytest.raises(ValueError, match="a redirect route has no clusters"):
        Route("r", RouteMatch(), (WeightedCluster("a"),), redirect=Redirect(host="x"))
    with pytest.raises(ValueError, match="needs at least one cluster"):
        Route("r", RouteMatch(), ())


# === dump round trip ===

_SECONDS = st.sampled_from([0.01, 0.025, 0.25, 1.0, 2.5, 30.0])
_PERCENT = st.sampled_from([0.0, 0.1, 5.0, 50.0, 100.0])

_retry = st.builds(
    RetryPolicy,
    retry_on=st.frozensets(st.sampled_from(sorted(RETRY_ON_CONDITIONS))),
    num_retries=st.integers(0, 5),
    per_try_timeout_s=st.one_of(st.none(), _SECONDS),
    retriable_status_codes=st.frozensets(st.sampled_from([409, 500, 502, 503, 504])),
    base_interval_s=st.sampled_from([0.01, 0.025]),
    max_interval_s=st.one_of(st.none(), st.sampled_from([0.1, 1.0])),
    retry_previous_hosts=st.booleans(),
    retry_non_idempotent=st.booleans(),
    buffer_limit_bytes=st.integers(0, 1 << 20),
)
_fault = st.one_of(
    st.builds(FaultPolicy, delay=st.builds(FaultDelay, _SECONDS, _PERCENT)),
    st.builds(FaultPolicy, abort=st.builds(FaultAbort, st.integers(200, 599), _PERCENT)),
    st.builds(FaultPolicy, st.builds(FaultDelay, _SECONDS, _PERCENT), st.builds(FaultAbort, st.just(503), _PERCENT)),
)
_outlier = st.builds(
    OutlierDetection,
    consecutive_5xx=st.integers(0, 10),
    consecutive_gateway_errors=st.integers(0, 10),
    interval_s=_SECONDS,
    base_ejection_time_s=st.just(0.01),
    max_ejection_percent=_PERCENT,
    enforcing_success_rate=_PERCENT,
    success_rate_stdev_factor=st.sampled_from([0.0, 1.0, 1.9]),
)
_health = st.one_of(
    st.builds(HealthCheck, kind=st.just("tcp"), interval_s=_SECONDS, interval_jitter_s=st.sampled_from([0.0, 0.25])),
    st.builds(
        HealthCheck,
        kind=st.just("http"),
        timeout_s=_SECONDS,
        path=st.sampled_from(["/", "/healthz?full=1"]),
        host=st.sampled_from(["", "web"]),
        expected_statuses=st.sampled_from([((200, 400),), ((200, 201), (204, 205))]),
        healthy_threshold=st.integers(1, 3),
    ),
)
_breakers = st.builds(
    CircuitBreakers,
    max_connections=st.integers(0, 2**32 - 1),
    max_requests=st.integers(0, 2000),
    retry_budget=st.one_of(st.none(), st.builds(RetryBudget, _PERCENT, st.integers(0, 10))),
)


@st.composite
def resilient_snapshots(draw: st.DrawFn) -> Snapshot:
    clusters = {
        name: Cluster(
            name,
            circuit_breakers=draw(_breakers),
            outlier_detection=draw(st.one_of(st.none(), _outlier)),
            health_check=draw(st.one_of(st.none(), _health)),
        )
        for name in ("a", "b")
    }
    routes = [
        Route(
            f"r{i}",
            RouteMatch(path_prefix="/p"),
            (WeightedCluster("a"),),
            retry_policy=draw(st.one_of(st.none(), _retry)),
            fault=draw(st.one_of(st.none(), _fault)),
            mirrors=tuple(draw(st.lists(st.builds(MirrorPolicy, st.sampled_from(["a", "b"]), _PERCENT), max_size=2))),
            host_rewrite=draw(st.sampled_from([None, "b.internal", "b:8080"])),
        )
        for i in range(2)
    ]
    redirect = draw(
        st.builds(
            Redirect,
            scheme=st.sampled_from([None, "https"]),
            host=st.sampled_from([None, "x.example"]),
            port=st.sampled_from([None, 8443]),
            path=st.sampled_from([None, "/moved"]),
            response_code=st.sampled_from([301, 302, 307, 308]),
            strip_query=st.booleans(),
        )
    )
    routes.append(Route("redirect", RouteMatch(), (), redirect=redirect, fault=draw(st.one_of(st.none(), _fault))))
    table = RouteTable("t", (VirtualHost("v", ("*",), tuple(routes)),))
    return Snapshot("1", (Listener("out", "http", "127.0.0.1", 0, route_table="t"),), {"t": table}, clusters)


@settings(max_examples=150, deadline=None)
@given(snapshot=resilient_snapshots())
def test_resilience_policies_round_trip(snapshot: Snapshot) -> None:
    dumped = snapshot_to_dict(snapshot)
    assert parse_snapshot(dumped) == snapshot
    assert parse_snapshot(json.loads(json.dumps(dumped))) == snapshot


def test_dump_leaves_default_breakers_out() -> None:
    data = config(cluster={"outlier_detection": {}})
    dumped = snapshot_to_dict(parse_snapshot(copy.deepcopy(data)))
    assert "circuit_breakers" not in dumped["clusters"][0]
    assert dumped["clusters"][0]["outlier_detection"]["interval"] == "10s"
