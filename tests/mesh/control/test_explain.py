"""Explain on a computed snapshot: route chosen by the model's router, skipped routes, endpoints and exclusions."""

from __future__ import annotations

from mesh.control.explain import explain_request, why_not
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


def explain(**request: object) -> dict[str, object]:
    translation = translate(profile("reviews"), RULES, reviews_catalog())
    args = {"host": "reviews", "method": "GET", "path": "/", "query": "", "headers": {}}
    args.update(request)
    return explain_request(translation, reviews_catalog(), **args)  # type: ignore[arg-type]


def test_explains_the_matched_route_subset_and_exclusions() -> None:
    result = explain(headers={"end-user": "jason"})
    assert result["status"] == 200
    route = result["route"]
    assert isinstance(route, dict)
    assert route["rule"] == "VirtualService default/reviews"
    assert route["rule_path"] == "spec.http[0].match[0]"
    assert route["not_enforced"][0]["path"] == "spec.http[0].corsPolicy"
    (dest,) = result["destinations"]  # type: ignore[misc]
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
    percents = [d["percent"] for d in result["destinations"]]  # type: ignore[union-attr]
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
