"""Test builders for the control plane: instances, profiles, rule sets."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mesh.control.instances import FailingCheck, Instance, instance_labels
from mesh.control.translate import Catalog, Profile
from mesh.model.parse import parse_snapshot
from mesh.rules.resource import parse_resource
from mesh.rules.ruleset import RuleSet

BOOTSTRAP: dict[str, Any] = {
    "listeners": [
        {"name": "outbound", "protocol": "http", "host": "127.0.0.1", "port": 15001, "route_table": "outbound"},
        {"name": "upstream|db", "protocol": "tcp", "host": "127.0.0.1", "port": 15432, "cluster": "tcp|db"},
    ],
    "route_tables": [{"name": "outbound", "virtual_hosts": []}],
    "clusters": [{"name": "tcp|db", "protocol": "tcp", "service": "db"}],
}


def instance(
    service_id: str,
    port: int = 9080,
    *,
    address: str = "10.0.0.1",
    tags: Iterable[str] = (),
    meta: Mapping[str, str] | None = None,
    status: str = "passing",
    weight: int = 1,
    node: str = "node1",
) -> Instance:
    meta = dict(meta or {})
    failing = (
        () if status == "passing" else (FailingCheck(f"service:{service_id}", "health", status, "connection refused"),)
    )
    return Instance(
        service_id=service_id,
        node=node,
        address=address,
        port=port,
        weight=weight,
        status=status,
        namespace=meta.get("k8s-namespace", "default"),
        labels=instance_labels(tags, meta.items()),
        failing=failing,
    )


def reviews_catalog() -> Catalog:
    return {
        "reviews": (
            instance("reviews-v1", address="10.0.0.1", meta={"version": "v1"}),
            instance("reviews-v2", address="10.0.0.2", tags=["version|v2"]),
            instance("reviews-v3", address="10.0.0.3", tags=["version=v3"]),
            instance("reviews-v3b", address="10.0.0.4", tags=["version=v3"], status="critical"),
        ),
        "db": (instance("db-1", 5432, address="10.0.1.1"),),
    }


def profile(
    *demanded: str, service: str = "productpage", labels: Mapping[str, str] | None = None, namespace: str = "default"
) -> Profile:
    bootstrap = parse_snapshot(BOOTSTRAP, version="bootstrap")
    return Profile(
        service, namespace, tuple(sorted((labels or {"app": service}).items())), bootstrap, frozenset(demanded)
    )


def rules(*docs: dict[str, Any]) -> RuleSet:
    return RuleSet.build(parse_resource(d) for d in docs)
