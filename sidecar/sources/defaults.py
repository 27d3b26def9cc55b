"""The standard sidecar layout built from its settings (pure): listeners, inbound route, upstreams.

- ``outbound`` (http, ``--outbound-addr``, default 127.0.0.1:15001) → route table ``outbound``,
  whose virtual hosts the source supplies (one per registry service in registry mode);
- ``inbound`` (http, ``--inbound-addr``, default 127.0.0.1:15006) → route table ``inbound``: one
  virtual host ``*`` → cluster ``inbound|<app_port>`` = 127.0.0.1:<app_port>, no route timeout
  (the caller's sidecar applies its own, as Istio does); only with an app port;
- per ``--upstream NAME=LOCALPORT``: listener ``upstream|NAME`` (tcp, 127.0.0.1:LOCALPORT) →
  cluster ``tcp|NAME``, the passing instances of service NAME (the ambassador pattern).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from discovery.runtime.addresses import split_host_port
from lb import Endpoint
from mesh.model.hosts import endpoint_key
from mesh.model.snapshot import (
    DEFAULT_POLICY,
    Cluster,
    Listener,
    Route,
    RouteMatch,
    RouteTable,
    Snapshot,
    VirtualHost,
    WeightedCluster,
)

DEFAULT_OUTBOUND_ADDR = "127.0.0.1:15001"
DEFAULT_INBOUND_ADDR = "127.0.0.1:15006"
OUTBOUND = "outbound"  # listener and route table name
INBOUND = "inbound"
LOCAL_HOST = "127.0.0.1"

_SERVICE_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")


@dataclass(frozen=True, slots=True)
class SidecarSettings:
    """What the sidecar's flags say about its workload and its local ports.

    ``service`` is the workload's own service (labels logs and metrics); ``app_port`` the port
    the app listens on at 127.0.0.1 (``None``: no inbound listener); ``upstreams`` the
    ``--upstream NAME=LOCALPORT`` pairs. Call ``validate()`` before use.
    """

    service: str = ""
    app_port: int | None = None
    outbound_addr: str = DEFAULT_OUTBOUND_ADDR
    inbound_addr: str = DEFAULT_INBOUND_ADDR
    upstreams: tuple[tuple[str, int], ...] = ()

    def validate(self) -> SidecarSettings:
        """Raise ``ValueError`` naming the flag at fault; return self."""
        if self.app_port is not None and not 0 < self.app_port < 65536:
            raise ValueError(f"--app-port: must be 1-65535, got {self.app_port}")
        out_host, out_port = split_host_port(self.outbound_addr, name="--outbound-addr")
        in_host, in_port = split_host_port(self.inbound_addr, name="--inbound-addr")
        taken: dict[tuple[str, int], str] = {}
        for flag, address in (("--outbound-addr", (out_host, out_port)), ("--inbound-addr", (in_host, in_port))):
            if address[1] and address in taken:
                raise ValueError(f"{flag}: {address[0]}:{address[1]} is also {taken[address]}")
            taken[address] = flag
        names: set[str] = set()
        for name, port in self.upstreams:
            if not _SERVICE_NAME.fullmatch(name):
                raise ValueError(f"--upstream: {name!r} is not a service name")
            if name in names:
                raise ValueError(f"--upstream: {name!r} is given twice")
            names.add(name)
            if not 0 < port < 65536:
                raise ValueError(f"--upstream {name}={port}: the local port must be 1-65535")
            address = (LOCAL_HOST, port)
            if address in taken:
                raise ValueError(f"--upstream {name}={port}: 127.0.0.1:{port} is also {taken[address]}")
            taken[address] = f"--upstream {name}"
        return self


def parse_upstream(text: str) -> tuple[str, int]:
    """``"db=15432"`` → ``("db", 15432)``; ``ValueError`` with the expected form otherwise."""
    name, sep, port = text.partition("=")
    name = name.strip()
    port = port.strip()
    if not sep or not name or not (port.isascii() and port.isdigit()):
        raise ValueError(f"--upstream: expected NAME=LOCALPORT, got {text!r}")
    return name, int(port)


# === names ===


def inbound_cluster_name(app_port: int) -> str:
    return f"inbound|{app_port}"


def upstream_cluster_name(service: str) -> str:
    return f"tcp|{service}"


def upstream_listener_name(service: str) -> str:
    return f"upstream|{service}"


# === pieces ===


def standard_listeners(settings: SidecarSettings) -> tuple[Listener, ...]:
    """Outbound, inbound (with an app port) and one TCP listener per upstream."""
    out_host, out_port = split_host_port(settings.outbound_addr, name="--outbound-addr")
    listeners = [Listener(OUTBOUND, "http", out_host, out_port, "outbound", route_table=OUTBOUND)]
    if settings.app_port is not None:
        in_host, in_port = split_host_port(settings.inbound_addr, name="--inbound-addr")
        listeners.append(Listener(INBOUND, "http", in_host, in_port, "inbound", route_table=INBOUND))
    for name, port in settings.upstreams:
        listeners.append(
            Listener(
                upstream_listener_name(name), "tcp", LOCAL_HOST, port, "outbound", cluster=upstream_cluster_name(name)
            )
        )
    return tuple(listeners)


def inbound_route_table(app_port: int) -> RouteTable:
    """Everything arriving on the inbound listener goes to the local app, with no route timeout."""
    route = Route("local-app", RouteMatch(), (WeightedCluster(inbound_cluster_name(app_port)),), timeout_s=None)
    return RouteTable(INBOUND, (VirtualHost("local-app", ("*",), (route,)),))


def inbound_cluster(app_port: int) -> Cluster:
    endpoint = Endpoint(endpoint_key(LOCAL_HOST, app_port), LOCAL_HOST, app_port)
    return Cluster(inbound_cluster_name(app_port), DEFAULT_POLICY, (endpoint,))


def upstream_cluster(service: str, endpoints: tuple[Endpoint, ...]) -> Cluster:
    """The TCP cluster behind ``--upstream service=PORT``: the service's passing instances."""
    return Cluster(upstream_cluster_name(service), DEFAULT_POLICY, endpoints, service=service, protocol="tcp")


def standard_snapshot(
    settings: SidecarSettings,
    version: str,
    outbound_hosts: Iterable[VirtualHost],
    clusters: Mapping[str, Cluster],
    upstream_endpoints: Mapping[str, tuple[Endpoint, ...]],
) -> Snapshot:
    """The standard layout around the source's outbound virtual hosts and clusters.

    ``clusters`` must hold every cluster the virtual hosts route to; ``upstream_endpoints`` maps
    each upstream service to its endpoints (missing: none yet).
    """
    all_clusters = dict(clusters)
    tables = {OUTBOUND: RouteTable(OUTBOUND, tuple(outbound_hosts))}
    if settings.app_port is not None:
        tables[INBOUND] = inbound_route_table(settings.app_port)
        local = inbound_cluster(settings.app_port)
        all_clusters[local.name] = local
    for name, _ in settings.upstreams:
        upstream = upstream_cluster(name, upstream_endpoints.get(name, ()))
        all_clusters[upstream.name] = upstream
    return Snapshot(version, standard_listeners(settings), tables, all_clusters)


__all__ = [
    "DEFAULT_INBOUND_ADDR",
    "DEFAULT_OUTBOUND_ADDR",
    "INBOUND",
    "OUTBOUND",
    "SidecarSettings",
    "inbound_cluster",
    "inbound_cluster_name",
    "inbound_route_table",
    "parse_upstream",
    "standard_listeners",
    "standard_snapshot",
    "upstream_cluster",
    "upstream_cluster_name",
    "upstream_listener_name",
]
