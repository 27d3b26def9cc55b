"""The rollout routes of the control plane's API (errors go through ``mesh.control.api.error_middleware``).

| method + path | meaning |
|---|---|
| ``POST /v1/mesh/rollouts`` | start a rollout (JSON ``mesh.control.rollout_spec``); 201 with the rollout |
| ``GET /v1/mesh/rollouts[?namespace=N]`` | every rollout, newest state and events |
| ``GET /v1/mesh/rollouts/{name}[?namespace=N]`` | one rollout |
| ``POST /v1/mesh/rollouts/{name}/abort[?namespace=N]`` | all traffic back to stable (body ``{"reason"}`` optional) |

400 names the field at fault, 404 an unknown rollout, 409 a rollout already running for that name
or VirtualService.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from mesh.control.api import ApiError
from mesh.control.plane import ControlPlane
from mesh.control.rollout_controller import NotLeader, RolloutConflict, RolloutController, RolloutNotFound, describe
from mesh.control.rollout_lease import KvLease, Leadership
from mesh.control.rollout_metrics import SidecarMetrics
from mesh.control.rollout_spec import parse_rollout_spec
from mesh.control.rollout_store import ConsulRolloutStore, RolloutStore, SqliteRolloutStore
from mesh.rules.fields import check_dns_label
from mesh.rules.resource import DEFAULT_NAMESPACE

ROLLOUTS: Final = web.AppKey("rollouts", RolloutController)
MAX_BODY = 64 * 1024


async def start_rollouts(plane: ControlPlane, store: str, sqlite_path: Path, consul_prefix: str) -> RolloutController:
    """The controller of ``mesh control``: rollouts kept beside the configuration (``store``: sqlite or
    consul), measured from the sidecars the plane's status lists, unfinished ones resumed."""
    rollouts: RolloutStore
    if store == "consul":
        rollouts = ConsulRolloutStore(plane.client, consul_prefix)
    else:
        rollouts = SqliteRolloutStore(sqlite_path)

    async def sidecars() -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = (await plane.cluster_status())["sidecars"]
        return listed

    leadership: Leadership | None = None
    if store == "consul":  # several replicas may share the store: one runs the rollouts
        leadership = KvLease(plane.client, consul_prefix, lambda: _identity(plane), ttl=plane.settings.status_ttl)
    controller = RolloutController(plane, rollouts, SidecarMetrics(sidecars), leadership=leadership)
    await controller.start()
    return controller


def _identity(plane: ControlPlane) -> tuple[str, str] | None:
    share = plane.share  # set once the server listens, with the replica's name and URL
    return None if share is None else (share.replica, share.url)


def add_rollout_routes(app: web.Application, controller: RolloutController) -> None:
    app[ROLLOUTS] = controller
    app.add_routes(
        [
            web.post("/v1/mesh/rollouts", create_rollout),
            web.get("/v1/mesh/rollouts", list_rollouts),
            web.get("/v1/mesh/rollouts/{name}", get_rollout),
            web.post("/v1/mesh/rollouts/{name}/abort", abort_rollout),
        ]
    )


async def _body(request: web.Request) -> Any:
    if (request.content_length or 0) > MAX_BODY:
        raise ApiError(413, f"the body is larger than {MAX_BODY} bytes")
    raw = await request.read()  # all of it (bounded by the app's client_max_size for chunked bodies)
    if len(raw) > MAX_BODY:
        raise ApiError(413, f"the body is larger than {MAX_BODY} bytes")
    try:
        return json.loads(raw or b"{}")
    except ValueError as exc:
        raise ApiError(400, f"body is not JSON: {exc}") from exc


def _namespace(request: web.Request) -> str:
    namespace = request.query.get("namespace") or DEFAULT_NAMESPACE
    check_dns_label(namespace, "namespace", "namespace")
    return namespace


async def create_rollout(request: web.Request) -> web.Response:
    controller = request.app[ROLLOUTS]
    body = await _body(request)
    if isinstance(body, dict) and not body.get("namespace") and request.query.get("namespace"):
        body["namespace"] = _namespace(request)
    spec = parse_rollout_spec(body)
    try:
        record = await controller.create(spec)
    except RolloutConflict as exc:
        raise ApiError(409, str(exc), path="name") from exc
    except NotLeader as exc:
        raise ApiError(503, str(exc), leader=exc.leader_url or None) from exc
    return web.json_response(describe(record, controller.now()), status=201)


async def list_rollouts(request: web.Request) -> web.Response:
    controller = request.app[ROLLOUTS]
    namespace = request.query.get("namespace") or None
    now = controller.now()
    return web.json_response({"items": [describe(r, now) for r in await controller.list(namespace)]})


async def get_rollout(request: web.Request) -> web.Response:
    controller = request.app[ROLLOUTS]
    try:
        record = await controller.get(_namespace(request), request.match_info["name"])
    except RolloutNotFound as exc:
        raise ApiError(404, str(exc)) from exc
    return web.json_response(describe(record, controller.now()))


async def abort_rollout(request: web.Request) -> web.Response:
    controller = request.app[ROLLOUTS]
    body = await _body(request)
    reason = body.get("reason", "") if isinstance(body, dict) else ""
    if not isinstance(reason, str):
        raise ApiError(400, "reason must be a string", path="reason")
    try:
        record = await controller.abort(_namespace(request), request.match_info["name"], reason)
    except RolloutNotFound as exc:
        raise ApiError(404, str(exc)) from exc
    except NotLeader as exc:
        raise ApiError(503, str(exc), leader=exc.leader_url or None) from exc
    return web.json_response(describe(record, controller.now()))


__all__ = ["ROLLOUTS", "add_rollout_routes", "start_rollouts"]
