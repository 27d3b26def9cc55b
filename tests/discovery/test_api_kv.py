"""/v1/kv/*: raw bytes in, base64 KVPairs out; recurse, keys, flags, CAS, deletes and size limits."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
import pytest

from tests.discovery.helpers import KV_PAIR_FIELDS, Reply, call, get, kv_put, ok_json

MAX_VALUE = 512 * 1024


async def kv_get(http: aiohttp.ClientSession, key: str, params: Any = None) -> Reply:
    return await get(http, f"/v1/kv/{key}", params)


async def kv_pair(http: aiohttp.ClientSession, key: str) -> dict[str, Any]:
    [pair] = await ok_json(http, f"/v1/kv/{key}")
    assert isinstance(pair, dict)
    return pair


async def kv_delete(http: aiohttp.ClientSession, key: str, params: Any = None) -> Any:
    reply = await call(http, "DELETE", f"/v1/kv/{key}", params=params)
    assert reply.status == 200, reply.text
    return reply.json


async def fill(http: aiohttp.ClientSession, *keys: str) -> None:
    for key in keys:
        assert await kv_put(http, key, key.encode()) is True


def value_of(pair: dict[str, Any]) -> bytes | None:
    return None if pair["Value"] is None else base64.b64decode(pair["Value"])


async def test_put_then_get_returns_base64_pair(http: aiohttp.ClientSession) -> None:
    assert await kv_put(http, "app/config", b"hello") is True
    reply = await kv_get(http, "app/config")
    assert reply.status == 200
    [pair] = reply.json
    assert set(pair) >= KV_PAIR_FIELDS
    assert pair["Key"] == "app/config"
    assert pair["Value"] == base64.b64encode(b"hello").decode()
    assert pair["Flags"] == 0
    assert pair["LockIndex"] == 0
    assert "Session" not in pair
    assert pair["CreateIndex"] == pair["ModifyIndex"]
    assert reply.index == pair["ModifyIndex"]


async def test_update_keeps_create_index(http: aiohttp.ClientSession) -> None:
    await kv_put(http, "k", b"1")
    first = await kv_pair(http, "k")
    await kv_put(http, "k", b"2")
    second = await kv_pair(http, "k")
    assert second["CreateIndex"] == first["CreateIndex"]
    assert second["ModifyIndex"] > first["ModifyIndex"]
    assert value_of(second) == b"2"


async def test_empty_value_is_null(http: aiohttp.ClientSession) -> None:
    await kv_put(http, "empty", b"")
    assert (await kv_pair(http, "empty"))["Value"] is None


async def test_binary_value_round_trips(http: aiohttp.ClientSession) -> None:
    data = bytes(range(256))
    await kv_put(http, "bin", data)
    assert value_of(await kv_pair(http, "bin")) == data
    raw = await kv_get(http, "bin", {"raw": ""})
    assert raw.status == 200
    assert raw.body == data


async def test_raw_returns_bare_value(http: aiohttp.ClientSession) -> None:
    await kv_put(http, "motd", b"hi there")
    reply = await kv_get(http, "motd", {"raw": "1"})
    assert reply.status == 200
    assert reply.body == b"hi there"
    assert reply.headers["Content-Type"].startswith("text/plain")
    assert reply.index >= 1


async def test_key_with_space_and_unicode(http: aiohttp.ClientSession) -> None:
    await kv_put(http, "dir/a b/é", b"x")
    assert (await kv_pair(http, "dir/a b/é"))["Key"] == "dir/a b/é"


async def test_recurse_lists_pairs_under_prefix(http: aiohttp.ClientSession) -> None:
    await fill(http, "app/b", "app/a", "app/sub/c", "apple", "other")
    reply = await kv_get(http, "app/", {"recurse": ""})
    assert reply.status == 200
    assert [p["Key"] for p in reply.json] == ["app/a", "app/b", "app/sub/c"]
    assert [value_of(p) for p in reply.json] == [b"app/a", b"app/b", b"app/sub/c"]
    assert reply.index == max(p["ModifyIndex"] for p in reply.json)


async def test_recurse_from_root(http: aiohttp.ClientSession) -> None:
    await fill(http, "b", "a/x")
    assert [p["Key"] for p in await ok_json(http, "/v1/kv/", {"recurse": "1"})] == ["a/x", "b"]


async def test_keys_lists_keys_only(http: aiohttp.ClientSession) -> None:
    await fill(http, "app/b", "app/a", "app/sub/c", "other")
    assert await ok_json(http, "/v1/kv/app/", {"keys": "True"}) == ["app/a", "app/b", "app/sub/c"]


async def test_keys_with_separator_rolls_up(http: aiohttp.ClientSession) -> None:
    await fill(http, "app/b", "app/a", "app/sub/c", "app/sub/d", "app/sub2/e")
    assert await ok_json(http, "/v1/kv/app/", {"keys": "", "separator": "/"}) == [
        "app/a",
        "app/b",
        "app/sub/",
        "app/sub2/",
    ]


async def test_flags_are_stored_and_reset_when_omitted(http: aiohttp.ClientSession) -> None:
    await kv_put(http, "f", b"v", {"flags": "42"})
    assert (await kv_pair(http, "f"))["Flags"] == 42
    await kv_put(http, "f", b"v", {"flags": str(2**64 - 1)})
    assert (await kv_pair(http, "f"))["Flags"] == 2**64 - 1
    await kv_put(http, "f", b"v")
    assert (await kv_pair(http, "f"))["Flags"] == 0


@pytest.mark.parametrize("flags", ["-1", "x", str(2**64)])
async def test_bad_flags_is_400(http: aiohttp.ClientSession, flags: str) -> None:
    reply = await call(http, "PUT", "/v1/kv/f", data=b"v", params={"flags": flags})
    assert reply.status == 400
    assert "flags" in reply.text
    assert (await kv_get(http, "f")).status == 404


async def test_cas_zero_only_creates(http: aiohttp.ClientSession) -> None:
    assert await kv_put(http, "lock", b"first", {"cas": "0"}) is True
    assert await kv_put(http, "lock", b"second", {"cas": "0"}) is False
    assert value_of(await kv_pair(http, "lock")) == b"first"


async def test_cas_index_must_match_modify_index(http: aiohttp.ClientSession) -> None:
    await kv_put(http, "k", b"1")
    index = (await kv_pair(http, "k"))["ModifyIndex"]
    assert await kv_put(http, "k", b"2", {"cas": str(index)}) is True
    assert await kv_put(http, "k", b"3", {"cas": str(index)}) is False
    assert value_of(await kv_pair(http, "k")) == b"2"


async def test_delete(http: aiohttp.ClientSession) -> None:
    await kv_put(http, "k", b"1")
    assert await kv_delete(http, "k") is True
    assert (await kv_get(http, "k")).status == 404
    assert await kv_delete(http, "k") is True  # absent keys delete fine


async def test_delete_recurse_removes_prefix_only(http: aiohttp.ClientSession) -> None:
    await fill(http, "app/a", "app/sub/b", "apple", "other")
    assert await kv_delete(http, "app/", {"recurse": ""}) is True
    assert await ok_json(http, "/v1/kv/", {"keys": ""}) == ["apple", "other"]


async def test_delete_cas(http: aiohttp.ClientSession) -> None:
    await kv_put(http, "k", b"1")
    index = (await kv_pair(http, "k"))["ModifyIndex"]
    assert await kv_delete(http, "k", {"cas": "0"}) is False
    assert await kv_delete(http, "k", {"cas": str(index + 100)}) is False
    assert (await kv_get(http, "k")).status == 200
    assert await kv_delete(http, "k", {"cas": str(index)}) is True
    assert (await kv_get(http, "k")).status == 404


@pytest.mark.parametrize("params", [None, {"recurse": ""}, {"keys": ""}, {"raw": ""}])
async def test_missing_key_is_404_with_index(http: aiohttp.ClientSession, params: Any) -> None:
    reply = await kv_get(http, "nothing/here", params)
    assert reply.status == 404
    assert reply.body == b""
    assert reply.index >= 1


async def test_empty_key_put_is_400(http: aiohttp.ClientSession) -> None:
    reply = await call(http, "PUT", "/v1/kv/", data=b"v")
    assert reply.status == 400
    assert reply.text == "Missing key name"


async def test_empty_key_get_without_recurse_is_400(http: aiohttp.ClientSession) -> None:
    assert (await kv_get(http, "")).status == 400


async def test_value_of_exactly_512_kib_is_accepted(http: aiohttp.ClientSession) -> None:
    data = b"x" * MAX_VALUE
    assert await kv_put(http, "big", data) is True
    assert (await kv_get(http, "big", {"raw": ""})).body == data


async def test_value_over_512_kib_is_413(http: aiohttp.ClientSession) -> None:
    reply = await call(http, "PUT", "/v1/kv/big", data=b"x" * (MAX_VALUE + 1))
    assert reply.status == 413
    assert "512" in reply.text or str(MAX_VALUE) in reply.text
    assert (await kv_get(http, "big")).status == 404


async def test_sessions_are_refused(http: aiohttp.ClientSession) -> None:
    reply = await call(http, "PUT", "/v1/kv/k", data=b"v", params={"acquire": "abc"})
    assert reply.status == 400
    assert "acquire" in reply.text


async def test_delete_without_key_needs_recurse(http: aiohttp.ClientSession) -> None:
    await kv_put(http, "k", b"v")
    reply = await call(http, "DELETE", "/v1/kv/")
    assert (reply.status, reply.text) == (400, "Missing key name")
    assert (await kv_get(http, "k")).status == 200
    assert await kv_delete(http, "", {"recurse": ""}) is True
    assert (await kv_get(http, "k")).status == 404
