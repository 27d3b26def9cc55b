"""Rules + registry instances + one sidecar's profile → that sidecar's ``Snapshot`` (pure).

The sidecar announces its **bootstrap**: its listeners and local pieces (inbound route table and
cluster, ``tcp|NAME`` clusters of its ``--upstream`` listeners), as a snapshot with no mesh
routes. The control plane fills in the rest, as Istio's Pilot does for Envoy:

- **outbound virtual hosts**: one per host the app has asked for (``demanded``), resolved in the
  sidecar's namespace: a ``ServiceEntry`` host, else a registry service (``<svc>``,
  ``<svc>.service.consul``, ``<svc>.<ns>[.svc[.cluster.local]]``). Domains are every name of the
  service the app may use. A service with no instance at all and no VirtualService gets no
  virtual host (the sidecar answers 404, then asks again), as in registry mode.
- **routes**: the host's VirtualService, HTTP routes in order, one model route per
  ``match`` entry (Istio ORs them); matches with ``sourceLabels`` / ``sourceNamespace`` /
  ``gateways`` that exclude this sidecar are left out. No VirtualService: one default route.
- **clusters**: one per destination (host, subset, port), named Istio's way
  ``outbound|<port>|<subset>|<fqdn>``: the passing instances (in the destination's namespace, on
  the destination's port when given) whose labels carry the subset's; load balancing and
  timeouts from the DestinationRule (subset over host, port-level over both).
- **TCP upstreams**: each bootstrap ``tcp`` cluster with a ``service`` gets that service's
  endpoints, or the destination of the first applicable ``tcp`` route of its VirtualService.

- **resilience**: a route's ``retries`` / ``fault`` / ``mirror(s)`` / ``redirect`` /
  ``rewrite.authority`` become its ``retry_policy`` / ``fault`` / ``mirrors`` / ``redirect`` /
  ``host_rewrite`` (``mesh.model.policies``); a cluster's circuit breakers, outlier detection and
  panic threshold come from the DestinationRule (``mesh.control.policy``).

Istio defaults kept: no route timeout unless the VirtualService sets one; Istio's default retries
(``ISTIO_DEFAULT_RETRIES``) on every route that says nothing about retries; mirrors and faults
without a percentage take all requests; redirects answer 301; ``rewrite.uri`` on a route without
a URI match replaces the ``/`` prefix (Envoy's reading).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

from lb import Endpoint
from mesh.control.instances import Instance, Labels, exclusion_reason
from mesh.control.policy import DEFAULT_SETTINGS, ClusterSettings, cluster_settings
from mesh.control.translate_gateway import PortPlan, gateway_ref, gateways_for, plan_ports
from mesh.control.translate_ratelimit import rate_limits_for
from mesh.control.translate_security import security_section
from mesh.model.dump import snapshot_to_dict
from mesh.model.hosts import endpoint_key, service_domains
from mesh.model.policies import FaultAbort, FaultDelay, FaultPolicy, MirrorPolicy, Redirect, RetryPolicy
from mesh.model.security import SecurityConfig
from mesh.model.snapshot import (
    Cluster,
    HeaderMatch,
    HeaderToAdd,
    Listener,
    OutboundPolicy,
    QueryMatch,
    Route,
    RouteMatch,
    RouteTable,
    Snapshot,
    SniRoute,
    VirtualHost,
    WeightedCluster,
)
from mesh.rules.destination_rule import TrafficPolicy
from mesh.rules.fields import StringMatch
from mesh.rules.hosts import HostRef, resolve_host, resolve_request_host
from mesh.rules.ruleset import RuleSet, ServiceEntryRule, VirtualServiceRule
from mesh.rules.virtual_service import (
    MESH_GATEWAY,
    Destination,
    Fault,
    Headers,
    HttpMatch,
    HttpRedirect,
    HttpRoute,
    L4Match,
    Retry,
)
from mesh.rules.warnings import Warning, route_warnings
from mesh.security.identity import DEFAULT_TRUST_DOMAIN

Catalog = Mapping[str, tuple[Instance, ...]]
"""Registry service name → its instances; a missing name has not been answered yet."""

ClusterKind = Literal["service", "external", "bootstrap"]
DEFAULT_ROUTE = "default"
ISTIO_DEFAULT_RETRIES = RetryPolicy(num_retries=2, retry_non_idempotent=True)
"""What Istio gives a route whose VirtualService says nothing about retries (and the default route):
2 retries on ``connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes`` with
503, avoiding hosts already tried. Envoy retries whatever the method, so Istio routes do too."""


@dataclass(frozen=True, slots=True)
class Profile:
    """Who a sidecar is, beyond the rules and the registry: what its snapshot depends on."""

    service: str
    namespace: str
    labels: Labels
    bootstrap: Snapshot
    demanded: frozenset[str] = frozenset()
    gateway_bind: str = ""  # a gateway proxy (``mesh gateway``) listening on this address; "" for a sidecar


@dataclass(frozen=True, slots=True)
class RouteOrigin:
    """Where a model route came from, for ``explain``."""

    resource: str  # "VirtualService ns/name", "" for the default route
    path: str  # "spec.http[1]"; the match entry is in ``match_path``
    match_path: str
    host: str  # the virtual host's target (fqdn)
    warnings: tuple[Warning, ...] = ()


@dataclass(frozen=True, slots=True)
class ClusterOrigin:
    """What a cluster stands for, for ``explain``: the destination and how its endpoints were chosen."""

    kind: ClusterKind
    host: str  # fqdn or external name
    service: str = ""  # registry service
    namespace: str = ""
    subset: str = ""
    selector: Labels = ()
    port: int | None = None
    destination_rule: str = ""  # "DestinationRule ns/name"
    service_entry: str = ""
    problem: str = ""  # e.g. an undefined subset, a ServiceEntry without that port


@dataclass(frozen=True, slots=True)
class Translation:
    snapshot: Snapshot  # version "" (``render`` versions it)
    routes: Mapping[str, RouteOrigin]
    clusters: Mapping[str, ClusterOrigin]
    services: frozenset[str]  # registry services read (the watches this profile needs)
    pending: frozenset[str]  # of those, the ones not answered yet
    unresolved: tuple[str, ...] = ()  # demanded hosts that name nothing known


def cluster_name(port: int | None, subset: str, host: str) -> str:
    return f"outbound|{port or ''}|{subset}|{host}"


@dataclass(frozen=True, slots=True)
class _MeshPart:
    """What a profile's snapshot holds besides its bootstrap: the same for every profile with the
    same namespace, labels and hosts asked for."""

    vhosts: tuple[VirtualHost, ...]
    clusters: Mapping[str, Cluster]
    cluster_origins: Mapping[str, ClusterOrigin]
    route_origins: Mapping[str, RouteOrigin]
    services: frozenset[str]
    unresolved: tuple[str, ...]


class RoundCache:
    """Work shared by the translations of one round (same rules, same catalog): sidecars that
    differ only in their bootstrap (listener ports) compute their routes and clusters once."""

    def __init__(self) -> None:
        self.parts: dict[tuple[str, Labels, frozenset[str]], _MeshPart] = {}


def translate(profile: Profile, rules: RuleSet, catalog: Catalog, cache: RoundCache | None = None) -> Translation:
    """``cache`` may only be shared by calls with the same ``rules`` and ``catalog``."""
    return _Translator(profile, rules, catalog).run(cache)


@dataclass
class _Target:
    host: HostRef
    demanded: list[str] = field(default_factory=list)
    entry: ServiceEntryRule | None = None


class _Translator:
    def __init__(self, profile: Profile, rules: RuleSet, catalog: Catalog) -> None:
        self.profile = profile
        self.rules = rules
        self.catalog = catalog
        self.clusters: dict[str, Cluster] = {}
        self.cluster_origins: dict[str, ClusterOrigin] = {}
        self.route_origins: dict[str, RouteOrigin] = {}
        self.services: set[str] = set()
        self.unresolved: list[str] = []
        self._gateway: str | None = None  # "namespace/name" while routes of that Gateway are translated

    # === top level ===

    def run(self, cache: RoundCache | None) -> Translation:
        if self.profile.gateway_bind:
            return self._run_gateway()
        bootstrap = self.profile.bootstrap
        key = (self.profile.namespace, self.profile.labels, self.profile.demanded)
        part = cache.parts.get(key) if cache is not None else None
        if part is None:
            vhosts = self._virtual_hosts()
            if cache is not None:
                cache.parts[key] = _MeshPart(
                    tuple(vhosts),
                    dict(self.clusters),
                    dict(self.cluster_origins),
                    dict(self.route_origins),
                    frozenset(self.services),
                    tuple(self.unresolved),
                )
        else:
            vhosts = list(part.vhosts)
            self.clusters = dict(part.clusters)
            self.cluster_origins = dict(part.cluster_origins)
            self.route_origins = dict(part.route_origins)
            self.services = set(part.services)
            self.unresolved = list(part.unresolved)
        clusters: dict[str, Cluster] = {}
        for name, cluster in bootstrap.clusters.items():
            if cluster.protocol == "tcp" and cluster.service:
                cluster = self._tcp_upstream(cluster)
            else:
                self.cluster_origins[name] = ClusterOrigin("bootstrap", name)
            clusters[name] = cluster
        for name in sorted(self.clusters):
            clusters.setdefault(name, self.clusters[name])
        outbound = {
            listener.route_table
            for listener in bootstrap.listeners
            if listener.protocol == "http" and listener.direction == "outbound"
        }
        tables: dict[str, RouteTable] = {}
        for name, table in bootstrap.route_tables.items():
            if name in outbound:
                table = RouteTable(name, _merge_hosts(table.virtual_hosts, vhosts))
            tables[name] = table
        security = self._security(bootstrap.listeners, tables, clusters)
        limits = rate_limits_for(self.profile.namespace, tuple(self.profile.labels), self.rules.resources.values())
        # ALLOW_ANY when the mesh says so (mesh control --outbound-traffic-policy) or the sidecar's own config does
        policies = (bootstrap.outbound_traffic_policy, self.rules.outbound_traffic_policy)
        policy: OutboundPolicy = "ALLOW_ANY" if "ALLOW_ANY" in policies else "REGISTRY_ONLY"
        snapshot = Snapshot("", bootstrap.listeners, tables, clusters, security, bootstrap.rate_limits + limits, policy)
        pending = frozenset(name for name in self.services if name not in self.catalog)
        return Translation(
            snapshot,
            MappingProxyType(dict(self.route_origins)),
            MappingProxyType(dict(self.cluster_origins)),
            frozenset(self.services),
            pending,
            tuple(self.unresolved),
        )

    def _client_tls_mode(self, cluster: str) -> str | None:
        """The DestinationRule ``trafficPolicy.tls.mode`` for a service cluster (None: not set)."""
        origin = self.cluster_origins.get(cluster)
        if origin is None or origin.kind != "service":
            return None
        policy, _, _, _ = self._policy(
            resolve_host(origin.host, origin.namespace or self.profile.namespace), origin.subset
        )
        tls = policy.tls if policy is not None else None
        return tls.mode if tls is not None else None

    def _run_gateway(self) -> Translation:
        """A gateway proxy's snapshot: its listeners and routes from the Gateways selecting it (translate_gateway)."""
        bootstrap = self.profile.bootstrap
        plans = plan_ports(
            gateways_for(self.rules.resources.values(), self.profile.labels), self.rules.virtual_services
        )
        listeners = list(bootstrap.listeners)
        tables = dict(bootstrap.route_tables)
        for plan in plans:
            if plan.protocol == "TLS":
                if plan.sni:  # without a route for any server name there is nothing to listen for
                    listeners.append(self._sni_listener(plan))
                continue
            vhosts: list[VirtualHost] = []
            for domain, rule, entry in plan.hosts:
                if rule is None:
                    redirect = Redirect(scheme="https", port=entry.https_port)
                    routes = [Route("https-redirect", RouteMatch(), (), timeout_s=None, redirect=redirect)]
                elif rule.spec.http:
                    self._gateway = entry.gateway
                    routes = self._routes(_Target(HostRef("external", domain)), rule)
                    self._gateway = None
                else:
                    continue
                vhosts.append(VirtualHost(domain, (domain,), tuple(routes)))
            tables[plan.name] = RouteTable(plan.name, tuple(vhosts))
            host = self.profile.gateway_bind
            listeners.append(
                Listener(plan.name, "http", host, plan.number, "outbound", plan.name, tls=plan.certificates())
            )
        clusters = {**bootstrap.clusters, **{name: self.clusters[name] for name in sorted(self.clusters)}}
        security = self._security(listeners, tables, clusters)
        limits = rate_limits_for(self.profile.namespace, tuple(self.profile.labels), self.rules.resources.values())
        snapshot = Snapshot("", tuple(listeners), tables, clusters, security, bootstrap.rate_limits + limits)
        return Translation(
            snapshot,
            MappingProxyType(dict(self.route_origins)),
            MappingProxyType(dict(self.cluster_origins)),
            frozenset(self.services),
            frozenset(name for name in self.services if name not in self.catalog),
            tuple(self.unresolved),
        )

    def _sni_listener(self, plan: PortPlan) -> Listener:
        """A gateway's PASSTHROUGH server: a TCP listener whose clusters the client's SNI picks."""
        routes = []
        for domain, rule, route in plan.sni:
            destination = next(d.destination for d in route.route if d.weight > 0)
            cluster = self._destination_cluster(destination, rule.resource.key.namespace, None)
            routes.append(SniRoute((domain,), cluster))
        bind = self.profile.gateway_bind
        return Listener(plan.name, "tcp", bind, plan.number, "outbound", sni_routes=tuple(routes))

    def _security(
        self, listeners: Iterable[Listener], tables: Mapping[str, RouteTable], clusters: Mapping[str, Cluster]
    ) -> SecurityConfig:
        return security_section(
            self.profile.namespace,
            tuple(self.profile.labels),
            self.rules.resources.values(),
            listeners,
            tables,
            clusters,
            self._client_tls_mode,
            self._expected_identity,
            trust_domain=DEFAULT_TRUST_DOMAIN,
            key_sets=self.rules.key_sets,
        )

    def _expected_identity(self, cluster: str) -> str:
        """``ns/<namespace>/sa/<service>`` of a registry service cluster's workloads ("" for others)."""
        origin = self.cluster_origins.get(cluster)
        if origin is None or origin.kind != "service" or not origin.service:
            return ""
        return f"ns/{origin.namespace or self.profile.namespace}/sa/{origin.service}"

    # === virtual hosts ===

    def _targets(self) -> list[_Target]:
        namespace = self.profile.namespace
        by_fqdn: dict[str, _Target] = {}
        for host in sorted(self.profile.demanded):
            vip = self.rules.vips.get(host)  # a service VIP the app called (mesh.control.vips)
            entry = None if vip is not None else self.rules.service_entry_for(host, namespace)
            if entry is not None:
                ref = HostRef("external", host)
            else:
                name = f"{vip[1]}.{vip[0]}.svc.cluster.local" if vip is not None else host
                resolved = resolve_request_host(name, namespace)
                if resolved is None:
                    self.unresolved.append(host)
                    continue
                ref = resolved
            target = by_fqdn.setdefault(ref.fqdn, _Target(ref, entry=entry))
            target.demanded.append(host)
        return [by_fqdn[fqdn] for fqdn in sorted(by_fqdn)]

    def _virtual_hosts(self) -> list[VirtualHost]:
        out: list[VirtualHost] = []
        for target in self._targets():
            host = target.host
            vs = self.rules.virtual_service_for(host, self.profile.namespace)
            if target.entry is None and host.kind == "service":
                self.services.add(host.service)
                instances = self.catalog.get(host.service)
                known = instances is not None and any(i.namespace == host.namespace for i in instances)
                if vs is None and not known:
                    self.unresolved.extend(target.demanded)
                    continue
            elif target.entry is None and vs is None:
                self.unresolved.extend(target.demanded)
                continue
            routes = self._routes(target, vs)
            out.append(VirtualHost(host.fqdn, self._domains(target), tuple(routes)))
        return out

    def _domains(self, target: _Target) -> tuple[str, ...]:
        host = target.host
        names: list[str] = []
        if host.kind == "service":
            if host.namespace == self.profile.namespace:
                names.extend(service_domains(host.service, host.namespace))
            else:
                names.extend((f"{host.service}.{host.namespace}", f"{host.service}.{host.namespace}.svc", host.fqdn))
        else:
            names.append(host.fqdn)
        for demanded in target.demanded:
            if demanded not in names:
                names.append(demanded)
        return tuple(dict.fromkeys(names))

    # === routes ===

    def _routes(self, target: _Target, vs: VirtualServiceRule | None) -> list[Route]:
        if vs is None or not vs.spec.http:
            name = self._destination_cluster(Destination(target.host.fqdn), self.profile.namespace, target)
            route = Route(
                DEFAULT_ROUTE,
                RouteMatch(),
                (WeightedCluster(name, 1),),
                timeout_s=None,
                retry_policy=ISTIO_DEFAULT_RETRIES,
            )
            self.route_origins[_origin_key(target.host.fqdn, DEFAULT_ROUTE)] = RouteOrigin("", "", "", target.host.fqdn)
            return [route]
        routes: list[Route] = []
        key = vs.resource.key
        for i, http in enumerate(vs.spec.http):
            base = f"{key.namespace}/{key.name}:http[{i}]"
            path = f"spec.http[{i}]"
            targets = tuple(
                WeightedCluster(self._destination_cluster(d.destination, key.namespace, target), d.weight)
                for d in http.route
                if d.weight > 0
            )
            mirrors = tuple(
                MirrorPolicy(self._destination_cluster(m.destination, key.namespace, target), m.percentage)
                for m in http.mirrors
            )
            warnings = tuple(route_warnings(http, path))
            conditions: list[tuple[str, str, HttpMatch | None]] = []
            if not http.match:
                conditions.append((base, "", None))
            for j, entry in enumerate(http.match):
                if self._applies(entry.gateways, entry.source_labels, entry.source_namespace, key.namespace):
                    conditions.append((f"{base}.match[{j}]", f"{path}.match[{j}]", entry))
            for name, match_path, match in conditions:
                routes.append(_model_route(name, match, http, targets, mirrors))
                self.route_origins[_origin_key(target.host.fqdn, name)] = RouteOrigin(
                    f"VirtualService {key.namespace}/{key.name}", path, match_path, target.host.fqdn, warnings
                )
        return routes

    def _applies(
        self, gateways: tuple[str, ...], source_labels: Labels, source_namespace: str, rule_namespace: str = ""
    ) -> bool:
        if gateways:
            if self._gateway is None and MESH_GATEWAY not in gateways:
                return False
            if self._gateway is not None and self._gateway not in {gateway_ref(g, rule_namespace) for g in gateways}:
                return False
        if source_namespace and source_namespace != self.profile.namespace:
            return False
        have = dict(self.profile.labels)
        return all(have.get(k) == v for k, v in source_labels)

    # === clusters ===

    def _destination_cluster(self, destination: Destination, rule_namespace: str, target: _Target | None) -> str:
        """The cluster for a route destination (built once per name)."""
        entry = self.rules.service_entry_for(destination.host, self.profile.namespace)
        if entry is not None:
            ref = HostRef("external", destination.host)
            if target is not None and target.entry is entry and target.host.fqdn != destination.host:
                ref = target.host  # a wildcard ServiceEntry: the name the app asked for
        else:
            ref = resolve_host(destination.host, rule_namespace)
        name = cluster_name(destination.port, destination.subset, ref.fqdn)
        if name not in self.clusters:
            endpoints, settings, origin = self._endpoints(ref, entry, destination)
            self.clusters[name] = Cluster(
                name,
                settings.lb,
                endpoints,
                connect_timeout_s=settings.connect_timeout_s,
                idle_timeout_s=settings.idle_timeout_s,
                max_requests_per_connection=settings.max_requests_per_connection,
                service=ref.service,
                circuit_breakers=settings.circuit_breakers,
                outlier_detection=settings.outlier_detection,
            )
            self.cluster_origins[name] = origin
        return name

    def _policy(self, ref: HostRef, subset: str) -> tuple[TrafficPolicy | None, Labels, str, str]:
        """(policy, subset selector, DestinationRule label, problem) for a destination."""
        dr = self.rules.destination_rule_for(ref, self.profile.namespace, self.profile.labels)
        if dr is None:
            problem = f"subset {subset!r} is not defined (no DestinationRule for {ref.fqdn})" if subset else ""
            return None, (), "", problem
        label = f"DestinationRule {dr.resource.key.namespace}/{dr.resource.key.name}"
        policy = dr.spec.traffic_policy or TrafficPolicy()
        if not subset:
            return policy, (), label, ""
        found = dr.spec.subset(subset)
        if found is None:
            return policy, (), label, f"subset {subset!r} is not defined by {label}"
        return policy.overlaid(found.traffic_policy), found.labels, label, ""

    def _endpoints(
        self, ref: HostRef, entry: ServiceEntryRule | None, destination: Destination
    ) -> tuple[tuple[Endpoint, ...], ClusterSettings, ClusterOrigin]:
        policy, selector, dr_label, problem = self._policy(ref, destination.subset)
        settings = cluster_settings(policy.for_port(destination.port) if policy is not None else None)
        if entry is not None:
            return self._entry_endpoints(ref, entry, destination, selector, settings, dr_label, problem)
        if ref.kind != "service":
            origin = ClusterOrigin(
                "external", ref.fqdn, problem=f"{ref.fqdn} is neither a registry service nor a ServiceEntry host"
            )
            return (), DEFAULT_SETTINGS, origin
        self.services.add(ref.service)
        origin = ClusterOrigin(
            "service",
            ref.fqdn,
            ref.service,
            ref.namespace,
            destination.subset,
            selector,
            destination.port,
            dr_label,
            problem=problem,
        )
        if problem:
            return (), settings, origin
        chosen: dict[str, Endpoint] = {}
        for instance in self.catalog.get(ref.service, ()):
            if exclusion_reason(instance, ref.namespace, selector, destination.port) is None:
                chosen.setdefault(instance.key, instance.endpoint())
        return tuple(chosen[key] for key in sorted(chosen)), settings, origin

    def _entry_endpoints(
        self,
        ref: HostRef,
        entry: ServiceEntryRule,
        destination: Destination,
        selector: Labels,
        settings: ClusterSettings,
        dr_label: str,
        problem: str,
    ) -> tuple[tuple[Endpoint, ...], ClusterSettings, ClusterOrigin]:
        key = entry.resource.key
        spec = entry.spec
        port = spec.port(destination.port)
        origin = ClusterOrigin(
            "external",
            ref.fqdn,
            subset=destination.subset,
            selector=selector,
            port=destination.port,
            destination_rule=dr_label,
            service_entry=f"ServiceEntry {key.namespace}/{key.name}",
            problem=problem,
        )
        if port is None:
            return (
                (),
                settings,
                replace(origin, problem=f"ServiceEntry {key.namespace}/{key.name} has no port {destination.port}"),
            )
        if problem:
            return (), settings, origin
        endpoints: dict[str, Endpoint] = {}
        if spec.endpoints:
            have_selector = dict(selector)
            for workload in spec.endpoints:
                labels = dict(workload.labels)
                if any(labels.get(k) != v for k, v in have_selector.items()):
                    continue
                number = workload.port_for(port)
                item_key = endpoint_key(workload.address, number)
                endpoints.setdefault(
                    item_key,
                    Endpoint(
                        item_key,
                        workload.address,
                        number,
                        max(1, workload.weight),
                        True,
                        tuple(sorted(workload.labels)),
                    ),
                )
        elif not selector:
            number = port.target_port or port.number
            item_key = endpoint_key(ref.fqdn, number)
            endpoints[item_key] = Endpoint(item_key, ref.fqdn, number)  # resolved by DNS when the sidecar connects
        return tuple(endpoints[k] for k in sorted(endpoints)), settings, origin

    def _tcp_upstream(self, cluster: Cluster) -> Cluster:
        """Fill a bootstrap TCP cluster (``--upstream NAME=PORT``) from the registry or a ServiceEntry."""
        namespace = self.profile.namespace
        entry = self.rules.service_entry_for(cluster.service, namespace)
        ref = (
            HostRef("external", cluster.service)
            if entry is not None
            else resolve_request_host(cluster.service, namespace)
        )
        if ref is None:
            self.cluster_origins[cluster.name] = ClusterOrigin("bootstrap", cluster.service, problem="not a host name")
            return cluster
        destination = Destination(cluster.service)
        rule_namespace = namespace
        vs = self.rules.virtual_service_for(ref, namespace)
        if vs is not None:
            for tcp in vs.spec.tcp:
                if tcp.match and not any(self._l4_applies(m) for m in tcp.match):
                    continue
                destination = next(d.destination for d in tcp.route if d.weight > 0)
                rule_namespace = vs.resource.key.namespace
                break
        if entry is not None and destination.host == cluster.service:
            dest_ref = ref
        else:
            entry = self.rules.service_entry_for(destination.host, namespace)
            dest_ref = (
                HostRef("external", destination.host)
                if entry is not None
                else resolve_host(destination.host, rule_namespace)
            )
        endpoints, settings, origin = self._endpoints(dest_ref, entry, destination)
        self.cluster_origins[cluster.name] = origin
        return replace(
            cluster,
            lb=settings.lb,
            endpoints=endpoints,
            connect_timeout_s=settings.connect_timeout_s,
            idle_timeout_s=settings.idle_timeout_s,
            max_requests_per_connection=settings.max_requests_per_connection,
            circuit_breakers=settings.circuit_breakers,
            outlier_detection=settings.outlier_detection,
        )

    def _l4_applies(self, match: L4Match) -> bool:
        return self._applies(match.gateways, match.source_labels, match.source_namespace)


def _origin_key(host: str, route: str) -> str:
    return f"{host} {route}"


def route_origin(translation: Translation, host: str, route: str) -> RouteOrigin | None:
    return translation.routes.get(_origin_key(host, route))


def _merge_hosts(static: Iterable[VirtualHost], generated: Iterable[VirtualHost]) -> tuple[VirtualHost, ...]:
    """Bootstrap virtual hosts first; generated ones keep only the domains still free."""
    out = list(static)
    claimed = {domain.lower() for vhost in out for domain in vhost.domains}
    names = {vhost.name for vhost in out}
    for vhost in generated:
        free = tuple(d for d in vhost.domains if d.lower() not in claimed)
        if not free or vhost.name in names:
            continue
        claimed.update(d.lower() for d in free)
        names.add(vhost.name)
        out.append(vhost if free == vhost.domains else VirtualHost(vhost.name, free, vhost.routes))
    return tuple(out)


# === model routes ===


def _model_route(
    name: str,
    match: HttpMatch | None,
    http: HttpRoute,
    targets: tuple[WeightedCluster, ...],
    mirrors: tuple[MirrorPolicy, ...],
) -> Route:
    route_match = _route_match(match, rewrite=http.rewrite_uri is not None)
    request_add, request_remove = _header_edits(http.headers, response=False)
    response_add, response_remove = _header_edits(http.headers, response=True)
    redirect = None if http.redirect is None else _redirect(http.redirect)
    return Route(
        name,
        route_match,
        () if redirect is not None else targets,
        timeout_s=http.timeout_s,
        prefix_rewrite=http.rewrite_uri,
        request_headers_add=request_add,
        request_headers_remove=request_remove,
        response_headers_add=response_add,
        response_headers_remove=response_remove,
        retry_policy=None if redirect is not None else retry_policy(http.retries),
        fault=fault_policy(http.fault),
        mirrors=() if redirect is not None else mirrors,
        host_rewrite=http.rewrite_authority,
        redirect=redirect,
    )


def retry_policy(retries: Retry | None) -> RetryPolicy | None:
    """Istio's ``HTTPRetry`` → the model's, as Pilot builds Envoy's (``retry.ConvertPolicy``).

    No ``retries``: Istio's default (``ISTIO_DEFAULT_RETRIES``). ``attempts: 0``: no retries.
    ``attempts`` is Envoy's ``num_retries`` (retries after the first try). A ``retryOn`` replaces
    the default conditions *and* status codes: its numbers are the retriable statuses (and turn
    on ``retriable-status-codes``), the rest Envoy conditions; without ``retryOn`` the default
    conditions and 503 stay. ``perTryTimeout`` is the per-try timeout; backoff (25 ms base, Envoy)
    and the previous-hosts predicate are Istio's fixed choices.
    """
    if retries is None:
        return ISTIO_DEFAULT_RETRIES
    if retries.attempts == 0:
        return None
    conditions = ISTIO_DEFAULT_RETRIES.retry_on
    codes = ISTIO_DEFAULT_RETRIES.retriable_status_codes
    if retries.retry_on:
        codes = frozenset(int(part) for part in retries.retry_on if part.isdigit())
        conditions = frozenset(part for part in retries.retry_on if not part.isdigit())
        if codes:
            conditions |= {"retriable-status-codes"}
    return replace(
        ISTIO_DEFAULT_RETRIES,
        retry_on=conditions,
        num_retries=retries.attempts,
        per_try_timeout_s=retries.per_try_timeout_s,
        retriable_status_codes=codes,
    )


def fault_policy(fault: Fault | None) -> FaultPolicy | None:
    if fault is None:
        return None
    delay = None if fault.delay is None else FaultDelay(fault.delay.fixed_delay_s, fault.delay.percentage)
    abort = None if fault.abort is None else FaultAbort(fault.abort.http_status, fault.abort.percentage)
    return FaultPolicy(delay, abort)


def _redirect(redirect: HttpRedirect) -> Redirect:
    port = redirect.port
    if redirect.derive_port == "FROM_PROTOCOL_DEFAULT":
        port = 443 if redirect.scheme == "https" else 80
    return Redirect(
        scheme=redirect.scheme,
        host=redirect.authority,
        port=port,
        path=redirect.uri,
        response_code=redirect.redirect_code,
    )


def _route_match(match: HttpMatch | None, *, rewrite: bool) -> RouteMatch:
    if match is None:
        return RouteMatch(path_prefix="/") if rewrite else RouteMatch()
    uri = match.uri
    exact = uri.exact if uri is not None else None
    prefix = uri.prefix if uri is not None else None
    regex = uri.regex if uri is not None else None
    if uri is None and rewrite:
        prefix = "/"
    headers = [_header_match(name, condition, invert=False) for name, condition in match.headers]
    headers += [_header_match(name, condition, invert=True) for name, condition in match.without_headers]
    if match.authority is not None:
        headers.append(_header_match("host", match.authority, invert=False))
    query = tuple(
        QueryMatch(name, condition.exact, condition.regex, True if condition.kind == "present" else None)
        for name, condition in match.query_params
    )
    methods = (
        frozenset({match.method.exact.upper()}) if match.method is not None and match.method.exact else frozenset()
    )
    return RouteMatch(
        path_exact=exact,
        path_prefix=prefix,
        path_regex=regex,
        case_sensitive=not match.ignore_uri_case,
        methods=methods,
        headers=tuple(headers),
        query=query,
    )


def _header_match(name: str, condition: StringMatch, *, invert: bool) -> HeaderMatch:
    name = name.lower()
    if condition.kind == "present":
        return HeaderMatch(name, present=not invert)
    return HeaderMatch(name, exact=condition.exact, prefix=condition.prefix, regex=condition.regex, invert=invert)


def _header_edits(headers: Headers, *, response: bool) -> tuple[tuple[HeaderToAdd, ...], tuple[str, ...]]:
    edits = headers.response if response else headers.request
    adds = tuple(HeaderToAdd(n, v, append=False) for n, v in edits.set) + tuple(
        HeaderToAdd(n, v, append=True) for n, v in edits.add
    )
    return adds, edits.remove


# === versions ===


def snapshot_digest(snapshot: Snapshot) -> tuple[str, dict[str, Any]]:
    """A digest of the content (the version left out) and the snapshot as config data."""
    data = snapshot_to_dict(snapshot)
    data.pop("version", None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16], data


__all__ = [
    "DEFAULT_ROUTE",
    "Catalog",
    "ClusterOrigin",
    "Profile",
    "RoundCache",
    "RouteOrigin",
    "Translation",
    "cluster_name",
    "route_origin",
    "snapshot_digest",
    "translate",
]
