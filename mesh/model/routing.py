"""Route selection: (Host, method, path, query, headers) → virtual host, route, cluster (pure).

The sidecar calls ``select_route`` once per request, so the work is kept small: the virtual
host comes from ``RouteTable.domain_index`` (a dict probe per precedence class and wildcard
length, never a scan of the domains), routes are tried in order with the cheap checks first
(method, then path by string comparison, then headers), and the query string is parsed only
when a route that reaches its query conditions asks for it. Rules are in
``mesh.model.snapshot``'s module doc.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import parse_qsl

from mesh.model.snapshot import (
    PATH_ANY,
    PATH_EXACT,
    PATH_PREFIX,
    PATH_PREFIX_FOLDED,
    PATH_REGEX,
    DomainIndex,
    HeaderMatch,
    QueryMatch,
    Route,
    RouteTable,
    VirtualHost,
    WildcardIndex,
)


class RouteSelection(NamedTuple):
    """The virtual host and route a request matched (a named tuple: cheap to make per request)."""

    virtual_host: VirtualHost
    route: Route


def select_route(
    table: RouteTable,
    host: str,
    method: str,
    path: str,
    query_string: str,
    headers: Mapping[str, str],
) -> RouteSelection | None:
    """The first matching route of the virtual host for ``host``, or ``None`` (the proxy's 404).

    ``method`` as sent (upper-case by convention); ``path`` without the query string;
    ``query_string`` without the ``?`` (may be empty); ``headers`` keyed by lower-case name,
    values of a repeated header joined with ``","``.
    """
    vhost = table.domain_index.bare_exact.get(host)  # fast path: a plain lower-case name, no port
    if vhost is None:
        vhost = select_virtual_host(table, host)
        if vhost is None:
            return None
    route = first_matching_route(vhost, method, path, query_string, headers)
    return None if route is None else RouteSelection(vhost, route)


def select_virtual_host(table: RouteTable, host: str) -> VirtualHost | None:
    """The virtual host whose domains match ``host`` best (exact > suffix > prefix > ``*``)."""
    index = table.domain_index
    full = host.lower()
    bare, has_port = _strip_port(full)
    if has_port and index.has_ported:
        return _lookup_with_port(index, full, bare)
    found = index.bare_exact.get(bare)
    if found is not None:
        return found
    if index.bare_suffix.by_length:
        found = _suffix(index.bare_suffix, bare)
        if found is not None:
            return found
    if index.bare_prefix.by_length:
        found = _prefix(index.bare_prefix, bare)
        if found is not None:
            return found
    return index.catch_all


def first_matching_route(
    vhost: VirtualHost, method: str, path: str, query_string: str, headers: Mapping[str, str]
) -> Route | None:
    """The first route of ``vhost`` whose match holds for the request, in configured order."""
    folded: str | None = None
    query: dict[str, str] | None = None
    for route, code, value, methods, header_rules, query_rules in vhost.matchers:
        if methods and method not in methods:
            continue
        if code == PATH_PREFIX:
            if not path.startswith(value):  # type: ignore[arg-type]
                continue
        elif code == PATH_EXACT:
            if path != value:
                continue
        elif code == PATH_REGEX:
            if value.fullmatch(path) is None:  # type: ignore[union-attr]
                continue
        elif code != PATH_ANY:
            if folded is None:
                folded = path.lower()
            if code == PATH_PREFIX_FOLDED:
                if not folded.startswith(value):  # type: ignore[arg-type]
                    continue
            elif folded != value:
                continue
        if header_rules and not all(header_matches(h, headers.get(h.name)) for h in header_rules):
            continue
        if query_rules:
            if query is None:
                query = parse_query(query_string)
            if not all(query_matches(q, query) for q in query_rules):
                continue
        return route
    return None


def header_matches(rule: HeaderMatch, value: str | None) -> bool:
    """One header condition against the header's value (``None``: absent); see ``HeaderMatch``."""
    if rule.present is not None:
        result = (value is not None) == rule.present
    elif value is None:
        result = False
    elif rule.exact is not None:
        result = value == rule.exact
    elif rule.prefix is not None:
        result = value.startswith(rule.prefix)
    elif rule.suffix is not None:
        result = value.endswith(rule.suffix)
    elif rule.regex is not None:
        result = rule.regex.fullmatch(value) is not None
    else:
        result = True  # no matcher: presence
    return result != rule.invert


def query_matches(rule: QueryMatch, query: Mapping[str, str]) -> bool:
    """One query-parameter condition against the parsed query (first value of each name)."""
    value = query.get(rule.name)
    if rule.present is not None:
        return (value is not None) == rule.present
    if value is None:
        return False
    if rule.exact is not None:
        return value == rule.exact
    if rule.regex is not None:
        return rule.regex.fullmatch(value) is not None
    return True


def parse_query(query_string: str) -> dict[str, str]:
    """Decoded query parameters, first value per name (``a=1&a=2&b`` → ``{"a": "1", "b": ""}``)."""
    parsed: dict[str, str] = {}
    if query_string:
        for name, value in parse_qsl(query_string, keep_blank_values=True):
            parsed.setdefault(name, value)
    return parsed


def pick_weighted_cluster(route: Route, rng: random.Random) -> str:
    """A cluster name of ``route`` chosen with probability weight / total (binary search)."""
    clusters = route.clusters
    if len(clusters) == 1:
        return clusters[0].name
    cumulative = route.cumulative_weights
    return clusters[bisect_right(cumulative, rng.randrange(cumulative[-1]))].name


def rewrite_path(route: Route, path: str) -> str:
    """The upstream path after ``prefix_rewrite`` (``path`` without its query string)."""
    replacement = route.prefix_rewrite
    if replacement is None:
        return path
    match = route.match
    if match.path_exact is not None:
        return replacement
    if match.path_prefix is not None:
        return replacement + path[len(match.path_prefix) :]
    return replacement + path


# === helpers ===


def _strip_port(host: str) -> tuple[str, bool]:
    """``"a.b:80"`` → ``("a.b", True)``; IPv6 literals keep their brackets; one trailing dot goes."""
    if host.startswith("["):
        end = host.find("]")
        if end > 0 and host[end + 1 : end + 2] == ":":
            return host[: end + 1], True
        return host, False
    colon = host.rfind(":")
    if colon >= 0:
        bare = host[:colon]
        if bare.endswith("."):
            bare = bare[:-1]
        return bare, True
    if host.endswith("."):
        return host[:-1], False
    return host, False


def _lookup_with_port(index: DomainIndex, full: str, bare: str) -> VirtualHost | None:
    """Domains that name the port win over port-less ones within each precedence class."""
    if full.endswith(".") or ".:" in full:
        full = f"{bare}{full[full.rfind(':') :]}"
    found = index.ported_exact.get(full) or index.bare_exact.get(bare)
    if found is not None:
        return found
    found = _suffix(index.ported_suffix, full) or _suffix(index.bare_suffix, bare)
    if found is not None:
        return found
    found = _prefix(index.ported_prefix, full) or _prefix(index.bare_prefix, bare)
    if found is not None:
        return found
    return index.catch_all


def _suffix(wildcards: WildcardIndex, host: str) -> VirtualHost | None:
    size = len(host)
    for length, by_fixed in wildcards.by_length:
        if length < size:
            found = by_fixed.get(host[size - length :])
            if found is not None:
                return found
    return None


def _prefix(wildcards: WildcardIndex, host: str) -> VirtualHost | None:
    size = len(host)
    for length, by_fixed in wildcards.by_length:
        if length < size:
            found = by_fixed.get(host[:length])
            if found is not None:
                return found
    return None


__all__ = [
    "RouteSelection",
    "first_matching_route",
    "header_matches",
    "parse_query",
    "pick_weighted_cluster",
    "query_matches",
    "rewrite_path",
    "select_route",
    "select_virtual_host",
]
