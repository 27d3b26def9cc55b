"""Builders for rule documents in tests (plain dicts, as a client would send them)."""

from __future__ import annotations

import copy
from typing import Any

from mesh.rules.resource import KINDS, Resource, parse_resource


def vs(name: str = "reviews", namespace: str | None = None, **spec: Any) -> dict[str, Any]:
    body = {"hosts": [name], "http": [{"route": [{"destination": {"host": name}}]}]}
    body.update(spec)
    return _doc("VirtualService", name, namespace, body)


def dr(name: str = "reviews", namespace: str | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"host": name, "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}
    body.update(spec)
    return _doc("DestinationRule", name, namespace, body)


def se(name: str = "httpbin", namespace: str | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hosts": ["httpbin.example.com"],
        "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
        "resolution": "DNS",
    }
    body.update(spec)
    return _doc("ServiceEntry", name, namespace, body)


def _doc(kind: str, name: str, namespace: str | None, spec: dict[str, Any]) -> dict[str, Any]:
    info = KINDS[kind]
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": f"{info.group}/{info.versions[0]}", "kind": kind, "metadata": metadata, "spec": spec}


def doc(kind: str, name: str, spec: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    return _doc(kind, name, namespace, spec)


def with_path(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``data`` with ``value`` set at ``path`` (``spec.http[0].route[1].weight``)."""
    out = copy.deepcopy(data)
    target: Any = out
    parts = _split(path)
    for part in parts[:-1]:
        target = target[part]
    target[parts[-1]] = value
    return out


def _split(path: str) -> list[Any]:
    parts: list[Any] = []
    for piece in path.split("."):
        name, _, rest = piece.partition("[")
        if name:
            parts.append(name)
        while rest:
            index, _, rest = rest.partition("]")
            parts.append(int(index))
            rest = rest.lstrip("[")
    return parts


def parse(data: dict[str, Any]) -> Resource:
    return parse_resource(data)
