"""py-consul 1.8 (consul.aio and the sync consul.Consul) against the registry, unmodified."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import consul
import consul.aio
import pytest

from discovery.server import RegistryServer
from tests.discovery.helpers import blocked_then

# aiohttp warns about the connector arguments py-consul passes; that is py-consul's business.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

_CONSUL_ENV = ("CONSUL_HTTP_TOKEN", "CONSUL_HTTP_ADDR", "CONSUL_HTTP_SSL", "CONSUL_HTTP_SSL_VERIFY")


@pytest.fixture(autouse=True)
def _no_consul_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """CONSUL_HTTP_TOKEN would override token=, CONSUL_HTTP_ADDR the host/port we pass."""
    for name in _CONSUL_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def c(registry: RegistryServer) -> AsyncIterator[consul.aio.Consul]:
    client = consul.aio.Consul(host="127.0.0.1", port=registry.port)  # needs the running loop
    yield client
    await client.close()


async def eventually(probe: Callable[[], Any], timeout: float = 5.0) -> None:
    """Poll an async predicate until it holds (for checks the registry runs on its own schedule)."""
    deadline = time.monotonic() + timeout
    while not await probe():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.05)


async def register_web(c: consul.aio.Consul, service_id: str = "web-1", tags: list[str] | None = None) -> None:
    ok = await c.agent.service.register(
        "web", service_id=service_id, port=8080, tags=tags or ["v1"], check=consul.Check.ttl("30s")
    )
    assert ok is True


# --- agent ---


async def test_register_with_ttl_http_tcp_checks(c: consul.aio.Consul, registry: RegistryServer) -> None:
    ok = await c.agent.service.register(
        "web",
        service_id="web-1",
        address="127.0.0.1",
        port=registry.port,
        tags=["v1", "http"],
        meta={"team": "core"},
        check=consul.Check.ttl("30s"),
        extra_checks=[
            consul.Check.http(f"{registry.url}/healthz", "1s", timeout="2s", deregister="10m"),
            consul.Check.tcp("127.0.0.1", registry.port, "1s", timeout="2s"),
        ],
    )
    assert ok is True
    services = await c.agent.services()
    assert services["web-1"]["Service"] == "web"
    assert services["web-1"]["Tags"] == ["v1", "http"]
    assert services["web-1"]["Meta"] == {"team": "core"}
    assert services["web-1"]["Port"] == registry.port
    checks = await c.agent.checks()
    assert {cid: chk["Type"] for cid, chk in checks.items()} == {
        "service:web-1:1": "ttl",
        "service:web-1:2": "http",
        "service:web-1:3": "tcp",
    }
    assert checks["service:web-1:2"]["Definition"]["DeregisterCriticalServiceAfter"] == "10m0s"

    async def probes_passing() -> bool:
        checks = await c.agent.checks()
        return all(checks[f"service:web-1:{n}"]["Status"] == "passing" for n in (2, 3))

    await eventually(probes_passing)


async def test_ttl_pass_warn_fail(c: consul.aio.Consul) -> None:
    await register_web(c)
    for call, status in (
        (c.agent.check.ttl_pass, "passing"),
        (c.agent.check.ttl_warn, "warning"),
        (c.agent.check.ttl_fail, "critical"),
    ):
        assert await call("service:web-1", notes=f"{status}!") is True
        check = (await c.agent.checks())["service:web-1"]
        assert (check["Status"], check["Output"]) == (status, f"{status}!")


async def test_ttl_pass_on_unknown_check_is_false(c: consul.aio.Consul) -> None:
    # The endpoint answers 404 for an unknown ID; py-consul's CB.boolean turns that into False.
    assert await c.agent.check.ttl_pass("ghost") is False


async def test_check_register_and_deregister(c: consul.aio.Consul) -> None:
    await register_web(c)
    ok = await c.agent.check.register("extra", check=consul.Check.ttl("10s"), check_id="x1", service_id="web-1")
    assert ok is True
    checks = await c.agent.checks()
    assert (checks["x1"]["Name"], checks["x1"]["ServiceID"]) == ("extra", "web-1")
    assert await c.agent.check.deregister("x1") is True
    assert "x1" not in await c.agent.checks()


async def test_replace_existing_checks(c: consul.aio.Consul) -> None:
    await c.agent.service.register(
        "web", service_id="web-1", check=consul.Check.ttl("10s"), extra_checks=[consul.Check.ttl("20s")]
    )
    assert sorted(await c.agent.checks()) == ["service:web-1:1", "service:web-1:2"]
    await c.agent.service.register(
        "web", service_id="web-1", check=consul.Check.ttl("10s"), replace_existing_checks=True
    )
    assert sorted(await c.agent.checks()) == ["service:web-1"]


async def test_service_deregister(c: consul.aio.Consul) -> None:
    await register_web(c)
    assert await c.agent.service.deregister("web-1") is True
    assert await c.agent.services() == {}
    assert await c.agent.checks() == {}
    assert await c.agent.service.deregister("web-1") is False  # 404 is allowed by CB.boolean


async def test_agent_self_and_leader(c: consul.aio.Consul) -> None:
    me = await c.agent.self()
    assert me["Config"]["NodeName"] == "node1"
    assert me["Config"]["Datacenter"] == "dc1"
    assert me["Member"]["Name"] == "node1"
    assert await c.status.leader() == "127.0.0.1:8300"
    assert await c.status.peers() == ["127.0.0.1:8300"]


# --- health ---


async def test_health_service_passing_and_tag(c: consul.aio.Consul) -> None:
    await register_web(c, "web-1", ["v1", "primary"])
    await register_web(c, "web-2", ["v1"])
    await register_web(c, "web-3", ["v2"])
    for service_id in ("web-1", "web-2", "web-3"):
        await c.agent.check.ttl_pass(f"service:{service_id}")
    await c.agent.check.ttl_warn("service:web-2")
    index, entries = await c.health.service("web", passing=True, tag="v1")
    assert isinstance(index, str)  # py-consul hands back the raw header
    assert int(index) >= 1
    assert [e["Service"]["ID"] for e in entries] == ["web-1"]
    _, entries = await c.health.service("web", tag=["v1", "primary"])
    assert [e["Service"]["ID"] for e in entries] == ["web-1"]
    _, entries = await c.health.service("web")
    assert len(entries) == 3
    assert {ch["CheckID"] for ch in entries[0]["Checks"]} == {"serfHealth", "service:web-1"}


async def test_health_checks_state_node(c: consul.aio.Consul) -> None:
    await register_web(c)
    _, checks = await c.health.checks("web")
    assert [ch["CheckID"] for ch in checks] == ["service:web-1"]
    _, critical = await c.health.state("critical")
    assert [ch["CheckID"] for ch in critical] == ["service:web-1"]
    _, on_node = await c.health.node("node1")
    assert {ch["CheckID"] for ch in on_node} == {"serfHealth", "service:web-1"}


# --- catalog ---


async def test_catalog_register_read_deregister(c: consul.aio.Consul) -> None:
    ok = await c.catalog.register(
        "db1",
        "10.0.0.10",
        service={"Service": "db", "ID": "db-1", "Port": 5432, "Tags": ["primary"]},
        check={"Name": "db ok", "CheckID": "db-ok", "Status": "passing", "ServiceID": "db-1"},
    )
    assert ok is True
    index, services = await c.catalog.services()
    assert int(index) >= 1
    assert services == {"db": ["primary"]}
    _, entries = await c.catalog.service("db", tag="primary")
    assert [(e["Node"], e["ServiceID"], e["ServicePort"]) for e in entries] == [("db1", "db-1", 5432)]
    _, nodes = await c.catalog.nodes()
    assert sorted(n["Node"] for n in nodes) == ["db1", "node1"]
    _, node = await c.catalog.node("db1")
    assert list(node["Services"]) == ["db-1"]
    _, entries = await c.health.service("db", passing=True)
    assert [e["Service"]["ID"] for e in entries] == ["db-1"]

    assert await c.catalog.deregister("db1", service_id="db-1") is True
    assert (await c.catalog.service("db"))[1] == []
    assert await c.catalog.deregister("db1") is True
    assert (await c.catalog.node("db1"))[1] is None


# --- KV ---


async def test_kv_put_get(c: consul.aio.Consul) -> None:
    assert await c.kv.put("app/config", "hello") is True
    index, pair = await c.kv.get("app/config")
    assert int(index) == pair["ModifyIndex"]
    assert (pair["Key"], pair["Value"], pair["Flags"]) == ("app/config", b"hello", 0)
    assert await c.kv.put("app/flags", b"\x00\x01", flags=7) is True
    _, pair = await c.kv.get("app/flags")
    assert (pair["Value"], pair["Flags"]) == (b"\x00\x01", 7)
    index, missing = await c.kv.get("missing")
    assert missing is None
    assert int(index) >= 1  # 404s carry X-Consul-Index, else py-consul would raise


async def test_kv_recurse_keys_and_delete(c: consul.aio.Consul) -> None:
    for key in ("app/a", "app/b", "app/sub/c", "other"):
        await c.kv.put(key, key)
    _, pairs = await c.kv.get("app/", recurse=True)
    assert [(p["Key"], p["Value"]) for p in pairs] == [(k, k.encode()) for k in ("app/a", "app/b", "app/sub/c")]
    _, keys = await c.kv.get("app/", keys=True)
    assert keys == ["app/a", "app/b", "app/sub/c"]
    _, keys = await c.kv.get("app/", keys=True, separator="/")
    assert keys == ["app/a", "app/b", "app/sub/"]
    assert await c.kv.delete("app/", recurse=True) is True
    _, keys = await c.kv.get("", keys=True)
    assert keys == ["other"]
    assert await c.kv.delete("other") is True
    assert (await c.kv.get("", recurse=True))[1] is None


async def test_kv_cas(c: consul.aio.Consul) -> None:
    assert await c.kv.put("lock", "me", cas=0) is True
    assert await c.kv.put("lock", "you", cas=0) is False
    _, pair = await c.kv.get("lock")
    assert await c.kv.put("lock", "next", cas=pair["ModifyIndex"]) is True
    assert await c.kv.put("lock", "stale", cas=pair["ModifyIndex"]) is False
    assert (await c.kv.get("lock"))[1]["Value"] == b"next"
    assert await c.kv.delete("lock", cas=pair["ModifyIndex"]) is False
    assert (await c.kv.get("lock"))[1] is not None


# --- blocking round trips (index from one call passed back to the next) ---


async def test_kv_blocking_round_trip(c: consul.aio.Consul) -> None:
    await c.kv.put("cfg", "1")
    index, _ = await c.kv.get("cfg")
    (new_index, pair), elapsed = await blocked_then(
        c.kv.get("cfg", index=index, wait="5s"), lambda: c.kv.put("cfg", "2")
    )
    assert elapsed < 1.5
    assert int(new_index) > int(index)
    assert pair["Value"] == b"2"


async def test_health_blocking_round_trip(c: consul.aio.Consul) -> None:
    await register_web(c)
    index, entries = await c.health.service("web", passing=True)
    assert entries == []
    (new_index, entries), elapsed = await blocked_then(
        c.health.service("web", passing=True, index=index, wait="5s"),
        lambda: c.agent.check.ttl_pass("service:web-1"),
    )
    assert elapsed < 1.5
    assert int(new_index) > int(index)
    assert [e["Service"]["ID"] for e in entries] == ["web-1"]


async def test_catalog_blocking_times_out_with_same_index(c: consul.aio.Consul) -> None:
    await register_web(c)
    index, _ = await c.catalog.service("web")
    (same, entries), elapsed = await blocked_then(c.catalog.service("web", index=index, wait="300ms"))
    assert elapsed >= 0.29
    assert same == index
    assert [e["ServiceID"] for e in entries] == ["web-1"]


# --- the sync client ---


async def test_sync_client_in_a_thread(registry: RegistryServer) -> None:
    def scenario() -> tuple[Any, ...]:
        client = consul.Consul(host="127.0.0.1", port=registry.port)
        try:
            assert client.agent.service.register("web", service_id="web-1", check=consul.Check.ttl("30s"))
            assert client.agent.check.ttl_pass("service:web-1", notes="up")
            assert client.kv.put("k", "v")
            return (
                client.agent.services(),
                client.health.service("web", passing=True),
                client.kv.get("k"),
                client.catalog.services(),
                client.status.leader(),
            )
        finally:
            client.http.close()

    services, (_, healthy), (_, pair), (_, names), leader = await asyncio.to_thread(scenario)
    assert list(services) == ["web-1"]
    assert [e["Service"]["ID"] for e in healthy] == ["web-1"]
    assert pair["Value"] == b"v"
    assert names == {"web": []}
    assert leader == "127.0.0.1:8300"


# --- ACL ---


async def test_acl_token(start_registry: Callable[..., Any]) -> None:
    server = await start_registry(acl_token="secret")
    async with consul.aio.Consul(host="127.0.0.1", port=server.port, token="secret") as allowed:
        assert await allowed.kv.put("k", "v") is True
        assert (await allowed.kv.get("k"))[1]["Value"] == b"v"
        assert await allowed.agent.service.register("web") is True
        assert list(await allowed.agent.services()) == ["web"]
    async with consul.aio.Consul(host="127.0.0.1", port=server.port) as anonymous:
        with pytest.raises(consul.ACLPermissionDenied):
            await anonymous.kv.get("k")
        with pytest.raises(consul.ACLPermissionDenied):
            await anonymous.agent.service.register("api")
        with pytest.raises(consul.ACLPermissionDenied):
            await anonymous.health.service("web")
        assert await anonymous.status.leader() == "127.0.0.1:8300"
    async with consul.aio.Consul(host="127.0.0.1", port=server.port, token="wrong") as wrong:
        with pytest.raises(consul.ACLPermissionDenied):
            await wrong.catalog.services()
