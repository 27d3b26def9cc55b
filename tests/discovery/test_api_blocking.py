"""Blocking queries (?index&wait): immediate when behind, prompt on a relevant write, silent on others."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from tests.discovery.helpers import (
    Reply,
    blocked_then,
    blocking_in_flight,
    catalog_register,
    get,
    kv_put,
    put,
    register_service,
    timed,
    ttl,
    wait_blocked,
    web_service,
)

LONG_WAIT = "5s"  # a wake must come well before this
SHORT_WAIT = "400ms"  # an unrelated write must not cut this short
Write = Callable[[], Awaitable[Any]]


async def current(http: aiohttp.ClientSession, path: str, params: Any = None) -> int:
    reply = await get(http, path, params)
    assert reply.status in (200, 404), reply.text
    return reply.index


async def assert_wakes(http: aiohttp.ClientSession, path: str, write: Write, params: Any = None) -> Reply:
    """Block on ``path`` at its current index; ``write`` must wake it promptly with a higher index."""
    index = await current(http, path, params)
    query = get(http, path, {**(params or {}), "index": str(index), "wait": LONG_WAIT})
    reply, elapsed = await blocked_then(query, write)
    assert elapsed < 1.5, f"{path} took {elapsed:.2f}s to see a relevant write"
    assert reply.index > index
    return reply


async def assert_sleeps_through(http: aiohttp.ClientSession, path: str, write: Write, params: Any = None) -> None:
    """Block on ``path``; ``write`` is unrelated, so the query runs its whole wait and the index holds."""
    index = await current(http, path, params)
    query = get(http, path, {**(params or {}), "index": str(index), "wait": SHORT_WAIT})
    reply, elapsed = await blocked_then(query, write)
    assert elapsed >= 0.39, f"{path} woke after {elapsed:.2f}s for an unrelated write"
    assert elapsed < 3.0
    assert reply.status in (200, 404)
    assert reply.index == index


def agent_register(http: aiohttp.ClientSession, body: dict[str, Any]) -> Write:
    return lambda: register_service(http, body)


def put_key(http: aiohttp.ClientSession, key: str, value: bytes = b"v") -> Write:
    return lambda: kv_put(http, key, value)


# --- returns at once ---


@pytest.mark.parametrize(
    "path",
    ["/v1/catalog/service/web", "/v1/health/service/web", "/v1/catalog/services", "/v1/catalog/nodes"],
)
async def test_index_behind_returns_at_once(http: aiohttp.ClientSession, path: str) -> None:
    await register_service(http, web_service())
    index = await current(http, path)
    assert index > 1
    reply, elapsed = await timed(get(http, path, {"index": str(index - 1), "wait": LONG_WAIT}))
    assert elapsed < 1.5
    assert reply.index == index


async def test_kv_index_behind_returns_at_once(http: aiohttp.ClientSession) -> None:
    await kv_put(http, "a/k", b"1")
    await kv_put(http, "a/k", b"2")
    index = await current(http, "/v1/kv/a/k")
    for params in ({}, {"recurse": ""}):
        reply, elapsed = await timed(get(http, "/v1/kv/a/k", {**params, "index": str(index - 1), "wait": "5s"}))
        assert elapsed < 1.5
        assert reply.index == index


async def test_wait_without_index_returns_at_once(http: aiohttp.ClientSession) -> None:
    _, elapsed = await timed(get(http, "/v1/catalog/services", {"wait": LONG_WAIT}))
    assert elapsed < 1.5


async def test_index_ahead_blocks_until_wait(http: aiohttp.ClientSession) -> None:
    index = await current(http, "/v1/catalog/services")
    reply, elapsed = await timed(get(http, "/v1/catalog/services", {"index": str(index + 1000), "wait": "300ms"}))
    assert 0.29 <= elapsed < 3.0
    assert reply.status == 200
    assert reply.index == index


# --- relevant writes wake, others do not ---


async def test_catalog_service_wakes_on_its_service(http: aiohttp.ClientSession) -> None:
    reply = await assert_wakes(http, "/v1/catalog/service/web", agent_register(http, web_service()))
    assert [e["ServiceID"] for e in reply.json] == ["web-1"]


async def test_catalog_service_ignores_other_services(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service())
    await assert_sleeps_through(http, "/v1/catalog/service/web", agent_register(http, web_service("api", "api")))


async def test_health_service_wakes_on_check_status(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service(Check={"TTL": "30s"}))
    reply = await assert_wakes(http, "/v1/health/service/web", lambda: ttl(http, "pass", "service:web-1"))
    [entry] = reply.json
    assert {c["CheckID"]: c["Status"] for c in entry["Checks"]}["service:web-1"] == "passing"


async def test_health_service_passing_wakes_when_instance_turns_healthy(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service(Check={"TTL": "30s"}))
    reply = await assert_wakes(
        http, "/v1/health/service/web", lambda: ttl(http, "pass", "service:web-1"), {"passing": "1"}
    )
    assert [e["Service"]["ID"] for e in reply.json] == ["web-1"]


async def test_health_service_ignores_other_services(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service(Check={"TTL": "30s"}))
    await register_service(http, web_service("api", "api", Check={"TTL": "30s"}))
    await assert_sleeps_through(http, "/v1/health/service/web", lambda: ttl(http, "pass", "service:api"))


async def test_catalog_services_wakes_on_new_name(http: aiohttp.ClientSession) -> None:
    reply = await assert_wakes(http, "/v1/catalog/services", agent_register(http, web_service()))
    assert reply.json == {"web": ["v1"]}


async def test_catalog_services_ignores_kv_writes(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service())
    await assert_sleeps_through(http, "/v1/catalog/services", put_key(http, "unrelated"))


async def test_kv_get_wakes_on_its_key(http: aiohttp.ClientSession) -> None:
    await kv_put(http, "cfg/a", b"1")
    reply = await assert_wakes(http, "/v1/kv/cfg/a", put_key(http, "cfg/a", b"2"))
    assert reply.json[0]["Value"] == "Mg=="


async def test_kv_get_wakes_when_missing_key_appears(http: aiohttp.ClientSession) -> None:
    reply = await assert_wakes(http, "/v1/kv/cfg/new", put_key(http, "cfg/new"))
    assert reply.status == 200


async def test_kv_get_ignores_other_keys(http: aiohttp.ClientSession) -> None:
    await kv_put(http, "cfg/a", b"1")
    await assert_sleeps_through(http, "/v1/kv/cfg/a", put_key(http, "cfg/b"))


async def test_kv_recurse_wakes_on_write_under_prefix(http: aiohttp.ClientSession) -> None:
    await kv_put(http, "cfg/a", b"1")
    reply = await assert_wakes(http, "/v1/kv/cfg/", put_key(http, "cfg/deep/b"), {"recurse": ""})
    assert [p["Key"] for p in reply.json] == ["cfg/a", "cfg/deep/b"]


async def test_kv_recurse_wakes_on_delete_under_prefix(http: aiohttp.ClientSession) -> None:
    await kv_put(http, "cfg/a", b"1")
    await kv_put(http, "cfg/b", b"1")

    async def delete() -> None:
        async with http.delete("/v1/kv/cfg/a") as response:
            assert response.status == 200

    reply = await assert_wakes(http, "/v1/kv/cfg/", delete, {"recurse": ""})
    assert [p["Key"] for p in reply.json] == ["cfg/b"]


async def test_kv_recurse_ignores_other_prefixes(http: aiohttp.ClientSession) -> None:
    await kv_put(http, "cfg/a", b"1")
    await assert_sleeps_through(http, "/v1/kv/cfg/", put_key(http, "other/a"), {"recurse": ""})
    await assert_sleeps_through(http, "/v1/kv/cfg/", put_key(http, "cfgx"), {"recurse": ""})


async def test_identical_reregister_does_not_wake(http: aiohttp.ClientSession) -> None:
    body = web_service(Meta={"a": "b"}, Check={"TTL": "30s"})
    await register_service(http, body)
    await ttl(http, "pass", "service:web-1")
    for path in ("/v1/catalog/service/web", "/v1/health/service/web", "/v1/catalog/services"):
        await assert_sleeps_through(http, path, agent_register(http, body))


async def test_identical_catalog_register_does_not_bump_index(http: aiohttp.ClientSession) -> None:
    body = {"Node": "n2", "Address": "10.0.0.2", "Service": {"Service": "db", "Port": 5432}}
    await catalog_register(http, body)
    index = await current(http, "/v1/catalog/service/db")
    await catalog_register(http, body)
    assert await current(http, "/v1/catalog/service/db") == index
    assert await current(http, "/v1/catalog/nodes") <= index


async def test_index_is_monotonic(http: aiohttp.ClientSession) -> None:
    seen = [await current(http, "/v1/catalog/service/web")]
    for port in (1, 2, 3):
        await register_service(http, web_service(Port=port))
        seen.append(await current(http, "/v1/catalog/service/web"))
    assert seen == sorted(seen)
    assert len(set(seen)) == len(seen)


async def test_concurrent_waiters_all_wake(http: aiohttp.ClientSession) -> None:
    index = await current(http, "/v1/catalog/service/web")
    params = {"index": str(index), "wait": LONG_WAIT}

    async def both() -> list[Reply]:
        return list(await asyncio.gather(*(get(http, "/v1/catalog/service/web", params) for _ in range(2))))

    replies, elapsed = await blocked_then(both(), agent_register(http, web_service()))
    assert elapsed < 1.5
    assert [r.index > index for r in replies] == [True, True]
    assert replies[0].json == replies[1].json


# --- parameters and headers ---


@pytest.mark.parametrize("wait", ["10x", "abc", "-5s"])
async def test_bad_wait_is_400(http: aiohttp.ClientSession, wait: str) -> None:
    reply = await get(http, "/v1/catalog/services", {"index": "1", "wait": wait})
    assert reply.status == 400
    assert "wait" in reply.text


@pytest.mark.parametrize("index", ["abc", "-1", "1.5", str(2**64)])
async def test_bad_index_is_400(http: aiohttp.ClientSession, index: str) -> None:
    for path in ("/v1/catalog/services", "/v1/health/service/web", "/v1/kv/k"):
        reply = await get(http, path, {"index": index})
        assert reply.status == 400, path
        assert "index" in reply.text


async def test_blocking_reply_headers(http: aiohttp.ClientSession) -> None:
    index = await current(http, "/v1/catalog/services")
    reply = await get(http, "/v1/catalog/services", {"index": str(index), "wait": "50ms"})
    assert reply.headers["X-Consul-KnownLeader"] == "true"
    assert reply.headers["X-Consul-LastContact"] == "0"
    assert int(reply.headers["X-Consul-Index"]) >= 1


@pytest.mark.parametrize("path", ["/v1/catalog/services", "/v1/health/service/web", "/v1/kv/missing"])
async def test_stale_with_consistent_is_400_without_blocking(http: aiohttp.ClientSession, path: str) -> None:
    index = await current(http, path)
    reply, elapsed = await timed(
        get(http, path, {"stale": "", "consistent": "", "index": str(index), "wait": LONG_WAIT})
    )
    assert reply.status == 400
    assert "stale" in reply.text
    assert elapsed < 1.5


@pytest.mark.parametrize("mode", ["stale", "consistent", "leader"])
async def test_consistency_modes_are_accepted(http: aiohttp.ClientSession, mode: str) -> None:
    reply = await get(http, "/v1/catalog/services", {mode: ""})
    assert reply.status == 200
    assert reply.headers["X-Consul-Effective-Consistency"] == ("leader" if mode == "leader" else mode)


# --- which writes count as relevant, per endpoint ---


async def test_health_service_wakes_on_node_check(http: aiohttp.ClientSession) -> None:
    """Node checks are part of every instance's health on that node."""
    await register_service(http, web_service())
    await put(http, "/v1/agent/check/register", {"Name": "node-load", "TTL": "30s"})
    reply = await assert_wakes(http, "/v1/health/service/web", lambda: ttl(http, "pass", "node-load"))
    [entry] = reply.json
    assert {c["CheckID"]: c["Status"] for c in entry["Checks"]}["node-load"] == "passing"


async def test_catalog_service_ignores_check_status(http: aiohttp.ClientSession) -> None:
    """Catalog reads are not health-filtered: a check status change leaves them (and their index) alone."""
    await register_service(http, web_service(Check={"TTL": "30s"}))
    await assert_sleeps_through(http, "/v1/catalog/service/web", lambda: ttl(http, "pass", "service:web-1"))


async def test_catalog_service_wakes_on_node_address_change(http: aiohttp.ClientSession) -> None:
    body = {"Node": "n2", "Address": "10.0.0.2", "Service": {"Service": "db"}}
    await catalog_register(http, body)
    reply = await assert_wakes(
        http, "/v1/catalog/service/db", lambda: catalog_register(http, {**body, "Address": "10.0.0.3"})
    )
    assert [e["Address"] for e in reply.json] == ["10.0.0.3"]


async def test_catalog_node_wakes_on_its_services(http: aiohttp.ClientSession) -> None:
    reply = await assert_wakes(http, "/v1/catalog/node/node1", agent_register(http, web_service()))
    assert list(reply.json["Services"]) == ["web-1"]


async def test_health_state_wakes_on_transition(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service(Check={"TTL": "30s"}))
    reply = await assert_wakes(http, "/v1/health/state/critical", lambda: ttl(http, "pass", "service:web-1"))
    assert reply.json == []
    reply = await assert_wakes(http, "/v1/health/state/warning", lambda: ttl(http, "warn", "service:web-1"))
    assert [c["CheckID"] for c in reply.json] == ["service:web-1"]


async def test_health_node_wakes_on_its_checks(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service(Check={"TTL": "30s"}))
    reply = await assert_wakes(http, "/v1/health/node/node1", lambda: ttl(http, "warn", "service:web-1"))
    assert {c["CheckID"]: c["Status"] for c in reply.json}["service:web-1"] == "warning"


async def test_same_ttl_status_and_note_does_not_wake(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service(Check={"TTL": "30s"}))
    await ttl(http, "pass", "service:web-1", note="ok")
    await assert_sleeps_through(http, "/v1/health/service/web", lambda: ttl(http, "pass", "service:web-1", note="ok"))


async def test_client_hanging_up_frees_the_blocking_query(http: aiohttp.ClientSession) -> None:
    index = await current(http, "/v1/catalog/services")
    before = blocking_in_flight()
    task = asyncio.ensure_future(get(http, "/v1/catalog/services", {"index": str(index), "wait": "30s"}))
    await wait_blocked(before)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = asyncio.get_running_loop().time() + 2.0
    while blocking_in_flight() > before:
        assert asyncio.get_running_loop().time() < deadline, "the server kept waiting for a gone client"
        await asyncio.sleep(0.02)
