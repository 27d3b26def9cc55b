"""/v1/agent/*: the local agent's services and checks (this registry is its own agent)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any, Final

from aiohttp import web

from discovery.api import decode, render
from discovery.api.context import CONTEXT, ApiContext
from discovery.api.errors import ApiError, not_found
from discovery.api.params import parse_blocking
from discovery.catalog import Catalog, ChangeSet, catalog_node_topic
from discovery.models import CRITICAL, PASSING, SERF_CHECK_ID, WARNING, Check, Service, worst_status

MAX_CHECK_OUTPUT: Final = 4096  # Consul's default check_output_max_size
_TTL_ACTIONS: Final = {"pass": PASSING, "warn": WARNING, "fail": CRITICAL}


def _ctx(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]


def _agent_services(ctx: ApiContext) -> list[Service]:
    return ctx.registry.catalog.services_on(ctx.node_name)


def _agent_checks(ctx: ApiContext) -> list[Check]:
    # The serf check belongs to the cluster, not to the agent's own definitions.
    return [c for c in ctx.registry.catalog.checks_on(ctx.node_name) if c.check_id != SERF_CHECK_ID]


async def register_service(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    req = decode.decode_agent_service(decode.parse_json(await request.read()), ctx.node_name)
    # Consul replaces only for a bare flag or "true" (not "1", not "false").
    replace_checks = request.query.get("replace-existing-checks") in ("", "true")

    def apply(c: Catalog) -> ChangeSet:
        checks = [_restore_state(c, check) for check in req.checks]
        return c.register_service(req.service, checks, replace_existing_checks=replace_checks)

    await ctx.registry.write(apply)
    return web.Response()


def _restore_state(catalog: Catalog, check: Check) -> Check:
    """As Consul's agent: a re-registered check keeps its current Status and Output (so an
    identical re-registration changes nothing and a passing TTL check does not flap to critical)."""
    existing = catalog.check(check.node, check.check_id)
    if existing is None:
        return check
    return replace(check, status=existing.status, output=existing.output)


async def deregister_service(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    service_id = request.match_info["service_id"]
    await ctx.registry.write(lambda c: c.deregister_service(ctx.node_name, service_id))
    return web.Response()


async def list_services(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    return ctx.json_response(
        request, None, lambda: {s.id: render.agent_service(s, ctx.datacenter) for s in _agent_services(ctx)}
    )


def _service_body(ctx: ApiContext, service_id: str) -> tuple[dict[str, Any], str]:
    service = ctx.registry.catalog.service_instance(ctx.node_name, service_id)
    if service is None:
        raise not_found(f"unknown service ID: {service_id}")
    body = render.agent_service(service, ctx.datacenter)
    digest = hashlib.blake2b(json.dumps(body, sort_keys=True).encode(), digest_size=8).hexdigest()
    body["ContentHash"] = digest
    return body, digest


async def get_service(request: web.Request) -> web.Response:
    """Hash-blocking: ``?hash=H&wait=D`` waits until the service's ContentHash differs from H."""
    ctx = _ctx(request)
    service_id = request.match_info["service_id"]
    wait = parse_blocking(request.query).wait  # a bad ?wait is a 400 whether or not we block
    body, digest = _service_body(ctx, service_id)
    wanted = request.query.get("hash", "")
    if wanted and wanted == digest:

        def changed() -> bool:
            nonlocal body, digest
            body, digest = _service_body(ctx, service_id)
            return digest != wanted

        topics = (catalog_node_topic(ctx.node_name),)
        await ctx.wait_until(topics, wait, changed)
    headers = {"X-Consul-ContentHash": digest}
    return web.json_response(body, headers=headers, dumps=lambda v: json.dumps(v, separators=(",", ":")))


async def list_checks(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    catalog = ctx.registry.catalog
    return ctx.json_response(
        request, None, lambda: {c.check_id: render.check(c, catalog.service_tags(c)) for c in _agent_checks(ctx)}
    )


async def register_check(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    check = decode.decode_agent_check(decode.parse_json(await request.read()), ctx.node_name)
    await ctx.registry.write(lambda c: c.register_checks([check]))
    return web.Response()


async def deregister_check(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    check_id = request.match_info["check_id"]
    await ctx.registry.write(lambda c: c.deregister_check(ctx.node_name, check_id))
    return web.Response()


def _ttl_check(ctx: ApiContext, check_id: str) -> Check:
    check = ctx.registry.catalog.check(ctx.node_name, check_id)
    if check is None:
        raise not_found(f'Unknown check ID "{check_id}". Ensure that the check ID is passed, not the check name.')
    if not check.definition.ttl:
        raise ApiError(500, f'CheckID "{check_id}" does not have associated TTL')
    return check


async def _set_ttl_status(ctx: ApiContext, check_id: str, status: str, output: str) -> web.Response:
    _ttl_check(ctx, check_id)
    output = output[:MAX_CHECK_OUTPUT]
    await ctx.registry.write(lambda c: c.update_check(ctx.node_name, check_id, status, output))
    ctx.on_ttl_update(check_id)
    return web.Response()


async def ttl_action(request: web.Request) -> web.Response:
    """PUT /v1/agent/check/{pass,warn,fail}/:check_id?note=..."""
    status = _TTL_ACTIONS[request.match_info["action"]]
    return await _set_ttl_status(_ctx(request), request.match_info["check_id"], status, request.query.get("note", ""))


async def ttl_update(request: web.Request) -> web.Response:
    status, output = decode.decode_check_update(decode.parse_json(await request.read()))
    return await _set_ttl_status(_ctx(request), request.match_info["check_id"], status, output)


async def agent_self(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    identity = ctx.registry.identity
    node = ctx.registry.catalog.node(identity.node_name)
    config = {
        "Datacenter": identity.datacenter,
        "NodeName": identity.node_name,
        "NodeID": node.id if node else "",
        "Server": True,
        "Revision": "pymesh",
        "Version": identity.version,
    }
    member = _member(ctx)
    body = {"Config": config, "Member": member, "Meta": dict(node.meta) if node else {}, "Coord": None}
    return ctx.json_response(request, None, lambda: body)


def _member(ctx: ApiContext) -> dict[str, Any]:
    identity = ctx.registry.identity
    return {
        "Name": identity.node_name,
        "Addr": identity.address,
        "Port": 8301,
        "Tags": {"dc": identity.datacenter, "role": "consul", "build": identity.version},
        "Status": 1,
    }


async def members(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    return ctx.json_response(request, None, lambda: [_member(ctx)])


def _aggregate(catalog: Catalog, services: list[Service]) -> tuple[str, list[dict[str, Any]]]:
    entries, statuses = [], []
    for service in services:
        checks = catalog.health_checks(service)
        status = worst_status(c.status for c in checks)
        statuses.append(status)
        entries.append(
            {
                "AggregatedStatus": status,
                "Service": render.agent_service(service, ""),
                "Checks": [render.check(c, catalog.service_tags(c)) for c in checks],
            }
        )
    return worst_status(statuses), entries


_HEALTH_CODES: Final = {PASSING: 200, WARNING: 429, CRITICAL: 503}


def _health_response(request: web.Request, status: str, body: Any) -> web.Response:
    code = _HEALTH_CODES.get(status, 503)
    if request.query.get("format") == "text":
        return web.Response(status=code, text=status)
    return web.json_response(body, status=code)


async def health_by_name(request: web.Request) -> web.Response:
    """GET /v1/agent/health/service/name/:name: 200 passing, 429 warning, 503 critical, 404 unknown."""
    ctx = _ctx(request)
    name = request.match_info["name"]
    services = [s for s in _agent_services(ctx) if s.name == name]
    if not services:
        return _not_found_text(request, f"ServiceName {name} Not Found")
    status, entries = _aggregate(ctx.registry.catalog, services)
    return _health_response(request, status, entries)


async def health_by_id(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    service_id = request.match_info["service_id"]
    service = ctx.registry.catalog.service_instance(ctx.node_name, service_id)
    if service is None:
        return _not_found_text(request, f"ServiceId {service_id} not found")
    status, entries = _aggregate(ctx.registry.catalog, [service])
    return _health_response(request, status, entries[0])


def _not_found_text(request: web.Request, message: str) -> web.Response:
    if request.query.get("format") == "text":
        return web.Response(status=404, text=message)
    raise not_found(message)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_put("/v1/agent/service/register", register_service)
    r.add_put("/v1/agent/service/deregister/{service_id}", deregister_service)
    r.add_get("/v1/agent/services", list_services)
    r.add_get("/v1/agent/service/{service_id}", get_service)
    r.add_get("/v1/agent/checks", list_checks)
    r.add_put("/v1/agent/check/register", register_check)
    r.add_put("/v1/agent/check/deregister/{check_id}", deregister_check)
    r.add_put("/v1/agent/check/{action:pass|warn|fail}/{check_id}", ttl_action)
    r.add_put("/v1/agent/check/update/{check_id}", ttl_update)
    r.add_get("/v1/agent/self", agent_self)
    r.add_get("/v1/agent/members", members)
    r.add_get("/v1/agent/health/service/name/{name}", health_by_name)
    r.add_get("/v1/agent/health/service/id/{service_id}", health_by_id)
