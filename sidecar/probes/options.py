"""`mesh sidecar`'s workload flags (and the ``workload`` section of its ``--config`` file) → ``WorkloadSpec``.

Flags win over the file, field by field. Probes given as flags are Kubernetes probe objects in
YAML or JSON: ``--readiness-probe '{httpGet: {path: /healthz}, periodSeconds: 2}'``.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from mesh.model.probes import ROLE_KEYS, ROLES, WorkloadSpec, check_host_port, parse_probe_text, parse_workload, resolve
from mesh.model.reader import ConfigError, load_text
from sidecar.sources.defaults import DEFAULT_INBOUND_ADDR

_FLAGS = {"readiness": "--readiness-probe", "liveness": "--liveness-probe", "startup": "--startup-probe"}


def workload_from_options(options: Mapping[str, Any], *, app_port: int | None, workers: int = 1) -> WorkloadSpec | None:
    """The workload spec, or None when no workload flag is used; ``ValueError`` names the flag or field."""
    spec = _from_file(options.get("config"))
    changes: dict[str, Any] = {}
    for role in ROLES:
        text = str(options.get(f"{role}_probe") or "").strip()
        if text:
            try:
                changes[role] = parse_probe_text(text, ROLE_KEYS[role], role=role)
            except ConfigError as exc:
                raise ValueError(f"{_FLAGS[role]}: {exc}") from None
    if options.get("register"):
        changes["register"] = True
    service_id = str(options.get("service_id") or "")
    if service_id:
        if any(c.isspace() or c == "/" for c in service_id):
            raise ValueError(f"--service-id: must not contain spaces or '/', got {service_id!r}")
        changes["service_id"] = service_id
    advertise = str(options.get("advertise_addr") or "")
    if advertise:
        try:
            check_host_port(advertise, "--advertise-addr")
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        changes["advertise"] = advertise
    if options.get("shutdown_delay") is not None:
        delay = float(options["shutdown_delay"])
        if not 0 <= delay <= 3600:
            raise ValueError(f"--shutdown-delay: must be between 0 and 3600 seconds, got {delay:g}")
        changes["shutdown_delay"] = delay
    command = tuple(str(part) for part in options.get("app_command") or ())
    if command:
        if shutil.which(command[0]) is None:
            raise ValueError(f"-- CMD: {command[0]!r} is not an executable program (nor found on PATH)")
        changes["command"] = command
    spec = replace(spec, **changes)
    if not spec.active:
        return None
    try:
        spec = resolve(spec, app_port)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    if spec.registers and not spec.advertise:  # registered at the inbound listener, which needs a real port
        if not app_port:
            raise ValueError("--advertise-addr: needed to register a workload that has no --app-port")
        inbound = str(options.get("inbound_addr") or DEFAULT_INBOUND_ADDR)
        if inbound.rpartition(":")[2] in ("", "0"):
            raise ValueError(f"--advertise-addr: needed when --inbound-addr has no fixed port ({inbound})")
    if workers > 1:
        raise ValueError("--workers: probes, --register and a supervised app (-- CMD) need --workers 1")
    return spec


def _from_file(config: object) -> WorkloadSpec:
    if not config:
        return WorkloadSpec()
    path = Path(str(config))
    try:
        data = load_text(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"--config: cannot read {path}: {exc.strerror or exc}") from None
    except ConfigError as exc:
        raise ValueError(f"--config {path}: {exc}") from None
    if not isinstance(data, Mapping) or data.get("workload") is None:
        return WorkloadSpec()
    try:
        return parse_workload(data["workload"])
    except ConfigError as exc:
        raise ValueError(f"--config {path}: {exc}") from None


__all__ = ["workload_from_options"]
