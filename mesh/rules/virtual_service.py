"""``VirtualService`` (networking.istio.io/v1): types and validation of one resource's spec (pure).

Fields follow Istio's API with its validation rules; every error names the field
(``spec.http[0].route[1].weight``). Weights follow Istio: with one destination the weight may be
left out (it is 100); with several, each needs one and they must add up to 100. A destination
with weight 0 is allowed (it gets no traffic). A route either forwards (``route``) or answers
with a ``redirect``.

Valid Istio that the sidecar cannot serve is refused with a clear message, never dropped:
``directResponse``, ``delegate``, ``tls`` routes, ``uriRegexRewrite``, ``match.port`` /
``scheme``, method prefix/regex, per-destination header edits that differ between destinations
of one route, weighted TCP splits, retry conditions the sidecar does not implement. A
``corsPolicy`` is validated and reported as not enforced (``mesh.rules.warnings``).
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.model.policies import REDIRECT_CODES, RETRY_ON_CONDITIONS
from mesh.model.reader import REQUIRED, ConfigError
from mesh.rules.fields import (
    Reader,
    StringMatch,
    check_header_value,
    not_supported,
    parse_header_name,
    parse_host,
    parse_string_match,
)

RETRY_ON = RETRY_ON_CONDITIONS  # what the sidecar implements (Envoy's names)
UNSUPPORTED_RETRY_ON = frozenset({"envoy-ratelimited", "retriable-headers", "http3-post-connect-failure"})
REDIRECT_SCHEMES = ("http", "https")
MESH_GATEWAY = "mesh"


@dataclass(frozen=True, slots=True)
class Destination:
    host: str
    subset: str = ""
    port: int | None = None


@dataclass(frozen=True, slots=True)
class HeaderEdits:
    """``set`` replaces, ``add`` appends, ``remove`` deletes (names lower-case)."""

    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Headers:
    request: HeaderEdits = HeaderEdits()
    response: HeaderEdits = HeaderEdits()


@dataclass(frozen=True, slots=True)
class RouteDestination:
    destination: Destination
    weight: int = 100
    headers: Headers = Headers()


@dataclass(frozen=True, slots=True)
class HttpMatch:
    """One ``HTTPMatchRequest``; every given condition must hold."""

    name: str = ""
    uri: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: tuple[tuple[str, StringMatch], ...] = ()
    without_headers: tuple[tuple[str, StringMatch], ...] = ()
    query_params: tuple[tuple[str, StringMatch], ...] = ()
    ignore_uri_case: bool = False
    source_labels: tuple[tuple[str, str], ...] = ()
    source_namespace: str = ""
    gateways: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Retry:
    attempts: int
    per_try_timeout_s: float | None = None
    retry_on: tuple[str, ...] = ()
    retry_remote_localities: bool | None = None


@dataclass(frozen=True, slots=True)
class FaultDelay:
    fixed_delay_s: float
    percentage: float = 100.0


@dataclass(frozen=True, slots=True)
class FaultAbort:
    http_status: int
    percentage: float = 100.0


@dataclass(frozen=True, slots=True)
class Fault:
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


@dataclass(frozen=True, slots=True)
class Mirror:
    destination: Destination
    percentage: float = 100.0


@dataclass(frozen=True, slots=True)
class HttpRedirect:
    uri: str | None = None
    authority: str | None = None
    port: int | None = None
    derive_port: str | None = None  # FROM_PROTOCOL_DEFAULT or FROM_REQUEST_PORT
    scheme: str | None = None
    redirect_code: int = 301


@dataclass(frozen=True, slots=True)
class HttpRoute:
    name: str = ""
    match: tuple[HttpMatch, ...] = ()
    route: tuple[RouteDestination, ...] = ()  # empty for a redirect
    timeout_s: float | None = None
    retries: Retry | None = None
    fault: Fault | None = None
    mirrors: tuple[Mirror, ...] = ()
    rewrite_uri: str | None = None
    rewrite_authority: str | None = None
    redirect: HttpRedirect | None = None
    headers: Headers = Headers()
    cors: bool = False  # a corsPolicy was given (validated; not enforced yet)


@dataclass(frozen=True, slots=True)
class L4Match:
    source_labels: tuple[tuple[str, str], ...] = ()
    source_namespace: str = ""
    gateways: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TcpRoute:
    match: tuple[L4Match, ...] = ()
    route: tuple[RouteDestination, ...] = ()


@dataclass(frozen=True, slots=True)
class TlsMatch:
    """``tls[].match[]``: the client's SNI (``sniHosts``, wildcards allowed) and the gateways it applies on."""

    sni_hosts: tuple[str, ...]
    gateways: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TlsRoute:
    """``tls[]``: TLS passed through by SNI (a gateway's ``PASSTHROUGH`` server) to one destination."""

    match: tuple[TlsMatch, ...]
    route: tuple[RouteDestination, ...]


@dataclass(frozen=True, slots=True)
class VirtualServiceSpec:
    hosts: tuple[str, ...]
    gateways: tuple[str, ...] = ()
    http: tuple[HttpRoute, ...] = ()
    tcp: tuple[TcpRoute, ...] = ()
    export_to: tuple[str, ...] = ()
    tls: tuple[TlsRoute, ...] = ()

    @property
    def applies_to_sidecars(self) -> bool:
        """Istio: no ``gateways`` means the mesh (every sidecar); otherwise ``mesh`` must be listed."""
        return not self.gateways or MESH_GATEWAY in self.gateways


def parse_virtual_service(spec: Reader) -> VirtualServiceSpec:
    hosts = parse_hosts(spec, "hosts", wildcard=True)
    if not hosts:
        raise ConfigError(spec.at("hosts"), "needs at least one host")
    gateways = spec.strings("gateways")
    tls = spec.items("tls", _parse_tls_route)
    if tls and (not gateways or MESH_GATEWAY in gateways):
        raise not_supported(
            spec.at("tls"),
            "TLS (SNI) routes for sidecars (they apply on gateways here: bind the VirtualService to one)",
        )
    if spec.take("delegate", None) is not None:
        raise not_supported(spec.at("delegate"), "delegate")
    http = spec.items("http", _parse_http_route)
    tcp = spec.items("tcp", _parse_tcp_route)
    export_to = spec.export_to()
    if not http and not tcp and not tls:
        raise ConfigError(spec.at("http"), "a VirtualService needs http, tcp or tls routes")
    return VirtualServiceSpec(hosts=hosts, gateways=gateways, http=http, tcp=tcp, export_to=export_to, tls=tls)


def parse_hosts(reader: Reader, key: str, *, wildcard: bool) -> tuple[str, ...]:
    """A required list of distinct hosts."""
    raw = reader.take(key, REQUIRED)
    if not isinstance(raw, list):
        raise ConfigError(reader.at(key), "must be a list of host names")
    hosts: list[str] = []
    for i, item in enumerate(raw):
        host = parse_host(item, f"{reader.at(key)}[{i}]", wildcard=wildcard)
        if host in hosts:
            raise ConfigError(f"{reader.at(key)}[{i}]", f"duplicate host {host!r}")
        hosts.append(host)
    return tuple(hosts)


# === HTTP ===


def _parse_http_route(obj: Reader) -> HttpRoute:
    name = obj.text("name") or ""
    match = obj.items("match", _parse_http_match)
    for key in ("directResponse", "delegate"):
        raw = obj.optional_child(key)
        if raw is not None:
            _validate_unsupported_action(key, raw)
            raise not_supported(obj.at(key), key)
    redirect_reader = obj.optional_child("redirect")
    redirect = None if redirect_reader is None else _parse_redirect(redirect_reader)
    route = obj.items("route", _parse_route_destination)
    if redirect is not None:
        if route:
            raise ConfigError(obj.at("route"), "a route either redirects or forwards to destinations, not both")
    elif not route:
        raise ConfigError(obj.at("route"), "an http route needs at least one destination (or a redirect)")
    else:
        route = checked_weights(obj, route)
    headers = _parse_headers(obj.optional_child("headers"))
    headers = _fold_destination_headers(obj, route, headers)
    timeout = obj.duration_s("timeout", allow_zero=True)
    retries = _parse_retries(obj.optional_child("retries"))
    fault = _parse_fault(obj.optional_child("fault"))
    mirrors = _parse_mirrors(obj)
    rewrite_uri, rewrite_authority = _parse_rewrite(obj.optional_child("rewrite"), match)
    cors = obj.optional_child("corsPolicy")
    if cors is not None:
        _validate_cors(cors)
    if redirect is not None:
        for key, value in (("rewrite", rewrite_uri or rewrite_authority), ("retries", retries), ("mirror", mirrors)):
            if value:
                raise ConfigError(obj.at(key), f"a redirect route answers itself: it takes no {key}")
    return HttpRoute(
        name=name,
        match=match,
        route=route,
        timeout_s=timeout or None,
        retries=retries,
        fault=fault,
        mirrors=mirrors,
        rewrite_uri=rewrite_uri,
        rewrite_authority=rewrite_authority,
        redirect=redirect,
        headers=headers,
        cors=cors is not None,
    )


def _parse_redirect(obj: Reader) -> HttpRedirect:
    uri = obj.text("uri")
    if uri is not None and not uri.startswith("/"):
        raise ConfigError(obj.at("uri"), f"must start with '/', got {uri!r}")
    authority = obj.text("authority")
    if authority is not None:
        parse_host(
            authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority, obj.at("authority"), wildcard=False
        )
    port = obj.whole("port", 1, 65535)
    derive = obj.enum("derivePort", ("FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"))
    if port is not None and derive is not None:
        raise ConfigError(obj.at("derivePort"), "give port or derivePort, not both")
    scheme = obj.text("scheme")
    if scheme is not None and scheme not in REDIRECT_SCHEMES:
        raise not_supported(obj.at("scheme"), f"a redirect to scheme {scheme!r} (http and https are)")
    code = obj.whole("redirectCode", 300, 399)
    if code is not None and code not in REDIRECT_CODES:
        raise ConfigError(
            obj.at("redirectCode"), f"must be one of {', '.join(map(str, sorted(REDIRECT_CODES)))}, got {code}"
        )
    obj.finish()
    return HttpRedirect(uri, authority, port, derive, scheme, code or 301)


def _parse_http_match(obj: Reader) -> HttpMatch:
    name = obj.text("name") or ""
    uri = obj.string_match("uri")
    if uri is not None and uri.kind == "present":
        raise ConfigError(obj.at("uri"), "give one of exact, prefix, regex")
    method = obj.string_match("method")
    if method is not None and method.kind != "exact":
        raise not_supported(obj.at(f"method.{method.kind}"), "a method match other than exact")
    if method is not None and not (method.exact or "").strip():
        raise ConfigError(obj.at("method.exact"), "must be an HTTP method such as GET")
    authority = obj.string_match("authority")
    if authority is not None and authority.kind == "present":
        raise ConfigError(obj.at("authority"), "give one of exact, prefix, regex")
    headers = obj.mapping_of("headers", _header_condition)
    without = obj.mapping_of("withoutHeaders", _header_condition)
    query = obj.mapping_of("queryParams", parse_string_match)
    for param, condition in query:
        if condition.prefix is not None:
            raise ConfigError(obj.at(f"queryParams.{param}.prefix"), "Istio supports only exact and regex here")
    ignore_case = obj.boolean("ignoreUriCase") or False
    source_labels = obj.labels("sourceLabels")
    source_namespace = obj.text("sourceNamespace") or ""
    gateways = obj.strings("gateways")
    obj.text("statPrefix")
    for key, what in (("port", "match.port"), ("scheme", "match.scheme")):
        if obj.take(key, None) is not None:
            raise not_supported(obj.at(key), what)
    return HttpMatch(
        name=name,
        uri=uri,
        method=method,
        authority=authority,
        headers=headers,
        without_headers=without,
        query_params=query,
        ignore_uri_case=ignore_case,
        source_labels=source_labels,
        source_namespace=source_namespace,
        gateways=gateways,
    )


def _header_condition(data: object, path: str) -> StringMatch:
    name = path.rsplit(".", 1)[-1]
    parse_header_name(name, path)
    return parse_string_match(data, path)


def _parse_destination(obj: Reader) -> Destination:
    host = parse_host(obj.take("host", REQUIRED), obj.at("host"), wildcard=False)
    subset = obj.text("subset") or ""
    port_obj = obj.optional_child("port")
    port = None
    if port_obj is not None:
        port = port_obj.whole("number", 1, 65535, required=True)
        port_obj.finish()
    return Destination(host, subset, port)


def _parse_route_destination(obj: Reader) -> RouteDestination:
    dest_reader = obj.child("destination")
    destination = _parse_destination(dest_reader)
    dest_reader.finish()
    weight = obj.whole("weight", 0, 100)
    headers = _parse_headers(obj.optional_child("headers"))
    return RouteDestination(destination, -1 if weight is None else weight, headers)


def checked_weights(obj: Reader, route: tuple[RouteDestination, ...]) -> tuple[RouteDestination, ...]:
    """Istio's weight rule, with ``-1`` standing for "weight not given" until here; the result has
    every weight filled in."""
    path = obj.at("route")
    if len(route) == 1:
        only = route[0]
        if only.weight not in (-1, 0, 100):
            raise ConfigError(
                f"{path}[0].weight",
                f"a single destination takes all traffic: omit weight or use 100, got {only.weight}",
            )
        return (RouteDestination(only.destination, 100, only.headers),)
    total = 0
    for i, target in enumerate(route):
        if target.weight == -1:
            raise ConfigError(f"{path}[{i}].weight", "is required when a route has more than one destination")
        total += target.weight
    if total != 100:
        parts = ", ".join(f"route[{i}].weight={t.weight}" for i, t in enumerate(route))
        raise ConfigError(path, f"destination weights must add up to 100, got {total} ({parts})")
    seen: dict[Destination, int] = {}
    for i, target in enumerate(route):
        if target.destination in seen:
            raise ConfigError(f"{path}[{i}].destination", f"same destination as route[{seen[target.destination]}]")
        seen[target.destination] = i
    return route


def _fold_destination_headers(obj: Reader, route: tuple[RouteDestination, ...], headers: Headers) -> Headers:
    """Per-destination header edits become route edits when all destinations agree (the model has
    header edits per route, not per weighted cluster)."""
    edits = {target.headers for target in route}
    if not route or edits == {Headers()}:
        return headers
    if len(edits) > 1:
        first = next(i for i, target in enumerate(route) if target.headers != route[0].headers)
        raise not_supported(obj.at(f"route[{first}].headers"), "header edits that differ between destinations")
    only = route[0].headers
    return Headers(_merge_edits(headers.request, only.request), _merge_edits(headers.response, only.response))


def _merge_edits(a: HeaderEdits, b: HeaderEdits) -> HeaderEdits:
    return HeaderEdits(a.set + b.set, a.add + b.add, a.remove + b.remove)


def _parse_headers(obj: Reader | None) -> Headers:
    if obj is None:
        return Headers()
    request = _parse_edits(obj.optional_child("request"))
    response = _parse_edits(obj.optional_child("response"))
    obj.finish()
    return Headers(request, response)


def _parse_edits(obj: Reader | None) -> HeaderEdits:
    if obj is None:
        return HeaderEdits()
    out: dict[str, tuple[tuple[str, str], ...]] = {}
    for key in ("set", "add"):
        pairs = []
        for name, value in obj.string_map(key):
            path = obj.at(f"{key}.{name}")
            pairs.append((parse_header_name(name, path), check_header_value(value, path)))
        out[key] = tuple(pairs)
    remove = tuple(parse_header_name(name, obj.at(f"remove[{i}]")) for i, name in enumerate(obj.strings("remove")))
    obj.finish()
    return HeaderEdits(out["set"], out["add"], remove)


def _parse_retries(obj: Reader | None) -> Retry | None:
    if obj is None:
        return None
    attempts = obj.whole("attempts", 0, 1_000_000, required=True)
    per_try = obj.duration_s("perTryTimeout")
    retry_on_text = obj.text("retryOn") or ""
    retry_on = tuple(part.strip() for part in retry_on_text.split(",") if part.strip())
    for part in retry_on:
        if part in UNSUPPORTED_RETRY_ON:
            raise not_supported(obj.at("retryOn"), f"retry condition {part!r}")
        if part not in RETRY_ON and not part.isdigit():
            raise ConfigError(
                obj.at("retryOn"),
                f"unknown retry condition {part!r} (expected HTTP status codes or {', '.join(sorted(RETRY_ON))})",
            )
        if part.isdigit() and not 100 <= int(part) <= 599:
            raise ConfigError(obj.at("retryOn"), f"status code {part} is not in 100..599")
    remote = obj.boolean("retryRemoteLocalities")
    obj.finish()
    assert attempts is not None
    return Retry(attempts, per_try, retry_on, remote)


def _parse_fault(obj: Reader | None) -> Fault | None:
    if obj is None:
        return None
    delay = None
    abort = None
    delay_obj = obj.optional_child("delay")
    if delay_obj is not None:
        fixed = delay_obj.duration_s("fixedDelay")
        if delay_obj.take("exponentialDelay", None) is not None:
            raise not_supported(delay_obj.at("exponentialDelay"), "exponentialDelay (Istio does not support it either)")
        if fixed is None:
            raise ConfigError(delay_obj.at("fixedDelay"), "is required")
        delay = FaultDelay(fixed, _fault_percentage(delay_obj))
        delay_obj.finish()
    abort_obj = obj.optional_child("abort")
    if abort_obj is not None:
        status = abort_obj.whole("httpStatus", 200, 599)
        for key in ("grpcStatus", "http2Error"):
            if abort_obj.take(key, None) is not None:
                raise not_supported(abort_obj.at(key), key)
        if status is None:
            raise ConfigError(abort_obj.at("httpStatus"), "is required")
        abort = FaultAbort(status, _fault_percentage(abort_obj))
        abort_obj.finish()
    obj.finish()
    if delay is None and abort is None:
        raise ConfigError(obj.path, "needs delay or abort")
    return Fault(delay, abort)


def _fault_percentage(obj: Reader) -> float:
    percentage = obj.percent("percentage")
    legacy = obj.whole("percent", 0, 100)
    if percentage is not None and legacy is not None:
        raise ConfigError(obj.at("percent"), "give percentage or the deprecated percent, not both")
    if percentage is not None:
        return percentage
    return 100.0 if legacy is None else float(legacy)


def _parse_mirrors(obj: Reader) -> tuple[Mirror, ...]:
    single = obj.optional_child("mirror")
    percentage = obj.percent("mirrorPercentage")
    legacy = obj.whole("mirrorPercent", 0, 100)
    many = obj.items("mirrors", _parse_mirror_policy)
    out: list[Mirror] = []
    if single is not None:
        destination = _parse_destination(single)
        single.finish()
        if percentage is None and legacy is not None:
            percentage = float(legacy)
        out.append(Mirror(destination, 100.0 if percentage is None else percentage))
    elif percentage is not None or legacy is not None:
        raise ConfigError(obj.at("mirrorPercentage"), "needs mirror")
    if single is not None and many:
        raise ConfigError(obj.at("mirrors"), "give mirror or mirrors, not both")
    return tuple(out) + many


def _parse_mirror_policy(obj: Reader) -> Mirror:
    dest_reader = obj.child("destination")
    destination = _parse_destination(dest_reader)
    dest_reader.finish()
    percentage = obj.percent("percentage")
    return Mirror(destination, 100.0 if percentage is None else percentage)


def _parse_rewrite(obj: Reader | None, match: tuple[HttpMatch, ...]) -> tuple[str | None, str | None]:
    """(uri, authority) of a ``rewrite``."""
    if obj is None:
        return None, None
    uri = obj.text("uri", allow_empty=False)
    authority = obj.text("authority")
    if authority is not None:
        name = authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority
        parse_host(name, obj.at("authority"), wildcard=False)
    if obj.take("uriRegexRewrite", None) is not None:
        raise not_supported(obj.at("uriRegexRewrite"), "uriRegexRewrite")
    obj.finish()
    if uri is None and authority is None:
        raise ConfigError(obj.path, "needs uri or authority")
    if uri is None:
        return None, authority
    if not uri.startswith("/"):
        raise ConfigError(obj.at("uri"), f"must start with '/', got {uri!r}")
    for i, condition in enumerate(match):
        if condition.uri is not None and condition.uri.regex is not None:
            raise ConfigError(
                obj.at("uri"),
                f"cannot rewrite a regex match (match[{i}].uri.regex); rewrite.uri replaces an exact or prefix match",
            )
    return uri, authority


def _validate_unsupported_action(key: str, obj: Reader) -> None:
    """Check the shape of directResponse / delegate before refusing it, so a typo is reported as a
    typo rather than as "not supported"."""
    if key == "directResponse":
        obj.whole("status", 200, 599, required=True)
        body = obj.optional_child("body")
        if body is not None:
            body.text("string", allow_empty=True)
            body.text("bytes", allow_empty=True)
            body.finish()
    else:
        obj.text("name", required=True)
        obj.text("namespace")
    obj.finish()


def _validate_cors(obj: Reader) -> None:
    obj.items("allowOrigins", lambda r: _string_match_reader(r))
    for key in ("allowMethods", "allowHeaders", "exposeHeaders"):
        obj.strings(key)
    obj.duration_s("maxAge", allow_zero=True)
    obj.boolean("allowCredentials")
    obj.enum("unmatchedPreflights", ("UNSPECIFIED", "FORWARD", "IGNORE"))
    obj.finish()


def _string_match_reader(obj: Reader) -> StringMatch:
    exact = obj.text("exact", allow_empty=True)
    prefix = obj.text("prefix", allow_empty=True)
    regex = obj.text("regex", allow_empty=True)
    given = [v for v in (exact, prefix, regex) if v is not None]
    if len(given) != 1:
        raise ConfigError(obj.path, "give exactly one of exact, prefix, regex")
    return StringMatch(exact, prefix, None)


# === TCP ===


def _parse_tcp_route(obj: Reader) -> TcpRoute:
    match = obj.items("match", _parse_l4_match)
    route = obj.items("route", _parse_route_destination)
    if not route:
        raise ConfigError(obj.at("route"), "a tcp route needs at least one destination")
    route = checked_weights(obj, route)
    if len([target for target in route if target.weight > 0]) > 1:
        raise not_supported(obj.at("route"), "a weighted TCP split (a TCP listener forwards to one cluster)")
    for i, target in enumerate(route):
        if target.headers != Headers():
            raise ConfigError(f"{obj.at('route')}[{i}].headers", "header edits apply to HTTP routes only")
    return TcpRoute(match, route)


def _parse_tls_route(obj: Reader) -> TlsRoute:
    match = obj.items("match", _parse_tls_match, required=True)
    if not match:
        raise ConfigError(obj.at("match"), "a tls route needs at least one match with sniHosts")
    route = checked_weights(obj, obj.items("route", _parse_route_destination))
    if not route:
        raise ConfigError(obj.at("route"), "a tls route needs a destination")
    if len([target for target in route if target.weight > 0]) > 1:
        raise not_supported(obj.at("route"), "a weighted TLS split (a passed-through connection goes to one cluster)")
    for i, target in enumerate(route):
        if target.headers != Headers():
            raise ConfigError(f"{obj.at('route')}[{i}].headers", "header edits apply to HTTP routes only")
    return TlsRoute(match, route)


def _parse_tls_match(obj: Reader) -> TlsMatch:
    for key in ("destinationSubnets", "port", "sourceLabels", "sourceNamespace"):
        if obj.take(key, None) is not None:
            raise not_supported(obj.at(key), f"tls match.{key}")
    sni = parse_hosts(obj, "sniHosts", wildcard=True)
    if not sni:
        raise ConfigError(obj.at("sniHosts"), "needs at least one host")
    return TlsMatch(sni, obj.strings("gateways"))


def _parse_l4_match(obj: Reader) -> L4Match:
    for key, what in (("destinationSubnets", "destinationSubnets"), ("port", "match.port")):
        if obj.take(key, None) is not None:
            raise not_supported(obj.at(key), what)
    return L4Match(obj.labels("sourceLabels"), obj.text("sourceNamespace") or "", obj.strings("gateways"))


__all__ = [
    "MESH_GATEWAY",
    "Destination",
    "Fault",
    "FaultAbort",
    "FaultDelay",
    "HeaderEdits",
    "Headers",
    "HttpMatch",
    "HttpRedirect",
    "HttpRoute",
    "L4Match",
    "Mirror",
    "Retry",
    "RouteDestination",
    "TcpRoute",
    "TlsMatch",
    "TlsRoute",
    "VirtualServiceSpec",
    "checked_weights",
    "parse_hosts",
    "parse_virtual_service",
]
