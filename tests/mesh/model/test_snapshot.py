"""The snapshot types: immutable, with read-only mappings and derived lookup data."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import pytest

from lb import Affinity, PolicySpec
from mesh.model.snapshot import (
    PATH_PREFIX_FOLDED,
    Cluster,
    Listener,
    Route,
    RouteMatch,
    RouteTable,
    Snapshot,
    VirtualHost,
    WeightedCluster,
    classify_domain,
    domain_has_port,
)


def test_snapshot_is_frozen_and_its_mappings_read_only() -> None:
    cluster = Cluster("web")
    snapshot = Snapshot("1", (Listener("l", "tcp", "127.0.0.1", 0, cluster="web"),), {}, {"web": cluster})
    assert isinstance(snapshot.clusters, MappingProxyType)
    assert isinstance(snapshot.route_tables, MappingProxyType)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.version = "2"  # type: ignore[misc]
    with pytest.raises(TypeError):
        snapshot.clusters["other"] = cluster  # type: ignore[index]
    assert snapshot.listener("l") is snapshot.listeners[0]
    assert snapshot.listener("nope") is None


def test_cluster_defaults_and_affinity_shortcut() -> None:
    plain = Cluster("web")
    assert (plain.lb, plain.affinity, plain.protocol) == (PolicySpec(), None, "http")
    assert (plain.connect_timeout_s, plain.idle_timeout_s, plain.max_connections_per_endpoint) == (5.0, 60.0, 1024)
    sticky = Cluster("web", PolicySpec(kind="ring_hash", affinity=Affinity("header", "x-user")))
    assert sticky.affinity == Affinity("header", "x-user")


def test_derived_fields_take_no_part_in_equality() -> None:
    route = Route(
        "r", RouteMatch(path_prefix="/A", case_sensitive=False), (WeightedCluster("a", 2), WeightedCluster("b", 3))
    )
    assert route.cumulative_weights == (2, 5)
    vhost = VirtualHost("v", ("*",), (route,))
    assert vhost.matchers == ((route, PATH_PREFIX_FOLDED, "/a", frozenset(), (), ()),)
    table = RouteTable("t", (VirtualHost("v", ("*",), (route,)),))
    assert table == RouteTable("t", (VirtualHost("v", ("*",), (route,)),))
    assert "domain_index" not in repr(table)


@pytest.mark.parametrize(
    ("domain", "kind", "fixed"),
    [
        ("a.b", "exact", "a.b"),
        ("*.b", "suffix", ".b"),
        ("*b", "suffix", "b"),
        ("a.*", "prefix", "a."),
        ("*.x:80", "suffix", ".x:80"),
    ],
)
def test_classify_domain(domain: str, kind: str, fixed: str) -> None:
    assert classify_domain(domain) == (kind, fixed)


def test_domain_has_port() -> None:
    assert domain_has_port("web:80")
    assert domain_has_port("[::1]:80")
    assert not domain_has_port("[::1]")
    assert not domain_has_port("*.web")
