"""Config text or decoded data → validated ``Snapshot``, and ``Snapshot`` → data (``/config_dump``).

Every problem raises ``ConfigError`` whose ``path`` names the exact field, in the file's own
terms: ``route_tables[0].virtual_hosts[1].routes[2].match.regex: invalid regex ...``. Checks:
types, unknown keys (named), required fields, duplicate names, ports, weights, durations
(``"5s"``, ``"250ms"``, ``"1m30s"`` or a number of seconds), domains, header names and values
(no CR/LF), regexes, references (listener → route table or cluster, route → cluster), and the
load-balancing policy (``lb.policy_from_dict``). The format is documented in
``docs/sidecar-config.md``.

``snapshot_to_dict`` writes the same format, so ``parse_snapshot(snapshot_to_dict(s)) == s``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Literal, TypeVar, cast

from lb import Endpoint, PolicySpec, policy_from_dict
from mesh.model.dump import policy_to_dict, snapshot_to_dict
from mesh.model.hosts import endpoint_key
from mesh.model.parse_policies import (
    parse_circuit_breakers,
    parse_fault,
    parse_health_check,
    parse_mirror,
    parse_outlier_detection,
    parse_redirect,
    parse_retry_policy,
)
from mesh.model.policies import DEFAULT_CIRCUIT_BREAKERS
from mesh.model.probes import parse_workload
from mesh.model.ratelimit import parse_rate_limits
from mesh.model.reader import (
    REQUIRED,
    ConfigError,
    Fields,
    Format,
    content_version,
    list_items,
    load_text,
    located,
    parse_seconds,
    show,
)
from mesh.model.security import DISABLED, parse_security
from mesh.model.snapshot import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MAX_CONNECTIONS_PER_ENDPOINT,
    DEFAULT_ROUTE_TIMEOUT_S,
    MAX_REQUESTS_PER_CONNECTION,
    OUTBOUND_POLICIES,
    Cluster,
    HeaderMatch,
    HeaderToAdd,
    Listener,
    OutboundPolicy,
    QueryMatch,
    Route,
    RouteMatch,
    RouteTable,
    ServerCertificate,
    Snapshot,
    SniRoute,
    VirtualHost,
    WeightedCluster,
    domain_has_port,
)

N = TypeVar("N", Listener, RouteTable, VirtualHost, Route, Cluster)

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token: header names, methods
_BAD_VALUE_CHARS = re.compile(r"[\r\n\x00]")
_DOMAIN_CHARS = re.compile(r"[a-z0-9._\-\[\]:*]+")
_HOST_VALUE = re.compile(r"[A-Za-z0-9._\-\[\]:]+")


# === entry points ===


def parse_snapshot_text(text: str | bytes, *, fmt: Format | None = None, version: str | None = None) -> Snapshot:
    """Parse YAML or JSON text (``fmt`` None: JSON when it starts with ``{``, else YAML).

    The snapshot's version is the document's ``version`` key, else ``version``, else a hash of
    the text (``sha256:<16 hex>``), so identical content always gets the same version.
    """
    raw = text.encode() if isinstance(text, str) else text
    data = load_text(raw, fmt)
    if data is None:
        data = {}
    return parse_snapshot(data, version=version or content_version(raw))


def parse_snapshot(data: object, *, version: str | None = None) -> Snapshot:
    """Build and validate a snapshot from decoded data; ``version`` is used when the data has none."""
    top = Fields(data, "")
    doc_version = top.take("version", None)
    if doc_version is None:
        final_version = version or ""
    elif isinstance(doc_version, str | int) and not isinstance(doc_version, bool) and str(doc_version):
        final_version = str(doc_version)
    else:
        raise ConfigError("version", f"must be a non-empty string, got {show(doc_version)}")
    clusters = _named_list(top, "clusters", _parse_cluster)
    route_tables = _named_list(top, "route_tables", _parse_route_table)
    listeners = _named_list(top, "listeners", _parse_listener)
    security_data = top.take("security", None)
    security = DISABLED if security_data is None else parse_security(security_data, "security")
    rate_limits = parse_rate_limits(top.take("rate_limits", []))
    outbound_policy = top.choice("outbound_traffic_policy", OUTBOUND_POLICIES, "REGISTRY_ONLY")
    workload = top.take("workload", None)
    if workload is not None:  # read by the sidecar at start (sidecar.probes); checked here so a bad edit is a NACK
        parse_workload(workload)
    top.finish()
    _check_references(listeners, route_tables, clusters)
    return Snapshot(
        version=final_version,
        listeners=tuple(item for _, item in listeners),
        route_tables=MappingProxyType({item.name: item for _, item in route_tables}),
        clusters=MappingProxyType({item.name: item for _, item in clusters}),
        security=security,
        rate_limits=rate_limits,
        outbound_traffic_policy=cast(OutboundPolicy, outbound_policy),
    )


# === listeners ===

_PROTOCOLS = ("http", "tcp")
_DIRECTIONS = ("outbound", "inbound")


def _parse_listener(data: object, path: str) -> Listener:
    obj = Fields(data, path)
    name = obj.name()
    protocol = obj.choice("protocol", _PROTOCOLS)
    host = obj.string("host", "127.0.0.1")
    port = obj.integer("port", REQUIRED, 0, 65535)
    direction = obj.choice("direction", _DIRECTIONS, "outbound")
    route_table = obj.string("route_table", "")
    cluster = obj.string("cluster", "")
    tls = obj.list_of("tls", _parse_certificate)
    sni_routes = obj.list_of("sni_routes", _parse_sni_route)
    obj.finish()
    if tls and protocol != "http":
        raise ConfigError(obj.at("tls"), "TLS termination is for http listeners")
    if sni_routes and (protocol != "tcp" or cluster):
        raise ConfigError(obj.at("sni_routes"), "routes by SNI are for tcp listeners, instead of cluster")
    if protocol == "http":
        if not route_table:
            raise ConfigError(obj.at("route_table"), "an http listener needs a route_table")
        if cluster:
            raise ConfigError(obj.at("cluster"), "an http listener routes through route_table; cluster is for tcp")
    else:
        if not cluster and not sni_routes:
            raise ConfigError(obj.at("cluster"), "a tcp listener needs a cluster (or sni_routes)")
        if route_table:
            raise ConfigError(obj.at("route_table"), "a tcp listener forwards to cluster; route_table is for http")
    if not host:
        raise ConfigError(obj.at("host"), "must not be empty")
    return Listener(
        name=name,
        protocol=cast(Literal["http", "tcp"], protocol),
        host=host,
        port=port,
        direction=cast(Literal["outbound", "inbound"], direction),
        route_table=route_table,
        cluster=cluster,
        tls=tuple(tls),
        sni_routes=tuple(sni_routes),
    )


def _parse_sni_route(data: object, path: str) -> SniRoute:
    obj = Fields(data, path)
    names = obj.take("server_names", REQUIRED)
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(obj.at("server_names"), f"must be a non-empty list of host names, got {show(names)}")
    cluster = obj.string("cluster", REQUIRED)
    obj.finish()
    return SniRoute(tuple(n.lower() for n in names), cluster)


def _parse_certificate(data: object, path: str) -> ServerCertificate:
    obj = Fields(data, path)
    names = obj.take("server_names", ["*"])
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(obj.at("server_names"), f"must be a non-empty list of host names, got {show(names)}")
    cert_file = obj.string("certificate", REQUIRED)
    key_file = obj.string("private_key", REQUIRED)
    ca_file = obj.string("ca_certificates", "")
    obj.finish()
    return ServerCertificate(tuple(n.lower() for n in names), cert_file, key_file, ca_file)


# === route tables ===


def _parse_route_table(data: object, path: str) -> RouteTable:
    obj = Fields(data, path)
    name = obj.name()
    vhosts = _named_list(obj, "virtual_hosts", _parse_virtual_host)
    obj.finish()
    owner: dict[str, str] = {}
    for vhost_path, vhost in vhosts:
        for i, domain in enumerate(vhost.domains):
            if domain in owner:
                raise ConfigError(
                    f"{vhost_path}.domains[{i}]",
                    f"domain {domain!r} is already used by virtual host {owner[domain]!r} of this route table",
                )
            owner[domain] = vhost.name
    return RouteTable(name=name, virtual_hosts=tuple(vhost for _, vhost in vhosts))


def _parse_virtual_host(data: object, path: str) -> VirtualHost:
    obj = Fields(data, path)
    name = obj.name()
    domains = obj.list_of("domains", _parse_domain, required=True)
    seen: set[str] = set()
    for i, domain in enumerate(domains):
        if domain in seen:
            raise ConfigError(obj.at(f"domains[{i}]"), f"duplicate domain {domain!r}")
        seen.add(domain)
    if not domains:
        raise ConfigError(obj.at("domains"), "needs at least one domain (use '*' to match every host)")
    routes = _named_list(obj, "routes", _parse_route, default_name="route-{index}")
    obj.finish()
    return VirtualHost(name=name, domains=tuple(domains), routes=tuple(route for _, route in routes))


def _parse_domain(data: object, path: str) -> str:
    if not isinstance(data, str) or not data:
        raise ConfigError(path, f"must be a non-empty string, got {show(data)}")
    domain = data.lower()
    if domain == "*":
        return domain
    if not _DOMAIN_CHARS.fullmatch(domain):
        raise ConfigError(path, f"invalid domain {data!r} (letters, digits, '.', '-', '_', ':port', one '*')")
    stars = domain.count("*")
    if stars > 1 or (stars == 1 and not (domain.startswith("*") or domain.endswith("*"))):
        raise ConfigError(path, f"invalid domain {data!r}: '*' may appear once, at the start or the end")
    if domain in ("*.", ".*") or domain.startswith("*:"):
        raise ConfigError(path, f"invalid domain {data!r}: a wildcard needs a fixed part")
    if domain_has_port(domain):
        port_text = domain.rsplit(":", 1)[1]
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(path, f"invalid port in domain {data!r}")
    return domain


def _parse_route(data: object, path: str) -> Route:
    obj = Fields(data, path)
    name = obj.name()
    match = obj.nested("match", _parse_route_match, RouteMatch())
    redirect = obj.nested("redirect", parse_redirect, None)
    targets = _parse_targets(obj, redirect is not None)
    timeout = obj.duration("timeout", DEFAULT_ROUTE_TIMEOUT_S, allow_none=True)
    prefix_rewrite = obj.optional_string("prefix_rewrite")
    req_add = obj.list_of("request_headers_add", _parse_header_to_add)
    req_remove = obj.list_of("request_headers_remove", _parse_header_name)
    resp_add = obj.list_of("response_headers_add", _parse_header_to_add)
    resp_remove = obj.list_of("response_headers_remove", _parse_header_name)
    retry_policy = obj.nested("retry_policy", parse_retry_policy, None)
    fault = obj.nested("fault", parse_fault, None)
    mirrors = obj.list_of("mirrors", parse_mirror)
    host_rewrite = obj.optional_string("host_rewrite")
    obj.finish()
    if host_rewrite is not None and not _HOST_VALUE.fullmatch(host_rewrite):
        raise ConfigError(obj.at("host_rewrite"), f"must be a host name, optionally with :port, got {host_rewrite!r}")
    if redirect is not None:
        for key, value in (
            ("prefix_rewrite", prefix_rewrite),
            ("host_rewrite", host_rewrite),
            ("retry_policy", retry_policy),
        ):
            if value is not None:
                raise ConfigError(obj.at(key), "a redirect route answers itself: it takes no " + key)
        if mirrors:
            raise ConfigError(obj.at("mirrors"), "a redirect route answers itself: it takes no mirrors")
        if redirect.prefix_rewrite is not None and match.path_regex is not None:
            raise ConfigError(
                obj.at("redirect.prefix_rewrite"), "cannot be used with match.regex (only path and prefix)"
            )
    if prefix_rewrite is not None:
        if match.path_regex is not None:
            raise ConfigError(obj.at("prefix_rewrite"), "cannot be used with match.regex (only path and prefix)")
        if not prefix_rewrite.startswith("/"):
            raise ConfigError(obj.at("prefix_rewrite"), f"must start with '/', got {prefix_rewrite!r}")
    return Route(
        name=name,
        match=match,
        clusters=targets,
        timeout_s=None if timeout == 0 else timeout,
        prefix_rewrite=prefix_rewrite,
        request_headers_add=tuple(req_add),
        request_headers_remove=tuple(req_remove),
        response_headers_add=tuple(resp_add),
        response_headers_remove=tuple(resp_remove),
        retry_policy=retry_policy,
        fault=fault,
        mirrors=tuple(mirrors),
        host_rewrite=host_rewrite,
        redirect=redirect,
    )


def _parse_targets(obj: Fields, redirect: bool) -> tuple[WeightedCluster, ...]:
    single = obj.take("cluster", None)
    weighted = obj.take("clusters", None)
    if redirect:
        if single is not None or weighted is not None:
            raise ConfigError(obj.at("redirect"), "a route either redirects or forwards to clusters, not both")
        return ()
    if single is not None and weighted is not None:
        raise ConfigError(obj.at("clusters"), "give either cluster or clusters, not both")
    if single is not None:
        if not isinstance(single, str) or not single:
            raise ConfigError(obj.at("cluster"), f"must be a cluster name, got {show(single)}")
        return (WeightedCluster(single, 1),)
    if weighted is None:
        raise ConfigError(obj.at("clusters"), "a route needs cluster: NAME or clusters: [{name, weight}, ...]")
    targets = list_items(weighted, obj.at("clusters"), _parse_weighted_cluster)
    if not targets:
        raise ConfigError(obj.at("clusters"), "needs at least one cluster")
    seen: set[str] = set()
    for i, target in enumerate(targets):
        if target.name in seen:
            raise ConfigError(obj.at(f"clusters[{i}].name"), f"cluster {target.name!r} is listed twice")
        seen.add(target.name)
    return tuple(targets)


def _parse_weighted_cluster(data: object, path: str) -> WeightedCluster:
    obj = Fields(data, path)
    name = obj.name()
    weight = obj.integer("weight", 1, 1, 1_000_000)
    obj.finish()
    return WeightedCluster(name, weight)


def _parse_route_match(data: object, path: str) -> RouteMatch:
    obj = Fields(data, path)
    exact = obj.optional_string("path")
    prefix = obj.optional_string("prefix")
    regex = obj.optional_regex("regex")
    given = [key for key, value in (("path", exact), ("prefix", prefix), ("regex", regex)) if value is not None]
    if len(given) > 1:
        raise ConfigError(obj.at(given[1]), f"give only one of path, prefix, regex (also got {given[0]})")
    for key, value in (("path", exact), ("prefix", prefix)):
        if value is not None and not value.startswith("/"):
            raise ConfigError(obj.at(key), f"must start with '/', got {value!r}")
    case_sensitive = obj.flag("case_sensitive", True)
    methods = obj.list_of("methods", _parse_method)
    headers = obj.list_of("headers", _parse_header_match)
    query = obj.list_of("query", _parse_query_match)
    obj.finish()
    return RouteMatch(
        path_exact=exact,
        path_prefix=prefix,
        path_regex=regex,
        case_sensitive=case_sensitive,
        methods=frozenset(methods),
        headers=tuple(headers),
        query=tuple(query),
    )


def _parse_method(data: object, path: str) -> str:
    if not isinstance(data, str) or not _TOKEN.fullmatch(data):
        raise ConfigError(path, f"must be an HTTP method such as GET, got {show(data)}")
    return data.upper()


def _parse_header_match(data: object, path: str) -> HeaderMatch:
    obj = Fields(data, path)
    name = _parse_header_name(obj.take("name", REQUIRED), obj.at("name"))
    exact = obj.optional_string("exact")
    prefix = obj.optional_string("prefix")
    suffix = obj.optional_string("suffix")
    regex = obj.optional_regex("regex")
    present = obj.optional_flag("present")
    invert = obj.flag("invert", False)
    obj.finish()
    _only_one(obj, {"exact": exact, "prefix": prefix, "suffix": suffix, "regex": regex, "present": present})
    return HeaderMatch(name, exact, prefix, suffix, regex, present, invert)


def _parse_query_match(data: object, path: str) -> QueryMatch:
    obj = Fields(data, path)
    name = obj.string("name", REQUIRED)
    if not name:
        raise ConfigError(obj.at("name"), "must not be empty")
    exact = obj.optional_string("exact")
    regex = obj.optional_regex("regex")
    present = obj.optional_flag("present")
    obj.finish()
    _only_one(obj, {"exact": exact, "regex": regex, "present": present})
    return QueryMatch(name, exact, regex, present)


def _parse_header_name(data: object, path: str) -> str:
    if not isinstance(data, str) or not _TOKEN.fullmatch(data):
        raise ConfigError(path, f"must be a header name (an RFC 9110 token such as x-request-id), got {show(data)}")
    return data.lower()


def _parse_header_to_add(data: object, path: str) -> HeaderToAdd:
    obj = Fields(data, path)
    name = _parse_header_name(obj.take("name", REQUIRED), obj.at("name"))
    value = obj.string("value", REQUIRED)
    if _BAD_VALUE_CHARS.search(value):
        raise ConfigError(obj.at("value"), "must not contain CR, LF or NUL")
    append = obj.flag("append", True)
    obj.finish()
    return HeaderToAdd(name, value, append)


def _only_one(obj: Fields, options: Mapping[str, object]) -> None:
    given = [key for key, value in options.items() if value is not None]
    if len(given) > 1:
        raise ConfigError(obj.at(given[1]), f"give only one of {', '.join(options)} (also got {given[0]})")


# === clusters ===


def _parse_cluster(data: object, path: str) -> Cluster:
    obj = Fields(data, path)
    name = obj.name()
    policy = obj.nested("lb", _parse_policy, PolicySpec())
    endpoints = obj.list_of("endpoints", _parse_endpoint)
    seen: dict[str, int] = {}
    for i, endpoint in enumerate(endpoints):
        if endpoint.key in seen:
            raise ConfigError(
                obj.at(f"endpoints[{i}]"), f"endpoint {endpoint.key!r} is already endpoints[{seen[endpoint.key]}]"
            )
        seen[endpoint.key] = i
    connect_timeout = obj.duration("connect_timeout", DEFAULT_CONNECT_TIMEOUT_S)
    if connect_timeout <= 0:
        raise ConfigError(obj.at("connect_timeout"), "must be > 0")
    idle_timeout = obj.duration("idle_timeout", DEFAULT_IDLE_TIMEOUT_S)
    if idle_timeout <= 0:
        raise ConfigError(obj.at("idle_timeout"), "must be > 0")
    max_connections = obj.integer("max_connections_per_endpoint", DEFAULT_MAX_CONNECTIONS_PER_ENDPOINT, 1, 1_000_000)
    max_requests = obj.integer("max_requests_per_connection", 0, 0, MAX_REQUESTS_PER_CONNECTION)
    service = obj.string("service", "")
    protocol = obj.choice("protocol", _PROTOCOLS, "http")
    breakers = obj.nested("circuit_breakers", parse_circuit_breakers, DEFAULT_CIRCUIT_BREAKERS)
    outlier = obj.nested("outlier_detection", parse_outlier_detection, None)
    health_check = obj.nested("health_check", parse_health_check, None)
    original_destination = obj.flag("original_destination", False)
    obj.finish()
    if original_destination and (endpoints or service):
        raise ConfigError(
            obj.at("original_destination"), "an original-destination cluster has no endpoints and no service"
        )
    return Cluster(
        name=name,
        lb=policy,
        endpoints=tuple(endpoints),
        connect_timeout_s=connect_timeout,
        idle_timeout_s=idle_timeout,
        max_connections_per_endpoint=max_connections,
        max_requests_per_connection=max_requests,
        service=service,
        protocol=cast(Literal["http", "tcp"], protocol),
        circuit_breakers=breakers,
        outlier_detection=outlier,
        health_check=health_check,
        original_destination=original_destination,
    )


def _parse_policy(data: object, path: str) -> PolicySpec:
    try:
        return policy_from_dict(data, path)
    except (ValueError, TypeError) as exc:
        raise located(exc, path) from exc


def _parse_endpoint(data: object, path: str) -> Endpoint:
    obj = Fields(data, path)
    host = obj.string("host", REQUIRED)
    if not host or any(c.isspace() for c in host):
        raise ConfigError(obj.at("host"), f"must be a host name or IP address, got {host!r}")
    port = obj.integer("port", REQUIRED, 1, 65535)
    weight = obj.integer("weight", 1, 1, 1_000_000)
    healthy = obj.flag("healthy", True)
    no_metadata: tuple[tuple[str, str], ...] = ()
    metadata = obj.nested("metadata", _parse_metadata, no_metadata)
    key = obj.string("key", "") or endpoint_key(host, port)
    obj.finish()
    return Endpoint(key=key, host=host, port=port, weight=weight, healthy=healthy, metadata=metadata)


def _parse_metadata(data: object, path: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(data, Mapping):
        raise ConfigError(path, f"must be a mapping of strings, got {show(data)}")
    items = []
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ConfigError(f"{path}.{key}", f"keys and values must be strings, got {show(value)}")
        items.append((key, value))
    return tuple(sorted(items))


# === cross references ===


def _check_references(
    listeners: list[tuple[str, Listener]],
    route_tables: list[tuple[str, RouteTable]],
    clusters: list[tuple[str, Cluster]],
) -> None:
    tables = {table.name for _, table in route_tables}
    by_name = {cluster.name: cluster for _, cluster in clusters}
    bound: dict[tuple[str, int], str] = {}
    for path, listener in listeners:
        if listener.protocol == "http" and listener.route_table not in tables:
            raise ConfigError(f"{path}.route_table", f"unknown route table {listener.route_table!r}{_known(tables)}")
        if listener.protocol == "tcp" and not listener.sni_routes and listener.cluster not in by_name:
            raise ConfigError(f"{path}.cluster", f"unknown cluster {listener.cluster!r}{_known(by_name)}")
        for i, sni in enumerate(listener.sni_routes):
            if sni.cluster not in by_name:
                raise ConfigError(
                    f"{path}.sni_routes[{i}].cluster", f"unknown cluster {sni.cluster!r}{_known(by_name)}"
                )
        address = (listener.host, listener.port)
        if listener.port and address in bound:
            raise ConfigError(
                f"{path}.port", f"{listener.host}:{listener.port} is already used by listener {bound[address]!r}"
            )
        bound[address] = listener.name
    for table_path, table in route_tables:
        for v, vhost in enumerate(table.virtual_hosts):
            for r, route in enumerate(vhost.routes):
                for c, target in enumerate(route.clusters):
                    where = f"{table_path}.virtual_hosts[{v}].routes[{r}].clusters[{c}].name"
                    cluster = by_name.get(target.name)
                    if cluster is None:
                        raise ConfigError(where, f"unknown cluster {target.name!r}{_known(by_name)}")
                    if cluster.protocol != "http":
                        raise ConfigError(where, f"cluster {target.name!r} is tcp; HTTP routes need an http cluster")
                for m, mirror in enumerate(route.mirrors):
                    where = f"{table_path}.virtual_hosts[{v}].routes[{r}].mirrors[{m}].cluster"
                    cluster = by_name.get(mirror.cluster)
                    if cluster is None:
                        raise ConfigError(where, f"unknown cluster {mirror.cluster!r}{_known(by_name)}")
                    if cluster.protocol != "http":
                        raise ConfigError(where, f"cluster {mirror.cluster!r} is tcp; mirrors need an http cluster")


def _known(names: Iterable[str]) -> str:
    ordered = sorted(names)
    if not ordered:
        return " (none are defined)"
    shown = ", ".join(ordered[:10]) + (", ..." if len(ordered) > 10 else "")
    return f" (known: {shown})"


def _named_list(
    obj: Fields, key: str, parse: Callable[[object, str], N], *, default_name: str | None = None
) -> list[tuple[str, N]]:
    """Parse a list of named objects, rejecting duplicate names; returns (path, item) pairs."""
    raw = obj.take(key, None)
    if raw is None:
        return []
    path = obj.at(key)
    if not isinstance(raw, list | tuple):
        raise ConfigError(path, f"must be a list, got {show(raw)}")
    items: list[tuple[str, N]] = []
    seen: dict[str, int] = {}
    for i, data in enumerate(raw):
        item_path = f"{path}[{i}]"
        if default_name is not None and isinstance(data, Mapping) and "name" not in data:
            data = {"name": default_name.format(index=i), **data}
        item = parse(data, item_path)
        if item.name in seen:
            raise ConfigError(f"{item_path}.name", f"duplicate name {item.name!r} (also {path}[{seen[item.name]}])")
        seen[item.name] = i
        items.append((item_path, item))
    return items


__all__ = [
    "ConfigError",
    "Format",
    "content_version",
    "load_text",
    "parse_seconds",
    "parse_snapshot",
    "parse_snapshot_text",
    "policy_to_dict",
    "snapshot_to_dict",
]
