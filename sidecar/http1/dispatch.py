"""Where a request goes: route → weighted cluster → endpoint, or the proxy's own answer (pure).

``decide`` reads only the listener's runtime under the request's active config and the parsed
head; the result is a closed choice, ``Forward`` or ``Reject`` (linkerd's Dispatch). No I/O:
tests call it with hand-built snapshots.

Answers the proxy gives itself, with Envoy's wording where Envoy has one:
- no virtual host or route matches → 404 (registry mode first asks the source about the Host);
- the route names a cluster the snapshot lacks → 503 ``cluster not found``;
- the cluster has no endpoint to pick → 503 ``no healthy upstream``;
- a redirect route → its redirect (``Redirect``), decided before any cluster pick (it has none).

An ``original_destination`` cluster (``PassthroughCluster``) has no endpoints to pick from: the
request goes to its Host's name and port (``pass_through`` for Hosts no route knows under
``ALLOW_ANY``); a Host without a usable name gets 400.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Mapping

from lb import NO_HINTS, Endpoint, PickContext, affinity_hash_key, session_cookie
from mesh.model.hosts import endpoint_key, split_host_port
from mesh.model.routing import pick_weighted_cluster, rewrite_path, select_route
from sidecar.active import ClusterRuntime, ListenerRuntime, RouteRuntime
from sidecar.http1.framing import RequestHead
from sidecar.metrics import RequestStats

_MISSING = object()


class Forward:
    """Send the request to ``endpoint`` of ``cluster`` under ``route``."""

    __slots__ = ("cluster", "endpoint", "route", "set_cookie", "stats", "target")

    def __init__(
        self,
        route: RouteRuntime,
        cluster: ClusterRuntime,
        endpoint: Endpoint,
        stats: RequestStats,
        target: bytes,
        set_cookie: bytes | None,
    ) -> None:
        self.route = route
        self.cluster = cluster
        self.endpoint = endpoint
        self.stats = stats
        self.target = target  # the request target for the upstream (after prefix_rewrite)
        self.set_cookie = set_cookie  # a Set-Cookie value for cookie affinity, when one is generated


class Redirect:
    """Answer with ``status`` and a ``Location`` header (a route with ``redirect``)."""

    __slots__ = ("location", "route", "stats", "status")

    def __init__(self, route: RouteRuntime, status: int, location: str, stats: RequestStats) -> None:
        self.route = route
        self.status = status
        self.location = location
        self.stats = stats


class Reject:
    """Answer locally with ``status`` and ``message``. ``unknown_host`` is set on a 404 for no virtual host.

    ``flag`` is Envoy's response flag for the answer: ``NR`` no route, ``NC`` no such cluster,
    ``UH`` no healthy upstream (for access logs and ``istio_requests_total``).
    """

    __slots__ = ("cluster", "flag", "message", "route", "stats", "status", "unknown_host")

    def __init__(
        self,
        status: int,
        message: str,
        stats: RequestStats,
        route: RouteRuntime | None = None,
        unknown_host: bool = False,
        flag: str = "NR",
        cluster: ClusterRuntime | None = None,
    ) -> None:
        self.status = status
        self.message = message
        self.stats = stats
        self.route = route
        self.unknown_host = unknown_host
        self.flag = flag
        self.cluster = cluster


def find_route(runtime: ListenerRuntime, head: RequestHead, headers: Mapping[str, str] | None) -> RouteRuntime | None:
    """The matching route's runtime, from the (host, method, path) cache when the table allows."""
    table = runtime.table
    if table is None:
        return None
    if runtime.cacheable:
        key = (head.host, head.method, head.path)
        cached = runtime.cache.get(key, _MISSING)
        if cached is not _MISSING:
            return cached  # type: ignore[return-value]
    selection = select_route(
        table,
        head.host.decode("latin-1"),
        head.method.decode("latin-1"),
        head.path,
        head.query,
        headers if headers is not None else _NO_HEADERS,
    )
    found = None if selection is None else runtime.routes.get(id(selection.route))
    if runtime.cacheable:
        cache = runtime.cache
        if len(cache) >= 4096:
            cache.clear()
        cache[(head.host, head.method, head.path)] = found
    return found


def decide(
    runtime: ListenerRuntime, head: RequestHead, client_ip: str, rng: random.Random
) -> Forward | Reject | Redirect:
    """Route, cluster and endpoint for one request under one active config."""
    headers = head.headers_str() if runtime.needs_headers else None
    route = find_route(runtime, head, headers)
    if route is None:
        if runtime.table is None:
            return Reject(404, f"listener {runtime.listener.name!r} has no route table", runtime.no_route)
        return Reject(404, f"no route for host {head.host.decode('latin-1')!r}", runtime.no_route, unknown_host=True)
    cluster = route.single
    if cluster is None:
        if route.route.redirect is not None:
            status, location = route.resilience.redirect(
                scheme="http", authority=head.host.decode("latin-1"), path=head.path, query=head.query
            )
            return Redirect(route, status, location, route.stats[""])
        name = pick_weighted_cluster(route.route, rng) if len(route.targets) > 1 else next(iter(route.targets))
        stats = route.stats[name]
        cluster = route.targets.get(name)
        if cluster is None:
            return Reject(503, f"cluster not found: {name!r}", stats, route, flag="NC")
    else:
        stats = route.stats[cluster.name]
    ctx = NO_HINTS
    set_cookie: bytes | None = None
    affinity = cluster.affinity
    if affinity is not None:
        cookies = parse_cookies(headers.get("cookie", "")) if headers is not None and affinity.kind == "cookie" else {}
        key = affinity_hash_key(affinity, headers or {}, cookies, client_ip)
        if key is not None:
            ctx = PickContext(hash_key=key)
    endpoint = cluster.balancer.pick(ctx)
    if endpoint is None:
        if cluster.cluster.original_destination:
            return _to_original_destination(route, cluster, stats, head)
        return Reject(503, "no healthy upstream", stats, route, flag="UH", cluster=cluster)
    if affinity is not None and ctx is NO_HINTS:
        cookie = session_cookie(affinity, endpoint)
        if cookie is not None:
            set_cookie = cookie.set_cookie_header().encode("latin-1")
    target = head.target
    if route.route.prefix_rewrite is not None:
        path = rewrite_path(route.route, head.path)
        target = (path + "?" + head.query if head.query else path).encode("latin-1")
    return Forward(route, cluster, endpoint, stats, target, set_cookie)


def pass_through(runtime: ListenerRuntime, head: RequestHead) -> Forward | Reject:
    """``ALLOW_ANY``: a request for a Host no route knows goes where it was headed (``PassthroughCluster``)."""
    route = runtime.passthrough
    assert route is not None, "only for listeners with a pass-through route"
    assert route.single is not None
    return _to_original_destination(route, route.single, route.stats[route.single.name], head)


def _to_original_destination(
    route: RouteRuntime, cluster: ClusterRuntime, stats: RequestStats, head: RequestHead
) -> Forward | Reject:
    endpoint = original_destination(head.host.decode("latin-1"))
    if endpoint is None:
        return Reject(400, f"no destination in Host {head.host.decode('latin-1')!r}", stats, route, cluster=cluster)
    return Forward(route, cluster, endpoint, stats, head.target, None)


def original_destination(host: str) -> Endpoint | None:
    """Where a request for ``host`` (``name``, ``name:port``, ``[v6]:port``) was headed; port 80 by default."""
    name, port = split_host_port(host)
    if name.startswith("["):
        if not name.endswith("]"):
            return None
        name = name[1:-1]
    if not name or (any(c in name for c in "/@ \t:[]") and not _is_ipv6(name)):
        return None  # also a malformed port, which split_host_port leaves in the name
    return Endpoint(endpoint_key(name, port or 80), name, port or 80)


def _is_ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False


def parse_cookies(header: str) -> dict[str, str]:
    """``a=1; b=2`` → {"a": "1", "b": "2"} (first value wins, quotes stripped)."""
    cookies: dict[str, str] = {}
    for part in header.replace(",", ";").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in cookies:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            cookies[name] = value
    return cookies


_NO_HEADERS: Mapping[str, str] = {}
