"""Sidecar injection into a docker-compose file: one ``<service>-mesh-sidecar`` service per app service.

Compose has no pods, so the sidecar is a service of its own that joins the app's network namespace
(``network_mode: service:<app>``), exactly as deploy/compose/docker-compose.yml writes it by hand;
it is placed right after its app. Left alone: services labelled ``sidecar.mesh.io/inject: "false"``,
services that already share another's network (``network_mode``), the sidecars themselves (label
``mesh.io/injected: "true"``), and apps whose ``<service>-mesh-sidecar`` already exists.

With interception, a one-shot ``<service>-mesh-init`` service joins the same namespace as root with
NET_ADMIN and installs the redirect rules; the sidecar starts once it has completed. Compose has no
init containers: the app itself starts first, so connections it opens before the rules are in go
direct (docs/interception.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from mesh.inject.settings import (
    INIT_NAME,
    INJECTED_ANNOTATION,
    NAME_LABELS,
    OPT_OUT_ANNOTATION,
    READY_PROBE_COMMAND,
    SIDECAR_NAME,
    Change,
    InjectError,
    InjectSettings,
    Outcome,
    intercept_args,
    sidecar_args,
)

_SHORT_PORT: Final = re.compile(r"(?P<first>\d+)(?:-\d+)?(?:/(?P<proto>\w+))?")


def is_compose(document: Any) -> bool:
    return isinstance(document, Mapping) and isinstance(document.get("services"), Mapping) and "kind" not in document


def sidecar_service_name(service: str) -> str:
    return f"{service}-{SIDECAR_NAME}"


def inject_compose(document: Mapping[str, Any], settings: InjectSettings) -> Outcome:
    """Decide for every service, then (only if one gets a sidecar) change ``document`` in place and return it."""
    services = document["services"]
    changes: list[Change] = []
    additions: dict[str, list[tuple[str, dict[str, Any]]]] = {}  # app key -> services to add after it
    for key, definition in services.items():
        path = f"services.{key}"
        label = f"compose service {key}"
        if definition is None:
            definition = {}
        if not isinstance(definition, Mapping):
            raise InjectError(f"expected an object, got {type(definition).__name__}", path)
        labels = _labels(definition.get("labels"), f"{path}.labels")
        if str(labels.get(INJECTED_ANNOTATION, "")).lower() == "true":
            continue  # a sidecar this injector wrote
        if str(labels.get(OPT_OUT_ANNOTATION, "")).lower() in ("false", "no", "off"):
            changes.append(Change(label, "skip", f'{OPT_OUT_ANNOTATION}: "false"'))
            continue
        if definition.get("network_mode"):
            changes.append(
                Change(label, "skip", f"network_mode {definition['network_mode']!r} (shares another network)")
            )
            continue
        if sidecar_service_name(key) in services:
            changes.append(Change(label, "skip", "already injected"))
            continue
        service = next((str(labels[k]) for k in NAME_LABELS if labels.get(k)), str(key))
        app_port = _app_port(definition, path)
        additions[key] = [(sidecar_service_name(key), sidecar_service(key, service, app_port, settings))]
        if settings.interception:
            additions[key].append((init_service_name(key), init_service(key, app_port, settings)))
        names = " and ".join(name for name, _ in additions[key])
        port_note = f"app port {app_port}" if app_port is not None else "no ports/expose: outbound only"
        changes.append(Change(label, "inject", f"add service {names} (service {service}, {port_note})"))
    if not additions:
        return Outcome(None, tuple(changes))
    _insert_after(services, additions)
    return Outcome(document, tuple(changes))


def _insert_after(services: Any, additions: dict[str, list[tuple[str, dict[str, Any]]]]) -> None:
    """Put each sidecar (and init) right after its app, in place (a round-trip mapping keeps its comments)."""
    if hasattr(services, "insert"):  # ruamel's CommentedMap
        for app, added in additions.items():
            at = list(services).index(app)
            for offset, (key, value) in enumerate(added, 1):
                services.insert(at + offset, key, value)
        return
    entries = list(services.items())
    services.clear()
    for key, value in entries:
        services[key] = value
        for added_key, added_service in additions.get(key, ()):
            services[added_key] = added_service


def init_service_name(service: str) -> str:
    return f"{service}-{INIT_NAME}"


def init_service(key: str, app_port: int | None, settings: InjectSettings) -> dict[str, Any]:
    return {
        "image": settings.image,
        "command": intercept_args(app_port),
        "network_mode": f"service:{key}",
        "user": "0",
        "labels": {INJECTED_ANNOTATION: "true", "SERVICE_IGNORE": "true"},
        "depends_on": [key],
        "restart": DoubleQuotedScalarString("no"),  # quoted: a bare no is false to YAML 1.1 readers
        "read_only": True,
        "cap_drop": ["ALL"],
        "cap_add": ["NET_ADMIN", "NET_RAW"],
    }


def sidecar_service(key: str, service: str, app_port: int | None, settings: InjectSettings) -> dict[str, Any]:
    depends_on: list[str] | dict[str, dict[str, str]] = [key]
    if settings.interception:
        depends_on = {
            key: {"condition": "service_started"},
            init_service_name(key): {"condition": "service_completed_successfully"},
        }
    return {
        "image": settings.image,
        "command": sidecar_args(service, app_port),
        "network_mode": f"service:{key}",
        "environment": {
            "MESH_CONTROL_ADDR": settings.control_for_compose(),
            "MESH_CONTROL_TOKEN": "${MESH_CONTROL_TOKEN:-}",
            "MESH_DATA_DIR": "/tmp",
        },
        "labels": {INJECTED_ANNOTATION: "true", "SERVICE_IGNORE": "true"},  # the registrar skips the sidecar
        "depends_on": depends_on,
        "restart": "unless-stopped",
        "read_only": True,
        "tmpfs": ["/tmp"],
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "healthcheck": {
            "test": ["CMD", *READY_PROBE_COMMAND],
            "interval": "5s",
            "timeout": "3s",
            "retries": 3,
        },
        "deploy": {"resources": {"limits": {"memory": "128M"}, "reservations": {"memory": "48M"}}},
    }


def _labels(value: Any, path: str) -> dict[str, str]:
    """Compose labels come as a mapping or as a list of ``key=value``."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    if isinstance(value, list):
        pairs = (str(item).partition("=") for item in value)
        return {k: v for k, _, v in pairs}
    raise InjectError("expected a mapping or a list of key=value", path)


def _app_port(definition: Mapping[str, Any], path: str) -> int | None:
    """The container side of the first TCP entry of ``ports``, else of ``expose``."""
    for field in ("ports", "expose"):
        entries = definition.get(field) or []
        if not isinstance(entries, list):
            raise InjectError("expected a list", f"{path}.{field}")
        for index, entry in enumerate(entries):
            port, protocol = _container_port(entry, f"{path}.{field}[{index}]")
            if protocol == "tcp":
                return port
    return None


def _container_port(entry: Any, path: str) -> tuple[int, str]:
    if isinstance(entry, Mapping):  # long syntax: {target: 80, published: 8080, protocol: tcp}
        target = entry.get("target")
        if isinstance(target, str) and target.isdigit():
            target = int(target)
        if not isinstance(target, int) or isinstance(target, bool) or not 0 < target < 65536:
            raise InjectError(f"expected target to be a port number, got {target!r}", f"{path}.target")
        return target, str(entry.get("protocol") or "tcp").lower()
    if isinstance(entry, int) and not isinstance(entry, bool):
        entry = str(entry)
    if not isinstance(entry, str):
        raise InjectError(f"expected a port, got {entry!r}", path)
    container_side = entry.rsplit(":", 1)[-1]  # [IP:][HOST:]CONTAINER[/PROTO]
    match = _SHORT_PORT.fullmatch(container_side)
    if match is None or not 0 < int(match["first"]) < 65536:
        raise InjectError(f"expected [IP:][HOST:]CONTAINER[/PROTO], got {entry!r}", path)
    return int(match["first"]), (match["proto"] or "tcp").lower()
