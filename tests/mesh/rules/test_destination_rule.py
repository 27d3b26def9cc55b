"""DestinationRule validation and the traffic-policy overlay rules (subset over host, port over both)."""

from __future__ import annotations

from typing import Any

import pytest

from mesh.model.reader import ConfigError
from mesh.rules.destination_rule import DestinationRuleSpec
from tests.mesh.rules.helpers import dr, parse, with_path

FULL = dr(
    trafficPolicy={
        "loadBalancer": {"simple": "LEAST_REQUEST"},
        "connectionPool": {
            "tcp": {
                "maxConnections": 100,
                "connectTimeout": "30ms",
                "tcpKeepalive": {"time": "7200s", "interval": "75s"},
            },
            "http": {"http1MaxPendingRequests": 10, "maxRequestsPerConnection": 1, "idleTimeout": "90s"},
        },
        "outlierDetection": {
            "consecutive5xxErrors": 7,
            "interval": "5m",
            "baseEjectionTime": "15m",
            "maxEjectionPercent": 50,
        },
        "tls": {"mode": "ISTIO_MUTUAL"},
        "portLevelSettings": [{"port": {"number": 9080}, "loadBalancer": {"simple": "RANDOM"}}],
    },
    subsets=[
        {"name": "v1", "labels": {"version": "v1"}},
        {
            "name": "v2",
            "labels": {"version": "v2", "app.kubernetes.io/track": "canary"},
            "trafficPolicy": {"loadBalancer": {"consistentHash": {"httpCookie": {"name": "user", "ttl": "0s"}}}},
        },
    ],
)


def spec_of(data: dict[str, Any]) -> DestinationRuleSpec:
    spec = parse(data).spec
    assert isinstance(spec, DestinationRuleSpec)
    return spec


def test_a_full_destination_rule_parses_and_overlays() -> None:
    spec = spec_of(FULL)
    top = spec.traffic_policy
    assert top is not None
    assert top.load_balancer is not None
    assert top.load_balancer.simple == "LEAST_REQUEST"
    assert top.connection_pool is not None
    assert top.connection_pool.connect_timeout_s == 0.03
    v2 = spec.subset("v2")
    assert v2 is not None
    merged = top.overlaid(v2.traffic_policy)
    assert merged.load_balancer is not None
    assert merged.load_balancer.consistent_hash is not None
    assert merged.load_balancer.consistent_hash.cookie_ttl_s == 0.0
    assert merged.connection_pool == top.connection_pool  # not overridden by the subset
    on_port = top.for_port(9080)
    assert on_port.load_balancer is not None
    assert on_port.load_balancer.simple == "RANDOM"
    assert top.for_port(80).load_balancer == top.load_balancer


@pytest.mark.parametrize(
    ("path", "value", "error_path", "text"),
    [
        ("spec.host", "", "spec.host", "non-empty host"),
        ("spec.subsets[1].name", "V2", "spec.subsets[1].name", "subset name"),
        ("spec.subsets[1].name", "v1", "spec.subsets[1].name", "duplicate subset"),
        ("spec.subsets[1].labels", {"version": 2}, "spec.subsets[1].labels.version", "string"),
        ("spec.subsets[1].labels", {"bad key!": "x"}, "spec.subsets[1].labels.bad key!", "label key"),
        ("spec.subsets[1].lables", {}, "spec.subsets[1].lables", "unknown key 'lables'"),
        ("spec.trafficPolicy.loadBalancer", {"simple": "FASTEST"}, "spec.trafficPolicy.loadBalancer.simple", "one of"),
        ("spec.trafficPolicy.loadBalancer", {}, "spec.trafficPolicy.loadBalancer", "simple or consistentHash"),
        (
            "spec.trafficPolicy.loadBalancer",
            {"simple": "RANDOM", "consistentHash": {"useSourceIp": True}},
            "spec.trafficPolicy.loadBalancer.consistentHash",
            "not both",
        ),
        (
            "spec.trafficPolicy.loadBalancer",
            {"consistentHash": {}},
            "spec.trafficPolicy.loadBalancer.consistentHash",
            "needs one",
        ),
        (
            "spec.trafficPolicy.loadBalancer",
            {"consistentHash": {"httpHeaderName": "x", "useSourceIp": True}},
            "spec.trafficPolicy.loadBalancer.consistentHash.useSourceIp",
            "only one",
        ),
        (
            "spec.trafficPolicy.loadBalancer",
            {"consistentHash": {"httpCookie": {"ttl": "1s"}}},
            "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name",
            "required",
        ),
        (
            "spec.trafficPolicy.loadBalancer",
            {"consistentHash": {"httpHeaderName": "x", "maglev": {"tableSize": 1000}}},
            "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize",
            "prime",
        ),
        (
            "spec.trafficPolicy.loadBalancer",
            {"consistentHash": {"httpHeaderName": "x", "maglev": {}, "ringHash": {}}},
            "spec.trafficPolicy.loadBalancer.consistentHash.maglev",
            "not both",
        ),
        (
            "spec.trafficPolicy.loadBalancer",
            {"consistentHash": {"httpQueryParameterName": "u"}},
            "spec.trafficPolicy.loadBalancer.consistentHash.httpQueryParameterName",
            "not supported",
        ),
        (
            "spec.trafficPolicy.connectionPool.tcp.maxConnections",
            -1,
            "spec.trafficPolicy.connectionPool.tcp.maxConnections",
            "",
        ),
        (
            "spec.trafficPolicy.connectionPool.tcp.connectTimeout",
            "0s",
            "spec.trafficPolicy.connectionPool.tcp.connectTimeout",
            "1ms",
        ),
        (
            "spec.trafficPolicy.connectionPool.http.h2UpgradePolicy",
            "YES",
            "spec.trafficPolicy.connectionPool.http.h2UpgradePolicy",
            "",
        ),
        ("spec.trafficPolicy.connectionPool.udp", {}, "spec.trafficPolicy.connectionPool.udp", "unknown key"),
        (
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
            150,
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
            "0..100",
        ),
        (
            "spec.trafficPolicy.outlierDetection.interval",
            "fast",
            "spec.trafficPolicy.outlierDetection.interval",
            "duration",
        ),
        (
            "spec.trafficPolicy.outlierDetection.consecutiveErrors",
            5,
            "spec.trafficPolicy.outlierDetection.consecutiveErrors",
            "not both",
        ),
        (
            "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures",
            5,
            "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures",
            "splitExternalLocalOriginErrors",
        ),
        (
            "spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests",
            -5,
            "spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests",
            "",
        ),
        (
            "spec.trafficPolicy.connectionPool.http.maxRetries",
            "3",
            "spec.trafficPolicy.connectionPool.http.maxRetries",
            "integer",
        ),
        (
            "spec.trafficPolicy.outlierDetection.minHealthPercent",
            101,
            "spec.trafficPolicy.outlierDetection.minHealthPercent",
            "0..100",
        ),
        (
            "spec.trafficPolicy.outlierDetection.baseEjectionTime",
            "-1s",
            "spec.trafficPolicy.outlierDetection.baseEjectionTime",
            "",
        ),
        (
            "spec.trafficPolicy.outlierDetection.consecutiveGatewayErrors",
            -1,
            "spec.trafficPolicy.outlierDetection.consecutiveGatewayErrors",
            "",
        ),
        ("spec.trafficPolicy.tls.mode", "STRICT", "spec.trafficPolicy.tls.mode", "one of"),
        (
            "spec.trafficPolicy.portLevelSettings",
            [{"port": {"number": 80}}, {"port": {"number": 80}}],
            "spec.trafficPolicy.portLevelSettings[1].port.number",
            "already configured",
        ),
        (
            "spec.trafficPolicy.portLevelSettings",
            [{"loadBalancer": {"simple": "RANDOM"}}],
            "spec.trafficPolicy.portLevelSettings[0].port",
            "required",
        ),
        ("spec.trafficPolicy.tunnel", {}, "spec.trafficPolicy.tunnel", "not supported"),
        ("spec.workloadSelector", {"matchLabels": {}}, "spec.workloadSelector.matchLabels", "at least one"),
    ],
)
def test_invalid_destination_rules_name_the_field(path: str, value: Any, error_path: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(with_path(FULL, path, value))
    assert info.value.path == error_path, info.value
    assert text in info.value.message


def test_deprecated_spellings_are_read() -> None:
    data = with_path(
        FULL, "spec.trafficPolicy.loadBalancer", {"consistentHash": {"useSourceIp": True, "minimumRingSize": 2048}}
    )
    data = with_path(data, "spec.trafficPolicy.outlierDetection", {"consecutiveErrors": 3})
    policy = spec_of(data).traffic_policy
    assert policy is not None
    assert policy.load_balancer is not None
    hashing = policy.load_balancer.consistent_hash
    assert hashing is not None
    assert hashing.source == "source_ip"
    assert hashing.ring_min_size == 2048
    assert policy.outlier_detection is not None
    assert policy.outlier_detection.consecutive_5xx_errors == 3
