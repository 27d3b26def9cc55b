"""Rules + registry instances + a sidecar profile → the sidecar's snapshot."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from typing import Any

from mesh.control.translate import (
    ISTIO_DEFAULT_RETRIES,
    Translation,
    cluster_name,
    route_origin,
    snapshot_digest,
    translate,
)
from mesh.model.dump import snapshot_to_dict
from mesh.model.parse import parse_snapshot
from mesh.model.policies import (
    ISTIO_DEFAULT_RETRY_ON,
    CircuitBreakers,
    FaultAbort,
    FaultDelay,
    FaultPolicy,
    MirrorPolicy,
    Redirect,
    RetryPolicy,
)
from mesh.model.routing import pick_weighted_cluster, select_route
from mesh.model.snapshot import Cluster, Route
from tests.mesh.control.helpers import instance, profile, reviews_catalog, rules
from tests.mesh.rules.helpers import dr, se, vs

FQDN = "reviews.default.svc.cluster.local"
SUBSETS = dr(
    subsets=[
        {"name": "v1", "labels": {"version": "v1"}},
        {"name": "v2", "labels": {"version": "v2"}},
        {"name": "v3", "labels": {"version": "v3"}, "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}}},
    ],
    trafficPolicy={"loadBalancer": {"simple": "LEAST_REQUEST"}},
)


def checked(translation: Translation) -> Translation:
    """Every computed snapshot must be one the sidecar's parser accepts, unchanged."""
    snapshot = replace(translation.snapshot, version="1.test")
    assert parse_snapshot(snapshot_to_dict(snapshot)) == snapshot
    return translation


def route_for(
    translation: Translation, host: str, path: str = "/", headers: dict[str, str] | None = None
) -> Route | None:
    table = translation.snapshot.route_tables["outbound"]
    selection = select_route(table, host, "GET", path, "", headers or {})
    return None if selection is None else selection.route


def cluster(translation: Translation, subset: str = "", host: str = FQDN, port: int | None = None) -> Cluster:
    return translation.snapshot.clusters[cluster_name(port, subset, host)]


def addresses(c: Cluster) -> list[str]:
    return [e.host for e in c.endpoints]


def test_no_rules_routes_every_passing_instance_with_every_domain() -> None:
    t = checked(translate(profile("reviews"), rules(), reviews_catalog()))
    vhost = t.snapshot.route_tables["outbound"].virtual_hosts[0]
    assert vhost.domains == ("reviews", "reviews.service.consul", "reviews.default", "reviews.default.svc", FQDN)
    route = route_for(t, "reviews:9080")
    assert route is not None
    assert route.timeout_s is None
    assert addresses(cluster(t)) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]  # the critical one is left out
    assert cluster(t).lb.kind == "round_robin"
    assert t.services == {"reviews", "db"}
    assert not t.pending


def test_subsets_select_instances_by_meta_and_both_tag_conventions() -> None:
    route = vs(
        http=[
            {
                "route": [
                    {"destination": {"host": "reviews", "subset": "v1"}, "weight": 10},
                    {"destination": {"host": "reviews", "subset": "v2"}, "weight": 20},
                    {"destination": {"host": "reviews", "subset": "v3"}, "weight": 70},
                ]
            }
        ]
    )
    t = checked(translate(profile("reviews"), rules(SUBSETS, route), reviews_catalog()))
    assert addresses(cluster(t, "v1")) == ["10.0.0.1"]
    assert addresses(cluster(t, "v2")) == ["10.0.0.2"]
    assert addresses(cluster(t, "v3")) == ["10.0.0.3"]
    assert cluster(t, "v1").lb.kind == "least_request"
    assert cluster(t, "v3").lb.kind == "random"
    chosen = route_for(t, "reviews")
    assert chosen is not None
    assert [c.weight for c in chosen.clusters] == [10, 20, 70]
    rng = random.Random(7)
    picks = Counter(pick_weighted_cluster(chosen, rng) for _ in range(10_000))
    assert 0.65 < picks[cluster_name(None, "v3", FQDN)] / 10_000 < 0.75


def test_header_match_routes_first_and_matches_become_separate_routes() -> None:
    route = vs(
        http=[
            {
                "match": [{"headers": {"end-user": {"exact": "jason"}}}, {"uri": {"prefix": "/beta"}}],
                "route": [{"destination": {"host": "reviews", "subset": "v2"}}],
            },
            {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]},
        ]
    )
    t = checked(translate(profile("reviews"), rules(SUBSETS, route), reviews_catalog()))
    jason = route_for(t, "reviews", headers={"end-user": "jason"})
    beta = route_for(t, "reviews", "/beta/x")
    other = route_for(t, "reviews", headers={"end-user": "kim"})
    assert jason is not None
    assert beta is not None
    assert other is not None
    assert jason.clusters[0].name == beta.clusters[0].name == cluster_name(None, "v2", FQDN)
    assert other.clusters[0].name == cluster_name(None, "v1", FQDN)
    origin = route_origin(t, FQDN, jason.name)
    assert origin is not None
    assert origin.resource == "VirtualService default/reviews"
    assert origin.match_path == "spec.http[0].match[0]"


def test_source_labels_and_namespaces_pick_routes_per_sidecar() -> None:
    route = vs(
        http=[
            {
                "match": [{"sourceLabels": {"app": "reviews", "version": "v2"}}],
                "route": [{"destination": {"host": "reviews", "subset": "v2"}}],
            },
            {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]},
        ]
    )
    plain = checked(translate(profile("reviews"), rules(SUBSETS, route), reviews_catalog()))
    tagged = translate(
        profile("reviews", labels={"app": "reviews", "version": "v2"}), rules(SUBSETS, route), reviews_catalog()
    )
    plain_route = route_for(plain, "reviews")
    tagged_route = route_for(tagged, "reviews")
    assert plain_route is not None
    assert tagged_route is not None
    assert plain_route.clusters[0].name.endswith("|v1|" + FQDN)
    assert tagged_route.clusters[0].name.endswith("|v2|" + FQDN)


def test_match_conditions_rewrite_headers_and_timeout() -> None:
    route = vs(
        http=[
            {
                "match": [
                    {
                        "uri": {"prefix": "/API"},
                        "ignoreUriCase": True,
                        "method": {"exact": "post"},
                        "withoutHeaders": {"x-debug": {}},
                        "queryParams": {"beta": {"regex": "yes|true"}},
                        "authority": {"prefix": "reviews"},
                    }
                ],
                "rewrite": {"uri": "/v2/api"},
                "timeout": "1.5s",
                "headers": {"request": {"set": {"x-env": "prod"}, "add": {"x-hop": "1"}, "remove": ["x-secret"]}},
                "route": [{"destination": {"host": "reviews"}}],
            }
        ]
    )
    t = checked(translate(profile("reviews"), rules(route), reviews_catalog()))
    table = t.snapshot.route_tables["outbound"]
    ok = select_route(table, "reviews", "POST", "/api/x", "beta=yes", {"host": "reviews"})
    assert ok is not None
    chosen = ok.route
    assert chosen.timeout_s == 1.5
    assert chosen.prefix_rewrite == "/v2/api"
    assert [(h.name, h.value, h.append) for h in chosen.request_headers_add] == [
        ("x-env", "prod", False),
        ("x-hop", "1", True),
    ]
    assert chosen.request_headers_remove == ("x-secret",)
    assert select_route(table, "reviews", "GET", "/api/x", "beta=yes", {"host": "reviews"}) is None
    assert select_route(table, "reviews", "POST", "/api/x", "beta=yes", {"host": "reviews", "x-debug": "1"}) is None
    assert select_route(table, "reviews", "POST", "/api/x", "beta=no", {"host": "reviews"}) is None


def test_rewrite_without_a_uri_match_replaces_the_root_prefix() -> None:
    route = vs(http=[{"rewrite": {"uri": "/v2"}, "route": [{"destination": {"host": "reviews"}}]}])
    t = checked(translate(profile("reviews"), rules(route), reviews_catalog()))
    chosen = route_for(t, "reviews", "/books")
    assert chosen is not None
    assert chosen.match.path_prefix == "/"


def test_destination_port_selects_instances_on_that_port() -> None:
    catalog = {"web": (instance("web-a", 8080, address="10.1.0.1"), instance("web-b", 9090, address="10.1.0.2"))}
    route = vs("web", http=[{"route": [{"destination": {"host": "web", "port": {"number": 9090}}}]}])
    t = checked(translate(profile("web"), rules(route), catalog))
    assert addresses(cluster(t, host="web.default.svc.cluster.local", port=9090)) == ["10.1.0.2"]


def test_unknown_services_get_no_virtual_host_but_stay_watched() -> None:
    t = checked(translate(profile("ghost", "reviews"), rules(), reviews_catalog()))
    assert route_for(t, "ghost") is None
    assert "ghost" in t.unresolved
    assert "ghost" in t.services
    pending = translate(profile("new"), rules(), {})
    assert pending.pending == {"new", "db"}


def test_a_virtual_service_makes_a_host_routable_without_instances() -> None:
    route = vs("ghost", http=[{"route": [{"destination": {"host": "reviews"}}]}])
    t = checked(translate(profile("ghost"), rules(route), reviews_catalog()))
    chosen = route_for(t, "ghost")
    assert chosen is not None
    assert chosen.clusters[0].name == cluster_name(None, "", FQDN)


def test_other_namespaces_get_only_qualified_domains() -> None:
    catalog = {"ratings": (instance("ratings-1", meta={"k8s-namespace": "prod"}),)}
    t = checked(translate(profile("ratings.prod"), rules(), catalog))
    vhost = t.snapshot.route_tables["outbound"].virtual_hosts[0]
    assert vhost.domains == ("ratings.prod", "ratings.prod.svc", "ratings.prod.svc.cluster.local")
    assert route_for(t, "ratings") is None
    local = translate(profile("ratings"), rules(), catalog)
    assert "ratings" in local.unresolved  # the short name means namespace default, where it has no instance


def test_service_entries_static_dns_and_wildcards() -> None:
    static = se(
        "api",
        hosts=["api.example.com"],
        resolution="STATIC",
        ports=[{"number": 80, "name": "http", "protocol": "HTTP"}],
        endpoints=[
            {"address": "192.0.2.1", "labels": {"version": "v1"}},
            {"address": "192.0.2.2", "ports": {"http": 8080}},
        ],
    )
    dns = se("ext", hosts=["*.example.org"], resolution="NONE")
    t = checked(translate(profile("api.example.com", "www.example.org"), rules(static, dns), {}))
    api = cluster(t, host="api.example.com")
    assert [(e.host, e.port) for e in api.endpoints] == [("192.0.2.1", 80), ("192.0.2.2", 8080)]
    www = cluster(t, host="www.example.org")
    assert [(e.host, e.port) for e in www.endpoints] == [("www.example.org", 80)]
    assert route_for(t, "api.example.com") is not None


def test_tcp_upstreams_get_registry_endpoints_or_their_tcp_route() -> None:
    t = checked(translate(profile(), rules(), reviews_catalog()))
    assert [e.host for e in t.snapshot.clusters["tcp|db"].endpoints] == ["10.0.1.1"]
    catalog = {**reviews_catalog(), "db-replica": (instance("db-r", 5432, address="10.0.2.2"),)}
    route = vs("db", http=[], tcp=[{"route": [{"destination": {"host": "db-replica"}}]}])
    t = checked(translate(profile(), rules(route), catalog))
    assert [e.host for e in t.snapshot.clusters["tcp|db"].endpoints] == ["10.0.2.2"]
    assert t.snapshot.clusters["tcp|db"].protocol == "tcp"


def test_identical_inputs_give_identical_digests() -> None:
    a = translate(profile("reviews"), rules(SUBSETS), reviews_catalog())
    b = translate(profile("reviews"), rules(SUBSETS), reviews_catalog())
    assert snapshot_digest(a.snapshot)[0] == snapshot_digest(b.snapshot)[0]
    changed = dict(reviews_catalog())
    changed["reviews"] = changed["reviews"][:2]
    c = translate(profile("reviews"), rules(SUBSETS), changed)
    assert snapshot_digest(c.snapshot)[0] != snapshot_digest(a.snapshot)[0]


def test_gateway_only_virtual_services_do_not_apply_to_sidecars() -> None:
    route = vs(gateways=["ingress"], http=[{"route": [{"destination": {"host": "reviews", "subset": "v2"}}]}])
    t = checked(translate(profile("reviews"), rules(SUBSETS, route), reviews_catalog()))
    chosen = route_for(t, "reviews")
    assert chosen is not None
    assert chosen.name == "default"


def test_resilience_settings_reach_routes_and_clusters() -> None:
    rule = dr(
        trafficPolicy={
            "connectionPool": {"tcp": {"maxConnections": 1}, "http": {"http1MaxPendingRequests": 2, "maxRetries": 3}},
            "outlierDetection": {"consecutive5xxErrors": 2, "interval": "1s", "baseEjectionTime": "10m"},
        },
        subsets=[{"name": "v1", "labels": {"version": "v1"}}, {"name": "v3", "labels": {"version": "v3"}}],
    )
    route = vs(
        http=[
            {
                "match": [{"uri": {"prefix": "/old"}}],
                "redirect": {"uri": "/new", "authority": "reviews-next", "redirectCode": 302},
            },
            {
                "route": [{"destination": {"host": "reviews", "subset": "v1"}}],
                "retries": {"attempts": 3, "perTryTimeout": "200ms", "retryOn": "gateway-error,503"},
                "fault": {"delay": {"fixedDelay": "7s", "percentage": {"value": 10}}, "abort": {"httpStatus": 418}},
                "mirror": {"host": "reviews", "subset": "v3"},
                "mirrorPercentage": {"value": 25},
                "rewrite": {"authority": "reviews.internal"},
            },
        ]
    )
    t = checked(translate(profile("reviews"), rules(rule, route), reviews_catalog()))
    redirect = route_for(t, "reviews", "/old/x")
    assert redirect is not None
    assert redirect.redirect is not None
    assert not redirect.clusters
    assert (redirect.redirect.path, redirect.redirect.host, redirect.redirect.response_code) == (
        "/new",
        "reviews-next",
        302,
    )
    main = route_for(t, "reviews", "/books")
    assert main is not None
    assert main.retry_policy is not None
    assert main.retry_policy.num_retries == 3
    assert main.retry_policy.per_try_timeout_s == 0.2
    assert main.retry_policy.retry_on == {"gateway-error", "retriable-status-codes"}
    assert main.retry_policy.retriable_status_codes == {503}
    assert main.fault is not None
    assert main.fault.delay is not None
    assert main.fault.abort is not None
    assert (main.fault.delay.fixed_delay_s, main.fault.delay.percentage, main.fault.abort.http_status) == (
        7.0,
        10.0,
        418,
    )
    assert [(m.cluster, m.percentage) for m in main.mirrors] == [(cluster_name(None, "v3", FQDN), 25.0)]
    assert main.host_rewrite == "reviews.internal"
    v1 = cluster(t, "v1")
    assert (v1.circuit_breakers.max_connections, v1.circuit_breakers.max_pending_requests) == (1, 2)
    assert v1.circuit_breakers.max_requests == 2**32 - 1  # Istio leaves what is not set unlimited
    assert v1.outlier_detection is not None
    assert (v1.outlier_detection.consecutive_5xx, v1.outlier_detection.base_ejection_time_s) == (2, 600.0)
    assert v1.outlier_detection.max_ejection_time_s == 600.0


def test_istio_default_retries_and_disabling_them() -> None:
    t = checked(translate(profile("reviews"), rules(), reviews_catalog()))
    default = route_for(t, "reviews")
    assert default is not None
    assert default.retry_policy is not None
    assert default.retry_policy.num_retries == 2
    route = vs(http=[{"route": [{"destination": {"host": "reviews"}}], "retries": {"attempts": 0}}])
    t = checked(translate(profile("reviews"), rules(route), reviews_catalog()))
    chosen = route_for(t, "reviews")
    assert chosen is not None
    assert chosen.retry_policy is None


# === resilience, field by field ===


def one_route(**http: Any) -> Route:
    """The route a GET / to reviews gets under a VirtualService with one HTTP route built from ``http``."""
    body: dict[str, Any] = {"route": [{"destination": {"host": "reviews"}}], **http}
    t = checked(translate(profile("reviews"), rules(SUBSETS, vs(http=[body])), reviews_catalog()))
    chosen = route_for(t, "reviews")
    assert chosen is not None
    return chosen


def retries(**spec: Any) -> RetryPolicy:
    policy = one_route(retries=spec).retry_policy
    assert policy is not None
    return policy


def test_retries_without_retry_on_keep_istios_conditions_and_503() -> None:
    policy = retries(attempts=5, perTryTimeout="1.5s")
    assert policy.num_retries == 5
    assert policy.per_try_timeout_s == 1.5
    assert policy.retry_on == ISTIO_DEFAULT_RETRY_ON
    assert policy.retriable_status_codes == {503}
    assert policy.retry_previous_hosts  # Istio's previous_hosts predicate
    assert policy.retry_non_idempotent  # Envoy retries whatever the method
    assert policy.base_interval_s == 0.025


def test_retry_on_replaces_both_conditions_and_status_codes() -> None:
    only_conditions = retries(attempts=1, retryOn="5xx,reset")
    assert only_conditions.retry_on == {"5xx", "reset"}
    assert only_conditions.retriable_status_codes == frozenset()
    only_codes = retries(attempts=1, retryOn="502,504")
    assert only_codes.retry_on == {"retriable-status-codes"}
    assert only_codes.retriable_status_codes == {502, 504}
    grpc = retries(attempts=1, retryOn="unavailable, retriable-status-codes ,409")
    assert grpc.retry_on == {"unavailable", "retriable-status-codes"}
    assert grpc.retriable_status_codes == {409}


def test_default_retries_apply_to_routes_without_retries_but_not_to_redirects() -> None:
    assert one_route().retry_policy == ISTIO_DEFAULT_RETRIES
    assert ISTIO_DEFAULT_RETRIES.num_retries == 2
    assert one_route(retries={"attempts": 0, "retryOn": "5xx"}).retry_policy is None
    redirect = one_route(route=[], redirect={"uri": "/v2"})
    assert redirect.retry_policy is None
    assert redirect.clusters == ()


def test_fault_delay_and_abort_each_with_their_percentage() -> None:
    delay = one_route(fault={"delay": {"fixedDelay": "250ms", "percentage": {"value": 0.5}}}).fault
    assert delay == FaultPolicy(delay=FaultDelay(0.25, 0.5))
    abort = one_route(fault={"abort": {"httpStatus": 503, "percentage": {"value": 12.5}}}).fault
    assert abort == FaultPolicy(abort=FaultAbort(503, 12.5))
    legacy = one_route(fault={"abort": {"httpStatus": 500, "percent": 30}}).fault
    assert legacy == FaultPolicy(abort=FaultAbort(500, 30.0))  # the deprecated integer percent
    whole = one_route(fault={"delay": {"fixedDelay": "1s"}}).fault
    assert whole == FaultPolicy(delay=FaultDelay(1.0, 100.0))  # no percentage: every request
    assert one_route().fault is None


def test_mirror_defaults_to_all_traffic_and_mirrors_keep_their_percentages() -> None:
    single = one_route(mirror={"host": "reviews", "subset": "v2"})
    assert single.mirrors == (MirrorPolicy(cluster_name(None, "v2", FQDN), 100.0),)
    t = checked(
        translate(
            profile("reviews"),
            rules(
                SUBSETS,
                vs(
                    http=[
                        {
                            "route": [{"destination": {"host": "reviews", "subset": "v1"}}],
                            "mirrors": [
                                {"destination": {"host": "reviews", "subset": "v2"}, "percentage": {"value": 5}},
                                {"destination": {"host": "reviews", "subset": "v3", "port": {"number": 9080}}},
                            ],
                        }
                    ]
                ),
            ),
            reviews_catalog(),
        )
    )
    chosen = route_for(t, "reviews")
    assert chosen is not None
    assert chosen.mirrors == (
        MirrorPolicy(cluster_name(None, "v2", FQDN), 5.0),
        MirrorPolicy(cluster_name(9080, "v3", FQDN), 100.0),
    )
    assert addresses(cluster(t, "v2")) == ["10.0.0.2"]  # a mirror's cluster is built like a destination's
    assert addresses(cluster(t, "v3", port=9080)) == ["10.0.0.3"]
    legacy = one_route(mirror={"host": "reviews"}, mirrorPercent=40)
    assert legacy.mirrors[0].percentage == 40.0


def test_redirects_keep_what_is_not_given_and_default_to_301() -> None:
    plain = one_route(route=[], redirect={"authority": "reviews-next"}).redirect
    assert plain == Redirect(host="reviews-next", response_code=301)
    https = one_route(
        route=[], redirect={"scheme": "https", "derivePort": "FROM_PROTOCOL_DEFAULT", "redirectCode": 308}
    ).redirect
    assert https == Redirect(scheme="https", port=443, response_code=308)
    same_port = one_route(route=[], redirect={"uri": "/b", "derivePort": "FROM_REQUEST_PORT"}).redirect
    assert same_port == Redirect(path="/b")
    assert one_route(route=[], redirect={"port": 8443}).redirect == Redirect(port=8443)


def test_rewrites_become_prefix_and_host_rewrites() -> None:
    t = checked(
        translate(
            profile("reviews"),
            rules(
                vs(
                    http=[
                        {
                            "match": [{"uri": {"prefix": "/api/"}}],
                            "rewrite": {"uri": "/", "authority": "reviews.internal:8080"},
                            "route": [{"destination": {"host": "reviews"}}],
                        }
                    ]
                )
            ),
            reviews_catalog(),
        )
    )
    chosen = route_for(t, "reviews", "/api/books")
    assert chosen is not None
    assert (chosen.prefix_rewrite, chosen.host_rewrite) == ("/", "reviews.internal:8080")
    assert one_route(rewrite={"authority": "other"}).prefix_rewrite is None


POOL_AND_OUTLIER = dr(
    trafficPolicy={
        "connectionPool": {
            "tcp": {"maxConnections": 10},
            "http": {
                "http1MaxPendingRequests": 20,
                "http2MaxRequests": 30,
                "maxRetries": 4,
                "maxRequestsPerConnection": 5,
            },
        },
        "outlierDetection": {
            "consecutive5xxErrors": 0,
            "consecutiveGatewayErrors": 3,
            "interval": "2s",
            "maxEjectionPercent": 50,
            "minHealthPercent": 30,
        },
        "portLevelSettings": [{"port": {"number": 9080}, "connectionPool": {"tcp": {"maxConnections": 99}}}],
    },
    subsets=[
        {"name": "v1", "labels": {"version": "v1"}},
        {
            "name": "v2",
            "labels": {"version": "v2"},
            "trafficPolicy": {"connectionPool": {"http": {"http2MaxRequests": 1}}},
        },
        {"name": "v3", "labels": {"version": "v3"}, "trafficPolicy": {"outlierDetection": {}}},
        {
            "name": "v4",
            "labels": {"version": "v4"},
            "trafficPolicy": {"connectionPool": {"http": {"maxRequestsPerConnection": 1}}},
        },
    ],
)


def pool_clusters() -> Translation:
    route = vs(
        http=[
            {
                "route": [
                    {"destination": {"host": "reviews", "subset": "v1"}, "weight": 40},
                    {"destination": {"host": "reviews", "subset": "v2"}, "weight": 20},
                    {"destination": {"host": "reviews", "subset": "v3", "port": {"number": 9080}}, "weight": 30},
                    {"destination": {"host": "reviews", "subset": "v4"}, "weight": 10},
                ]
            }
        ]
    )
    return checked(translate(profile("reviews"), rules(POOL_AND_OUTLIER, route), reviews_catalog()))


def test_connection_pool_limits_become_circuit_breakers() -> None:
    t = pool_clusters()
    assert cluster(t, "v1").circuit_breakers == CircuitBreakers(10, 20, 30, 4)
    unlimited = 2**32 - 1
    # a subset's connectionPool replaces the host's whole (Istio merges trafficPolicy field by field)
    assert cluster(t, "v2").circuit_breakers == CircuitBreakers(unlimited, unlimited, 1, unlimited)
    # portLevelSettings for the destination's port override the host's connectionPool
    assert cluster(t, "v3", port=9080).circuit_breakers == CircuitBreakers(99, unlimited, unlimited, unlimited)
    bare = checked(translate(profile("reviews"), rules(), reviews_catalog()))
    assert cluster(bare).circuit_breakers == CircuitBreakers(unlimited, unlimited, unlimited, unlimited)


def test_max_requests_per_connection_follows_the_host_subset_and_port_policies() -> None:
    t = pool_clusters()
    assert cluster(t, "v1").max_requests_per_connection == 5  # the host's connectionPool
    assert cluster(t, "v2").max_requests_per_connection == 0  # the subset's pool replaces it: unlimited
    assert cluster(t, "v3", port=9080).max_requests_per_connection == 0  # so does the port's
    assert cluster(t, "v4").max_requests_per_connection == 1  # the subset's own: no upstream keep-alive
    bare = checked(translate(profile("reviews"), rules(), reviews_catalog()))
    assert cluster(bare).max_requests_per_connection == 0
    explicit_zero = dr(trafficPolicy={"connectionPool": {"http": {"maxRequestsPerConnection": 0}}})
    zero = checked(translate(profile("reviews"), rules(explicit_zero), reviews_catalog()))
    assert cluster(zero).max_requests_per_connection == 0  # Istio's 0: unlimited
    dumped = snapshot_to_dict(t.snapshot)
    by_name = {c["name"]: c for c in dumped["clusters"]}
    assert by_name[cluster(t, "v4").name]["max_requests_per_connection"] == 1


def test_outlier_detection_with_istio_defaults_and_min_health_percent() -> None:
    t = pool_clusters()
    v1 = cluster(t, "v1").outlier_detection
    assert v1 is not None
    assert (v1.consecutive_5xx, v1.consecutive_gateway_errors) == (0, 3)  # 0 turns the 5xx detector off
    assert (v1.interval_s, v1.base_ejection_time_s, v1.max_ejection_percent) == (2.0, 30.0, 50.0)
    assert v1.enforcing_success_rate == 0.0
    assert cluster(t, "v1").lb.panic_threshold == 0.3  # minHealthPercent, as Pilot sets it
    v3 = cluster(t, "v3", port=9080).outlier_detection  # the subset's empty outlierDetection: Istio's defaults
    assert v3 is not None
    assert (v3.consecutive_5xx, v3.consecutive_gateway_errors, v3.interval_s) == (5, 0, 10.0)
    assert (v3.base_ejection_time_s, v3.max_ejection_time_s, v3.max_ejection_percent) == (30.0, 300.0, 10.0)
    assert cluster(t, "v3", port=9080).lb.panic_threshold == 0.0  # minHealthPercent's default 0: no panic mode
    bare = checked(translate(profile("reviews"), rules(), reviews_catalog()))
    assert cluster(bare).outlier_detection is None
    assert cluster(bare).lb.panic_threshold == 0.5  # Envoy's default when there is no outlier detection


def test_outbound_traffic_policy_mesh_wide() -> None:
    registry_only = translate(profile(), rules(), {}).snapshot
    assert registry_only.outbound_traffic_policy == "REGISTRY_ONLY"
    assert "PassthroughCluster" not in registry_only.clusters
    allow_any = translate(profile(), rules().with_context({}, "ALLOW_ANY"), {}).snapshot
    assert allow_any.outbound_traffic_policy == "ALLOW_ANY"
    assert allow_any.clusters["PassthroughCluster"].original_destination
