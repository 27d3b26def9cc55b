"""/v1/kv/*: the key/value store (values are raw bytes in, base64 out)."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from discovery.api import params, render
from discovery.api.context import CONTEXT
from discovery.api.errors import ApiError, bad_request
from discovery.catalog import kv_key_topic, kv_prefix_topic

MAX_VALUE_SIZE: Final = 512 * 1024  # Consul's kv_max_value_size


def _key(request: web.Request, *, allow_empty: bool) -> str:
    key = request.match_info["key"]
    if not key and not allow_empty:
        raise bad_request("Missing key name")
    return key


async def get(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    catalog = ctx.registry.catalog
    q = request.query
    keys_only, recurse = params.flag(q, "keys"), params.flag(q, "recurse")
    key = _key(request, allow_empty=keys_only or recurse)
    if keys_only or recurse:
        topics = (kv_prefix_topic(key),)
        index = await ctx.wait_for_change(request, topics, lambda: catalog.kv_prefix_index(key))
        entries = catalog.kv_list(key)
        if not entries:
            return web.Response(status=404, headers=ctx.headers(request, index))
        if keys_only:
            separator = q.get("separator", "")
            return ctx.json_response(request, index, lambda: _rolled_up_keys([e.key for e in entries], key, separator))
        return ctx.json_response(request, index, lambda: [render.kv_pair(e) for e in entries])
    topics = (kv_key_topic(key),)
    index = await ctx.wait_for_change(request, topics, lambda: catalog.kv_key_index(key))
    entry = catalog.kv_get(key)
    if entry is None:
        return web.Response(status=404, headers=ctx.headers(request, index))
    if params.flag(q, "raw"):
        return web.Response(body=entry.value, content_type="text/plain", headers=ctx.headers(request, index))
    return ctx.json_response(request, index, lambda: [render.kv_pair(entry)])


def _rolled_up_keys(keys: list[str], prefix: str, separator: str) -> list[str]:
    """``?keys&separator=/``: list keys up to the first separator after the prefix, once each."""
    if not separator:
        return keys
    out: list[str] = []
    for key in keys:
        cut = key.find(separator, len(prefix))
        rolled = key if cut < 0 else key[: cut + len(separator)]
        if not out or out[-1] != rolled:
            out.append(rolled)
    return out


async def put(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    key = _key(request, allow_empty=False)
    q = request.query
    for unsupported in ("acquire", "release"):
        if unsupported in q:
            raise bad_request(f"?{unsupported} needs sessions, which this registry does not implement")
    flags = params.parse_uint(q["flags"], "flags") if "flags" in q else 0
    cas = params.parse_uint(q["cas"], "cas index") if "cas" in q else None
    if request.content_length is not None and request.content_length > MAX_VALUE_SIZE:
        raise _too_large(request.content_length)
    value = await request.read()
    if len(value) > MAX_VALUE_SIZE:
        raise _too_large(len(value))
    change = await ctx.registry.write(lambda c: c.kv_put(key, value, flags=flags, cas=cas))
    return web.json_response(change.result)


def _too_large(size: int) -> ApiError:
    return ApiError(413, f"Value exceeds {MAX_VALUE_SIZE} byte limit: request body is {size} bytes")


async def delete(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    q = request.query
    recurse = params.flag(q, "recurse")
    key = _key(request, allow_empty=recurse)
    cas = params.parse_uint(q["cas"], "cas index") if "cas" in q else None
    if recurse:
        change = await ctx.registry.write(lambda c: c.kv_delete_tree(key))
    else:
        change = await ctx.registry.write(lambda c: c.kv_delete(key, cas=cas))
    return web.json_response(change.result)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1/kv/{key:.*}", get)
    r.add_put("/v1/kv/{key:.*}", put)
    r.add_delete("/v1/kv/{key:.*}", delete)
