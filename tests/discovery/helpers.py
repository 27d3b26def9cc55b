"""Shared helpers for the HTTP API tests: small wrappers over real requests to a running registry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from prometheus_client import REGISTRY

from discovery.server import RegistryServer

T = TypeVar("T")

AGENT_SERVICE_FIELDS = {
    "ID",
    "Service",
    "Tags",
    "Meta",
    "Port",
    "Address",
    "TaggedAddresses",
    "Weights",
    "EnableTagOverride",
    "Datacenter",
}
HEALTH_CHECK_FIELDS = {
    "Node",
    "CheckID",
    "Name",
    "Status",
    "Notes",
    "Output",
    "ServiceID",
    "ServiceName",
    "ServiceTags",
    "Type",
    "Interval",
    "Timeout",
    "Definition",
    "CreateIndex",
    "ModifyIndex",
}
NODE_FIELDS = {"ID", "Node", "Address", "Datacenter", "TaggedAddresses", "Meta", "CreateIndex", "ModifyIndex"}
CATALOG_SERVICE_FIELDS = {
    "ID",
    "Node",
    "Address",
    "Datacenter",
    "TaggedAddresses",
    "NodeMeta",
    "ServiceKind",
    "ServiceID",
    "ServiceName",
    "ServiceTags",
    "ServiceAddress",
    "ServicePort",
    "ServiceMeta",
    "ServiceTaggedAddresses",
    "ServiceWeights",
    "ServiceEnableTagOverride",
    "CreateIndex",
    "ModifyIndex",
}
KV_PAIR_FIELDS = {"Key", "Value", "Flags", "CreateIndex", "ModifyIndex", "LockIndex"}


@dataclass
class Reply:
    """A read-back HTTP response: status, headers, raw body and (when JSON) the parsed body."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    json: Any = None

    @property
    def text(self) -> str:
        return self.body.decode()

    @property
    def index(self) -> int:
        return int(self.headers["X-Consul-Index"])


async def call(
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    *,
    body: Any = None,
    data: bytes | str | None = None,
    params: Any = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """One request; ``body`` is sent as JSON, ``data`` as raw bytes. JSON answers are parsed."""
    kwargs: dict[str, Any] = {"params": params, "headers": headers}
    if body is not None:
        kwargs["json"] = body
    elif data is not None:
        kwargs["data"] = data
    async with http.request(method, path, **kwargs) as response:
        raw = await response.read()
        parsed = None
        if response.content_type == "application/json" and raw:
            parsed = await response.json()
        return Reply(response.status, response.headers, raw, parsed)


async def get(http: aiohttp.ClientSession, path: str, params: Any = None, **kwargs: Any) -> Reply:
    return await call(http, "GET", path, params=params, **kwargs)


async def put(http: aiohttp.ClientSession, path: str, body: Any = None, **kwargs: Any) -> Reply:
    return await call(http, "PUT", path, body=body, **kwargs)


async def ok_json(http: aiohttp.ClientSession, path: str, params: Any = None) -> Any:
    """GET that must answer 200 with JSON; returns the parsed body."""
    reply = await get(http, path, params)
    assert reply.status == 200, (path, reply.status, reply.text)
    return reply.json


async def register_service(http: aiohttp.ClientSession, body: Mapping[str, Any], params: Any = None) -> None:
    reply = await put(http, "/v1/agent/service/register", dict(body), params=params)
    assert reply.status == 200, reply.text
    assert reply.body == b""


async def register_check(http: aiohttp.ClientSession, body: Mapping[str, Any]) -> None:
    reply = await put(http, "/v1/agent/check/register", dict(body))
    assert reply.status == 200, reply.text


async def catalog_register(http: aiohttp.ClientSession, body: Mapping[str, Any]) -> None:
    reply = await put(http, "/v1/catalog/register", dict(body))
    assert reply.status == 200, reply.text
    assert reply.json is True


async def kv_put(http: aiohttp.ClientSession, key: str, value: bytes | str, params: Any = None) -> Any:
    reply = await call(http, "PUT", f"/v1/kv/{key}", data=value, params=params)
    assert reply.status == 200, reply.text
    return reply.json


async def ttl(http: aiohttp.ClientSession, action: str, check_id: str, note: str | None = None) -> Reply:
    params = {"note": note} if note is not None else None
    return await put(http, f"/v1/agent/check/{action}/{check_id}", params=params)


async def agent_check(http: aiohttp.ClientSession, check_id: str) -> dict[str, Any]:
    checks = await ok_json(http, "/v1/agent/checks")
    assert check_id in checks, sorted(checks)
    result: dict[str, Any] = checks[check_id]
    return result


def web_service(service_id: str = "web-1", name: str = "web", **extra: Any) -> dict[str, Any]:
    """An agent service registration body with a TTL check (starts critical)."""
    return {"Name": name, "ID": service_id, "Port": 8080, "Tags": ["v1"], **extra}


def catalog_index(registry: RegistryServer) -> int:
    """The registry's global index: it moves on every write that changed something."""
    return registry.registry.catalog.index


def blocking_in_flight() -> float:
    return REGISTRY.get_sample_value("mesh_registry_blocking_queries") or 0.0


async def wait_blocked(before: float, timeout: float = 2.0) -> None:
    """Wait until one more blocking query than ``before`` is parked (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while blocking_in_flight() <= before:
        assert time.monotonic() < deadline, "the blocking query never parked"
        await asyncio.sleep(0.01)


async def timed(awaitable: Awaitable[T]) -> tuple[T, float]:
    started = time.monotonic()
    result = await awaitable
    return result, time.monotonic() - started


async def blocked_then(query: Awaitable[T], write: Callable[[], Awaitable[Any]] | None = None) -> tuple[T, float]:
    """Start a blocking ``query``, wait until it is parked, then ``write()``; return its result and duration."""
    before = blocking_in_flight()
    task = asyncio.ensure_future(timed(query))
    try:
        await wait_blocked(before)
        if write is not None:
            await write()
        return await asyncio.wait_for(task, 15)
    finally:
        task.cancel()
