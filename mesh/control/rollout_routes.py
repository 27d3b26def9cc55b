"""How a rollout changes a VirtualService (pure: a document in, a new document out).

The rollout **manages** the HTTP routes of the VirtualService that send all their traffic to the
rolled-out service's ``stable`` and/or ``canary`` subsets; every other route (one pinning a test
user's header to a subset, one to another service, a redirect) is left exactly as it is. A
managed route's ``route`` list becomes:

- ``shift`` to w %: ``stable`` with weight ``100 - w`` and ``canary`` with weight ``w``;
- ``promote``: ``canary`` alone (the new stable);
- ``restore``: ``stable`` alone.

The new document goes through the same apply path as ``mesh apply`` (validated, versioned,
pushed), re-derived from the VirtualService in force each time, so edits made meanwhile to
other routes are kept. While a rollout shifts weights the VirtualService carries the annotation
``rollout.mesh.io/name``.
"""

from __future__ import annotations

import copy
from typing import Any

from mesh.control.rollout_decide import RouteAction
from mesh.model.hosts import service_from_host
from mesh.model.reader import ConfigError

ANNOTATION = "rollout.mesh.io/name"


class RouteError(ValueError):
    """The VirtualService cannot be rolled out as asked (the message says why)."""


def _targets(host: object, service: str, namespace: str) -> bool:
    if not isinstance(host, str):
        return False
    ref = service_from_host(host)
    return ref is not None and ref.service == service and ref.namespace in (None, namespace)


def _destinations(route: object) -> list[dict[str, Any]] | None:
    """The route's destination entries when it is a forwarding route, else ``None``."""
    if not isinstance(route, dict):
        return None
    entries = route.get("route")
    if not isinstance(entries, list) or not entries:
        return None
    if not all(isinstance(e, dict) and isinstance(e.get("destination"), dict) for e in entries):
        return None
    return entries


def subsets_routed(document: dict[str, Any], service: str, namespace: str) -> list[tuple[str, int]]:
    """(subset, weight) of every destination of ``service`` in the routes that send only to it."""
    out: list[tuple[str, int]] = []
    for route in (document.get("spec") or {}).get("http") or []:
        entries = _destinations(route)
        if entries is None or not all(_targets(e["destination"].get("host"), service, namespace) for e in entries):
            continue
        for entry in entries:
            subset = entry["destination"].get("subset") or ""
            weight = entry.get("weight", 100 if len(entries) == 1 else 0)
            out.append((str(subset), int(weight) if isinstance(weight, int) else 0))
    return out


def find_stable(document: dict[str, Any], service: str, namespace: str, canary: str) -> str:
    """The subset serving ``service`` now: the one non-canary subset its routes send traffic to."""
    name = (document.get("metadata") or {}).get("name", "?")
    routed = subsets_routed(document, service, namespace)
    candidates = sorted({subset for subset, weight in routed if subset != canary and weight > 0})
    if not candidates:
        candidates = sorted({subset for subset, _ in routed if subset != canary})
    candidates = [c for c in candidates if c]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise RouteError(
            f"VirtualService {name} has no route sending {service} traffic to a subset other than {canary!r}: "
            "route the stable subset first (or name it with --from)"
        )
    raise RouteError(
        f"VirtualService {name} sends {service} traffic to several subsets ({', '.join(candidates)}): "
        "name the stable one with --from"
    )


def rewrite(
    document: dict[str, Any],
    *,
    service: str,
    namespace: str,
    stable: str,
    canary: str,
    action: RouteAction,
    rollout: str,
) -> dict[str, Any]:
    """The VirtualService with its managed routes set for ``action``; ``RouteError`` if none is managed."""
    if action.kind == "none":
        return document
    out = copy.deepcopy(document)
    metadata = out.setdefault("metadata", {})
    for server_field in ("resourceVersion", "generation", "creationTimestamp", "uid"):
        metadata.pop(server_field, None)
    managed = 0
    for route in (out.get("spec") or {}).get("http") or []:
        entries = _destinations(route)
        if entries is None:
            continue
        subsets = {str(e["destination"].get("subset") or "") for e in entries}
        hosts_ok = all(_targets(e["destination"].get("host"), service, namespace) for e in entries)
        if not hosts_ok or not subsets <= {stable, canary}:
            continue
        managed += 1
        template = next((e for e in entries if e["destination"].get("subset") == stable), entries[0])
        route["route"] = _entries(template, stable, canary, action)
    if managed == 0:
        name = metadata.get("name", "?")
        raise RouteError(
            f"VirtualService {name} has no HTTP route sending {service} traffic only to subsets "
            f"{stable!r}/{canary!r}: nothing to shift"
        )
    annotations = dict(metadata.get("annotations") or {})
    if action.kind == "shift":
        annotations[ANNOTATION] = rollout
    else:
        annotations.pop(ANNOTATION, None)
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    return out


def _entries(template: dict[str, Any], stable: str, canary: str, action: RouteAction) -> list[dict[str, Any]]:
    def entry(subset: str, weight: int | None) -> dict[str, Any]:
        item = {k: copy.deepcopy(v) for k, v in template.items() if k not in ("destination", "weight")}
        item["destination"] = {**copy.deepcopy(template["destination"]), "subset": subset}
        if weight is not None:
            item["weight"] = weight
        return item

    if action.kind == "promote":
        return [entry(canary, None)]
    if action.kind == "restore":
        return [entry(stable, None)]
    return [entry(stable, 100 - action.weight), entry(canary, action.weight)]


def check_subsets(rule: dict[str, Any] | None, service: str, stable: str, canary: str) -> None:
    """Both subsets must be defined by the service's DestinationRule (``ConfigError`` names the field)."""
    if rule is None:
        raise ConfigError("service", f"no DestinationRule defines subsets of {service}: apply one first")
    names = {s.get("name") for s in (rule.get("spec") or {}).get("subsets") or [] if isinstance(s, dict)}
    for field, subset in (("canary", canary), ("stable", stable)):
        if subset not in names:
            raise ConfigError(
                field,
                f"subset {subset!r} is not defined by DestinationRule {rule['metadata']['name']} "
                f"(it defines {', '.join(sorted(str(n) for n in names)) or 'none'})",
            )


__all__ = ["ANNOTATION", "RouteError", "check_subsets", "find_stable", "rewrite", "subsets_routed"]
