"""Catalog records into Consul's JSON shapes (PascalCase, empty collections never null)."""

from __future__ import annotations

import base64
from typing import Any

from discovery.catalog import Catalog
from discovery.durations import format_duration
from discovery.models import Check, KVEntry, Node, Service, worst_status


def node(n: Node) -> dict[str, Any]:
    return {
        "ID": n.id,
        "Node": n.name,
        "Address": n.address,
        "Datacenter": n.datacenter,
        "TaggedAddresses": dict(n.tagged_addresses),
        "Meta": dict(n.meta),
        "CreateIndex": n.create_index,
        "ModifyIndex": n.modify_index,
    }


def _tagged(s: Service) -> dict[str, Any]:
    return {k: {"Address": v.address, "Port": v.port} for k, v in s.tagged_addresses.items()}


def _weights(s: Service) -> dict[str, int]:
    return {"Passing": s.weights.passing, "Warning": s.weights.warning}


def agent_service(s: Service, datacenter: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ID": s.id,
        "Service": s.name,
        "Tags": list(s.tags),
        "Meta": dict(s.meta),
        "Port": s.port,
        "Address": s.address,
        "TaggedAddresses": _tagged(s),
        "Weights": _weights(s),
        "EnableTagOverride": s.enable_tag_override,
        "Datacenter": datacenter,
    }
    if s.kind:
        out["Kind"] = s.kind
    return out


def health_service_object(s: Service) -> dict[str, Any]:
    out = agent_service(s, "")
    del out["Datacenter"]
    out["CreateIndex"] = s.create_index
    out["ModifyIndex"] = s.modify_index
    return out


def catalog_service_entry(s: Service, n: Node) -> dict[str, Any]:
    return {
        "ID": n.id,
        "Node": n.name,
        "Address": n.address,
        "Datacenter": n.datacenter,
        "TaggedAddresses": dict(n.tagged_addresses),
        "NodeMeta": dict(n.meta),
        "ServiceKind": s.kind,
        "ServiceID": s.id,
        "ServiceName": s.name,
        "ServiceTags": list(s.tags),
        "ServiceAddress": s.address,
        "ServicePort": s.port,
        "ServiceMeta": dict(s.meta),
        "ServiceTaggedAddresses": _tagged(s),
        "ServiceWeights": _weights(s),
        "ServiceEnableTagOverride": s.enable_tag_override,
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
    }


def check(c: Check, service_tags: tuple[str, ...] = ()) -> dict[str, Any]:
    d = c.definition
    definition: dict[str, Any] = {}
    if d.http:
        definition.update(HTTP=d.http, Method=d.method, Header={k: list(v) for k, v in d.header.items()})
        definition.update(Body=d.body, TLSServerName=d.tls_server_name, TLSSkipVerify=d.tls_skip_verify)
    if d.tcp:
        definition["TCP"] = d.tcp
    for key, seconds in (
        ("Interval", d.interval),
        ("Timeout", d.timeout),
        ("TTL", d.ttl),
        ("DeregisterCriticalServiceAfter", d.deregister_critical_after),
    ):
        if seconds:
            definition[key] = format_duration(seconds)
    return {
        "Node": c.node,
        "CheckID": c.check_id,
        "Name": c.name,
        "Status": c.status,
        "Notes": c.notes,
        "Output": c.output,
        "ServiceID": c.service_id,
        "ServiceName": c.service_name,
        "ServiceTags": list(service_tags),
        "Type": d.kind,
        "Interval": format_duration(d.interval) if d.interval else "",
        "Timeout": format_duration(d.timeout) if d.timeout else "",
        "ExposedPort": 0,
        "Definition": definition,
        "CreateIndex": c.create_index,
        "ModifyIndex": c.modify_index,
    }


def checks(catalog: Catalog, items: list[Check]) -> list[dict[str, Any]]:
    return [check(c, catalog.service_tags(c)) for c in items]


def health_entry(catalog: Catalog, s: Service) -> tuple[dict[str, Any], str]:
    """One /v1/health/service entry and its aggregate status (instance checks + node checks)."""
    n = catalog.node(s.node)
    assert n is not None, "a service always has its node"
    items = catalog.health_checks(s)
    entry = {
        "Node": node(n),
        "Service": health_service_object(s),
        "Checks": [check(c, s.tags if c.service_id == s.id else ()) for c in items],
    }
    return entry, worst_status(c.status for c in items)


def kv_pair(e: KVEntry) -> dict[str, Any]:
    out: dict[str, Any] = {
        "LockIndex": e.lock_index,
        "Key": e.key,
        "Flags": e.flags,
        "Value": base64.b64encode(e.value).decode() if e.value else None,
        "CreateIndex": e.create_index,
        "ModifyIndex": e.modify_index,
    }
    if e.session:
        out["Session"] = e.session
    return out
