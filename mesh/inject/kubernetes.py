"""Sidecar injection into one Kubernetes object (Deployment, StatefulSet, DaemonSet, ReplicaSet, Pod).

Istio's rules where they apply: the pod template's annotation ``sidecar.mesh.io/inject: "false"``
(or the workload's) opts out, ``hostNetwork`` pods are left alone, and an injected pod is marked
``mesh.io/injected: "true"``; a pod that has the annotation or a ``mesh-sidecar`` container is
never injected again. Other kinds pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from mesh.inject.settings import (
    DATA_DIR,
    INBOUND_PORT,
    INIT_NAME,
    INJECTED_ANNOTATION,
    NAME_LABELS,
    OPT_OUT_ANNOTATION,
    READY_PROBE_COMMAND,
    SIDECAR_NAME,
    SIDECAR_UID,
    Change,
    InjectError,
    InjectSettings,
    Outcome,
    intercept_args,
    sidecar_args,
)

TEMPLATED_KINDS: Final = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"})
DATA_VOLUME: Final = "mesh-sidecar-data"


def is_kubernetes(document: Any) -> bool:
    return isinstance(document, Mapping) and "kind" in document and "apiVersion" in document


def inject_object(document: Mapping[str, Any], settings: InjectSettings, where: str = "") -> Outcome:
    """Inject one object; ``where`` prefixes error paths (e.g. ``document 2``).

    Every decision is taken before anything is written: an object left alone is untouched, an injected
    one is changed in place (so a round-trip loader's comments, anchors and styles survive) and returned.
    """
    kind = document.get("kind")
    if kind not in TEMPLATED_KINDS and kind != "Pod":
        return Outcome(None)
    metadata = _mapping(document.get("metadata"), _join(where, "metadata"))
    name = str(metadata.get("name") or "")
    label = f"{kind}/{name or '<unnamed>'}"
    result: Any = document
    if kind == "Pod":
        pod_meta_path, pod_spec_path = "metadata", "spec"
        pod = result
    else:
        spec = _mapping(result.get("spec"), _join(where, "spec"))
        pod = _mapping(spec.get("template"), _join(where, "spec.template"))
        pod_meta_path, pod_spec_path = "spec.template.metadata", "spec.template.spec"
    pod_meta = _mapping(pod.get("metadata"), _join(where, pod_meta_path))
    pod_spec = _mapping(pod.get("spec"), _join(where, pod_spec_path))
    annotations = _mapping(pod_meta.get("annotations"), _join(where, f"{pod_meta_path}.annotations"))
    workload_annotations = _mapping(metadata.get("annotations"), _join(where, "metadata.annotations"))
    containers = pod_spec.get("containers")
    if not isinstance(containers, list) or not containers:
        raise InjectError("expected a non-empty list of containers", _join(where, f"{pod_spec_path}.containers"))

    opted_out = {str(annotations.get(OPT_OUT_ANNOTATION, "")), str(workload_annotations.get(OPT_OUT_ANNOTATION, ""))}
    if opted_out & {"false", "False", "no", "off"}:
        return Outcome(None, (Change(label, "skip", f'{OPT_OUT_ANNOTATION}: "false"'),))
    if str(annotations.get(INJECTED_ANNOTATION, "")).lower() == "true" or any(
        isinstance(c, Mapping) and c.get("name") == SIDECAR_NAME for c in containers
    ):
        return Outcome(None, (Change(label, "skip", "already injected"),))
    if pod_spec.get("hostNetwork") is True:
        return Outcome(None, (Change(label, "skip", "hostNetwork pod (the sidecar's ports would be the node's)"),))

    service = _service_name(pod_meta, metadata, name)
    if not service:
        raise InjectError("no app or app.kubernetes.io/name label and no name", _join(where, "metadata.name"))
    app_port = _first_container_port(containers, _join(where, f"{pod_spec_path}.containers"))

    containers.append(sidecar_container(service, app_port, settings))
    volumes = pod_spec.setdefault("volumes", [])
    if not isinstance(volumes, list):
        raise InjectError("expected a list", _join(where, f"{pod_spec_path}.volumes"))
    volumes.append({"name": DATA_VOLUME, "emptyDir": {}})
    added = f"container {SIDECAR_NAME}"
    if settings.interception:
        init_containers = pod_spec.setdefault("initContainers", [])
        if not isinstance(init_containers, list):
            raise InjectError("expected a list", _join(where, f"{pod_spec_path}.initContainers"))
        init_containers.append(init_container(app_port, settings))
        added += f" and init container {INIT_NAME}"
    annotations[INJECTED_ANNOTATION] = "true"
    pod_meta["annotations"] = annotations
    pod["metadata"] = pod_meta
    port_note = f"app port {app_port}" if app_port is not None else "no containerPort: outbound only"
    return Outcome(result, (Change(label, "inject", f"add {added} (service {service}, {port_note})"),))


def init_container(app_port: int | None, settings: InjectSettings) -> dict[str, Any]:
    """Istio's init step: root with NET_ADMIN/NET_RAW for iptables, in the pod's network namespace, then gone."""
    return {
        "name": INIT_NAME,
        "image": settings.image,
        "imagePullPolicy": "IfNotPresent",
        "args": intercept_args(app_port),
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": False,
            "runAsUser": 0,
            "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]},
        },
    }


def sidecar_container(service: str, app_port: int | None, settings: InjectSettings) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": SIDECAR_NAME,
        "image": settings.image,
        "imagePullPolicy": "IfNotPresent",
        "args": sidecar_args(service, app_port),
        "env": [
            {"name": "MESH_CONTROL_ADDR", "value": settings.control_for_kubernetes()},
            {
                "name": "MESH_CONTROL_TOKEN",
                "valueFrom": {
                    "secretKeyRef": {"name": settings.control_token_secret, "key": "token", "optional": True}
                },
            },
            {"name": "MESH_DATA_DIR", "value": DATA_DIR},
        ],
    }
    if app_port is not None:
        container["ports"] = [{"name": "mesh-inbound", "containerPort": INBOUND_PORT, "protocol": "TCP"}]
    container.update(
        {
            "readinessProbe": {
                "exec": {"command": list(READY_PROBE_COMMAND)},
                "periodSeconds": 5,
                "timeoutSeconds": 3,
                "failureThreshold": 3,
            },
            "resources": {"requests": {"cpu": "50m", "memory": "48Mi"}, "limits": {"memory": "128Mi"}},
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "runAsNonRoot": True,
                "runAsUser": SIDECAR_UID,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": [{"name": DATA_VOLUME, "mountPath": DATA_DIR}],
        }
    )
    return container


def _service_name(pod_meta: Mapping[str, Any], metadata: Mapping[str, Any], name: str) -> str:
    for labels in (pod_meta.get("labels"), metadata.get("labels")):
        if isinstance(labels, Mapping):
            for key in NAME_LABELS:
                if labels.get(key):
                    return str(labels[key])
    return name


def _first_container_port(containers: list[Any], path: str) -> int | None:
    for index, container in enumerate(containers):
        if not isinstance(container, Mapping):
            raise InjectError("expected a container object", f"{path}[{index}]")
        ports = container.get("ports") or []
        if not isinstance(ports, list):
            raise InjectError("expected a list", f"{path}[{index}].ports")
        for number, port in enumerate(ports):
            value = port.get("containerPort") if isinstance(port, Mapping) else None
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
                raise InjectError(f"expected a port number, got {value!r}", f"{path}[{index}].ports[{number}]")
            if (port.get("protocol") or "TCP") == "TCP":
                return value
    return None


def _mapping(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InjectError(f"expected an object, got {type(value).__name__}", path)
    return value


def _join(where: str, path: str) -> str:
    return f"{where}: {path}" if where else path
