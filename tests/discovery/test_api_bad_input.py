"""Bad request bodies: a clear 4xx naming the field, and nothing at all written (index and state unchanged).

Also the other side: Consul's lenient key matching (lowercase, snake_case) as py-consul sends it.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from discovery.server import RegistryServer
from tests.discovery.helpers import (
    agent_check,
    call,
    catalog_index,
    catalog_register,
    get,
    ok_json,
    put,
    register_check,
    register_service,
)


async def snapshot(http: aiohttp.ClientSession, registry: RegistryServer) -> tuple[Any, ...]:
    """Everything a rejected write could have touched."""
    return (
        catalog_index(registry),
        await ok_json(http, "/v1/agent/services"),
        await ok_json(http, "/v1/agent/checks"),
        await ok_json(http, "/v1/catalog/nodes"),
        await ok_json(http, "/v1/kv/", {"recurse": ""})
        if (await get(http, "/v1/kv/", {"keys": ""})).status == 200
        else [],
    )


async def assert_rejected(
    http: aiohttp.ClientSession,
    registry: RegistryServer,
    path: str,
    *,
    body: Any = None,
    data: bytes | None = None,
    status: int = 400,
    mentions: tuple[str, ...] = (),
) -> str:
    """PUT ``path``; expect ``status`` with a plain-text message naming ``mentions``; nothing may change."""
    before = await snapshot(http, registry)
    reply = await call(http, "PUT", path, body=body, data=data)
    assert reply.status == status, (reply.status, reply.text)
    assert reply.headers["Content-Type"].startswith("text/plain")
    for word in mentions:
        assert word in reply.text, (word, reply.text)
    assert await snapshot(http, registry) == before
    return reply.text


SERVICE = "/v1/agent/service/register"
CHECK = "/v1/agent/check/register"
CATALOG = "/v1/catalog/register"


# --- bodies that are not JSON objects ---


@pytest.mark.parametrize("data", [b'{"Name": ', b"not json", b"", b"   ", b"\xff\xfe"])
async def test_malformed_json(http: aiohttp.ClientSession, registry: RegistryServer, data: bytes) -> None:
    for path in (SERVICE, CHECK, CATALOG, "/v1/catalog/deregister"):
        await assert_rejected(http, registry, path, data=data, mentions=("decode",))


@pytest.mark.parametrize("body", [[1, 2], "web", 42, True])
async def test_non_object_body(http: aiohttp.ClientSession, registry: RegistryServer, body: Any) -> None:
    for path in (SERVICE, CHECK, CATALOG):
        await assert_rejected(http, registry, path, body=body, mentions=("expected a JSON object",))


# --- service fields ---


async def test_missing_name(http: aiohttp.ClientSession, registry: RegistryServer) -> None:
    await assert_rejected(http, registry, SERVICE, body={"ID": "web-1", "Port": 80}, mentions=("Name",))
    await assert_rejected(http, registry, SERVICE, body={"Name": ""}, mentions=("Name",))


@pytest.mark.parametrize("port", [-1, 70000, "80", 80.5, True])
async def test_bad_port(http: aiohttp.ClientSession, registry: RegistryServer, port: Any) -> None:
    await assert_rejected(http, registry, SERVICE, body={"Name": "web", "Port": port}, mentions=("Port",))


async def test_null_port_means_unset(http: aiohttp.ClientSession) -> None:
    await register_service(http, {"Name": "web", "Port": None})
    assert (await ok_json(http, "/v1/agent/services"))["web"]["Port"] == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("Tags", "a,b"),
        ("Tags", [1]),
        ("Meta", {"a": 1}),
        ("Meta", ["a"]),
        ("Address", 1),
        ("EnableTagOverride", "yes"),
        ("Weights", {"Passing": 0}),
        ("TaggedAddresses", {"lan": "10.0.0.1"}),
    ],
)
async def test_bad_service_field(http: aiohttp.ClientSession, registry: RegistryServer, field: str, value: Any) -> None:
    await assert_rejected(http, registry, SERVICE, body={"Name": "web", field: value}, mentions=(field,))


@pytest.mark.parametrize("key", ["bad key", "dot.ted", "", "consul-reserved", "k" * 129])
async def test_bad_meta_key(http: aiohttp.ClientSession, registry: RegistryServer, key: str) -> None:
    await assert_rejected(http, registry, SERVICE, body={"Name": "web", "Meta": {key: "v"}}, mentions=("Meta",))


async def test_too_long_meta_value(http: aiohttp.ClientSession, registry: RegistryServer) -> None:
    body = {"Name": "web", "Meta": {"k": "v" * 513}}
    await assert_rejected(http, registry, SERVICE, body=body, mentions=("Meta",))


# --- check fields (inside a service registration and on their own) ---


@pytest.mark.parametrize("field", ["Interval", "TTL", "Timeout", "DeregisterCriticalServiceAfter"])
async def test_bad_duration(http: aiohttp.ClientSession, registry: RegistryServer, field: str) -> None:
    check = {"TCP": "127.0.0.1:9", "Interval": "10s", field: "10x"} if field != "TTL" else {"TTL": "10x"}
    await assert_rejected(
        http, registry, SERVICE, body={"Name": "web", "Check": check}, mentions=(f"Check.{field}", "10x")
    )
    await assert_rejected(
        http, registry, SERVICE, body={"Name": "web", "Checks": [check]}, mentions=(f"Checks[0].{field}",)
    )
    await assert_rejected(http, registry, CHECK, body={"Name": "c", **check}, mentions=(field,))


@pytest.mark.parametrize("kind", ["HTTP", "TCP"])
async def test_probe_check_needs_interval(http: aiohttp.ClientSession, registry: RegistryServer, kind: str) -> None:
    target = "http://127.0.0.1:9/health" if kind == "HTTP" else "127.0.0.1:9"
    await assert_rejected(
        http, registry, SERVICE, body={"Name": "web", "Check": {kind: target}}, mentions=("Check.Interval",)
    )


async def test_check_needs_a_type(http: aiohttp.ClientSession, registry: RegistryServer) -> None:
    await assert_rejected(http, registry, CHECK, body={"Name": "c", "Interval": "10s"}, mentions=("TTL",))


async def test_two_check_types(http: aiohttp.ClientSession, registry: RegistryServer) -> None:
    check = {"TTL": "10s", "TCP": "127.0.0.1:9", "Interval": "10s"}
    await assert_rejected(
        http, registry, SERVICE, body={"Name": "web", "Check": check}, mentions=("TCP", "TTL", "one type")
    )


@pytest.mark.parametrize(
    ("check", "field"),
    [
        ({"HTTP": "ftp://x/", "Interval": "10s"}, "HTTP"),
        ({"HTTP": "not a url", "Interval": "10s"}, "HTTP"),
        ({"TCP": "no-port", "Interval": "10s"}, "TCP"),
        ({"TCP": "host:99999", "Interval": "10s"}, "TCP"),
        ({"HTTP": "http://x/", "Interval": "10s", "Header": {"X": "one"}}, "Header"),
        ({"Args": ["/bin/true"], "Interval": "10s"}, "Args"),
        ({"GRPC": "127.0.0.1:9", "Interval": "10s"}, "GRPC"),
    ],
)
async def test_bad_check_definition(
    http: aiohttp.ClientSession, registry: RegistryServer, check: dict[str, Any], field: str
) -> None:
    await assert_rejected(http, registry, SERVICE, body={"Name": "web", "Check": check}, mentions=(field,))


@pytest.mark.parametrize("status", ["ok", "PASSING", "maintenance", 1])
async def test_bad_status(http: aiohttp.ClientSession, registry: RegistryServer, status: Any) -> None:
    check = {"TTL": "10s", "Status": status}
    await assert_rejected(http, registry, SERVICE, body={"Name": "web", "Check": check}, mentions=("Status",))
    await assert_rejected(http, registry, CHECK, body={"Name": "c", **check}, mentions=("Status",))


async def test_duplicate_check_ids(http: aiohttp.ClientSession, registry: RegistryServer) -> None:
    checks = [{"CheckID": "a", "TTL": "10s"}, {"CheckID": "a", "TTL": "20s"}]
    await assert_rejected(http, registry, SERVICE, body={"Name": "web", "Checks": checks}, mentions=("'a'",))


async def test_one_bad_check_writes_nothing(http: aiohttp.ClientSession, registry: RegistryServer) -> None:
    """No partial service: the good check and the service itself are refused with the bad check."""
    checks = [{"TTL": "10s"}, {"TTL": "10s"}, {"HTTP": "http://127.0.0.1:9/"}]
    await assert_rejected(
        http, registry, SERVICE, body={"Name": "web", "Checks": checks}, mentions=("Checks[2].Interval",)
    )


async def test_bad_reregistration_keeps_the_old_service(http: aiohttp.ClientSession, registry: RegistryServer) -> None:
    await register_service(http, {"Name": "web", "Port": 80, "Check": {"TTL": "10s"}})
    await assert_rejected(http, registry, SERVICE, body={"Name": "web", "Port": 70000}, mentions=("Port",))
    assert (await ok_json(http, "/v1/agent/services"))["web"]["Port"] == 80


async def test_check_for_unknown_service_is_404(http: aiohttp.ClientSession, registry: RegistryServer) -> None:
    text = await assert_rejected(
        http, registry, CHECK, body={"Name": "c", "TTL": "10s", "ServiceID": "ghost"}, status=404
    )
    assert "ghost" in text


async def test_check_update_bad_body(http: aiohttp.ClientSession, registry: RegistryServer) -> None:
    await register_check(http, {"Name": "job", "TTL": "30s"})
    path = "/v1/agent/check/update/job"
    await assert_rejected(http, registry, path, data=b"{", mentions=("decode",))
    await assert_rejected(http, registry, path, body={"Status": "up"}, mentions=("Status",))
    await assert_rejected(http, registry, path, body={"Output": "no status"}, mentions=("Status",))


# --- catalog register ---


async def test_catalog_register_needs_node_and_address(http: aiohttp.ClientSession, registry: RegistryServer) -> None:
    await assert_rejected(http, registry, CATALOG, body={"Address": "10.0.0.1"}, mentions=("Node",))
    await assert_rejected(http, registry, CATALOG, body={"Node": "n1"}, mentions=("Address",))


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"Service": {"Port": 80}}, "Service"),
        ({"Service": {"Service": "db", "Port": -1}}, "Port"),
        ({"Check": {"Name": "c", "Status": "fine"}}, "Status"),
        ({"Check": {"Status": "passing"}}, "CheckID"),
        ({"NodeMeta": {"bad key": "v"}}, "NodeMeta"),
        ({"Checks": [{"Name": "a"}, {"Name": "a"}]}, "'a'"),
        ({"Check": {"Name": "c", "Node": "other"}}, "Node"),
    ],
)
async def test_bad_catalog_register_writes_nothing(
    http: aiohttp.ClientSession, registry: RegistryServer, extra: dict[str, Any], field: str
) -> None:
    body = {"Node": "n2", "Address": "10.0.0.2", **extra}
    await assert_rejected(http, registry, CATALOG, body=body, mentions=(field,))


async def test_catalog_check_for_unknown_service_writes_no_node(
    http: aiohttp.ClientSession, registry: RegistryServer
) -> None:
    body = {"Node": "n2", "Address": "10.0.0.2", "Check": {"Name": "c", "ServiceID": "ghost"}}
    await assert_rejected(http, registry, CATALOG, body=body, status=404, mentions=("ghost",))


async def test_other_datacenter_is_refused(http: aiohttp.ClientSession, registry: RegistryServer) -> None:
    body = {"Node": "n2", "Address": "10.0.0.2", "Datacenter": "dc9"}
    await assert_rejected(http, registry, CATALOG, body=body, status=500, mentions=("dc9",))


# --- KV ---


async def test_oversize_kv_writes_nothing(http: aiohttp.ClientSession, registry: RegistryServer) -> None:
    await assert_rejected(http, registry, "/v1/kv/big", data=b"x" * (512 * 1024 + 1), status=413)


async def test_streamed_oversize_kv_writes_nothing(http: aiohttp.ClientSession, registry: RegistryServer) -> None:
    """Without Content-Length (chunked upload) the limit still holds."""

    async def chunks() -> Any:
        for _ in range(9):
            yield b"x" * (64 * 1024)

    before = await snapshot(http, registry)
    async with http.put("/v1/kv/big", data=chunks()) as response:
        assert response.status == 413
    assert await snapshot(http, registry) == before


async def test_bad_cas_is_400(http: aiohttp.ClientSession, registry: RegistryServer) -> None:
    await assert_rejected(http, registry, "/v1/kv/k?cas=abc", data=b"v", mentions=("cas",))


# --- wrong methods ---


async def test_wrong_method_is_405(http: aiohttp.ClientSession) -> None:
    assert (await get(http, CHECK)).status == 405
    assert (await call(http, "POST", "/v1/kv/k", data=b"v")).status == 405
    assert (await put(http, "/v1/catalog/services")).status == 405


# --- lenient keys, as py-consul sends them ---


async def test_lowercase_and_snake_case_service_keys(http: aiohttp.ClientSession) -> None:
    await register_service(
        http,
        {
            "name": "web",
            "id": "web-1",
            "address": "10.0.0.5",
            "port": 8080,
            "tags": ["v1"],
            "meta": {"Version": "1"},
            "enable_tag_override": True,
            "tagged_addresses": {"lan": {"address": "10.0.0.5", "port": 8080}},
            "weights": {"passing": 5, "warning": 2},
            "checks": [
                {"ttl": "10s", "notes": "n", "status": "passing"},
                {"tcp": "127.0.0.1:9", "interval": "30s", "timeout": "1s", "DeregisterCriticalServiceAfter": "90m"},
            ],
        },
    )
    web = (await ok_json(http, "/v1/agent/services"))["web-1"]
    assert (web["Service"], web["Address"], web["Port"], web["Tags"]) == ("web", "10.0.0.5", 8080, ["v1"])
    assert web["Meta"] == {"Version": "1"}  # user map keys are data: kept exactly
    assert web["EnableTagOverride"] is True
    assert web["TaggedAddresses"] == {"lan": {"Address": "10.0.0.5", "Port": 8080}}
    assert web["Weights"] == {"Passing": 5, "Warning": 2}
    ttl_check = await agent_check(http, "service:web-1:1")
    assert (ttl_check["Status"], ttl_check["Notes"], ttl_check["Type"]) == ("passing", "n", "ttl")
    tcp_check = await agent_check(http, "service:web-1:2")
    assert tcp_check["Type"] == "tcp"
    assert (tcp_check["Interval"], tcp_check["Timeout"]) == ("30s", "1s")
    assert tcp_check["Definition"]["DeregisterCriticalServiceAfter"] == "1h30m0s"


async def test_snake_case_check_register(http: aiohttp.ClientSession) -> None:
    await register_service(http, {"name": "web"})
    await register_check(http, {"name": "c", "check_id": "c1", "service_id": "web", "ttl": "10s"})
    await register_check(http, {"NAME": "d", "ServiceId": "web", "Ttl": "10s"})
    assert (await agent_check(http, "c1"))["ServiceID"] == "web"
    assert (await agent_check(http, "d"))["ServiceName"] == "web"


async def test_null_checks_are_skipped(http: aiohttp.ClientSession) -> None:
    """py-consul sends ``checks: [null]`` when no check is given."""
    await register_service(http, {"name": "web", "checks": [None], "check": None})
    assert await ok_json(http, "/v1/agent/checks") == {}


async def test_lowercase_catalog_register(http: aiohttp.ClientSession) -> None:
    await catalog_register(
        http,
        {
            "node": "n2",
            "address": "10.0.0.2",
            "node_meta": {"rack": "r1"},
            "service": {"service": "db", "port": 5432},
            "check": {"name": "c", "status": "passing", "service_id": "db"},
        },
    )
    [entry] = await ok_json(http, "/v1/catalog/service/db")
    assert (entry["Node"], entry["NodeMeta"], entry["ServicePort"]) == ("n2", {"rack": "r1"}, 5432)
    [check] = await ok_json(http, "/v1/health/checks/db")
    assert (check["CheckID"], check["Status"]) == ("c", "passing")


async def test_go_nanosecond_durations(http: aiohttp.ClientSession) -> None:
    await register_check(http, {"Name": "c", "TTL": 15_000_000_000})
    assert (await agent_check(http, "c"))["Definition"]["TTL"] == "15s"
