"""Route selection: domain precedence, path kinds, methods, headers, query, weighted picks, rewrites."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.model.routing import (
    parse_query,
    pick_weighted_cluster,
    rewrite_path,
    select_route,
    select_virtual_host,
)
from mesh.model.snapshot import (
    HeaderMatch,
    QueryMatch,
    Route,
    RouteMatch,
    RouteTable,
    VirtualHost,
    WeightedCluster,
    classify_domain,
    domain_has_port,
)


def route(name: str = "r", match: RouteMatch | None = None, *clusters: WeightedCluster, **extra: object) -> Route:
    return Route(name, match or RouteMatch(), clusters or (WeightedCluster("c"),), **extra)  # type: ignore[arg-type]


def table(*vhosts: tuple[str, tuple[str, ...]]) -> RouteTable:
    return RouteTable("t", tuple(VirtualHost(name, domains, (route(),)) for name, domains in vhosts))


def vhost_name(rt: RouteTable, host: str) -> str | None:
    found = select_virtual_host(rt, host)
    return None if found is None else found.name


# === virtual host by domain ===

PRECEDENCE = table(
    ("exact", ("api.example.com",)),
    ("long-suffix", ("*.api.example.com",)),
    ("short-suffix", ("*.example.com",)),
    ("dash-suffix", ("*-svc.example.com",)),
    ("long-prefix", ("api.example.*",)),
    ("short-prefix", ("api.*",)),
    ("any", ("*",)),
)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("api.example.com", "exact"),
        ("API.Example.COM", "exact"),
        ("api.example.com:8080", "exact"),
        ("api.example.com.", "exact"),
        ("v1.api.example.com", "long-suffix"),
        ("www.example.com", "short-suffix"),
        ("api.example.com.example.com", "short-suffix"),  # suffix beats prefix
        ("billing-svc.example.com", "dash-suffix"),
        ("api.example.org", "long-prefix"),
        ("api.other", "short-prefix"),
        ("api.", "any"),  # a wildcard matches at least one character
        (".example.com", "any"),
        ("example.com", "any"),
        ("", "any"),
    ],
)
def test_domain_precedence(host: str, expected: str) -> None:
    assert vhost_name(PRECEDENCE, host) == expected


def test_no_catch_all_means_no_virtual_host() -> None:
    rt = table(("web", ("web",)))
    assert vhost_name(rt, "web") == "web"
    assert vhost_name(rt, "other") is None
    assert select_route(rt, "other", "GET", "/", "", {}) is None


def test_a_domain_with_a_port_matches_only_that_port_and_wins_for_it() -> None:
    rt = table(("plain", ("web",)), ("ported", ("web:8080",)), ("wild-ported", ("*.x:81",)), ("wild", ("*.x",)))
    assert vhost_name(rt, "web:8080") == "ported"
    assert vhost_name(rt, "WEB:8080") == "ported"
    assert vhost_name(rt, "web:9090") == "plain"
    assert vhost_name(rt, "web") == "plain"
    assert vhost_name(rt, "a.x:81") == "wild-ported"
    assert vhost_name(rt, "a.x:82") == "wild"
    assert vhost_name(rt, "web.:8080") == "ported"  # trailing dot before the port


def test_ipv6_hosts() -> None:
    rt = table(("v6", ("[::1]",)), ("v6-port", ("[::1]:81",)))
    assert vhost_name(rt, "[::1]") == "v6"
    assert vhost_name(rt, "[::1]:80") == "v6"
    assert vhost_name(rt, "[::1]:81") == "v6-port"


def test_a_domain_in_two_virtual_hosts_is_refused() -> None:
    with pytest.raises(ValueError, match="only once per route table"):
        table(("a", ("web",)), ("b", ("WEB",)))


def _reference_vhost(rt: RouteTable, host: str) -> str | None:
    """Envoy's precedence written the slow, obvious way: rank every matching domain."""
    full = host.lower()
    bare, has_port = full, False
    if ":" in full:
        bare, has_port = full.rsplit(":", 1)[0], True
    bare = bare.removesuffix(".")
    if has_port:
        full = f"{bare}:{full.rsplit(':', 1)[1]}"
    best: tuple[tuple[int, int, int], str] | None = None
    for vhost in rt.virtual_hosts:
        for domain in vhost.domains:
            if domain == "*":
                rank = (3, 0, 0)
            else:
                ported = domain_has_port(domain)
                if ported and not has_port:
                    continue
                target = full if ported else bare
                kind, fixed = classify_domain(domain)
                if kind == "exact" and target == fixed:
                    rank = (0, 0 if ported else 1, 0)
                elif kind == "suffix" and target.endswith(fixed) and len(target) > len(fixed):
                    rank = (1, 0 if ported else 1, -len(fixed))
                elif kind == "prefix" and target.startswith(fixed) and len(target) > len(fixed):
                    rank = (2, 0 if ported else 1, -len(fixed))
                else:
                    continue
            if best is None or rank < best[0]:
                best = (rank, vhost.name)
    return None if best is None else best[1]


_LABELS = st.sampled_from(["a", "b", "ab", "api", "x-y"])
_NAMES = st.lists(_LABELS, min_size=1, max_size=3).map(".".join)
_PORTS = st.sampled_from(["", ":80", ":8080"])
_DOMAINS = st.one_of(
    st.just("*"),
    st.tuples(_NAMES, _PORTS).map("".join),
    st.tuples(_NAMES, _PORTS).map(lambda p: f"*.{p[0]}{p[1]}"),
    st.tuples(_NAMES, _PORTS).map(lambda p: f"*{p[0]}{p[1]}"),
    _NAMES.map(lambda n: f"{n}.*"),
    _NAMES.map(lambda n: f"{n}*"),
)


@settings(max_examples=300, deadline=None)
@given(
    domains=st.lists(_DOMAINS, min_size=1, max_size=12, unique=True),
    host=st.tuples(_NAMES, st.sampled_from(["", "."]), _PORTS).map("".join),
)
def test_domain_index_agrees_with_the_obvious_ranking(domains: list[str], host: str) -> None:
    rt = table(*((f"v{i}", (domain,)) for i, domain in enumerate(domains)))
    assert vhost_name(rt, host) == _reference_vhost(rt, host)


# === routes within a virtual host ===


def vhost_of(*routes: Route) -> RouteTable:
    return RouteTable("t", (VirtualHost("v", ("*",), routes),))


def picked(rt: RouteTable, path: str = "/", method: str = "GET", query: str = "", **headers: str) -> str | None:
    selection = select_route(rt, "host", method, path, query, {k.replace("_", "-"): v for k, v in headers.items()})
    return None if selection is None else selection.route.name


def test_path_kinds_and_first_match_wins() -> None:
    rt = vhost_of(
        route("exact", RouteMatch(path_exact="/a")),
        route("prefix", RouteMatch(path_prefix="/a")),
        route("regex", RouteMatch(path_regex=re.compile(r"/items/\d+"))),
        route("fallback"),
    )
    assert picked(rt, "/a") == "exact"
    assert picked(rt, "/a/b") == "prefix"
    assert picked(rt, "/apple") == "prefix"  # a plain string prefix, as Envoy
    assert picked(rt, "/items/42") == "regex"
    assert picked(rt, "/items/42/x") == "fallback"  # regex must match the whole path
    assert picked(rt, "/A") == "fallback"  # case-sensitive by default


def test_case_insensitive_paths() -> None:
    rt = vhost_of(
        route("exact", RouteMatch(path_exact="/Login", case_sensitive=False)),
        route("prefix", RouteMatch(path_prefix="/API/", case_sensitive=False)),
    )
    assert picked(rt, "/login") == "exact"
    assert picked(rt, "/LOGIN") == "exact"
    assert picked(rt, "/api/x") == "prefix"
    assert picked(rt, "/Api/X") == "prefix"
    assert picked(rt, "/apix") is None


def test_methods() -> None:
    rt = vhost_of(route("write", RouteMatch(methods=frozenset({"POST", "PUT"}))), route("read"))
    assert picked(rt, method="POST") == "write"
    assert picked(rt, method="PUT") == "write"
    assert picked(rt, method="GET") == "read"


@pytest.mark.parametrize(
    ("rule", "value", "matches"),
    [
        (HeaderMatch("x", exact="a"), "a", True),
        (HeaderMatch("x", exact="a"), "A", False),
        (HeaderMatch("x", exact="a"), None, False),
        (HeaderMatch("x", prefix="ab"), "abc", True),
        (HeaderMatch("x", prefix="ab"), "cab", False),
        (HeaderMatch("x", suffix="bc"), "abc", True),
        (HeaderMatch("x", suffix="bc"), "bca", False),
        (HeaderMatch("x", regex=re.compile(r"\d+")), "123", True),
        (HeaderMatch("x", regex=re.compile(r"\d+")), "123a", False),
        (HeaderMatch("x", present=True), "", True),
        (HeaderMatch("x", present=True), None, False),
        (HeaderMatch("x", present=False), None, True),
        (HeaderMatch("x", present=False), "v", False),
        (HeaderMatch("x"), "v", True),
        (HeaderMatch("x"), None, False),
        (HeaderMatch("x", exact="a", invert=True), "b", True),
        (HeaderMatch("x", exact="a", invert=True), "a", False),
        (HeaderMatch("x", exact="a", invert=True), None, True),  # absent: the value test fails, inverted holds
        (HeaderMatch("x", present=True, invert=True), None, True),
        (HeaderMatch("x", present=True, invert=True), "v", False),
    ],
)
def test_header_conditions(rule: HeaderMatch, value: str | None, matches: bool) -> None:
    rt = vhost_of(route("hit", RouteMatch(headers=(rule,))))
    headers = {} if value is None else {"x": value}
    assert (picked(rt, **headers) == "hit") is matches


def test_all_header_conditions_must_hold() -> None:
    rt = vhost_of(route("hit", RouteMatch(headers=(HeaderMatch("a", exact="1"), HeaderMatch("b", exact="2")))))
    assert picked(rt, a="1", b="2") == "hit"
    assert picked(rt, a="1") is None


@pytest.mark.parametrize(
    ("rule", "query", "matches"),
    [
        (QueryMatch("q", exact="1"), "q=1", True),
        (QueryMatch("q", exact="1"), "q=2", False),
        (QueryMatch("q", exact="a b"), "q=a%20b", True),
        (QueryMatch("q", exact="a b"), "q=a+b", True),
        (QueryMatch("q", exact="1"), "q=1&q=2", True),  # the first value counts
        (QueryMatch("q", exact="2"), "q=1&q=2", False),
        (QueryMatch("q", regex=re.compile(r"v\d")), "q=v2", True),
        (QueryMatch("q", regex=re.compile(r"v\d")), "q=v22", False),
        (QueryMatch("q", present=True), "q", True),
        (QueryMatch("q", present=True), "p=1", False),
        (QueryMatch("q", present=False), "", True),
        (QueryMatch("q"), "a=1&q=", True),
        (QueryMatch("Q"), "q=1", False),
    ],
)
def test_query_conditions(rule: QueryMatch, query: str, matches: bool) -> None:
    rt = vhost_of(route("hit", RouteMatch(query=(rule,))))
    assert (picked(rt, query=query) == "hit") is matches


def test_parse_query_keeps_first_values_and_blanks() -> None:
    assert parse_query("a=1&a=2&b&c=%2F") == {"a": "1", "b": "", "c": "/"}
    assert parse_query("") == {}


# === weighted clusters ===


class Cycling(random.Random):
    """An rng whose randrange walks 0, 1, 2, ...: each value of the range exactly once per cycle."""

    def __init__(self) -> None:
        super().__init__(0)
        self.next = 0

    def randrange(self, stop: int, *args: object, **kwargs: object) -> int:  # type: ignore[override]
        value = self.next % stop
        self.next += 1
        return value


@settings(deadline=None)
@given(weights=st.lists(st.integers(1, 50), min_size=1, max_size=8))
def test_weighted_pick_gives_each_cluster_exactly_its_weight_per_cycle(weights: list[int]) -> None:
    r = route("r", None, *(WeightedCluster(f"c{i}", w) for i, w in enumerate(weights)))
    rng = Cycling()
    counts = Counter(pick_weighted_cluster(r, rng) for _ in range(sum(weights)))
    assert counts == {f"c{i}": w for i, w in enumerate(weights)}


def test_weighted_pick_proportions_with_a_seeded_rng() -> None:
    r = route("r", None, WeightedCluster("a", 90), WeightedCluster("b", 9), WeightedCluster("c", 1))
    rng = random.Random(1234)
    counts = Counter(pick_weighted_cluster(r, rng) for _ in range(100_000))
    # Binomial standard deviations: a ~95, b ~90, c ~31; allow 5 of them.
    assert abs(counts["a"] - 90_000) < 500
    assert abs(counts["b"] - 9_000) < 450
    assert abs(counts["c"] - 1_000) < 160


def test_single_cluster_needs_no_rng() -> None:
    class NoRandom(random.Random):
        def randrange(self, *args: object, **kwargs: object) -> int:
            raise AssertionError("a single cluster must not draw")

    assert pick_weighted_cluster(route("r", None, WeightedCluster("only", 7)), NoRandom()) == "only"


def test_route_refuses_bad_weights_and_no_clusters() -> None:
    with pytest.raises(ValueError, match="weight must be > 0"):
        Route("r", RouteMatch(), (WeightedCluster("a", 0),))
    with pytest.raises(ValueError, match="at least one cluster"):
        Route("r", RouteMatch(), ())


# === rewrites ===


@pytest.mark.parametrize(
    ("match", "rewrite", "path", "expected"),
    [
        (RouteMatch(path_prefix="/api/"), "/", "/api/users", "/users"),
        (RouteMatch(path_prefix="/api"), "/v2", "/api/users", "/v2/users"),
        (RouteMatch(path_prefix="/API/", case_sensitive=False), "/x/", "/api/users", "/x/users"),
        (RouteMatch(path_exact="/old"), "/new", "/old", "/new"),
        (RouteMatch(), "/base", "/users", "/base/users"),
        (RouteMatch(path_prefix="/api/"), None, "/api/users", "/api/users"),
    ],
)
def test_prefix_rewrite(match: RouteMatch, rewrite: str | None, path: str, expected: str) -> None:
    assert rewrite_path(route("r", match, prefix_rewrite=rewrite), path) == expected
