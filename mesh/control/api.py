"""The control plane's HTTP API (aiohttp): config CRUD, status, explain, and the sidecar sync protocol.

| method + path | meaning |
|---|---|
| ``PUT /v1/mesh/config[?dry_run=true]`` | apply resources (YAML documents, JSON, ``kind: List``), all or none |
| ``GET /v1/mesh/config[?kind=K&namespace=N]`` | list |
| ``GET|DELETE /v1/mesh/config/{kind}/{namespace}/{name}`` | one resource (``DELETE`` takes ``?resourceVersion=``) |
| ``GET /v1/mesh/status`` | every sidecar (of every replica, with a shared store): versions, last ACK/NACK |
| ``GET /v1/mesh/explain?source=S&host=H&path=P&method=M&headers=k:v,...`` | why a request goes where it goes |
| ``PUT|DELETE /v1/mesh/sidecars/{id}``, ``POST .../demand`` | registration (answers a secret), hosts asked for |
| ``GET /v1/mesh/sync/{id}?version=V&wait=30s``, ``POST .../ack`` | long poll for a new snapshot; ACK/NACK |
| ``POST /v1/mesh/ca/sign``, ``GET /v1/mesh/ca/bundle`` | the mesh CA (``mesh.control.api_ca``), when one is given |
| ``GET /v1/mesh/topology``, ``/v1/mesh/services``, ``/v1/mesh/rules``, ``/ui`` | views (``mesh.control.api_observe``) |
| ``GET /openapi.json``, ``/metrics``, ``/healthz``, ``/readyz`` | description and ops |

Errors are JSON in one place (``error_middleware``): 400 ``{"error", "path"[, "document",
"resource"]}``, 401 ``{"error", "missing"}`` / 403 (credentials, ``mesh.control.auth``), 404, 409
(``resourceVersion``, or a sidecar id held by another live sidecar), 503 when the store fails or
the plane stops.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from discovery.durations import DurationError, parse_duration
from discovery.runtime.http import add_ops_routes
from mesh.control import metrics
from mesh.control.api_ca import CaApiError, add_ca_routes
from mesh.control.auth import (
    AUTH,
    AuthError,
    ControlAuth,
    Refusal,
    auth_error_response,
    auth_middleware,
    presented_secret,
    refuse,
    require_sidecar_secret,
)
from mesh.control.changes import Conflict, NotFound, Plan
from mesh.control.openapi import OPENAPI
from mesh.control.plane import ControlPlane
from mesh.control.sidecars import SidecarRecord, parse_registration, scrapable_admin, version_digest
from mesh.control.store import StoreError
from mesh.control.tokens import new_sidecar_secret, secret_matches
from mesh.model.reader import ConfigError
from mesh.rules.documents import MAX_BODY_BYTES, RuleError, parse_documents
from mesh.rules.fields import check_dns_label
from mesh.rules.resource import DEFAULT_NAMESPACE, ResourceKey, kind_info, known_kinds
from mesh.security.ca import MeshCA

log = logging.getLogger("mesh.control.api")

PLANE: Final = web.AppKey("plane", ControlPlane)
DEFAULT_SYNC_WAIT: Final = 30.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def error_body(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **{k: v for k, v in extra.items() if v is not None}}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a JSON answer here, and nowhere else."""
    try:
        return await handler(request)
    except RuleError as exc:
        metrics.CHANGES.labels(_operation(request), "invalid").inc()
        return error_body(400, exc.message, path=exc.path, document=exc.document, resource=exc.resource or None)
    except ConfigError as exc:
        return error_body(400, exc.message, path=exc.path)
    except Conflict as exc:
        metrics.CHANGES.labels(_operation(request), "conflict").inc()
        return error_body(409, exc.message, path=exc.path, resource=exc.resource, document=exc.document)
    except NotFound as exc:
        return error_body(404, str(exc))
    except ApiError as exc:
        return error_body(exc.status, exc.message, **exc.extra)
    except AuthError as exc:
        return auth_error_response(exc)
    except CaApiError as exc:
        return error_body(exc.status, exc.message, path=exc.path)
    except StoreError as exc:
        log.error("config store failed: %s", exc)
        return error_body(503, f"config store unavailable: {exc}")
    except web.HTTPException as exc:
        if exc.status >= 400:
            return error_body(exc.status, exc.reason)
        raise


def _operation(request: web.Request) -> str:
    return "delete" if request.method == "DELETE" else "apply"


def build_app(plane: ControlPlane, ca: MeshCA | None = None, auth: ControlAuth | None = None) -> web.Application:
    app = web.Application(middlewares=[error_middleware, auth_middleware], client_max_size=MAX_BODY_BYTES)
    app[PLANE] = plane
    app[AUTH] = auth or ControlAuth()
    routes = [
        web.put("/v1/mesh/config", apply_config),
        web.get("/v1/mesh/config", list_config),
        web.get("/v1/mesh/config/{kind}/{namespace}/{name}", get_config),
        web.delete("/v1/mesh/config/{kind}/{namespace}/{name}", delete_config),
        web.get("/v1/mesh/status", status),
        web.get("/v1/mesh/explain", explain),
        web.put("/v1/mesh/sidecars/{id}", register_sidecar),
        web.delete("/v1/mesh/sidecars/{id}", forget_sidecar),
        web.post("/v1/mesh/sidecars/{id}/demand", demand),
        web.get("/v1/mesh/sync/{id}", sync),
        web.post("/v1/mesh/sync/{id}/ack", ack),
        web.get("/openapi.json", openapi),
    ]
    app.add_routes(routes)
    if ca is not None:
        add_ca_routes(app, ca, plane)
    add_ops_routes(app, lambda: plane.ready)
    return app


# === config ===


async def apply_config(request: web.Request) -> web.Response:
    plane = request.app[PLANE]
    dry_run = _flag(request, "dry_run")
    raw = await request.read()
    content_type = request.content_type
    json_body = True if content_type == "application/json" else None
    namespace = request.query.get("namespace") or DEFAULT_NAMESPACE
    check_dns_label(namespace, "namespace", "namespace")
    resources = parse_documents(raw, json_body=json_body, default_namespace=namespace)
    plan = await plane.apply(resources, dry_run=dry_run)
    result = "dry_run" if dry_run else "applied" if plan.changed else "unchanged"
    metrics.CHANGES.labels("apply", result).inc()
    return web.json_response(_plan_json(plan, dry_run))


async def list_config(request: web.Request) -> web.Response:
    plane = request.app[PLANE]
    kind = request.query.get("kind")
    if kind is not None:
        kind = _kind(kind)
    namespace = request.query.get("namespace") or None
    state = plane.state
    items = [item.document() for item in state.listing(kind, namespace)]
    return web.json_response({"version": state.version, "items": items})


async def get_config(request: web.Request) -> web.Response:
    plane = request.app[PLANE]
    key = _key(request)
    item = plane.state.get(key)
    if item is None:
        raise NotFound(f"{key} not found")
    return web.json_response(item.document())


async def delete_config(request: web.Request) -> web.Response:
    plane = request.app[PLANE]
    key = _key(request)
    dry_run = _flag(request, "dry_run")
    plan = await plane.delete(key, request.query.get("resourceVersion") or None, dry_run=dry_run)
    metrics.CHANGES.labels("delete", "dry_run" if dry_run else "applied").inc()
    return web.json_response(_plan_json(plan, dry_run))


def _plan_json(plan: Plan, dry_run: bool) -> dict[str, Any]:
    warnings = [
        {"resource": f"{o.key.kind} {o.key.namespace}/{o.key.name}", **w.to_json()}
        for o in plan.outcomes
        for w in o.warnings
    ]
    return {
        "version": plan.version,
        "dry_run": dry_run,
        "changed": plan.changed,
        "resources": [o.to_json() for o in plan.outcomes],
        "warnings": warnings,
    }


def _kind(text: str) -> str:
    info = kind_info(text)
    if info is None:
        raise ApiError(404, f"unknown kind {text!r} (known: {known_kinds()})")
    return info.kind


def _key(request: web.Request) -> ResourceKey:
    info = request.match_info
    return ResourceKey(_kind(info["kind"]), info["namespace"], info["name"])


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name)
    if value is None:
        return False
    lowered = value.lower()
    if lowered in ("", "1", "true", "yes", "all"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise ApiError(400, f"?{name} must be true or false, got {value!r}", path=name)


# === status and explain ===


async def status(request: web.Request) -> web.Response:
    plane = request.app[PLANE]
    plane.update_gauges()
    return web.json_response(await plane.cluster_status())


async def explain(request: web.Request) -> web.Response:
    plane = request.app[PLANE]
    query = request.query
    source = query.get("source", "")
    host = query.get("host", "")
    if not source:
        raise ApiError(400, "source (the calling service) is required", path="source")
    if not host:
        raise ApiError(400, "host (the Host the app calls) is required", path="host")
    path, _, query_string = query.get("path", "/").partition("?")
    if not path.startswith("/"):
        raise ApiError(400, f"path must start with '/', got {path!r}", path="path")
    method = query.get("method", "GET").upper()
    headers: dict[str, str] = {}
    raw_headers = [part for value in query.getall("headers", []) for part in value.split(",") if part.strip()]
    raw_headers += query.getall("header", [])
    for item in raw_headers:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise ApiError(400, f"headers must be name:value pairs, got {item!r}", path="headers")
        headers[name.strip().lower()] = value.strip()
    result = await plane.explain(source, host, method, path, query_string, headers, query.get("namespace", ""))
    return web.json_response(result)


async def openapi(_: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


# === sidecar protocol ===


def _sidecar(request: web.Request) -> SidecarRecord:
    """The registered sidecar the path names, once the caller has shown that sidecar's secret (with a token set)."""
    plane = request.app[PLANE]
    sidecar_id = request.match_info["id"]
    record = plane.pusher.sidecars.get(sidecar_id)
    if record is None:
        raise ApiError(404, f"unknown sidecar {sidecar_id!r}: register it with PUT /v1/mesh/sidecars/{sidecar_id}")
    require_sidecar_secret(request, record.id, record.secret_digest)
    return record


async def _json(request: web.Request) -> Any:
    try:
        return json.loads(await request.read() or b"{}")
    except ValueError as exc:
        raise ApiError(400, f"body is not JSON: {exc}") from exc


async def register_sidecar(request: web.Request) -> web.Response:
    """Register (or re-register) a sidecar. A new registration gets a fresh secret, answered once as
    ``"secret"``; a re-registration showing the current secret keeps it. With a token set, an id whose
    sidecar is still connected cannot be taken over without that secret (409)."""
    plane = request.app[PLANE]
    registration = parse_registration(request.match_info["id"], await _json(request))
    admin = scrapable_admin(registration.admin, request.remote)
    if admin != registration.admin:
        log.warning(
            "not scraping a remote sidecar's loopback admin address (start it with --admin-addr HOST:PORT "
            "--admin-allow-remote for the topology)",
            extra={"sidecar": registration.sidecar_id, "admin": registration.admin, "peer": request.remote},
        )
        registration = dataclasses.replace(registration, admin=admin)
    existing = plane.pusher.sidecars.get(registration.sidecar_id)
    keeps_secret = existing is not None and secret_matches(presented_secret(request), existing.secret_digest)
    if existing is not None and not keeps_secret and request.app[AUTH].enforced and _connected(plane, existing):
        refuse(
            request,
            Refusal(
                409,
                f"sidecar id {existing.id!r} is registered by a connected sidecar: present its secret to re-register, "
                "or use another --sidecar-id",
                "sidecar_taken",
            ),
        )
    record = plane.pusher.register(registration)
    answer: dict[str, str] = {"id": record.id, "version": record.current.version if record.current else ""}
    if not keeps_secret:
        answer["secret"], record.secret_digest = new_sidecar_secret()
    log.info(
        "sidecar registered",
        extra={"sidecar": record.id, "service": registration.service, "namespace": registration.namespace},
    )
    return web.json_response(answer)


def _connected(plane: ControlPlane, record: SidecarRecord) -> bool:
    return record.polls > 0 or time.monotonic() - record.last_seen < plane.settings.connected_within


async def forget_sidecar(request: web.Request) -> web.Response:
    plane = request.app[PLANE]
    record = _sidecar(request)
    if not plane.pusher.forget(record.id):
        raise ApiError(404, f"unknown sidecar {record.id!r}")
    return web.json_response({"forgotten": True})


async def demand(request: web.Request) -> web.Response:
    plane = request.app[PLANE]
    record = _sidecar(request)
    body = await _json(request)
    host = body.get("host") if isinstance(body, dict) else None
    if not isinstance(host, str) or not host:
        raise ApiError(400, "host is required", path="host")
    routed, version = await plane.demand(record, host)
    return web.json_response({"routed": routed, "version": version})


async def sync(request: web.Request) -> web.StreamResponse:
    """Record the ACK (``ack=V``) or NACK (``nack=V&error=...``) the poll carries, as xDS requests
    do; then answer at once when the sidecar's snapshot differs from ``version``, else when it
    changes or ``wait`` runs out (304)."""
    plane = request.app[PLANE]
    record = _sidecar(request)
    query = request.query
    if "ack" in query or "nack" in query:
        _record_report(
            plane, record, query.get("ack") or query.get("nack", ""), query.get("error") if "nack" in query else None
        )
    held = version_digest(query.get("version", ""))
    wait = _wait(request.query.get("wait"), plane.settings.sync_wait_max)
    deadline = time.monotonic() + wait
    record.polls += 1
    try:
        while True:
            if not plane.ready:
                raise ApiError(503, "the control plane is shutting down")
            record.wake.clear()
            current = record.current
            if record.id not in plane.pusher.sidecars:
                raise ApiError(404, f"sidecar {record.id!r} was forgotten: register again")
            if current is not None and current.digest != held:
                record.sent_version = current.version
                metrics.SYNC_RESPONSES.labels("snapshot").inc()
                return web.Response(
                    body=current.body, content_type="application/json", headers={"X-Mesh-Version": current.version}
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                metrics.SYNC_RESPONSES.labels("not_modified").inc()
                return web.Response(status=304)
            try:
                await asyncio.wait_for(record.wake.wait(), remaining)
            except TimeoutError:
                continue
    finally:
        record.polls -= 1
        record.seen(time.monotonic())


async def ack(request: web.Request) -> web.Response:
    plane = request.app[PLANE]
    record = _sidecar(request)
    body = await _json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "body must be {version, error}")
    version = body.get("version")
    error = body.get("error")
    if not isinstance(version, str) or not version:
        raise ApiError(400, "version is required", path="version")
    if error is not None and not isinstance(error, str):
        raise ApiError(400, "error must be a string or null", path="error")
    _record_report(plane, record, version, error)
    return web.Response(status=204)


def _record_report(plane: ControlPlane, record: SidecarRecord, version: str, error: str | None) -> None:
    if not version:
        raise ApiError(400, "the ACK/NACK needs the version it is about", path="version")
    if error is not None and not error:
        error = "rejected"
    plane.pusher.ack(record, version, error)
    metrics.ACKS.labels("nack" if error is not None else "ack").inc()


def _wait(text: str | None, maximum: float) -> float:
    if text is None or text == "":
        return min(DEFAULT_SYNC_WAIT, maximum)
    try:
        seconds = float(text) if text.replace(".", "", 1).isdigit() else parse_duration(text)
    except DurationError as exc:
        raise ApiError(400, f"invalid wait {text!r}: {exc}", path="wait") from exc
    if not math.isfinite(seconds) or seconds < 0:
        raise ApiError(400, f"invalid wait {text!r}", path="wait")
    return min(seconds, maximum)


__all__ = ["PLANE", "build_app", "error_middleware"]
