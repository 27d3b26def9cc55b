"""A registry started with acl_token: every API call needs the token, except status and ops endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from discovery.server import RegistryServer
from tests.discovery.helpers import call, catalog_index

TOKEN = "secret"

READS = [
    "/v1/agent/services",
    "/v1/agent/checks",
    "/v1/agent/self",
    "/v1/catalog/services",
    "/v1/catalog/nodes",
    "/v1/catalog/service/web",
    "/v1/health/service/web",
    "/v1/health/state/any",
    "/v1/kv/key",
]
WRITES: list[tuple[str, str, Any]] = [
    ("PUT", "/v1/agent/service/register", {"Name": "web"}),
    ("PUT", "/v1/agent/check/register", {"Name": "c", "TTL": "10s"}),
    ("PUT", "/v1/catalog/register", {"Node": "n2", "Address": "10.0.0.2"}),
    ("PUT", "/v1/kv/key", None),
    ("DELETE", "/v1/kv/key", None),
]
OPEN = ["/v1/status/leader", "/v1/status/peers", "/healthz", "/readyz", "/metrics"]


@pytest.fixture
async def secured(start_registry: Callable[..., Any]) -> RegistryServer:
    server = await start_registry(acl_token=TOKEN)
    assert isinstance(server, RegistryServer)
    return server


@pytest.fixture
async def client(secured: RegistryServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=secured.url) as session:
        yield session


BAD_CREDENTIALS: list[dict[str, str]] = [
    {},
    {"X-Consul-Token": "wrong"},
    {"X-Consul-Token": TOKEN + "x"},
    {"Authorization": "Bearer wrong"},
    {"Authorization": f"Basic {TOKEN}"},
]
GOOD_CREDENTIALS: list[tuple[dict[str, str], dict[str, str]]] = [
    ({"X-Consul-Token": TOKEN}, {}),
    ({"Authorization": f"Bearer {TOKEN}"}, {}),
    ({"Authorization": f"bearer {TOKEN}"}, {}),
    ({}, {"token": TOKEN}),
]


@pytest.mark.parametrize("headers", BAD_CREDENTIALS)
async def test_reads_without_valid_token_are_denied(client: aiohttp.ClientSession, headers: dict[str, str]) -> None:
    for path in READS:
        reply = await call(client, "GET", path, headers=headers)
        assert (reply.status, reply.text) == (403, "Permission denied"), path


@pytest.mark.parametrize("headers", BAD_CREDENTIALS)
async def test_writes_without_valid_token_are_denied_and_change_nothing(
    client: aiohttp.ClientSession, secured: RegistryServer, headers: dict[str, str]
) -> None:
    index = catalog_index(secured)
    for method, path, body in WRITES:
        reply = await call(client, method, path, body=body, data=b"v" if body is None else None, headers=headers)
        assert (reply.status, reply.text) == (403, "Permission denied"), path
    assert catalog_index(secured) == index


@pytest.mark.parametrize(("headers", "params"), GOOD_CREDENTIALS)
async def test_token_is_accepted_in_every_form(
    client: aiohttp.ClientSession, headers: dict[str, str], params: dict[str, str]
) -> None:
    reply = await call(client, "PUT", "/v1/kv/key", data=b"v", headers=headers, params=params)
    assert (reply.status, reply.json) == (200, True)
    for path in READS:
        reply = await call(client, "GET", path, headers=headers, params=params)
        assert reply.status in (200, 404), path  # found or not, but never denied
    reply = await call(client, "GET", "/v1/kv/key", headers=headers, params=params)
    assert reply.status == 200


async def test_token_authorises_a_full_round_trip(client: aiohttp.ClientSession) -> None:
    auth = {"X-Consul-Token": TOKEN}
    reply = await call(client, "PUT", "/v1/agent/service/register", body={"Name": "web"}, headers=auth)
    assert reply.status == 200
    reply = await call(client, "GET", "/v1/catalog/services", headers=auth)
    assert reply.json == {"web": []}


@pytest.mark.parametrize("path", OPEN)
async def test_status_and_ops_stay_open(client: aiohttp.ClientSession, path: str) -> None:
    reply = await call(client, "GET", path)
    assert reply.status == 200, (path, reply.text)


async def test_no_token_configured_means_open(http: aiohttp.ClientSession) -> None:
    reply = await call(http, "GET", "/v1/agent/services", headers={"X-Consul-Token": "anything"})
    assert reply.status == 200
