"""Apply warnings: only what the sidecar does not enforce is listed (resilience settings are enforced)."""

from __future__ import annotations

from mesh.rules.warnings import warnings_for
from tests.mesh.rules.helpers import dr, parse, vs


def paths(data: dict[str, object]) -> list[str]:
    return [w.path for w in warnings_for(parse(data))]


def test_retries_faults_mirrors_redirects_and_rewrites_are_not_warned_about() -> None:
    data = vs(
        http=[
            {
                "match": [{"uri": {"prefix": "/old"}}],
                "redirect": {"uri": "/new", "redirectCode": 307},
            },
            {
                "route": [{"destination": {"host": "reviews"}}],
                "retries": {"attempts": 3, "perTryTimeout": "1s", "retryOn": "5xx,503"},
                "fault": {"delay": {"fixedDelay": "1s", "percentage": {"value": 5}}, "abort": {"httpStatus": 500}},
                "mirror": {"host": "reviews"},
                "mirrorPercentage": {"value": 10},
                "rewrite": {"uri": "/", "authority": "reviews.internal"},
            },
        ]
    )
    assert paths(data) == []


def test_what_the_sidecar_lacks_is_still_warned_about_with_its_path() -> None:
    data = vs(
        http=[
            {
                "route": [{"destination": {"host": "reviews"}}],
                "retries": {"attempts": 3, "retryRemoteLocalities": True},
                "corsPolicy": {"allowOrigins": [{"exact": "https://a.example"}]},
            }
        ]
    )
    assert paths(data) == ["spec.http[0].retries.retryRemoteLocalities", "spec.http[0].corsPolicy"]


def test_connection_pool_limits_and_outlier_detection_are_not_warned_about() -> None:
    data = dr(
        trafficPolicy={
            "connectionPool": {
                "tcp": {"maxConnections": 1},
                "http": {
                    "http1MaxPendingRequests": 1,
                    "http2MaxRequests": 1,
                    "maxRetries": 1,
                    "maxRequestsPerConnection": 10,
                },
            },
            "outlierDetection": {
                "consecutive5xxErrors": 1,
                "consecutiveGatewayErrors": 1,
                "interval": "1s",
                "baseEjectionTime": "1s",
                "maxEjectionPercent": 100,
                "minHealthPercent": 50,
            },
        },
        subsets=[
            {
                "name": "v1",
                "labels": {"version": "v1"},
                "trafficPolicy": {
                    "connectionPool": {"http": {"maxRequestsPerConnection": 1, "maxConcurrentStreams": 8}},
                    "outlierDetection": {"splitExternalLocalOriginErrors": True, "consecutiveLocalOriginFailures": 2},
                },
            }
        ],
    )
    assert paths(data) == [
        "spec.subsets[0].trafficPolicy.connectionPool.http.maxConcurrentStreams",
        "spec.subsets[0].trafficPolicy.outlierDetection.splitExternalLocalOriginErrors",
        "spec.subsets[0].trafficPolicy.outlierDetection.consecutiveLocalOriginFailures",
    ]
