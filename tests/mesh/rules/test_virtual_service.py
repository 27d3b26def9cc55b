"""VirtualService validation: every bad input names its field; good input becomes typed routes."""

from __future__ import annotations

from typing import Any

import pytest

from mesh.model.reader import ConfigError
from mesh.rules.virtual_service import VirtualServiceSpec
from tests.mesh.rules.helpers import parse, vs, with_path

SPLIT = vs(
    http=[
        {
            "route": [
                {"destination": {"host": "reviews", "subset": "v1"}, "weight": 75},
                {"destination": {"host": "reviews", "subset": "v2"}, "weight": 25},
            ]
        }
    ]
)


def spec_of(data: dict[str, Any]) -> VirtualServiceSpec:
    spec = parse(data).spec
    assert isinstance(spec, VirtualServiceSpec)
    return spec


def test_a_full_virtual_service_parses() -> None:
    data = vs(
        hosts=["reviews", "reviews.prod.svc.cluster.local"],
        http=[
            {
                "name": "jason",
                "match": [
                    {
                        "uri": {"prefix": "/api"},
                        "headers": {"end-user": {"exact": "jason"}, "x-trace": {}},
                        "withoutHeaders": {"x-debug": {"regex": "1|true"}},
                        "queryParams": {"beta": {"exact": "yes"}},
                        "method": {"exact": "GET"},
                        "ignoreUriCase": True,
                        "sourceLabels": {"app": "productpage"},
                    },
                    {"uri": {"exact": "/health"}},
                ],
                "route": [{"destination": {"host": "reviews", "subset": "v2", "port": {"number": 9080}}}],
                "timeout": "2.5s",
                "retries": {"attempts": 3, "perTryTimeout": "500ms", "retryOn": "5xx,reset,503"},
                "fault": {"delay": {"fixedDelay": "7s", "percentage": {"value": 10}}, "abort": {"httpStatus": 500}},
                "mirror": {"host": "reviews", "subset": "v3"},
                "mirrorPercentage": {"value": 50.0},
                "rewrite": {"uri": "/v2"},
                "headers": {"request": {"set": {"x-a": "1"}, "add": {"x-b": "2"}, "remove": ["x-c"]}},
                "corsPolicy": {
                    "allowOrigins": [{"exact": "https://a.example"}],
                    "allowMethods": ["GET"],
                    "maxAge": "24h",
                },
            },
            {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]},
        ],
        tcp=[{"route": [{"destination": {"host": "db", "port": {"number": 5432}}}]}],
    )
    spec = spec_of(data)
    first = spec.http[0]
    assert spec.hosts == ("reviews", "reviews.prod.svc.cluster.local")
    assert first.route[0].weight == 100  # a single destination takes all traffic
    assert first.timeout_s == 2.5
    assert first.retries is not None
    assert first.retries.retry_on == ("5xx", "reset", "503")
    assert first.fault is not None
    assert first.fault.delay is not None
    assert first.fault.delay.percentage == 10.0
    assert first.mirrors[0].percentage == 50.0
    assert first.match[0].headers[1][1].kind == "present"
    assert first.match[0].method is not None
    assert first.match[0].method.exact == "GET"
    assert first.headers.request.set == (("x-a", "1"),)


def test_weights_are_kept_when_they_add_up() -> None:
    spec = spec_of(SPLIT)
    assert [d.weight for d in spec.http[0].route] == [75, 25]


def test_zero_weight_destination_is_allowed() -> None:
    data = with_path(SPLIT, "spec.http[0].route[0].weight", 100)
    data = with_path(data, "spec.http[0].route[1].weight", 0)
    assert [d.weight for d in spec_of(data).http[0].route] == [100, 0]


@pytest.mark.parametrize(
    ("path", "value", "error_path", "text"),
    [
        ("spec.http[0].route[1].weight", 30, "spec.http[0].route", "must add up to 100, got 105"),
        ("spec.http[0].route[1].weight", -5, "spec.http[0].route[1].weight", "0..100"),
        ("spec.http[0].route[1].weight", 101, "spec.http[0].route[1].weight", "0..100"),
        ("spec.http[0].route[1].weight", "25", "spec.http[0].route[1].weight", "integer"),
        ("spec.http[0].route[1].destination.subset", "v1", "spec.http[0].route[1].destination", "same destination"),
        ("spec.http[0].route[1].destination.host", "", "spec.http[0].route[1].destination.host", "non-empty host"),
        ("spec.http[0].route[1].destination.host", "*.x", "spec.http[0].route[1].destination.host", "wildcard"),
        ("spec.http[0].route[1].destination.port", {"number": 0}, "spec.http[0].route[1].destination.port.number", ""),
        (
            "spec.http[0].route[1].destination.port",
            {"number": 80, "name": "http"},
            "spec.http[0].route[1].destination.port.name",
            "unknown key 'name'",
        ),
        ("spec.http[0].route[1].destination.port", {}, "spec.http[0].route[1].destination.port.number", "required"),
        ("spec.http[0].route[1].destinaton", {}, "spec.http[0].route[1].destinaton", "unknown key 'destinaton'"),
        ("spec.http[0].route", [], "spec.http[0].route", "at least one destination"),
        ("spec.http[0].timeout", "1x", "spec.http[0].timeout", "invalid duration"),
        ("spec.http[0].timeout", 5, "spec.http[0].timeout", "duration string"),
        ("spec.http[0].timeout", "100us", "spec.http[0].timeout", "at least 1ms"),
        ("spec.http[0].timeout", "1.0005s", "spec.http[0].timeout", "millisecond precision"),
        ("spec.http[0].retries", {"attempts": -1}, "spec.http[0].retries.attempts", "integer"),
        ("spec.http[0].retries", {"perTryTimeout": "1s"}, "spec.http[0].retries.attempts", "required"),
        ("spec.http[0].retries", {"attempts": 2, "retryOn": "5xx,teapot"}, "spec.http[0].retries.retryOn", "teapot"),
        ("spec.http[0].retries", {"attempts": 2, "retryOn": "700"}, "spec.http[0].retries.retryOn", "100..599"),
        ("spec.http[0].fault", {}, "spec.http[0].fault", "needs delay or abort"),
        ("spec.http[0].fault", {"abort": {"httpStatus": 99}}, "spec.http[0].fault.abort.httpStatus", "200..599"),
        (
            "spec.http[0].fault",
            {"abort": {"percentage": {"value": 5}}},
            "spec.http[0].fault.abort.httpStatus",
            "required",
        ),
        (
            "spec.http[0].fault",
            {"delay": {"fixedDelay": "1s", "percentage": {"value": 150}}},
            "spec.http[0].fault.delay.percentage.value",
            "0..100",
        ),
        ("spec.http[0].fault", {"delay": {"percent": 5}}, "spec.http[0].fault.delay.fixedDelay", "required"),
        ("spec.http[0].mirrorPercentage", {"value": 5}, "spec.http[0].mirrorPercentage", "needs mirror"),
        ("spec.http[0].retries", {"attempts": 2, "perTryTimeout": "1h5"}, "spec.http[0].retries.perTryTimeout", ""),
        ("spec.http[0].retries", {"attempts": 2, "perTryTimeout": "0s"}, "spec.http[0].retries.perTryTimeout", "1ms"),
        ("spec.http[0].retries", {"attempts": 1.5}, "spec.http[0].retries.attempts", "integer"),
        (
            "spec.http[0].fault",
            {"abort": {"httpStatus": 600, "percentage": {"value": 5}}},
            "spec.http[0].fault.abort.httpStatus",
            "200..599",
        ),
        (
            "spec.http[0].fault",
            {"abort": {"httpStatus": 503, "percentage": {"value": -1}}},
            "spec.http[0].fault.abort.percentage.value",
            "0..100",
        ),
        (
            "spec.http[0].fault",
            {"delay": {"fixedDelay": "soon"}},
            "spec.http[0].fault.delay.fixedDelay",
            "invalid duration",
        ),
        (
            "spec.http[0].fault",
            {"abort": {"httpStatus": 503, "grpcStatus": "UNAVAILABLE"}},
            "spec.http[0].fault.abort.grpcStatus",
            "not supported",
        ),
        ("spec.http[0].mirrorPercentage", {"value": 101}, "spec.http[0].mirrorPercentage.value", "0..100"),
        (
            "spec.http[0].mirrors",
            [{"destination": {"host": "reviews"}, "percentage": {"value": 100.5}}],
            "spec.http[0].mirrors[0].percentage.value",
            "0..100",
        ),
        ("spec.http[0].mirrors", [{"percentage": {"value": 5}}], "spec.http[0].mirrors[0].destination", "required"),
        ("spec.http[0].mirror", {"host": "x", "subset": 1}, "spec.http[0].mirror.subset", "string"),
        (
            "spec.http[0].headers",
            {"request": {"set": {"bad header": "1"}}},
            "spec.http[0].headers.request.set.bad header",
            "header name",
        ),
        ("spec.http[0].headers", {"request": {"set": {"x": "a\nb"}}}, "spec.http[0].headers.request.set.x", "CR, LF"),
        ("spec.http[0].headers", {"request": {"remove": "x-a"}}, "spec.http[0].headers.request.remove", "list"),
        ("spec.http[0].headers", {"reqest": {}}, "spec.http[0].headers.reqest", "unknown key"),
        ("spec.http[0].rewrite", {"uri": "v2"}, "spec.http[0].rewrite.uri", "start with '/'"),
        ("spec.http[0].rewrite", {"authority": "a b"}, "spec.http[0].rewrite.authority", "invalid host"),
        (
            "spec.http[0].rewrite",
            {"uriRegexRewrite": {"match": "a", "rewrite": "b"}},
            "spec.http[0].rewrite.uriRegexRewrite",
            "not supported",
        ),
        ("spec.http[0].rewrite", {}, "spec.http[0].rewrite", "needs uri or authority"),
        ("spec.http[0].redirect", {"uri": "/x"}, "spec.http[0].route", "redirects or forwards"),
        ("spec.http[0].redirect", {"redirectCode": 200}, "spec.http[0].redirect.redirectCode", "300..399"),
        ("spec.http[0].redirect", {"redirectCode": 305}, "spec.http[0].redirect.redirectCode", "one of 301"),
        ("spec.http[0].redirect", {"scheme": "ftp"}, "spec.http[0].redirect.scheme", "not supported"),
        ("spec.http[0].redirect", {"uri": "x"}, "spec.http[0].redirect.uri", "start with '/'"),
        (
            "spec.http[0].redirect",
            {"port": 80, "derivePort": "FROM_REQUEST_PORT"},
            "spec.http[0].redirect.derivePort",
            "not both",
        ),
        (
            "spec.http[0].retries",
            {"attempts": 2, "retryOn": "envoy-ratelimited"},
            "spec.http[0].retries.retryOn",
            "not supported",
        ),
        ("spec.http[0].directResponse", {"status": 200}, "spec.http[0].directResponse", "not supported"),
        (
            "spec.http[0].match",
            [{"uri": {"prefix": "/a", "exact": "/b"}}],
            "spec.http[0].match[0].uri.prefix",
            "only one",
        ),
        ("spec.http[0].match", [{"uri": {}}], "spec.http[0].match[0].uri", "one of exact"),
        ("spec.http[0].match", [{"uri": {"regex": "("}}], "spec.http[0].match[0].uri.regex", "invalid regex"),
        (
            "spec.http[0].match",
            [{"headers": {"x": {"sufix": "a"}}}],
            "spec.http[0].match[0].headers.x.sufix",
            "unknown key",
        ),
        (
            "spec.http[0].match",
            [{"headers": {"bad name": {}}}],
            "spec.http[0].match[0].headers.bad name",
            "header name",
        ),
        (
            "spec.http[0].match",
            [{"method": {"regex": "GET|POST"}}],
            "spec.http[0].match[0].method.regex",
            "not supported",
        ),
        (
            "spec.http[0].match",
            [{"queryParams": {"q": {"prefix": "a"}}}],
            "spec.http[0].match[0].queryParams.q.prefix",
            "exact",
        ),
        ("spec.http[0].match", [{"port": 80}], "spec.http[0].match[0].port", "not supported"),
        (
            "spec.http[0].match",
            [{"sourceLabels": {"app": "-bad-"}}],
            "spec.http[0].match[0].sourceLabels.app",
            "label value",
        ),
        ("spec.http[0].match", [{"uri": {"exact": "/"}, "urI": 1}], "spec.http[0].match[0].urI", "unknown key 'urI'"),
        (
            "spec.http[0].corsPolicy",
            {"allowOrigins": [{"exact": "a", "prefix": "b"}]},
            "spec.http[0].corsPolicy.allowOrigins[0]",
            "exactly one",
        ),
        ("spec.http", [{"route": [{"destination": {"host": "a"}}], "extra": 1}], "spec.http[0].extra", "unknown key"),
        ("spec.hosts", [], "spec.hosts", "at least one host"),
        ("spec.hosts", ["a", "A"], "spec.hosts[1]", "duplicate host"),
        ("spec.hosts", ["a*.b"], "spec.hosts[0]", "wildcard"),
        ("spec.hosts", "reviews", "spec.hosts", "list"),
        ("spec.http", [], "spec.http", "http, tcp or tls"),
        (
            "spec.tls",
            [{"match": [{"sniHosts": ["a.example.com"]}], "route": [{"destination": {"host": "a"}}]}],
            "spec.tls",
            "for sidecars",
        ),
        ("spec.tls", [{"route": [{"destination": {"host": "a"}}]}], "spec.tls[0].match", "required"),
        (
            "spec.tcp",
            [{"route": [{"destination": {"host": "a"}, "weight": 50}, {"destination": {"host": "b"}, "weight": 50}]}],
            "spec.tcp[0].route",
            "weighted TCP",
        ),
        (
            "spec.tcp",
            [{"match": [{"port": 5432}], "route": [{"destination": {"host": "a"}}]}],
            "spec.tcp[0].match[0].port",
            "not supported",
        ),
        ("spec.exportTo", "*", "spec.exportTo", "list"),
        ("spec.exportTo", ["Prod"], "spec.exportTo[0]", "invalid namespace"),
        ("spec.exportTo", ["~", "."], "spec.exportTo", "cannot be combined"),
    ],
)
def test_invalid_virtual_services_name_the_field(path: str, value: Any, error_path: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(with_path(SPLIT, path, value))
    assert info.value.path == error_path, info.value
    assert text in info.value.message


def test_weights_are_required_with_several_destinations() -> None:
    data = with_path(SPLIT, "spec.http[0].route[1]", {"destination": {"host": "reviews", "subset": "v2"}})
    with pytest.raises(ConfigError) as info:
        parse(data)
    assert info.value.path == "spec.http[0].route[1].weight"
    assert "required when a route has more than one destination" in info.value.message


def test_a_single_destination_must_take_all_traffic() -> None:
    data = vs(http=[{"route": [{"destination": {"host": "reviews"}, "weight": 50}]}])
    with pytest.raises(ConfigError) as info:
        parse(data)
    assert info.value.path == "spec.http[0].route[0].weight"


def test_rewrite_of_a_regex_match_is_refused() -> None:
    data = vs(
        http=[
            {"match": [{"uri": {"regex": "/a.*"}}], "rewrite": {"uri": "/b"}, "route": [{"destination": {"host": "a"}}]}
        ]
    )
    with pytest.raises(ConfigError) as info:
        parse(data)
    assert info.value.path == "spec.http[0].rewrite.uri"


def test_differing_per_destination_headers_are_refused_but_equal_ones_fold() -> None:
    same = {"request": {"set": {"x-v": "1"}}}
    data = with_path(SPLIT, "spec.http[0].route[0].headers", same)
    with pytest.raises(ConfigError) as info:
        parse(data)
    assert info.value.path == "spec.http[0].route[1].headers"
    data = with_path(data, "spec.http[0].route[1].headers", same)
    assert spec_of(data).http[0].headers.request.set == (("x-v", "1"),)


def test_redirect_routes() -> None:
    data = vs(
        http=[
            {
                "redirect": {
                    "uri": "/v1/bookRatings",
                    "authority": "newratings.default.svc.cluster.local",
                    "redirectCode": 308,
                }
            }
        ]
    )
    redirect = spec_of(data).http[0].redirect
    assert redirect is not None
    assert (redirect.uri, redirect.redirect_code) == ("/v1/bookRatings", 308)
    with_retries = with_path(data, "spec.http[0].retries", {"attempts": 2})
    with pytest.raises(ConfigError) as info:
        parse(with_retries)
    assert info.value.path == "spec.http[0].retries"


def test_gateways_are_read() -> None:
    spec = spec_of(vs(gateways=["my-gateway"]))
    assert not spec.applies_to_sidecars
    assert spec_of(vs(gateways=["my-gateway", "mesh"])).applies_to_sidecars
