"""/v1/catalog/*: nodes and services across the cluster, not health-filtered."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from aiohttp import web

from discovery.api import decode, params, render
from discovery.api.context import CONTEXT
from discovery.catalog import (
    CATALOG_NODES,
    CATALOG_SERVICES,
    Catalog,
    ChangeSet,
    Topic,
    catalog_node_topic,
    catalog_service_topic,
)
from discovery.models import Node, Service


def meta_matches(node: Node | None, wanted: Mapping[str, str]) -> bool:
    return node is not None and all(node.meta.get(k) == v for k, v in wanted.items())


def tags_match(service: Service, wanted: tuple[str, ...]) -> bool:
    """Every requested tag must be present; comparison is case-insensitive (as Consul)."""
    have = {t.lower() for t in service.tags}
    return all(t.lower() in have for t in wanted)


async def register(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    reg = decode.decode_catalog_register(decode.parse_json(await request.read()), ctx.datacenter)

    def apply(c: Catalog) -> ChangeSet:
        existing = c.node(reg.node.name)
        node = existing if (reg.skip_node_update and existing is not None) else reg.node
        if not node.id and existing is not None:
            node = replace(node, id=existing.id)
        if reg.service is not None:
            return c.register_service(reg.service, reg.checks, node=node)
        return c.register_checks(reg.checks, node=node)

    await ctx.registry.write(apply)
    return web.json_response(True)


async def deregister(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    req = decode.decode_catalog_deregister(decode.parse_json(await request.read()), ctx.datacenter)

    def apply(c: Catalog) -> ChangeSet:
        # Consul's state store treats deleting an absent service or check as done (JSON true);
        # only the agent endpoints answer 404 for unknown IDs.
        if req.service_id:
            if c.service_instance(req.node, req.service_id) is None:
                return ChangeSet()
            return c.deregister_service(req.node, req.service_id)
        if req.check_id:
            if c.check(req.node, req.check_id) is None:
                return ChangeSet()
            return c.deregister_check(req.node, req.check_id)
        return c.deregister_node(req.node)

    await ctx.registry.write(apply)
    return web.json_response(True)


async def datacenters(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    return ctx.json_response(request, None, lambda: [ctx.datacenter])


async def nodes(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    catalog = ctx.registry.catalog
    wanted = params.node_meta(request.query)
    return await ctx.blocking_json(
        request,
        (CATALOG_NODES,),
        lambda: catalog.topic_index((CATALOG_NODES,)),
        lambda: [render.node(n) for n in catalog.nodes() if meta_matches(n, wanted)],
    )


async def services(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    catalog = ctx.registry.catalog
    wanted = params.node_meta(request.query)
    topics: tuple[Topic, ...] = (CATALOG_SERVICES,)
    if wanted:
        # The filtered answer also changes when an instance of an existing name comes or goes on a
        # matching node (CATALOG_SERVICES only moves when the unfiltered name/tag view does), and when
        # node meta changes. A brand-new name moves CATALOG_SERVICES, so the current names suffice.
        topics += (CATALOG_NODES, *(catalog_service_topic(name) for name in catalog.service_names()))

    def build() -> dict[str, list[str]]:
        if not wanted:
            return catalog.service_names()
        out: dict[str, set[str]] = {}
        for node in catalog.nodes():
            if meta_matches(node, wanted):
                for s in catalog.services_on(node.name):
                    out.setdefault(s.name, set()).update(s.tags)
        return {name: sorted(out[name]) for name in sorted(out)}

    return await ctx.blocking_json(request, topics, lambda: catalog.topic_index(topics), build)


async def service(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    catalog = ctx.registry.catalog
    name = request.match_info["service"]
    tags, wanted = params.tags(request.query), params.node_meta(request.query)
    topics = (catalog_service_topic(name),)

    def build() -> list[dict[str, object]]:
        out = []
        for s in catalog.instances(name):
            node = catalog.node(s.node)
            if node is not None and tags_match(s, tags) and meta_matches(node, wanted):
                out.append(render.catalog_service_entry(s, node))
        return out

    return await ctx.blocking_json(request, topics, lambda: catalog.topic_index(topics), build)


async def node(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    catalog = ctx.registry.catalog
    name = request.match_info["node"]
    topics = (catalog_node_topic(name),)

    def build() -> dict[str, object] | None:
        found = catalog.node(name)
        if found is None:
            return None
        return {
            "Node": render.node(found),
            "Services": {s.id: render.agent_service(s, found.datacenter) for s in catalog.services_on(name)},
        }

    return await ctx.blocking_json(request, topics, lambda: catalog.topic_index(topics), build)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_put("/v1/catalog/register", register)
    r.add_put("/v1/catalog/deregister", deregister)
    r.add_get("/v1/catalog/datacenters", datacenters)
    r.add_get("/v1/catalog/nodes", nodes)
    r.add_get("/v1/catalog/services", services)
    r.add_get("/v1/catalog/service/{service}", service)
    r.add_get("/v1/catalog/node/{node}", node)
