"""``DestinationRule`` (networking.istio.io/v1): subsets and traffic policies of one host (pure).

A subset is a named label selector over the host's instances (``version: v2``); its traffic
policy overrides the host-level one field by field (loadBalancer, connectionPool,
outlierDetection, tls), as Istio does. ``portLevelSettings`` override per destination port.
``workloadSelector`` is a Kubernetes ``LabelSelector`` (``matchLabels`` and, beyond Istio,
``matchExpressions``), parsed by the shared ``mesh.model.selectors``: the rule applies to client
workloads of its namespace whose labels match.

Everything Istio validates is validated here. Valid Istio the sidecar cannot serve is refused
(``consistentHash.httpQueryParameterName``, ``tunnel``, ``proxyProtocol``); fields it does not
enforce yet (client TLS, locality settings, the ``unenforced_given`` ones) are accepted and
listed by ``mesh.rules.warnings``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from lb import is_prime
from mesh.model.reader import REQUIRED, ConfigError
from mesh.model.selectors import Selector
from mesh.rules.fields import Reader, check_dns_label, check_token, not_supported, parse_header_name, parse_host

SIMPLE_LB = ("UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST")
TLS_MODES = ("DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL")
H2_UPGRADE = ("DEFAULT", "DO_NOT_UPGRADE", "UPGRADE")
INT32_MAX = 2**31 - 1
RING_SIZE_LIMIT = 8 * 1024 * 1024
MAGLEV_TABLE_LIMIT = 5_000_011

HashSource = Literal["header", "cookie", "source_ip"]


@dataclass(frozen=True, slots=True)
class ConsistentHash:
    """Where the hash key comes from, and the hashing algorithm (ring hash unless ``maglev``)."""

    source: HashSource
    name: str = ""  # header or cookie name
    cookie_path: str = "/"
    cookie_ttl_s: float | None = None  # None: no cookie is generated; 0: a session cookie
    maglev: bool = False
    ring_min_size: int | None = None
    maglev_table_size: int | None = None


@dataclass(frozen=True, slots=True)
class LoadBalancer:
    simple: str = ""  # one of SIMPLE_LB, "" when consistent_hash is set
    consistent_hash: ConsistentHash | None = None
    locality_settings: bool = False  # localityLbSetting was given (not enforced)
    warmup_s: float | None = None


@dataclass(frozen=True, slots=True)
class ConnectionPool:
    max_connections: int | None = None
    connect_timeout_s: float | None = None
    tcp_keepalive: bool = False
    max_connection_duration_s: float | None = None
    tcp_idle_timeout_s: float | None = None
    http1_max_pending_requests: int | None = None
    http2_max_requests: int | None = None
    max_requests_per_connection: int | None = None
    max_retries: int | None = None
    http_idle_timeout_s: float | None = None
    h2_upgrade_policy: str | None = None
    use_client_protocol: bool | None = None
    max_concurrent_streams: int | None = None

    def unenforced_given(self) -> tuple[str, ...]:
        """Set fields the sidecar's model has no place for (the rest become cluster settings)."""
        names = {
            "tcp.maxConnectionDuration": self.max_connection_duration_s,
            "tcp.tcpKeepalive": True if self.tcp_keepalive else None,
            "http.h2UpgradePolicy": self.h2_upgrade_policy,
            "http.useClientProtocol": self.use_client_protocol,
            "http.maxConcurrentStreams": self.max_concurrent_streams,
        }
        return tuple(name for name, value in names.items() if value is not None)


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    consecutive_5xx_errors: int | None = None
    consecutive_gateway_errors: int | None = None
    consecutive_local_origin_failures: int | None = None
    split_external_local_origin_errors: bool = False
    interval_s: float | None = None
    base_ejection_time_s: float | None = None
    max_ejection_percent: int | None = None
    min_health_percent: int | None = None

    def unenforced_given(self) -> tuple[str, ...]:
        """Set fields the sidecar's model has no place for."""
        names = {
            "splitExternalLocalOriginErrors": True if self.split_external_local_origin_errors else None,
            "consecutiveLocalOriginFailures": self.consecutive_local_origin_failures,
        }
        return tuple(name for name, value in names.items() if value is not None)


@dataclass(frozen=True, slots=True)
class ClientTls:
    mode: str = "DISABLE"
    sni: str = ""


@dataclass(frozen=True, slots=True)
class PortPolicy:
    port: int
    load_balancer: LoadBalancer | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTls | None = None


@dataclass(frozen=True, slots=True)
class TrafficPolicy:
    load_balancer: LoadBalancer | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTls | None = None
    port_level: tuple[PortPolicy, ...] = ()

    def overlaid(self, other: TrafficPolicy | None) -> TrafficPolicy:
        """``other``'s fields where it sets them, this policy's elsewhere (subset over host)."""
        if other is None:
            return self
        return TrafficPolicy(
            load_balancer=other.load_balancer or self.load_balancer,
            connection_pool=other.connection_pool or self.connection_pool,
            outlier_detection=other.outlier_detection or self.outlier_detection,
            tls=other.tls or self.tls,
            port_level=other.port_level or self.port_level,
        )

    def for_port(self, port: int | None) -> TrafficPolicy:
        """The policy for traffic to ``port``: a matching ``portLevelSettings`` entry overrides."""
        if port is None:
            return replace(self, port_level=())
        for entry in self.port_level:
            if entry.port == port:
                return TrafficPolicy(
                    load_balancer=entry.load_balancer or self.load_balancer,
                    connection_pool=entry.connection_pool or self.connection_pool,
                    outlier_detection=entry.outlier_detection or self.outlier_detection,
                    tls=entry.tls or self.tls,
                )
        return replace(self, port_level=())


@dataclass(frozen=True, slots=True)
class Subset:
    name: str
    labels: tuple[tuple[str, str], ...] = ()
    traffic_policy: TrafficPolicy | None = None


@dataclass(frozen=True, slots=True)
class DestinationRuleSpec:
    host: str
    traffic_policy: TrafficPolicy | None = None
    subsets: tuple[Subset, ...] = ()
    export_to: tuple[str, ...] = ()
    workload_selector: Selector = field(default_factory=Selector)  # empty: every workload

    def subset(self, name: str) -> Subset | None:
        for subset in self.subsets:
            if subset.name == name:
                return subset
        return None


def parse_destination_rule(spec: Reader) -> DestinationRuleSpec:
    host = parse_host(spec.take("host", REQUIRED), spec.at("host"), wildcard=True)
    policy_reader = spec.optional_child("trafficPolicy")
    policy = None if policy_reader is None else _parse_traffic_policy(policy_reader, port_level=True)
    subsets = spec.items("subsets", _parse_subset)
    seen: dict[str, int] = {}
    for i, subset in enumerate(subsets):
        if subset.name in seen:
            raise ConfigError(
                spec.at(f"subsets[{i}].name"), f"duplicate subset {subset.name!r} (also subsets[{seen[subset.name]}])"
            )
        seen[subset.name] = i
    export_to = spec.export_to()
    selector = spec.label_selector("workloadSelector")
    if selector is not None and selector.empty:
        given = spec.data["workloadSelector"]
        where = spec.at("workloadSelector")
        if isinstance(given, Mapping) and "matchLabels" in given:
            where += ".matchLabels"
        raise ConfigError(where, "needs at least one label or expression (an empty selector would select everything)")
    return DestinationRuleSpec(host, policy, subsets, export_to, selector if selector is not None else Selector())


def _parse_subset(obj: Reader) -> Subset:
    name = obj.text("name", required=True)
    assert name is not None
    check_dns_label(name, obj.at("name"), "subset name")
    labels = obj.labels("labels")
    policy_reader = obj.optional_child("trafficPolicy")
    policy = None if policy_reader is None else _parse_traffic_policy(policy_reader, port_level=True)
    return Subset(name, labels, policy)


def _parse_traffic_policy(obj: Reader, *, port_level: bool) -> TrafficPolicy:
    lb_reader = obj.optional_child("loadBalancer")
    lb = None if lb_reader is None else _parse_load_balancer(lb_reader)
    pool_reader = obj.optional_child("connectionPool")
    pool = None if pool_reader is None else _parse_connection_pool(pool_reader)
    outlier_reader = obj.optional_child("outlierDetection")
    outlier = None if outlier_reader is None else _parse_outlier(outlier_reader)
    tls_reader = obj.optional_child("tls")
    tls = None if tls_reader is None else _parse_tls(tls_reader)
    ports: tuple[PortPolicy, ...] = ()
    if port_level:
        ports = obj.items("portLevelSettings", _parse_port_policy)
        seen: dict[int, int] = {}
        for i, entry in enumerate(ports):
            if entry.port in seen:
                raise ConfigError(
                    obj.at(f"portLevelSettings[{i}].port.number"),
                    f"port {entry.port} is already configured by portLevelSettings[{seen[entry.port]}]",
                )
            seen[entry.port] = i
    for key in ("tunnel", "proxyProtocol"):
        if obj.take(key, None) is not None:
            raise not_supported(obj.at(key), key)
    obj.finish()
    return TrafficPolicy(lb, pool, outlier, tls, ports)


def _parse_port_policy(obj: Reader) -> PortPolicy:
    port_reader = obj.child("port")
    port = port_reader.whole("number", 1, 65535, required=True)
    port_reader.finish()
    assert port is not None
    lb_reader = obj.optional_child("loadBalancer")
    pool_reader = obj.optional_child("connectionPool")
    outlier_reader = obj.optional_child("outlierDetection")
    tls_reader = obj.optional_child("tls")
    return PortPolicy(
        port,
        None if lb_reader is None else _parse_load_balancer(lb_reader),
        None if pool_reader is None else _parse_connection_pool(pool_reader),
        None if outlier_reader is None else _parse_outlier(outlier_reader),
        None if tls_reader is None else _parse_tls(tls_reader),
    )


def _parse_load_balancer(obj: Reader) -> LoadBalancer:
    simple = obj.enum("simple", SIMPLE_LB)
    hash_reader = obj.optional_child("consistentHash")
    if simple is not None and hash_reader is not None:
        raise ConfigError(obj.at("consistentHash"), "give simple or consistentHash, not both")
    consistent = None if hash_reader is None else _parse_consistent_hash(hash_reader)
    locality = obj.optional_child("localityLbSetting")
    if locality is not None:
        _validate_locality(locality)
    warmup = obj.duration_s("warmupDurationSecs")
    obj.finish()
    if simple is None and consistent is None and locality is None and warmup is None:
        raise ConfigError(obj.path, "needs simple or consistentHash")
    return LoadBalancer(simple or "", consistent, locality is not None, warmup)


def _parse_consistent_hash(obj: Reader) -> ConsistentHash:
    header_text = obj.text("httpHeaderName")
    header = None if header_text is None else parse_header_name(header_text, obj.at("httpHeaderName"))
    cookie = obj.optional_child("httpCookie")
    source_ip = obj.boolean("useSourceIp")
    if obj.take("httpQueryParameterName", None) is not None:
        raise not_supported(obj.at("httpQueryParameterName"), "hashing on a query parameter")
    given = [
        key
        for key, value in (("httpHeaderName", header), ("httpCookie", cookie), ("useSourceIp", source_ip or None))
        if value is not None
    ]
    if not given:
        raise ConfigError(obj.path, "needs one of httpHeaderName, httpCookie, useSourceIp")
    if len(given) > 1:
        raise ConfigError(obj.at(given[1]), f"give only one hash key source (also got {given[0]})")
    ring = obj.optional_child("ringHash")
    maglev = obj.optional_child("maglev")
    legacy_ring = obj.whole("minimumRingSize", 1, RING_SIZE_LIMIT)
    if ring is not None and maglev is not None:
        raise ConfigError(obj.at("maglev"), "give ringHash or maglev, not both")
    ring_min = legacy_ring
    if ring is not None:
        ring_min = ring.whole("minimumRingSize", 1, RING_SIZE_LIMIT)
        ring.finish()
        if legacy_ring is not None:
            raise ConfigError(
                obj.at("minimumRingSize"), "give ringHash.minimumRingSize or the deprecated minimumRingSize, not both"
            )
    table_size = None
    if maglev is not None:
        table_size = maglev.whole("tableSize", 3, MAGLEV_TABLE_LIMIT)
        if table_size is not None and not is_prime(table_size):
            raise ConfigError(maglev.at("tableSize"), f"must be a prime number, got {table_size}")
        maglev.finish()
    source: HashSource
    name = ""
    cookie_path = "/"
    ttl = None
    if header is not None:
        source, name = "header", header
    elif cookie is not None:
        source = "cookie"
        name = check_token(cookie.text("name", required=True) or "", cookie.at("name"), "cookie name")
        cookie_path = cookie.text("path") or "/"
        if not cookie_path.startswith("/") or ";" in cookie_path:
            raise ConfigError(cookie.at("path"), f"must start with '/' and hold no ';', got {cookie_path!r}")
        ttl = cookie.duration_s("ttl", allow_zero=True)
        if cookie.take("attributes", None) is not None:
            raise not_supported(cookie.at("attributes"), "cookie attributes")
        cookie.finish()
    else:
        source = "source_ip"
    return ConsistentHash(source, name, cookie_path, ttl, maglev is not None, ring_min, table_size)


def _validate_locality(obj: Reader) -> None:
    obj.take("distribute", None)
    obj.take("failover", None)
    obj.take("failoverPriority", None)
    obj.boolean("enabled")
    obj.finish()


def _parse_connection_pool(obj: Reader) -> ConnectionPool:
    tcp = obj.optional_child("tcp")
    http = obj.optional_child("http")
    pool = ConnectionPool()
    if tcp is not None:
        keepalive = tcp.optional_child("tcpKeepalive")
        if keepalive is not None:
            keepalive.whole("probes", 0, 2**32 - 1)
            keepalive.duration_s("time")
            keepalive.duration_s("interval")
            keepalive.finish()
        pool = replace(
            pool,
            max_connections=tcp.whole("maxConnections", 0, INT32_MAX),
            connect_timeout_s=tcp.duration_s("connectTimeout"),
            tcp_keepalive=keepalive is not None,
            max_connection_duration_s=tcp.duration_s("maxConnectionDuration"),
            tcp_idle_timeout_s=tcp.duration_s("idleTimeout"),
        )
        tcp.finish()
    if http is not None:
        pool = replace(
            pool,
            http1_max_pending_requests=http.whole("http1MaxPendingRequests", 0, INT32_MAX),
            http2_max_requests=http.whole("http2MaxRequests", 0, INT32_MAX),
            max_requests_per_connection=http.whole("maxRequestsPerConnection", 0, INT32_MAX),
            max_retries=http.whole("maxRetries", 0, INT32_MAX),
            http_idle_timeout_s=http.duration_s("idleTimeout"),
            h2_upgrade_policy=http.enum("h2UpgradePolicy", H2_UPGRADE),
            use_client_protocol=http.boolean("useClientProtocol"),
            max_concurrent_streams=http.whole("maxConcurrentStreams", 0, INT32_MAX),
        )
        http.finish()
    obj.finish()
    return pool


def _parse_outlier(obj: Reader) -> OutlierDetection:
    legacy = obj.whole("consecutiveErrors", 0, INT32_MAX)
    five = obj.whole("consecutive5xxErrors", 0, INT32_MAX)
    if legacy is not None and five is not None:
        raise ConfigError(
            obj.at("consecutiveErrors"), "give consecutive5xxErrors or the deprecated consecutiveErrors, not both"
        )
    detection = OutlierDetection(
        consecutive_5xx_errors=five if five is not None else legacy,
        consecutive_gateway_errors=obj.whole("consecutiveGatewayErrors", 0, INT32_MAX),
        consecutive_local_origin_failures=obj.whole("consecutiveLocalOriginFailures", 0, INT32_MAX),
        split_external_local_origin_errors=obj.boolean("splitExternalLocalOriginErrors") or False,
        interval_s=obj.duration_s("interval"),
        base_ejection_time_s=obj.duration_s("baseEjectionTime"),
        max_ejection_percent=obj.whole("maxEjectionPercent", 0, 100),
        min_health_percent=obj.whole("minHealthPercent", 0, 100),
    )
    if detection.consecutive_local_origin_failures is not None and not detection.split_external_local_origin_errors:
        raise ConfigError(
            obj.at("consecutiveLocalOriginFailures"), "needs splitExternalLocalOriginErrors: true (as in Istio)"
        )
    obj.finish()
    return detection


def _parse_tls(obj: Reader) -> ClientTls:
    mode = obj.enum("mode", TLS_MODES) or "DISABLE"
    for key in ("clientCertificate", "privateKey", "caCertificates", "credentialName", "caCrl"):
        obj.text(key)
    obj.strings("subjectAltNames")
    sni = obj.text("sni") or ""
    obj.boolean("insecureSkipVerify")
    obj.finish()
    return ClientTls(mode, sni)


__all__ = [
    "ClientTls",
    "ConnectionPool",
    "ConsistentHash",
    "DestinationRuleSpec",
    "LoadBalancer",
    "OutlierDetection",
    "PortPolicy",
    "Subset",
    "TrafficPolicy",
    "parse_destination_rule",
]
