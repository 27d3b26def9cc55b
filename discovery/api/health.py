"""/v1/health/*: service instances with their checks, and checks by service, node or state."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from discovery.api import params, render
from discovery.api.catalog import meta_matches, tags_match
from discovery.api.context import CONTEXT
from discovery.api.errors import bad_request
from discovery.catalog import CATALOG_NODES, Topic, health_node_topic, health_service_topic, health_state_topic
from discovery.models import PASSING

_STATES = ("any", "passing", "warning", "critical")


async def service(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    catalog = ctx.registry.catalog
    name = request.match_info["service"]
    only_passing = params.parse_bool_param(request.query, "passing")
    tags, wanted = params.tags(request.query), params.node_meta(request.query)
    topics = (health_service_topic(name),)

    def build() -> list[dict[str, Any]]:
        out = []
        for s in catalog.instances(name):
            if not tags_match(s, tags) or not meta_matches(catalog.node(s.node), wanted):
                continue
            entry, status = render.health_entry(catalog, s)
            if not only_passing or status == PASSING:
                out.append(entry)
        return out

    return await ctx.blocking_json(request, topics, lambda: catalog.topic_index(topics), build)


async def checks(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    catalog = ctx.registry.catalog
    name = request.match_info["service"]
    wanted = params.node_meta(request.query)
    topics = (health_service_topic(name),)
    return await ctx.blocking_json(
        request,
        topics,
        lambda: catalog.topic_index(topics),
        lambda: render.checks(
            catalog, [c for c in catalog.checks_of_service(name) if meta_matches(catalog.node(c.node), wanted)]
        ),
    )


async def state(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    catalog = ctx.registry.catalog
    wanted_state = request.match_info["state"]
    if wanted_state not in _STATES:
        raise bad_request(f"Invalid state {wanted_state!r}: expected one of {', '.join(_STATES)}")
    wanted = params.node_meta(request.query)
    topics: tuple[Topic, ...] = (health_state_topic(wanted_state),)
    if wanted:
        topics += (CATALOG_NODES,)  # a node whose meta changes moves its checks in or out of the answer
    return await ctx.blocking_json(
        request,
        topics,
        lambda: catalog.topic_index(topics),
        lambda: render.checks(
            catalog, [c for c in catalog.checks_in_state(wanted_state) if meta_matches(catalog.node(c.node), wanted)]
        ),
    )


async def node(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    catalog = ctx.registry.catalog
    name = request.match_info["node"]
    topics = (health_node_topic(name),)
    return await ctx.blocking_json(
        request, topics, lambda: catalog.topic_index(topics), lambda: render.checks(catalog, catalog.checks_on(name))
    )


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1/health/service/{service}", service)
    r.add_get("/v1/health/checks/{service}", checks)
    r.add_get("/v1/health/state/{state}", state)
    r.add_get("/v1/health/node/{node}", node)
