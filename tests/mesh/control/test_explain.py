"""Explain on a computed snapshot: route chosen by the model's router, skipped routes, endpoints and exclusions."""

from __future__ import annotations

from typing import Any

from mesh.control.explain import explain_request, why_not
from mesh.control.explain_policies import describe_cluster_policies, describe_route_policies
from mesh.control.translate import translate
from tests.mesh.control.helpers import profile, reviews_catalog, rules
from tests.mesh.rules.helpers import dr, vs

RULES = rules(
    dr(subsets=[{"name": "v1", "labels": {"version": "v1"}}, {"name": "v3", "labels": {"version": "v3"}}]),
    vs(
        http=[
            {
                "match": [{"headers": {"end-user": {"exact": "jason"}}}],
                "route": [{"destination": {"host": "reviews", "subset": "v3"}}],
                "corsPolicy": {"allowOrigins": [{"exact": "https://example.com"}]},
            },
            {
                "route": [
                    {"destination": {"host": "reviews", "subset": "v1"}, "weight": 80},
                    {"destination": {"host": "reviews", "subset": "v3"}, "weight": 20},
                ]
            },
        ]
    ),
)


def explain(**request: Any) -> dict[str, Any]:
    translation = translate(profile("reviews"), RULES, reviews_catalog())
    args: dict[str, Any] = {"host": "reviews", "method": "GET", "path": "/", "query": "", "headers": {}}
    args.update(request)
    return explain_request(translation, reviews_catalog(), **args)


def test_explains_the_matched_route_subset_and_exclusions() -> None:
    result = explain(headers={"end-user": "jason"})
    assert result["status"] == 200
    route = result["route"]
    assert isinstance(route, dict)
    assert route["rule"] == "VirtualService default/reviews"
    assert route["rule_path"] == "spec.http[0].match[0]"
    assert route["not_enforced"][0]["path"] == "spec.http[0].corsPolicy"
    (dest,) = result["destinations"]
    assert dest["subset"] == "v3"
    assert [e["address"] for e in dest["endpoints"]] == ["10.0.0.3:9080"]
    reasons = {e["instance"].split()[0]: e["reason"] for e in dest["excluded"]}
    assert reasons["reviews-v1"] == "not in the subset: lacks version=v3"
    assert reasons["reviews-v3b"].startswith("unhealthy (critical")


def test_explains_skipped_routes_and_weights() -> None:
    result = explain(headers={"end-user": "kim"})
    skipped = result["skipped_routes"]
    assert isinstance(skipped, list)
    assert "header end-user: 'kim', wanted exactly 'jason'" in skipped[0]["why"]
    percents = [d["percent"] for d in result["destinations"]]
    assert percents == [80.0, 20.0]


def test_unknown_host_is_a_404_with_the_known_hosts() -> None:
    result = explain(host="nothing-here")
    assert result["status"] == 404
    assert "reviews.default.svc.cluster.local" in result["virtual_hosts"]


def test_why_not_agrees_with_the_router_on_the_chosen_route() -> None:
    translation = translate(profile("reviews"), RULES, reviews_catalog())
    vhost = translation.snapshot.route_tables["outbound"].virtual_hosts[0]
    assert why_not(vhost.routes[0], "GET", "/", "", {"end-user": "jason"}) is None
    assert why_not(vhost.routes[0], "GET", "/", "", {}) is not None


def test_explains_resilience_settings_of_the_route_and_its_clusters() -> None:
    resilient = rules(
        dr(
            trafficPolicy={
                "connectionPool": {"tcp": {"maxConnections": 7}, "http": {"maxRequestsPerConnection": 3}},
                "outlierDetection": {"consecutive5xxErrors": 2, "minHealthPercent": 40},
            },
            subsets=[{"name": "v1", "labels": {"version": "v1"}}],
        ),
        vs(
            http=[
                {"match": [{"uri": {"prefix": "/old"}}], "redirect": {"uri": "/new", "redirectCode": 302}},
                {
                    "route": [{"destination": {"host": "reviews", "subset": "v1"}}],
                    "retries": {"attempts": 4, "perTryTimeout": "2s", "retryOn": "gateway-error"},
                    "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 1}}},
                    "mirror": {"host": "reviews"},
                    "rewrite": {"authority": "reviews.internal"},
                },
            ]
        ),
    )
    translation = translate(profile("reviews"), resilient, reviews_catalog())
    args: dict[str, Any] = {"host": "reviews", "method": "GET", "query": "", "headers": {}}
    result = explain_request(translation, reviews_catalog(), path="/books", **args)
    route = result["route"]
    assert isinstance(route, dict)
    assert route["retries"]["attempts"] == 4
    assert route["retries"]["retry_on"] == ["gateway-error"]
    assert route["retries"]["per_try_timeout_s"] == 2.0
    assert route["fault"] == {"abort": {"http_status": 503, "percent": 1.0}}
    assert route["mirrors"] == [{"cluster": "outbound|||reviews.default.svc.cluster.local", "percent": 100.0}]
    assert route["host_rewrite"] == "reviews.internal"
    assert "retries: 4 on gateway-error (status -, per try 2s)" in describe_route_policies(route)
    (dest,) = result["destinations"]
    assert dest["circuit_breakers"] == {"max_connections": 7}
    assert dest["outlier_detection"]["consecutive_5xx"] == 2
    assert dest["panic_threshold_percent"] == 40.0
    assert dest["max_requests_per_connection"] == 3
    assert describe_cluster_policies(dest)[:2] == [
        "circuit breakers: max_connections 7",
        "upstream connections closed after 3 requests each",
    ]
    redirected = explain_request(translation, reviews_catalog(), path="/old/a", **args)
    assert redirected["status"] == 302
    assert "destinations" not in redirected
    redirect_route = redirected["route"]
    assert isinstance(redirect_route, dict)
    assert redirect_route["redirect"] == {"status": 302, "path": "/new"}
    assert redirect_route["retries"] is None
