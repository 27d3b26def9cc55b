"""The sidecar's configuration as one immutable, versioned value (Envoy-like, small).

A ``Snapshot`` holds everything a sidecar serves from: listeners (where to accept), route
tables (HTTP request → cluster), and clusters (named endpoint sets with their load-balancing
policy). Every type here is a frozen, slotted dataclass whose collections are tuples,
frozensets or read-only mappings, so a snapshot can be shared by every in-flight request and
replaced by assigning one reference. Nothing here does I/O; ``mesh.model.parse`` builds and
validates snapshots from text, ``mesh.model.routing`` selects routes.

Matching rules (what the fields mean; ``mesh.model.routing`` implements them):

- A listener with ``protocol="http"`` routes through ``route_tables[listener.route_table]``;
  one with ``protocol="tcp"`` forwards every connection to ``clusters[listener.cluster]``.
- A virtual host's ``domains`` are exact names (``api.example.com``), suffix wildcards
  (``*.example.com``, ``*-api.example.com``), prefix wildcards (``api.*``) or ``*``. The
  request's Host is compared case-insensitively; its ``:port`` is ignored unless a domain names
  a port (``api:8080`` matches only that port). Precedence: exact > longest suffix wildcard >
  longest prefix wildcard > ``*``. A wildcard must match at least one character.
- Routes of the chosen virtual host are tried in order; the first whose ``RouteMatch`` holds
  wins. Its ``clusters`` are picked by weight.

Types built here precompute what request-time matching needs (flattened route matchers,
cumulative weights, the domain index) in ``__post_init__``, into derived fields (not
constructor arguments) that take no part in equality or ``repr``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from lb import Affinity, Endpoint, PolicySpec
from mesh.model.policies import (
    DEFAULT_CIRCUIT_BREAKERS,
    CircuitBreakers,
    FaultPolicy,
    HealthCheck,
    MirrorPolicy,
    OutlierDetection,
    Redirect,
    RetryPolicy,
)
from mesh.model.ratelimit import RateLimitEntry
from mesh.model.security import DISABLED, SecurityConfig

Protocol = Literal["http", "tcp"]
Direction = Literal["outbound", "inbound"]

DEFAULT_ROUTE_TIMEOUT_S = 15.0  # Envoy's default route timeout
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_IDLE_TIMEOUT_S = 60.0
DEFAULT_MAX_CONNECTIONS_PER_ENDPOINT = 1024
MAX_REQUESTS_PER_CONNECTION = 2**32 - 1  # Envoy's field is a uint32
DEFAULT_POLICY = PolicySpec()  # round robin, Envoy's default


def _freeze(obj: object, name: str, value: object) -> None:
    """Set a field on a frozen instance (only from ``__post_init__``)."""
    object.__setattr__(obj, name, value)


# === request matching ===


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    """One request-header condition. ``name`` is lower-case.

    At most one of ``exact``/``prefix``/``suffix``/``regex``/``present`` is set:
    ``exact``, ``prefix``, ``suffix`` compare the header's value (case-sensitive); ``regex``
    must match the whole value (``fullmatch``); ``present=True`` needs the header, with any
    value, and ``present=False`` needs it absent. With none set the header must be present.
    A value-matcher fails when the header is absent. ``invert`` negates the result (so an
    inverted value-matcher also holds when the header is absent, as in Envoy).
    A header sent several times is matched against its values joined with ``","``.
    """

    name: str
    exact: str | None = None
    prefix: str | None = None
    suffix: str | None = None
    regex: re.Pattern[str] | None = None
    present: bool | None = None
    invert: bool = False


@dataclass(frozen=True, slots=True)
class QueryMatch:
    """One query-parameter condition on the parameter's first value (names are case-sensitive).

    ``exact`` compares the decoded value, ``regex`` must match it whole, ``present=True`` needs
    the parameter (any value, even empty), ``present=False`` needs it absent. With none set the
    parameter must be present.
    """

    name: str
    exact: str | None = None
    regex: re.Pattern[str] | None = None
    present: bool | None = None


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """Conditions on a request; all of them must hold.

    Path: at most one of ``path_exact`` (the whole path), ``path_prefix`` (plain string prefix,
    as Envoy: ``/api`` also matches ``/apix``) or ``path_regex`` (``fullmatch`` of the path).
    None set matches every path. The path is the request target without its query string.
    ``case_sensitive=False`` folds case for exact and prefix (write ``(?i)`` in a regex).
    ``methods`` (upper-case; empty: any method), ``headers`` and ``query`` must all match.
    """

    path_exact: str | None = None
    path_prefix: str | None = None
    path_regex: re.Pattern[str] | None = None
    case_sensitive: bool = True
    methods: frozenset[str] = frozenset()
    headers: tuple[HeaderMatch, ...] = ()
    query: tuple[QueryMatch, ...] = ()


# === routes ===


@dataclass(frozen=True, slots=True)
class WeightedCluster:
    """A route target: ``name`` is a key of ``Snapshot.clusters``; ``weight`` > 0 is relative."""

    name: str
    weight: int = 1


@dataclass(frozen=True, slots=True)
class HeaderToAdd:
    """A header a route adds. ``append=True`` adds a value beside existing ones; ``False`` replaces them."""

    name: str
    value: str
    append: bool = True


@dataclass(frozen=True, slots=True)
class Route:
    """A match and where matching requests go.

    ``clusters``: one or more weighted targets (see ``routing.pick_weighted_cluster``).
    ``timeout_s``: the whole upstream exchange (Envoy's route timeout), ``None`` for no limit.
    ``prefix_rewrite``: replaces the matched path prefix (or the whole path for ``path_exact``;
    with no path condition it is put in front of the path); not allowed with ``path_regex``.
    Header names in ``*_headers_remove`` and ``HeaderToAdd.name`` are lower-case.

    Resilience (``mesh.model.policies``; enforced by ``sidecar/resilience/``): ``retry_policy``
    (``None``: no retries, as Envoy), ``fault`` (injected delay/abort), ``mirrors`` (shadow
    copies), ``host_rewrite`` (the Host sent upstream, Istio ``rewrite.authority``) and
    ``redirect``: a redirect route answers itself and has no ``clusters`` (a route has either).
    """

    name: str
    match: RouteMatch
    clusters: tuple[WeightedCluster, ...]
    timeout_s: float | None = DEFAULT_ROUTE_TIMEOUT_S
    prefix_rewrite: str | None = None
    request_headers_add: tuple[HeaderToAdd, ...] = ()
    request_headers_remove: tuple[str, ...] = ()
    response_headers_add: tuple[HeaderToAdd, ...] = ()
    response_headers_remove: tuple[str, ...] = ()
    retry_policy: RetryPolicy | None = None
    fault: FaultPolicy | None = None
    mirrors: tuple[MirrorPolicy, ...] = ()
    host_rewrite: str | None = None
    redirect: Redirect | None = None
    # Running totals of ``clusters`` weights for a binary-search pick; derived.
    cumulative_weights: tuple[int, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.redirect is not None:
            if self.clusters:
                raise ValueError(f"route {self.name!r}: a redirect route has no clusters")
            return
        if not self.clusters:
            raise ValueError(f"route {self.name!r} needs at least one cluster")
        total = 0
        running = []
        for target in self.clusters:
            if target.weight <= 0:
                raise ValueError(f"route {self.name!r}: cluster {target.name!r} weight must be > 0")
            total += target.weight
            running.append(total)
        _freeze(self, "cumulative_weights", tuple(running))


# Path conditions, as ``RouteMatcher`` codes (small ints compare fastest).
PATH_ANY = 0
PATH_PREFIX = 1
PATH_EXACT = 2
PATH_REGEX = 3
PATH_PREFIX_FOLDED = 4  # case-insensitive: compared with the lower-cased path
PATH_EXACT_FOLDED = 5

PathValue = str | re.Pattern[str] | None
RouteMatcher = tuple[Route, int, PathValue, frozenset[str], tuple[HeaderMatch, ...], tuple[QueryMatch, ...]]
"""(route, path code, path value, methods, headers, query): one route flattened for the match loop."""


def route_matcher(route: Route) -> RouteMatcher:
    """Flatten a route's match so the per-request loop reads one tuple instead of many attributes."""
    match = route.match
    value: PathValue = None
    if match.path_prefix is not None:
        code, value = PATH_PREFIX, match.path_prefix
    elif match.path_exact is not None:
        code, value = PATH_EXACT, match.path_exact
    elif match.path_regex is not None:
        code, value = PATH_REGEX, match.path_regex
    else:
        code = PATH_ANY
    if not match.case_sensitive and code in (PATH_PREFIX, PATH_EXACT):
        assert isinstance(value, str)
        code, value = (PATH_PREFIX_FOLDED if code == PATH_PREFIX else PATH_EXACT_FOLDED), value.lower()
    return (route, code, value, match.methods, match.headers, match.query)


@dataclass(frozen=True, slots=True)
class VirtualHost:
    """A set of domains sharing an ordered route list (see the module doc for domain forms).

    ``matchers`` is derived: the routes flattened for ``routing.first_matching_route``.
    """

    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...]
    matchers: tuple[RouteMatcher, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _freeze(self, "matchers", tuple(route_matcher(route) for route in self.routes))


@dataclass(frozen=True, slots=True)
class RouteTable:
    """Named virtual hosts; an HTTP listener refers to one by ``name``.

    ``domain_index`` is the precomputed lookup ``routing.select_virtual_host`` uses; a domain
    may appear in only one virtual host of a table (``ValueError`` otherwise).
    """

    name: str
    virtual_hosts: tuple[VirtualHost, ...]
    domain_index: DomainIndex = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _freeze(self, "domain_index", DomainIndex.build(self.virtual_hosts))


# === clusters and listeners ===


@dataclass(frozen=True, slots=True)
class Cluster:
    """A named set of endpoints and how to spread requests over them.

    ``lb`` comes from ``lb/`` (``lb.policy_from_dict``) and is handed to ``lb.build_balancer``; it
    carries the session affinity too (``affinity`` is a shortcut to ``lb.affinity``).
    ``service`` non-empty means the endpoints are the passing instances of that registry
    service (a registry-fed source fills ``endpoints``; a static file may leave them empty).
    ``protocol`` says how the sidecar talks to the endpoints. Timeouts are seconds.
    ``max_requests_per_connection``: an upstream connection is closed once it served this many
    requests (Envoy's ``max_requests_per_connection``; 1 turns keep-alive off; 0: unlimited).
    ``circuit_breakers`` (always in force, Envoy's defaults), ``outlier_detection`` and
    ``health_check`` (``None``: off) are in ``mesh.model.policies``.
    ``original_destination`` (Envoy's ORIGINAL_DST cluster): no configured endpoints; each request
    goes where it was headed, the name and port of its Host (port 80 when none).
    """

    name: str
    lb: PolicySpec = DEFAULT_POLICY
    endpoints: tuple[Endpoint, ...] = ()
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    max_connections_per_endpoint: int = DEFAULT_MAX_CONNECTIONS_PER_ENDPOINT
    max_requests_per_connection: int = 0
    service: str = ""
    protocol: Protocol = "http"
    circuit_breakers: CircuitBreakers = DEFAULT_CIRCUIT_BREAKERS
    outlier_detection: OutlierDetection | None = None
    health_check: HealthCheck | None = None
    original_destination: bool = False

    @property
    def affinity(self) -> Affinity | None:
        """Session affinity (part of the policy, since it only works with a hashing policy)."""
        return self.lb.affinity


@dataclass(frozen=True, slots=True)
class ServerCertificate:
    """A certificate an HTTPS listener presents: for ``server_names`` (SNI; ``*.example.com`` and
    ``*`` allowed), PEM files read when the snapshot is applied; ``ca_file`` set: clients must
    present a certificate chaining to it (Istio's ``MUTUAL``)."""

    server_names: tuple[str, ...]
    cert_file: str
    key_file: str
    ca_file: str = ""


@dataclass(frozen=True, slots=True)
class SniRoute:
    """A TCP listener's route by the client's TLS SNI: ``server_names`` (``*.example.com``, ``*``) → ``cluster``."""

    server_names: tuple[str, ...]
    cluster: str


@dataclass(frozen=True, slots=True)
class Listener:
    """Where the sidecar accepts connections.

    ``direction`` is ``outbound`` (the local app calling others) or ``inbound`` (others calling
    the local app). HTTP listeners name a ``route_table``; TCP listeners name a ``cluster``.
    ``tls`` (HTTP only): the listener terminates TLS with these certificates, picked by the
    client's SNI (the first one when none matches): a gateway's HTTPS server. ``sni_routes`` (TCP
    only, instead of ``cluster``): the connection's TLS ClientHello is read (not terminated) and its
    SNI picks the cluster (a gateway's ``PASSTHROUGH`` server); no match closes the connection.
    """

    name: str
    protocol: Protocol
    host: str
    port: int
    direction: Direction = "outbound"
    route_table: str = ""
    cluster: str = ""
    tls: tuple[ServerCertificate, ...] = ()
    sni_routes: tuple[SniRoute, ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One complete, validated configuration. ``version`` identifies it (ACK/NACK, /config_dump).

    ``outbound_traffic_policy`` is Istio's ``meshConfig.outboundTrafficPolicy.mode`` for requests
    on outbound listeners whose Host no route knows: ``REGISTRY_ONLY`` answers 404 (Envoy's NR),
    ``ALLOW_ANY`` passes them to where they were headed through ``PassthroughCluster`` (an
    ``original_destination`` cluster the snapshot then always has).
    """

    version: str
    listeners: tuple[Listener, ...] = ()
    route_tables: Mapping[str, RouteTable] = field(default_factory=lambda: MappingProxyType({}))
    clusters: Mapping[str, Cluster] = field(default_factory=lambda: MappingProxyType({}))
    security: SecurityConfig = DISABLED  # mTLS mode, authorization policies, mesh endpoints (mesh.model.security)
    rate_limits: tuple[RateLimitEntry, ...] = ()  # RateLimitPolicy specs selecting the workload (mesh.model.ratelimit)
    outbound_traffic_policy: OutboundPolicy = "REGISTRY_ONLY"

    def __post_init__(self) -> None:
        # Accept plain dicts from callers but never keep a mutable mapping.
        if not isinstance(self.route_tables, MappingProxyType):
            _freeze(self, "route_tables", MappingProxyType(dict(self.route_tables)))
        if not isinstance(self.clusters, MappingProxyType):
            _freeze(self, "clusters", MappingProxyType(dict(self.clusters)))
        if self.outbound_traffic_policy == "ALLOW_ANY" and PASSTHROUGH_CLUSTER not in self.clusters:
            clusters = {**self.clusters, PASSTHROUGH_CLUSTER: PASSTHROUGH}
            _freeze(self, "clusters", MappingProxyType(clusters))

    def listener(self, name: str) -> Listener | None:
        """The listener called ``name``, if any."""
        for listener in self.listeners:
            if listener.name == name:
                return listener
        return None


OutboundPolicy = Literal["REGISTRY_ONLY", "ALLOW_ANY"]
OUTBOUND_POLICIES: tuple[OutboundPolicy, ...] = ("REGISTRY_ONLY", "ALLOW_ANY")
PASSTHROUGH_CLUSTER = "PassthroughCluster"  # Envoy's name, which Istio's metrics show
PASSTHROUGH = Cluster(PASSTHROUGH_CLUSTER, original_destination=True)
PASSTHROUGH_ROUTE = Route(
    "allow_any", RouteMatch(path_prefix="/"), (WeightedCluster(PASSTHROUGH_CLUSTER),), timeout_s=None
)  # Istio's route for ALLOW_ANY: no timeout (a pass-through may be a long download)


# === the domain index (request-time virtual-host lookup) ===


@dataclass(frozen=True, slots=True)
class WildcardIndex:
    """Wildcard domains grouped by the length of their fixed part, longest first."""

    by_length: tuple[tuple[int, Mapping[str, VirtualHost]], ...] = ()


@dataclass(frozen=True, slots=True)
class DomainIndex:
    """Virtual hosts by domain, split into the four precedence classes.

    ``bare_*`` hold domains without a port (matched against the Host with its port removed);
    ``ported_*`` hold domains that name a port (matched against ``host:port``). Fixed parts are
    lower-case. Built once per ``RouteTable``; lookups cost a few dict probes.
    """

    bare_exact: Mapping[str, VirtualHost]
    bare_suffix: WildcardIndex
    bare_prefix: WildcardIndex
    ported_exact: Mapping[str, VirtualHost]
    ported_suffix: WildcardIndex
    ported_prefix: WildcardIndex
    catch_all: VirtualHost | None
    has_ported: bool

    @classmethod
    def build(cls, virtual_hosts: tuple[VirtualHost, ...]) -> DomainIndex:
        tables: dict[tuple[bool, str], dict[str, VirtualHost]] = {
            (ported, kind): {} for ported in (False, True) for kind in ("exact", "suffix", "prefix")
        }
        catch_all: VirtualHost | None = None
        owner: dict[str, str] = {}
        for vhost in virtual_hosts:
            for raw in vhost.domains:
                domain = raw.lower()
                if domain in owner:
                    raise ValueError(
                        f"domain {raw!r} is in virtual hosts {owner[domain]!r} and {vhost.name!r}; "
                        "a domain may appear only once per route table"
                    )
                owner[domain] = vhost.name
                if domain == "*":
                    catch_all = vhost
                    continue
                kind, fixed = classify_domain(domain)
                tables[(domain_has_port(domain), kind)][fixed] = vhost
        return cls(
            bare_exact=MappingProxyType(tables[(False, "exact")]),
            bare_suffix=_wildcards(tables[(False, "suffix")]),
            bare_prefix=_wildcards(tables[(False, "prefix")]),
            ported_exact=MappingProxyType(tables[(True, "exact")]),
            ported_suffix=_wildcards(tables[(True, "suffix")]),
            ported_prefix=_wildcards(tables[(True, "prefix")]),
            catch_all=catch_all,
            has_ported=any(tables[(True, kind)] for kind in ("exact", "suffix", "prefix")),
        )


def classify_domain(domain: str) -> tuple[Literal["exact", "suffix", "prefix"], str]:
    """``*.x`` → ("suffix", ".x"); ``x.*`` → ("prefix", "x."); else ("exact", domain).

    ``*`` alone is the catch-all and is not classified here. The fixed part keeps any port:
    ``*.x:80`` → ("suffix", ".x:80").
    """
    if domain.startswith("*"):
        return "suffix", domain[1:]
    if domain.endswith("*"):
        return "prefix", domain[:-1]
    return "exact", domain


def domain_has_port(domain: str) -> bool:
    """Whether a domain pattern names a port (``host:80``, ``[::1]:80``, ``*.x:80``)."""
    if domain.startswith("["):
        return "]:" in domain
    return ":" in domain


def _wildcards(fixed_parts: dict[str, VirtualHost]) -> WildcardIndex:
    grouped: dict[int, dict[str, VirtualHost]] = {}
    for fixed, vhost in fixed_parts.items():
        grouped.setdefault(len(fixed), {})[fixed] = vhost
    return WildcardIndex(tuple((length, MappingProxyType(grouped[length])) for length in sorted(grouped, reverse=True)))


__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_IDLE_TIMEOUT_S",
    "DEFAULT_MAX_CONNECTIONS_PER_ENDPOINT",
    "DEFAULT_POLICY",
    "DEFAULT_ROUTE_TIMEOUT_S",
    "MAX_REQUESTS_PER_CONNECTION",
    "PATH_ANY",
    "PATH_EXACT",
    "PATH_EXACT_FOLDED",
    "PATH_PREFIX",
    "PATH_PREFIX_FOLDED",
    "PATH_REGEX",
    "Cluster",
    "Direction",
    "DomainIndex",
    "HeaderMatch",
    "HeaderToAdd",
    "Listener",
    "Protocol",
    "QueryMatch",
    "Route",
    "RouteMatch",
    "RouteMatcher",
    "RouteTable",
    "Snapshot",
    "VirtualHost",
    "WeightedCluster",
    "WildcardIndex",
    "classify_domain",
    "domain_has_port",
    "route_matcher",
]
