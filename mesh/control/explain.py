"""Why a request from one service goes where it goes (pure).

The route is chosen by ``mesh.model.routing.select_route`` on the very snapshot the source's
sidecar gets, so the answer is the data plane's answer. Around it: why each earlier route of the
virtual host did not match, which rule (VirtualService and the ``spec.http[i].match[j]`` entry)
produced the route with its retries, fault, mirrors, rewrites or redirect, the weighted
destinations with their subset, load-balancing policy, circuit-breaker limits, outlier detection and
eligible endpoints, and every registry instance of the destination that was left out, with the
reason (another namespace, another port, not in the subset, unhealthy with its failing checks).
Outlier ejection and open circuit breakers are data-plane state; they are not shown until the
sidecar reports them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mesh.control.explain_policies import cluster_policies, route_policies
from mesh.control.instances import exclusion_reason
from mesh.control.translate import Catalog, Translation, route_origin
from mesh.model.routing import header_matches, parse_query, query_matches, select_route, select_virtual_host
from mesh.model.snapshot import HeaderMatch, Route, RouteTable, Snapshot, VirtualHost

NOT_SHOWN = "outlier ejection and circuit-breaker state are not reported by the data plane yet"


def outbound_table(snapshot: Snapshot) -> RouteTable | None:
    for listener in snapshot.listeners:
        if listener.protocol == "http" and listener.direction == "outbound":
            return snapshot.route_tables.get(listener.route_table)
    return None


def explain_request(
    translation: Translation,
    catalog: Catalog,
    *,
    host: str,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
) -> dict[str, Any]:
    """The explanation as JSON-ready data (see the module doc)."""
    snapshot = translation.snapshot
    headers = {k.lower(): v for k, v in headers.items()}
    headers.setdefault("host", host)
    out: dict[str, Any] = {
        "request": {"host": host, "method": method, "path": path, "query": query, "headers": headers}
    }
    table = outbound_table(snapshot)
    if table is None:
        out.update(result="no outbound listener", status=404)
        return out
    vhost = select_virtual_host(table, host)
    if vhost is None:
        known = sorted(v.name for v in table.virtual_hosts)
        out.update(
            result=f"no virtual host for {host!r}: it names no registry service with instances, ServiceEntry or "
            "VirtualService host",
            status=404,
            virtual_hosts=known,
        )
        return out
    out["virtual_host"] = {"name": vhost.name, "domains": list(vhost.domains)}
    selection = select_route(table, host, method, path, query, headers)
    out["skipped_routes"] = _skipped(vhost, selection.route if selection else None, method, path, query, headers)
    if selection is None:
        out.update(result="no route of the virtual host matches (the sidecar answers 404)", status=404)
        return out
    route = selection.route
    out["route"] = _route_view(translation, vhost, route)
    if route.redirect is not None:
        out.update(result="redirected (the sidecar answers itself)", status=route.redirect.response_code)
        return out
    destinations = [_destination(translation, catalog, route, i) for i in range(len(route.clusters))]
    out["destinations"] = destinations
    if any(d["endpoints"] for d in destinations):
        out.update(result="routed", status=200)
    else:
        out.update(result="no healthy upstream (the sidecar answers 503)", status=503)
    out["not_shown"] = NOT_SHOWN
    return out


def _route_view(translation: Translation, vhost: VirtualHost, route: Route) -> dict[str, Any]:
    view: dict[str, Any] = {"name": route.name, "timeout_s": route.timeout_s}
    origin = route_origin(translation, vhost.name, route.name)
    if origin is None or not origin.resource:
        view["rule"] = None
        view["why"] = "no VirtualService for this host: the default route to all of its instances"
    else:
        view["rule"] = origin.resource
        view["rule_path"] = origin.match_path or origin.path
        view["not_enforced"] = [w.to_json() for w in origin.warnings]
    if route.prefix_rewrite is not None:
        view["prefix_rewrite"] = route.prefix_rewrite
    edits = [
        f"set {h.name}: {h.value}" if not h.append else f"add {h.name}: {h.value}" for h in route.request_headers_add
    ]
    edits += [f"remove {name}" for name in route.request_headers_remove]
    if edits:
        view["request_headers"] = edits
    view.update(route_policies(route))
    return view


def _destination(translation: Translation, catalog: Catalog, route: Route, index: int) -> dict[str, Any]:
    target = route.clusters[index]
    total = sum(c.weight for c in route.clusters)
    cluster = translation.snapshot.clusters.get(target.name)
    origin = translation.clusters.get(target.name)
    view: dict[str, Any] = {
        "cluster": target.name,
        "weight": target.weight,
        "percent": round(100.0 * target.weight / total, 2),
    }
    if cluster is None:
        view.update(endpoints=[], problem="the cluster is missing from the snapshot")
        return view
    view["policy"] = cluster.lb.kind
    if cluster.lb.affinity is not None:
        view["affinity"] = {"kind": cluster.lb.affinity.kind, "name": cluster.lb.affinity.name}
    view.update(cluster_policies(cluster))
    view["endpoints"] = [{"address": f"{e.host}:{e.port}", "weight": e.weight, "key": e.key} for e in cluster.endpoints]
    if origin is None:
        return view
    view["host"] = origin.host
    if origin.subset:
        view["subset"] = origin.subset
        view["subset_labels"] = dict(origin.selector)
    if origin.port is not None:
        view["port"] = origin.port
    if origin.destination_rule:
        view["destination_rule"] = origin.destination_rule
    if origin.service_entry:
        view["service_entry"] = origin.service_entry
    if origin.problem:
        view["problem"] = origin.problem
    if origin.kind == "service":
        excluded = []
        for instance in catalog.get(origin.service, ()):
            reason = exclusion_reason(instance, origin.namespace, origin.selector, origin.port)
            if reason is not None:
                excluded.append(
                    {
                        "instance": instance.describe(),
                        "address": f"{instance.address}:{instance.port}",
                        "reason": reason,
                    }
                )
        view["excluded"] = excluded
        if origin.service not in catalog:
            view["problem"] = view.get("problem") or f"no registry answer yet for service {origin.service!r}"
    return view


def _skipped(
    vhost: VirtualHost, chosen: Route | None, method: str, path: str, query: str, headers: Mapping[str, str]
) -> list[dict[str, str]]:
    out = []
    for route in vhost.routes:
        if route is chosen:
            break
        out.append({"route": route.name, "why": why_not(route, method, path, query, headers) or "matched"})
    return out


def why_not(route: Route, method: str, path: str, query: str, headers: Mapping[str, str]) -> str | None:
    """The first condition of ``route`` the request fails (``None``: it matches), in the order the
    router checks them."""
    match = route.match
    if match.methods and method not in match.methods:
        return f"method {method} is not {'/'.join(sorted(match.methods))}"
    folded = path if match.case_sensitive else path.lower()
    if match.path_prefix is not None:
        prefix = match.path_prefix if match.case_sensitive else match.path_prefix.lower()
        if not folded.startswith(prefix):
            return f"path {path!r} does not start with {match.path_prefix!r}"
    elif match.path_exact is not None:
        exact = match.path_exact if match.case_sensitive else match.path_exact.lower()
        if folded != exact:
            return f"path {path!r} is not {match.path_exact!r}"
    elif match.path_regex is not None and match.path_regex.fullmatch(path) is None:
        return f"path {path!r} does not match regex {match.path_regex.pattern!r}"
    for rule in match.headers:
        if not header_matches(rule, headers.get(rule.name)):
            return f"header {rule.name}: {_describe_header(rule, headers.get(rule.name))}"
    if match.query:
        parsed = parse_query(query)
        for condition in match.query:
            if not query_matches(condition, parsed):
                return f"query parameter {condition.name!r} ({parsed.get(condition.name)!r}) does not match"
    return None


def _describe_header(rule: HeaderMatch, value: str | None) -> str:
    shown = "absent" if value is None else repr(value)
    if rule.present is not None:
        wanted = "present" if rule.present else "absent"
    elif rule.exact is not None:
        wanted = f"exactly {rule.exact!r}"
    elif rule.prefix is not None:
        wanted = f"starting with {rule.prefix!r}"
    elif rule.suffix is not None:
        wanted = f"ending with {rule.suffix!r}"
    elif rule.regex is not None:
        wanted = f"matching {rule.regex.pattern!r}"
    else:
        wanted = "present"
    return f"{shown}, wanted {'not ' if rule.invert else ''}{wanted}"


__all__ = ["NOT_SHOWN", "explain_request", "outbound_table", "why_not"]
