"""/v1/status/*: a single-node registry is always its own leader."""

from __future__ import annotations

from aiohttp import web

from discovery.api.context import CONTEXT


def _raft_address(request: web.Request) -> str:
    return f"{request.app[CONTEXT].registry.identity.address}:8300"


async def leader(request: web.Request) -> web.Response:
    return web.json_response(_raft_address(request))


async def peers(request: web.Request) -> web.Response:
    return web.json_response([_raft_address(request)])


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/status/leader", leader)
    app.router.add_get("/v1/status/peers", peers)
