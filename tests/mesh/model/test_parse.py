"""Config parsing: the happy path, and bad inputs each rejected with the exact field path."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from lb import Affinity, Endpoint, PolicySpec
from mesh.model.parse import ConfigError, parse_snapshot, parse_snapshot_text
from mesh.model.snapshot import HeaderMatch, HeaderToAdd, QueryMatch, WeightedCluster

DOCS = Path(__file__).resolve().parents[3] / "docs" / "sidecar-config.md"


def base() -> dict[str, Any]:
    """A small valid config; tests break one field at a time."""
    return {
        "version": "v1",
        "listeners": [
            {"name": "out", "protocol": "http", "port": 15001, "route_table": "out"},
            {"name": "db", "protocol": "tcp", "port": 15432, "cluster": "db"},
        ],
        "route_tables": [
            {
                "name": "out",
                "virtual_hosts": [
                    {"name": "web", "domains": ["web", "*.web.example"], "routes": [{"name": "r0", "cluster": "web"}]},
                    {
                        "name": "api",
                        "domains": ["api"],
                        "routes": [
                            {"name": "a0", "match": {"prefix": "/a"}, "cluster": "web"},
                            {"name": "a1", "match": {"path": "/b"}, "cluster": "web"},
                            {"name": "a2", "match": {"prefix": "/"}, "clusters": [{"name": "web", "weight": 3}]},
                        ],
                    },
                ],
            }
        ],
        "clusters": [
            {"name": "web", "endpoints": [{"host": "10.0.0.1", "port": 80}]},
            {"name": "db", "protocol": "tcp", "service": "db"},
        ],
    }


def rejects(config: object, path: str, message: str = "") -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_snapshot(config)
    assert caught.value.path == path, str(caught.value)
    assert message in caught.value.message, str(caught.value)
    assert str(caught.value).startswith(f"{path}: ")
    return caught.value


# === happy path ===


def test_docs_example_parses_with_every_feature() -> None:
    text = DOCS.read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert block is not None, "docs/sidecar-config.md has no yaml example"
    snapshot = parse_snapshot_text(block.group(1))
    assert snapshot.version == "2024-06-01.1"
    assert [listener.name for listener in snapshot.listeners] == ["outbound", "inbound", "postgres"]
    outbound = snapshot.route_tables["outbound"]
    api = outbound.virtual_hosts[0]
    assert api.domains == ("api", "api.service.consul", "api.*", "*.api.example.com")
    canary = api.routes[0]
    assert canary.match.path_prefix == "/v2/"
    assert canary.match.methods == frozenset({"GET", "POST"})
    assert canary.match.headers == (
        HeaderMatch("x-canary", exact="1"),
        HeaderMatch("x-debug", present=False),
    )
    assert canary.match.query == (QueryMatch("beta", regex=re.compile("yes|true")),)
    assert canary.clusters == (WeightedCluster("api-v2", 90), WeightedCluster("api-v1", 10))
    assert canary.timeout_s == 2.5
    assert canary.prefix_rewrite == "/"
    assert canary.request_headers_add == (HeaderToAdd("x-route", "canary"),)
    assert canary.request_headers_remove == ("x-internal",)
    assert canary.response_headers_add == (HeaderToAdd("cache-control", "no-store", append=False),)
    assert api.routes[1].timeout_s == 15.0  # Envoy's default
    catch_all = outbound.virtual_hosts[1].routes[0]
    assert catch_all.name == "route-0"  # unnamed routes are numbered
    assert catch_all.timeout_s is None
    assert catch_all.match.path_regex is not None
    assert not catch_all.match.case_sensitive
    v1, v2 = snapshot.clusters["api-v1"], snapshot.clusters["api-v2"]
    assert v1.service == "api"
    assert v1.endpoints == ()
    assert v1.lb == PolicySpec(kind="least_request", choice_count=3)
    assert v2.affinity == Affinity("cookie", "sid", 3600)
    assert v2.endpoints == (
        Endpoint("10.0.0.7:8080", "10.0.0.7", 8080, weight=2),
        Endpoint("[::1]:8081", "::1", 8081, metadata=(("zone", "a"),)),
    )
    assert (v2.connect_timeout_s, v2.idle_timeout_s) == (1.0, 300.0)
    assert (v1.max_requests_per_connection, v2.max_requests_per_connection) == (0, 100)
    assert snapshot.clusters["postgres"].protocol == "tcp"


def test_json_and_yaml_give_the_same_snapshot() -> None:
    config = base()
    from_json = parse_snapshot_text(json.dumps(config))
    from_yaml = parse_snapshot_text(json.dumps(config), fmt="yaml")  # JSON is YAML too
    assert from_json == from_yaml == parse_snapshot(config)


def test_version_defaults_to_a_content_hash() -> None:
    config = base()
    del config["version"]
    first = parse_snapshot_text(json.dumps(config))
    again = parse_snapshot_text(json.dumps(config))
    config["clusters"][0]["endpoints"][0]["port"] = 81
    changed = parse_snapshot_text(json.dumps(config))
    assert first.version.startswith("sha256:")
    assert first.version == again.version != changed.version
    assert parse_snapshot_text("version: 7\n").version == "7"
    assert parse_snapshot(config, version="given").version == "given"


def test_empty_document_is_an_empty_snapshot() -> None:
    snapshot = parse_snapshot_text("")
    assert snapshot.listeners == ()
    assert dict(snapshot.clusters) == {}


def test_durations_accept_go_syntax_and_numbers() -> None:
    config = base()
    cluster = config["clusters"][0]
    for given, seconds in (("250ms", 0.25), ("1m30s", 90.0), (2, 2.0), (0.5, 0.5)):
        cluster["connect_timeout"] = given
        assert parse_snapshot(config).clusters["web"].connect_timeout_s == seconds
    route = config["route_tables"][0]["virtual_hosts"][0]["routes"][0]
    route["timeout"] = 0
    assert parse_snapshot(config).route_tables["out"].virtual_hosts[0].routes[0].timeout_s is None


def test_header_names_are_lower_cased_and_methods_upper_cased() -> None:
    config = base()
    config["route_tables"][0]["virtual_hosts"][0]["routes"][0]["match"] = {
        "methods": ["get"],
        "headers": [{"name": "X-Env", "prefix": "prod"}],
        "query": [{"name": "Q"}],
    }
    match = parse_snapshot(config).route_tables["out"].virtual_hosts[0].routes[0].match
    assert match.methods == frozenset({"GET"})
    assert match.headers == (HeaderMatch("x-env", prefix="prod"),)
    assert match.query == (QueryMatch("Q"),)  # query names are case-sensitive


def test_domains_are_lower_cased() -> None:
    config = base()
    config["route_tables"][0]["virtual_hosts"][0]["domains"] = ["Web.Example:8080"]
    assert parse_snapshot(config).route_tables["out"].virtual_hosts[0].domains == ("web.example:8080",)


# === bad inputs: every one names its field ===

VH0 = "route_tables[0].virtual_hosts[0]"
VH1 = "route_tables[0].virtual_hosts[1]"


def _set(config: dict[str, Any], dotted: str, value: object) -> dict[str, Any]:
    """Set ``a.b[2].c`` in a copy of ``config`` (value ``...`` deletes the key)."""
    config = copy.deepcopy(config)
    target: Any = config
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", dotted)
    for part in parts[:-1]:
        target = target[int(part[1:-1])] if part.startswith("[") else target.setdefault(part, {})
    last = parts[-1]
    if value is ...:
        del target[last]
    elif last.startswith("["):
        index = int(last[1:-1])
        if index == len(target):
            target.append(value)
        else:
            target[index] = value
    else:
        target[last] = value
    return config


BAD: list[tuple[str, object, str, str]] = [
    # (field to set, value, expected error path, part of the message)
    ("surprise", 1, "surprise", "unknown key 'surprise'"),
    ("version", "", "version", "non-empty"),
    ("listeners", {"name": "x"}, "listeners", "must be a list"),
    ("listeners[0]", "out", "listeners[0]", "must be a mapping"),
    ("listeners[0].name", ..., "listeners[0].name", "is required"),
    ("listeners[0].name", "has space", "listeners[0].name", "without spaces"),
    ("listeners[1].name", "out", "listeners[1].name", "duplicate name 'out'"),
    ("listeners[0].protocol", "udp", "listeners[0].protocol", "one of http, tcp"),
    ("listeners[0].port", 70000, "listeners[0].port", "0..65535"),
    ("listeners[0].port", "15001", "listeners[0].port", "integer"),
    ("listeners[0].port", True, "listeners[0].port", "integer"),
    ("listeners[0].direction", "sideways", "listeners[0].direction", "outbound, inbound"),
    ("listeners[0].route_table", ..., "listeners[0].route_table", "needs a route_table"),
    ("listeners[0].route_table", "nope", "listeners[0].route_table", "unknown route table 'nope' (known: out)"),
    ("listeners[0].cluster", "web", "listeners[0].cluster", "cluster is for tcp"),
    ("listeners[1].cluster", "nope", "listeners[1].cluster", "unknown cluster 'nope'"),
    ("listeners[1].cluster", ..., "listeners[1].cluster", "needs a cluster"),
    ("listeners[1].port", 15001, "listeners[1].port", "already used by listener 'out'"),
    ("listeners[0].bind", "x", "listeners[0].bind", "unknown key 'bind'"),
    ("route_tables[0].name", 5, "route_tables[0].name", "non-empty name"),
    ("route_tables[0].virtual_hosts", "web", "route_tables[0].virtual_hosts", "must be a list"),
    ("route_tables", ..., "listeners[0].route_table", "unknown route table 'out' (none are defined)"),
    (f"{VH0}.domains", ..., f"{VH0}.domains", "is required"),
    (f"{VH0}.domains", [], f"{VH0}.domains", "at least one domain"),
    (f"{VH0}.domains[0]", "a*b", f"{VH0}.domains[0]", "'*' may appear once, at the start or the end"),
    (f"{VH0}.domains[0]", "**", f"{VH0}.domains[0]", "'*' may appear once"),
    (f"{VH0}.domains[0]", "we b", f"{VH0}.domains[0]", "invalid domain"),
    (f"{VH0}.domains[0]", "web:99999", f"{VH0}.domains[0]", "invalid port"),
    (f"{VH0}.domains[1]", "WEB", f"{VH0}.domains[1]", "duplicate domain 'web'"),
    (f"{VH1}.domains[0]", "web", f"{VH1}.domains[0]", "already used by virtual host 'web'"),
    (f"{VH1}.name", "web", f"{VH1}.name", "duplicate name 'web'"),
    (f"{VH1}.routes[1].name", "a0", f"{VH1}.routes[1].name", "duplicate name 'a0'"),
    (f"{VH0}.routes[0].cluster", ..., f"{VH0}.routes[0].clusters", "needs cluster: NAME or clusters"),
    (f"{VH0}.routes[0].cluster", "nope", f"{VH0}.routes[0].clusters[0].name", "unknown cluster 'nope'"),
    (f"{VH0}.routes[0].cluster", "db", f"{VH0}.routes[0].clusters[0].name", "is tcp"),
    (f"{VH0}.routes[0].clusters", [{"name": "web"}], f"{VH0}.routes[0].clusters", "either cluster or clusters"),
    (f"{VH1}.routes[2].clusters", [], f"{VH1}.routes[2].clusters", "at least one cluster"),
    (f"{VH1}.routes[2].clusters[0].weight", 0, f"{VH1}.routes[2].clusters[0].weight", "1..1000000"),
    (f"{VH1}.routes[2].clusters[0].weight", -1, f"{VH1}.routes[2].clusters[0].weight", "1..1000000"),
    (f"{VH1}.routes[2].clusters[0].weight", 1.5, f"{VH1}.routes[2].clusters[0].weight", "integer"),
    (f"{VH1}.routes[2].clusters[1]", {"name": "web"}, f"{VH1}.routes[2].clusters[1].name", "listed twice"),
    (f"{VH1}.routes[2].clusters[0].wieght", 2, f"{VH1}.routes[2].clusters[0].wieght", "unknown key 'wieght'"),
    (f"{VH1}.routes[0].match.regex", "([a-z]", f"{VH1}.routes[0].match.regex", "invalid regex '([a-z]'"),
    (f"{VH1}.routes[0].match.regex", "/x", f"{VH1}.routes[0].match.regex", "only one of path, prefix, regex"),
    (f"{VH1}.routes[0].match.prefix", "a", f"{VH1}.routes[0].match.prefix", "must start with '/'"),
    (f"{VH1}.routes[1].match.path", 5, f"{VH1}.routes[1].match.path", "must be a string"),
    (f"{VH1}.routes[0].match.case_sensitive", "no", f"{VH1}.routes[0].match.case_sensitive", "true or false"),
    (f"{VH1}.routes[0].match.methods", ["GET", "B AD"], f"{VH1}.routes[0].match.methods[1]", "HTTP method"),
    (f"{VH1}.routes[0].match.methods", "GET", f"{VH1}.routes[0].match.methods", "must be a list"),
    (f"{VH1}.routes[0].match.headers", [{"exact": "x"}], f"{VH1}.routes[0].match.headers[0].name", "is required"),
    (f"{VH1}.routes[0].match.headers", [{"name": "a b"}], f"{VH1}.routes[0].match.headers[0].name", "header name"),
    (
        f"{VH1}.routes[0].match.headers",
        [{"name": "x", "exact": "1", "prefix": "2"}],
        f"{VH1}.routes[0].match.headers[0].prefix",
        "only one of exact, prefix, suffix, regex, present",
    ),
    (
        f"{VH1}.routes[0].match.headers",
        [{"name": "x", "regex": "("}],
        f"{VH1}.routes[0].match.headers[0].regex",
        "invalid regex",
    ),
    (
        f"{VH1}.routes[0].match.headers",
        [{"name": "x", "invert": "yes"}],
        f"{VH1}.routes[0].match.headers[0].invert",
        "true or false",
    ),
    (f"{VH1}.routes[0].match.query", [{"name": ""}], f"{VH1}.routes[0].match.query[0].name", "must not be empty"),
    (
        f"{VH1}.routes[0].match.query",
        [{"name": "q", "exact": "1", "present": True}],
        f"{VH1}.routes[0].match.query[0].present",
        "only one of",
    ),
    (f"{VH1}.routes[0].match.host", "x", f"{VH1}.routes[0].match.host", "unknown key 'host'"),
    (f"{VH1}.routes[0].timeout", "5 seconds", f"{VH1}.routes[0].timeout", "invalid duration"),
    (f"{VH1}.routes[0].timeout", -1, f"{VH1}.routes[0].timeout", ">= 0"),
    (f"{VH1}.routes[0].timeout", True, f"{VH1}.routes[0].timeout", "duration"),
    (f"{VH1}.routes[0].prefix_rewrite", "x", f"{VH1}.routes[0].prefix_rewrite", "must start with '/'"),
    (
        f"{VH1}.routes[0].request_headers_add",
        [{"name": "x-a", "value": "1\r\nevil: 1"}],
        f"{VH1}.routes[0].request_headers_add[0].value",
        "CR, LF or NUL",
    ),
    (
        f"{VH1}.routes[0].response_headers_add",
        [{"name": "x-a"}],
        f"{VH1}.routes[0].response_headers_add[0].value",
        "is required",
    ),
    (
        f"{VH1}.routes[0].request_headers_remove",
        ["ok", "not ok"],
        f"{VH1}.routes[0].request_headers_remove[1]",
        "header name",
    ),
    ("clusters[0].name", "db", "clusters[1].name", "duplicate name 'db'"),
    ("clusters[0].lb", {"kind": "fastest"}, "clusters[0].lb.kind", "unknown policy 'fastest'"),
    ("clusters[0].lb", {"kind": "round_robin", "x": 1}, "clusters[0].lb.x", "unknown field"),
    (
        "clusters[0].lb",
        {"kind": "round_robin", "affinity": {"kind": "header", "name": "x-user"}},
        "clusters[0].lb.affinity",
        "hashing policy",
    ),
    ("clusters[0].lb", "round_robin", "clusters[0].lb", "must be an object"),
    ("clusters[0].endpoints[0].port", 0, "clusters[0].endpoints[0].port", "1..65535"),
    ("clusters[0].endpoints[0].port", ..., "clusters[0].endpoints[0].port", "is required"),
    ("clusters[0].endpoints[0].host", "", "clusters[0].endpoints[0].host", "host name or IP"),
    ("clusters[0].endpoints[0].weight", 0, "clusters[0].endpoints[0].weight", "1..1000000"),
    ("clusters[0].endpoints[0].healthy", 1, "clusters[0].endpoints[0].healthy", "true or false"),
    ("clusters[0].endpoints[0].metadata", {"a": 1}, "clusters[0].endpoints[0].metadata.a", "must be strings"),
    (
        "clusters[0].endpoints[1]",
        {"host": "10.0.0.1", "port": 80},
        "clusters[0].endpoints[1]",
        "already endpoints[0]",
    ),
    ("clusters[0].connect_timeout", 0, "clusters[0].connect_timeout", "must be > 0"),
    ("clusters[0].idle_timeout", "forever", "clusters[0].idle_timeout", "invalid duration"),
    ("clusters[0].idle_timeout", "0s", "clusters[0].idle_timeout", "must be > 0"),
    ("clusters[0].max_connections_per_endpoint", 0, "clusters[0].max_connections_per_endpoint", "1..1000000"),
    ("clusters[0].max_requests_per_connection", -1, "clusters[0].max_requests_per_connection", "0..4294967295"),
    ("clusters[0].max_requests_per_connection", 2**32, "clusters[0].max_requests_per_connection", "0..4294967295"),
    ("clusters[0].max_requests_per_connection", "10", "clusters[0].max_requests_per_connection", "got '10'"),
    ("clusters[0].max_requests_per_connection", True, "clusters[0].max_requests_per_connection", "an integer"),
    ("clusters[0].protocol", "grpc", "clusters[0].protocol", "one of http, tcp"),
    ("clusters[0].service", 5, "clusters[0].service", "must be a string"),
]


@pytest.mark.parametrize(("field", "value", "path", "message"), BAD, ids=[f"{b[0]}={b[1]!r}"[:60] for b in BAD])
def test_bad_field_is_named(field: str, value: object, path: str, message: str) -> None:
    rejects(_set(base(), field, value), path, message)


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_snapshot(["listeners"])


def test_unknown_key_message_lists_the_allowed_keys() -> None:
    error = rejects(_set(base(), "clusters[0].endpoint", []), "clusters[0].endpoint")
    assert "endpoints" in error.message


def test_prefix_rewrite_is_refused_with_a_regex_match() -> None:
    config = _set(base(), f"{VH1}.routes[0].match", {"regex": "/a.*"})
    config = _set(config, f"{VH1}.routes[0].prefix_rewrite", "/b")
    rejects(config, f"{VH1}.routes[0].prefix_rewrite", "cannot be used with match.regex")


@pytest.mark.parametrize(
    ("text", "fmt", "message"),
    [
        ("{bad json", "json", "invalid JSON at line 1"),
        ('{"a": 1, "a": 2}', None, "duplicate key 'a'"),
        ("listeners: [\n", None, "invalid YAML"),
        ("listeners: []\nlisteners: []\n", "yaml", "duplicate key 'listeners' (line 2"),
        ("- a\n- b\n", None, "must be a mapping"),
    ],
)
def test_bad_text_is_rejected_with_its_location(text: str, fmt: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_snapshot_text(text, fmt=fmt)
    assert message in str(caught.value)


def test_non_utf8_text_is_rejected() -> None:
    with pytest.raises(ConfigError, match="not UTF-8"):
        parse_snapshot_text(b"\xff\xfe")
