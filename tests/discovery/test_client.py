"""RegistryClient against the real embedded registry: every call goes over HTTP to a live server."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import aiohttp
import pytest
from aiohttp import web

from discovery.client import RegistryClient
from discovery.client_models import (
    AgentService,
    BadRequest,
    CatalogCheck,
    CatalogRegistration,
    CheckRegistration,
    HealthServiceEntry,
    KVPair,
    NotFound,
    PermissionDenied,
    QueryResult,
    RegistryError,
    RegistryUnavailable,
    ServiceAddress,
    ServiceRegistration,
    Weights,
)
from discovery.server import RegistryServer
from discovery.watch import Watch
from mesh.demo.processes import free_port
from tests.discovery.helpers import blocked_then

T = TypeVar("T")
StartRegistry = Callable[..., Awaitable[RegistryServer]]

NODE = "node1"  # the node name the conftest fixtures give the registry's own agent


# === helpers ===


@pytest.fixture(autouse=True)
def _no_consul_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's shell must not point these tests at another registry or token."""
    for name in (
        "CONSUL_HTTP_ADDR",
        "CONSUL_HTTP_TOKEN",
        "CONSUL_HTTP_SSL",
        "CONSUL_HTTP_SSL_VERIFY",
        "CONSUL_CACERT",
        "CONSUL_CLIENT_CERT",
        "CONSUL_CLIENT_KEY",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def client(registry: RegistryServer) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(registry.url) as c:
        yield c


async def eventually(predicate: Callable[[], Awaitable[bool]], what: str, timeout: float = 5.0) -> None:
    """Poll ``predicate`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


class Feed(Generic[T]):
    """Consumes a watch in a background task so a test can await its results with a deadline."""

    def __init__(self, watch: Watch[T]) -> None:
        self.watch = watch
        self.results: asyncio.Queue[QueryResult[T]] = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for result in self.watch:
            await self.results.put(result)

    async def next(self, timeout: float = 5.0) -> QueryResult[T]:
        """The next yielded result; a watch that ended or raised fails the test with its error."""
        getter = asyncio.ensure_future(self.results.get())
        done, _ = await asyncio.wait({getter, self._task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            return getter.result()
        getter.cancel()
        if self._task in done:
            self._task.result()  # re-raises what stopped the watch
            raise AssertionError("the watch ended")
        raise AssertionError(f"no watch result within {timeout}s")

    async def stop(self) -> None:
        await self.watch.aclose()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def ids(entries: list[HealthServiceEntry]) -> list[str]:
    return sorted(e.service.id for e in entries)


def ttl_service(name: str, service_id: str, check_id: str, *, status: str | None = None) -> ServiceRegistration:
    return ServiceRegistration(
        name=name,
        id=service_id,
        port=9000,
        checks=[CheckRegistration(name=f"{name} ttl", check_id=check_id, ttl=60, status=status)],
    )


class Backend:
    """A tiny HTTP server for HTTP and TCP checks; ``status`` is what it answers."""

    def __init__(self) -> None:
        self.status = 200
        self.seen: list[tuple[str, str | None]] = []
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.method, request.headers.get("X-Probe")))
        return web.Response(status=self.status, text=f"answered {self.status}")


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    server = Backend()
    app = web.Application()
    app.router.add_route("*", "/health", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.port = int(runner.addresses[0][1])
    yield server
    await runner.cleanup()


# === agent: services and checks ===


async def test_register_service_with_ttl_http_and_tcp_checks(client: RegistryClient, backend: Backend) -> None:
    url = f"http://127.0.0.1:{backend.port}/health"
    await client.register_service(
        ServiceRegistration(
            name="web",
            id="web-1",
            tags=["v1", "blue"],
            address="10.0.0.5",
            port=8080,
            meta={"version": "1.2.3"},
            tagged_addresses={"lan": ServiceAddress("10.0.0.5", 8080)},
            weights=Weights(passing=5, warning=2),
            enable_tag_override=True,
            checks=[
                CheckRegistration(name="web ttl", check_id="web-ttl", ttl=30, notes="heartbeat"),
                CheckRegistration(
                    name="web http",
                    check_id="web-http",
                    http=url,
                    method="GET",
                    header={"X-Probe": ["yes"]},
                    interval=1,
                    timeout=1,
                ),
                CheckRegistration(name="web tcp", check_id="web-tcp", tcp=f"127.0.0.1:{backend.port}", interval=1),
            ],
        )
    )

    services = await client.agent_services()
    assert list(services) == ["web-1"]
    service = services["web-1"]
    assert service == await client.agent_service("web-1")
    assert isinstance(service, AgentService)
    assert (service.id, service.name, service.tags) == ("web-1", "web", ("v1", "blue"))
    assert (service.address, service.port, service.datacenter) == ("10.0.0.5", 8080, "dc1")
    assert service.meta == {"version": "1.2.3"}
    assert service.tagged_addresses == {"lan": ServiceAddress("10.0.0.5", 8080)}
    assert service.weights == Weights(passing=5, warning=2)
    assert service.enable_tag_override is True
    assert await client.agent_service("no-such-service") is None

    checks = await client.agent_checks()
    assert sorted(checks) == ["web-http", "web-tcp", "web-ttl"]
    ttl = checks["web-ttl"]
    assert (ttl.type, ttl.status, ttl.notes, ttl.service_id, ttl.service_name) == (
        "ttl",
        "critical",  # Consul starts checks critical
        "heartbeat",
        "web-1",
        "web",
    )
    assert ttl.service_tags == ("v1", "blue")
    assert (checks["web-http"].type, checks["web-http"].interval, checks["web-http"].timeout) == ("http", 1.0, 1.0)
    assert (checks["web-tcp"].type, checks["web-tcp"].interval) == ("tcp", 1.0)

    async def probes_pass() -> bool:
        current = await client.agent_checks()
        return current["web-http"].status == "passing" and current["web-tcp"].status == "passing"

    await eventually(probes_pass, "the HTTP and TCP checks to pass")
    checks = await client.agent_checks()
    assert checks["web-http"].output == f"HTTP GET {url}: 200 OK Output: answered 200"
    assert checks["web-tcp"].output == f"TCP connect 127.0.0.1:{backend.port}: Success"
    assert ("GET", "yes") in backend.seen

    # The TTL check is still critical, so the instance is not passing as a whole.
    assert (await client.health_service("web", passing=True)).value == []
    await client.ttl_pass("web-ttl")
    (entry,) = (await client.health_service("web", passing=True)).value
    assert entry.status == "passing"
    assert entry.effective_address == "10.0.0.5"
    assert entry.node.name == NODE
    assert sorted(c.check_id for c in entry.checks) == ["serfHealth", "web-http", "web-tcp", "web-ttl"]

    # The HTTP check follows what the backend answers: 429 is warning, 5xx critical.
    backend.status = 429

    async def http_status_is(status: str) -> bool:
        return (await client.agent_checks())["web-http"].status == status

    await eventually(lambda: http_status_is("warning"), "the HTTP check to turn warning")
    (entry,) = (await client.health_service("web")).value
    assert entry.status == "warning"
    assert (await client.health_service("web", passing=True)).value == []
    backend.status = 503
    await eventually(lambda: http_status_is("critical"), "the HTTP check to turn critical")
    (entry,) = (await client.health_service("web")).value
    assert entry.status == "critical"

    await client.deregister_service("web-1")
    assert await client.agent_services() == {}
    assert await client.agent_checks() == {}


async def test_register_and_deregister_checks(client: RegistryClient) -> None:
    await client.register_service(ServiceRegistration(name="api", id="api-1", port=7000))
    await client.register_check(
        CheckRegistration(name="disk", check_id="disk", ttl=30, status="warning", notes="node-level")
    )
    await client.register_check(
        CheckRegistration(name="api ttl", check_id="api-ttl", ttl=30, status="passing", service_id="api-1")
    )

    checks = await client.agent_checks()
    assert sorted(checks) == ["api-ttl", "disk"]
    assert (checks["disk"].status, checks["disk"].service_id, checks["disk"].notes) == ("warning", "", "node-level")
    assert (checks["api-ttl"].status, checks["api-ttl"].service_id) == ("passing", "api-1")

    # A node-level check counts for every instance on the node.
    (entry,) = (await client.health_service("api")).value
    assert entry.status == "warning"
    assert sorted(c.check_id for c in entry.checks) == ["api-ttl", "disk", "serfHealth"]
    assert [c.check_id for c in (await client.health_checks("api")).value] == ["api-ttl"]
    node_checks = (await client.health_node(NODE)).value
    assert {c.check_id: c.status for c in node_checks} == {
        "api-ttl": "passing",
        "disk": "warning",
        "serfHealth": "passing",
    }

    # Re-registering keeps a check's status; replace_existing_checks drops checks not listed.
    await client.register_service(
        ServiceRegistration(
            name="api", id="api-1", port=7001, checks=[CheckRegistration(name="api ttl", check_id="api-ttl", ttl=30)]
        ),
        replace_existing_checks=True,
    )
    assert (await client.agent_checks())["api-ttl"].status == "passing"
    await client.register_service(ServiceRegistration(name="api", id="api-1", port=7001), replace_existing_checks=True)
    assert sorted(await client.agent_checks()) == ["disk"]
    assert (await client.agent_services())["api-1"].port == 7001
    await client.register_check(
        CheckRegistration(name="api ttl", check_id="api-ttl", ttl=30, status="passing", service_id="api-1")
    )

    await client.deregister_check("disk")
    assert sorted(await client.agent_checks()) == ["api-ttl"]
    (entry,) = (await client.health_service("api", passing=True)).value
    assert entry.status == "passing"

    with pytest.raises(NotFound) as raised:
        await client.deregister_check("disk")
    assert raised.value.status == 404
    assert 'Unknown check ID "disk"' in raised.value.message


async def test_ttl_updates_drive_health(client: RegistryClient) -> None:
    await client.register_service(ttl_service("pay", "pay-1", "pay-ttl"))

    async def state() -> tuple[str, str, list[str]]:
        check = (await client.agent_checks())["pay-ttl"]
        passing = (await client.health_service("pay", passing=True)).value
        (entry,) = (await client.health_service("pay")).value
        assert entry.status == check.status  # serfHealth passes, so the TTL check decides
        return check.status, check.output, ids(passing)

    assert await state() == ("critical", "", [])
    await client.ttl_pass("pay-ttl", note="all good")
    assert await state() == ("passing", "all good", ["pay-1"])
    await client.ttl_warn("pay-ttl", note="slow disk")
    assert await state() == ("warning", "slow disk", [])
    assert [c.check_id for c in (await client.health_state("warning")).value] == ["pay-ttl"]
    await client.ttl_fail("pay-ttl", note="down")
    assert await state() == ("critical", "down", [])
    assert [c.check_id for c in (await client.health_state("critical")).value] == ["pay-ttl"]
    await client.update_ttl("pay-ttl", "passing", output="recovered")
    assert await state() == ("passing", "recovered", ["pay-1"])
    await client.update_ttl("pay-ttl", "warning", output="degraded")
    assert await state() == ("warning", "degraded", [])
    await client.ttl_pass("pay-ttl")
    assert await state() == ("passing", "", ["pay-1"])
    await client.ttl_warn("pay-ttl", note="50% & rising / ok? #1 +plus")
    assert await state() == ("warning", "50% & rising / ok? #1 +plus", [])

    with pytest.raises(BadRequest) as bad:
        await client.update_ttl("pay-ttl", "sideways")
    assert "Status" in bad.value.message
    assert "sideways" in bad.value.message
    with pytest.raises(NotFound):
        await client.ttl_pass("no-such-check")


async def test_agent_self_and_status(client: RegistryClient) -> None:
    me = await client.agent_self()
    assert me["Config"]["NodeName"] == NODE
    assert me["Config"]["Datacenter"] == "dc1"
    assert me["Member"]["Name"] == NODE
    leader = await client.leader()
    assert leader == "127.0.0.1:8300"
    assert await client.peers() == [leader]


# === catalog and health ===


async def test_catalog_register_query_and_deregister(client: RegistryClient) -> None:
    registration = CatalogRegistration(
        node="ext-node",
        address="192.0.2.10",
        node_meta={"rack": "r1"},
        tagged_addresses={"wan": "198.51.100.10"},
        service=ServiceRegistration(name="db", id="db-1", tags=["primary", "v2"], port=5432, meta={"engine": "pg"}),
        checks=[
            CatalogCheck(name="db alive", check_id="db-check", status="passing", output="ok", service_id="db-1"),
            CatalogCheck(name="node ok", check_id="ext-check", status="warning", notes="disk 80%"),
        ],
    )
    assert await client.catalog_register(registration) is True
    replica = CatalogRegistration(
        node="ext-node",
        address="192.0.2.10",
        service=ServiceRegistration(name="db", id="db-2", tags=["replica", "v2"], port=5433),
        skip_node_update=True,
    )
    assert await client.catalog_register(replica) is True

    services = await client.catalog_services()
    assert services.value == {"db": ("primary", "replica", "v2")}
    assert services.index > 0
    assert services.known_leader is True

    everything = (await client.catalog_service("db")).value
    assert sorted(e.service_id for e in everything) == ["db-1", "db-2"]
    (primary,) = (await client.catalog_service("db", tags=["PRIMARY"])).value  # tags match case-insensitively
    assert (primary.node, primary.address, primary.service_name) == ("ext-node", "192.0.2.10", "db")
    assert (primary.service_port, primary.service_tags, primary.service_meta) == (
        5432,
        ("primary", "v2"),
        {"engine": "pg"},
    )
    assert primary.node_meta == {"rack": "r1"}
    assert primary.tagged_addresses == {"wan": "198.51.100.10"}
    assert primary.effective_address == "192.0.2.10"
    assert len((await client.catalog_service("db", tags=["v2"])).value) == 2
    assert (await client.catalog_service("db", tags=["primary", "replica"])).value == []
    assert (await client.catalog_service("no-such-service")).value == []

    nodes = {n.name: n for n in (await client.catalog_nodes()).value}
    assert sorted(nodes) == ["ext-node", NODE]
    assert (nodes["ext-node"].address, nodes["ext-node"].meta) == ("192.0.2.10", {"rack": "r1"})
    assert nodes["ext-node"].datacenter == "dc1"

    node = (await client.catalog_node("ext-node")).value
    assert node is not None
    assert node.node.name == "ext-node"
    assert sorted(node.services) == ["db-1", "db-2"]
    assert node.services["db-1"].port == 5432
    assert node.services["db-2"].tags == ("replica", "v2")
    missing = await client.catalog_node("no-such-node")
    assert missing.value is None
    assert missing.index > 0

    # Health: the node's warning check makes every instance on it warning.
    entries = (await client.health_service("db")).value
    assert {e.service.id: e.status for e in entries} == {"db-1": "warning", "db-2": "warning"}
    assert (await client.health_service("db", passing=True)).value == []
    (primary_entry,) = (await client.health_service("db", tags=["primary"])).value
    assert sorted(c.check_id for c in primary_entry.checks) == ["db-check", "ext-check"]
    (db_check,) = (await client.health_checks("db")).value
    assert (db_check.check_id, db_check.status, db_check.output, db_check.node) == (
        "db-check",
        "passing",
        "ok",
        "ext-node",
    )
    assert (db_check.service_id, db_check.service_name, db_check.service_tags) == ("db-1", "db", ("primary", "v2"))
    assert [c.check_id for c in (await client.health_state("warning")).value] == ["ext-check"]
    assert sorted(c.check_id for c in (await client.health_state("passing")).value) == ["db-check", "serfHealth"]
    assert sorted(c.check_id for c in (await client.health_state("any")).value) == [
        "db-check",
        "ext-check",
        "serfHealth",
    ]
    node_checks = (await client.health_node("ext-node")).value
    assert {c.check_id: (c.status, c.notes) for c in node_checks} == {
        "db-check": ("passing", ""),
        "ext-check": ("warning", "disk 80%"),
    }
    with pytest.raises(BadRequest) as bad:
        await client.health_state("sideways")
    assert "sideways" in bad.value.message

    # Deregister a check, then a service, then the node with what is left.
    assert await client.catalog_deregister("ext-node", check_id="ext-check") is True
    assert {e.service.id: e.status for e in (await client.health_service("db")).value} == {
        "db-1": "passing",
        "db-2": "passing",  # no checks of its own, so only the (now gone) node check mattered
    }
    assert await client.catalog_deregister("ext-node", service_id="db-1") is True
    assert [e.service_id for e in (await client.catalog_service("db")).value] == ["db-2"]
    assert (await client.health_checks("db")).value == []
    assert await client.catalog_deregister("ext-node") is True
    assert (await client.catalog_node("ext-node")).value is None
    assert [n.name for n in (await client.catalog_nodes()).value] == [NODE]
    assert (await client.catalog_services()).value == {}

    with pytest.raises(ValueError, match="CatalogCheck"):
        CatalogRegistration(node="n", address="a", service=ttl_service("x", "x-1", "x-ttl")).to_json()


# === KV ===


async def test_kv_round_trips(client: RegistryClient) -> None:
    assert await client.kv_put("cfg/app/name", "café") is True
    assert await client.kv_put("cfg/app/blob", b"\x00\xff\x01", flags=42) is True
    assert await client.kv_put("cfg/app/db/host", "db.local") is True
    assert await client.kv_put("cfg/top", "t") is True
    assert await client.kv_put("cfg/empty", b"") is True
    assert await client.kv_put("cfg/with space/ünï", "odd key") is True

    name = await client.kv_get("cfg/app/name")
    assert isinstance(name.value, KVPair)
    assert (name.value.key, name.value.value, name.value.flags) == ("cfg/app/name", "café".encode(), 0)
    assert name.value.create_index == name.value.modify_index > 0
    assert name.index >= name.value.modify_index
    assert name.known_leader is True
    blob = (await client.kv_get("cfg/app/blob")).value
    assert blob is not None
    assert (blob.value, blob.flags) == (b"\x00\xff\x01", 42)
    empty = (await client.kv_get("cfg/empty")).value
    assert empty is not None
    assert empty.value is None  # Consul sends null for an empty value
    odd = (await client.kv_get("cfg/with space/ünï")).value
    assert odd is not None
    assert (odd.key, odd.value) == ("cfg/with space/ünï", b"odd key")

    # Omitting flags resets them, as in Consul.
    assert await client.kv_put("cfg/app/blob", b"\x02") is True
    blob2 = (await client.kv_get("cfg/app/blob")).value
    assert blob2 is not None
    assert (blob2.value, blob2.flags, blob2.create_index) == (b"\x02", 0, blob.create_index)
    assert blob2.modify_index > blob.modify_index

    missing = await client.kv_get("cfg/missing")
    assert missing.value is None
    assert missing.index > 0

    listed = (await client.kv_list("cfg/app/")).value
    assert [(p.key, p.value) for p in listed] == [
        ("cfg/app/blob", b"\x02"),
        ("cfg/app/db/host", b"db.local"),
        ("cfg/app/name", "café".encode()),
    ]
    assert (await client.kv_list("nothing/here/")).value == []

    every = (await client.kv_keys("cfg/")).value
    assert every == [
        "cfg/app/blob",
        "cfg/app/db/host",
        "cfg/app/name",
        "cfg/empty",
        "cfg/top",
        "cfg/with space/ünï",
    ]
    assert (await client.kv_keys("cfg/", separator="/")).value == [
        "cfg/app/",
        "cfg/empty",
        "cfg/top",
        "cfg/with space/",
    ]
    assert (await client.kv_keys("cfg/app/", "/")).value == ["cfg/app/blob", "cfg/app/db/", "cfg/app/name"]
    assert (await client.kv_keys("nothing/")).value == []

    # Check-and-set: 0 means "only if absent", N means "only if ModifyIndex is N".
    top = (await client.kv_get("cfg/top")).value
    assert top is not None
    assert await client.kv_put("cfg/top", "clobber", cas=0) is False
    assert await client.kv_put("cfg/top", "t2", cas=top.modify_index) is True
    assert await client.kv_put("cfg/top", "t3", cas=top.modify_index) is False
    top2 = (await client.kv_get("cfg/top")).value
    assert top2 is not None
    assert top2.value == b"t2"
    assert await client.kv_put("cfg/fresh", "new", cas=0) is True
    assert await client.kv_put("cfg/fresh", "again", cas=0) is False

    assert await client.kv_delete("cfg/top", cas=top.modify_index) is False
    assert (await client.kv_get("cfg/top")).value is not None
    assert await client.kv_delete("cfg/top", cas=top2.modify_index) is True
    assert (await client.kv_get("cfg/top")).value is None
    assert await client.kv_delete("cfg/never-existed") is True

    assert await client.kv_delete("cfg/app/", recurse=True) is True
    assert (await client.kv_list("cfg/app/")).value == []
    assert (await client.kv_keys("cfg/")).value == ["cfg/empty", "cfg/fresh", "cfg/with space/ünï"]
    assert await client.kv_delete("cfg/empty") is True
    assert (await client.kv_keys("cfg/")).value == ["cfg/fresh", "cfg/with space/ünï"]

    with pytest.raises(ValueError, match="leading"):
        await client.kv_get("/cfg/top")


# === blocking reads ===


async def test_awkward_names_survive_the_url(client: RegistryClient) -> None:
    for service_id in ("web 1", "web:1", "web/1", "web%1", "web?1#x", "wéb"):
        await client.register_service(ttl_service("odd name/x", service_id, f"chk {service_id}"))
        service = await client.agent_service(service_id)
        assert service is not None
        assert (service.id, service.name) == (service_id, "odd name/x")
        await client.ttl_pass(f"chk {service_id}")
        assert service_id in ids((await client.health_service("odd name/x", passing=True)).value)
        await client.deregister_service(service_id)
        assert await client.agent_service(service_id) is None
    keys = ["odd/amp&eq=1", "odd/enc%2Fslash", "odd/plus+sign", "odd/q?x#y%z", "odd/semi;colon"]
    for key in keys:
        assert await client.kv_put(key, key) is True
        pair = (await client.kv_get(key)).value
        assert pair is not None
        assert (pair.key, pair.value) == (key, key.encode())
    assert (await client.kv_keys("odd/")).value == keys


async def test_query_result_index_moves_with_writes(client: RegistryClient, http: aiohttp.ClientSession) -> None:
    before = await client.kv_get("idx/key")
    assert before.index > 0
    assert before.known_leader is True
    assert before.last_contact_ms == 0
    await client.kv_put("idx/key", "v")
    after = await client.kv_get("idx/key")
    assert after.index > before.index
    assert after.value is not None
    assert after.index == after.value.modify_index
    async with http.get("/v1/kv/idx/key") as raw:
        assert int(raw.headers["X-Consul-Index"]) == after.index
        assert raw.headers["X-Consul-KnownLeader"] == "true"
    # A write elsewhere does not move this key's index.
    await client.kv_put("idx/other", "v")
    assert (await client.kv_get("idx/key")).index == after.index
    stale = await client.kv_get("idx/key", consistency="stale")
    assert stale.value == after.value
    assert (await client.kv_get("idx/key", consistency="consistent")).value == after.value
    with pytest.raises(ValueError, match="consistency"):
        await client.kv_get("idx/key", consistency="eventual")  # type: ignore[arg-type]

    services = await client.catalog_services()
    await client.register_service(ServiceRegistration(name="idx-svc"))
    assert (await client.catalog_services()).index > services.index


async def test_blocking_read_returns_after_a_write(client: RegistryClient) -> None:
    await client.kv_put("block/key", "v1")
    first = await client.kv_get("block/key")

    result, elapsed = await blocked_then(
        client.kv_get("block/key", index=first.index, wait=10),
        lambda: client.kv_put("block/key", "v2"),
    )
    assert elapsed < 5
    assert result.index > first.index
    assert result.value is not None
    assert result.value.value == b"v2"

    # Nothing changes: the read is held for ``wait`` and returns the same index.
    quiet, elapsed = await blocked_then(client.kv_get("block/key", index=result.index, wait=0.3))
    assert 0.25 <= elapsed < 3
    assert quiet.index == result.index

    # Health reads block too, and wake on a TTL update.
    await client.register_service(ttl_service("blk", "blk-1", "blk-ttl"))
    health = await client.health_service("blk", passing=True)
    assert health.value == []
    woken, elapsed = await blocked_then(
        client.health_service("blk", passing=True, index=health.index, wait=10),
        lambda: client.ttl_pass("blk-ttl"),
    )
    assert elapsed < 5
    assert ids(woken.value) == ["blk-1"]
    assert woken.index > health.index


# === errors ===


async def test_bad_registration_is_bad_request_naming_the_field(client: RegistryClient) -> None:
    with pytest.raises(BadRequest) as raised:
        await client.register_service(ServiceRegistration(name="web", port=70000))
    error = raised.value
    assert isinstance(error, RegistryError)
    assert (error.status, error.method, error.path) == (400, "PUT", "/v1/agent/service/register")
    assert error.message == "Invalid Port: must be between 0 and 65535, got 70000"

    with pytest.raises(BadRequest) as raised:
        await client.register_service(
            ServiceRegistration(name="web", checks=[CheckRegistration(name="h", http="http://127.0.0.1:1/")])
        )
    assert "Checks[0].Interval" in raised.value.message
    assert await client.agent_services() == {}


async def test_deregistering_an_unknown_service_is_not_found(client: RegistryClient) -> None:
    with pytest.raises(NotFound) as raised:
        await client.deregister_service("ghost")
    error = raised.value
    assert (error.status, error.method, error.path) == (404, "PUT", "/v1/agent/service/deregister/ghost")
    assert 'Unknown service ID "ghost"' in error.message
    assert isinstance(error, RegistryError)


async def test_non_ttl_check_update_is_a_server_error(client: RegistryClient, backend: Backend) -> None:
    await client.register_check(
        CheckRegistration(name="probe", check_id="probe", tcp=f"127.0.0.1:{backend.port}", interval=10)
    )
    with pytest.raises(RegistryUnavailable) as raised:
        await client.ttl_pass("probe")
    assert raised.value.status == 500
    assert "does not have associated TTL" in raised.value.message


async def test_acl_token(start_registry: StartRegistry) -> None:
    server = await start_registry(acl_token="s3cret")
    async with RegistryClient(server.url, token="wrong") as wrong, RegistryClient(server.url) as anonymous:
        for c in (wrong, anonymous):
            with pytest.raises(PermissionDenied) as raised:
                await c.agent_services()
            assert (raised.value.status, raised.value.message) == (403, "Permission denied")
            with pytest.raises(PermissionDenied):
                await c.kv_put("secret/key", "v")
            with pytest.raises(PermissionDenied):
                await c.health_service("web")
            # Status endpoints stay open for probes, as in Consul.
            assert await c.leader() == "127.0.0.1:8300"
    async with RegistryClient(server.url, token="s3cret") as right:
        assert await right.kv_put("secret/key", "v") is True
        pair = (await right.kv_get("secret/key")).value
        assert pair is not None
        assert pair.value == b"v"
        assert await right.agent_services() == {}


async def test_unreachable_registry_is_unavailable(start_registry: StartRegistry) -> None:
    # Nothing listens on the port.
    async with RegistryClient(f"http://127.0.0.1:{free_port()}", request_timeout=2) as nobody:
        with pytest.raises(RegistryUnavailable) as raised:
            await nobody.agent_services()
        assert (raised.value.status, raised.value.method, raised.value.path) == (0, "GET", "/v1/agent/services")
        with pytest.raises(RegistryUnavailable):
            await nobody.kv_get("k", index=5, wait=1)

    # The registry was there (the client holds a pooled connection) and has stopped.
    server = await start_registry()
    async with RegistryClient(server.url, request_timeout=2) as c:
        assert await c.kv_put("k", "v") is True
        await server.stop()
        with pytest.raises(RegistryUnavailable) as raised:
            await c.kv_get("k")
        assert raised.value.status == 0
        with pytest.raises(RegistryUnavailable):
            await c.register_service(ServiceRegistration(name="web"))


# === watches ===


async def test_watch_health_service_follows_ttl_flips(client: RegistryClient) -> None:
    await client.register_service(ttl_service("w", "w-1", "w-ttl", status="passing"))
    feed = Feed(client.watch_health_service("w", wait=5))
    try:
        initial = await feed.next()
        assert ids(initial.value) == ["w-1"]
        assert initial.value[0].status == "passing"

        await client.ttl_fail("w-ttl")
        failed = await feed.next()
        assert failed.value == []  # passing=True is the watch's default
        assert failed.index > initial.index

        await client.ttl_pass("w-ttl", note="back")
        back = await feed.next()
        assert ids(back.value) == ["w-1"]
        assert back.index > failed.index
        (check,) = [c for c in back.value[0].checks if c.check_id == "w-ttl"]
        assert (check.status, check.output) == ("passing", "back")
    finally:
        await feed.stop()

    # With passing=False the watch sees the failing instance and its status.
    every = Feed(client.watch_health_service("w", passing=False, wait=5))
    try:
        assert [e.status for e in (await every.next()).value] == ["passing"]
        await client.ttl_warn("w-ttl")
        assert [e.status for e in (await every.next()).value] == ["warning"]
    finally:
        await every.stop()


async def test_watch_does_not_busy_loop(client: RegistryClient, monkeypatch: pytest.MonkeyPatch) -> None:
    await client.register_service(ttl_service("quiet", "quiet-1", "quiet-ttl", status="passing"))
    fetches = 0
    health_service = client.health_service

    async def counting(*args: Any, **kwargs: Any) -> QueryResult[list[HealthServiceEntry]]:
        nonlocal fetches
        fetches += 1
        return await health_service(*args, **kwargs)

    monkeypatch.setattr(client, "health_service", counting)
    feed = Feed(client.watch_health_service("quiet", wait=0.2))
    try:
        assert ids((await feed.next()).value) == ["quiet-1"]
        start = fetches
        await asyncio.sleep(1.0)
        during = fetches - start
        # Each request is held ~0.2 s by the server (and paced by the watch): about 5, never hundreds.
        assert 2 <= during <= 8, during
        assert feed.results.empty()  # nothing changed, nothing yielded

        await client.ttl_fail("quiet-ttl")
        assert (await feed.next(timeout=3)).value == []
    finally:
        await feed.stop()


async def test_watch_survives_registry_restart(start_registry: StartRegistry, tmp_path: Path) -> None:
    settings: dict[str, Any] = {"http_addr": f"127.0.0.1:{free_port()}", "data_dir": tmp_path / "restart"}
    first = await start_registry(**settings)
    async with RegistryClient(first.url, request_timeout=2) as client:
        await client.register_service(ttl_service("api", "api-1", "api-ttl", status="passing"))
        watch = client.watch_health_service("api", wait=0.5)
        feed = Feed(watch)
        try:
            initial = await feed.next()
            assert ids(initial.value) == ["api-1"]

            await first.stop()

            async def failing() -> bool:
                return watch.failures > 0

            await eventually(failing, "the watch to notice the registry is gone")
            assert isinstance(watch.last_error, RegistryUnavailable)
            assert feed.results.empty()

            second = await start_registry(**settings)
            assert second.url == first.url
            # The registration survived on disk; the watch resumes against the new process.
            service = await client.agent_service("api-1")
            assert service is not None
            assert service.port == 9000

            await client.ttl_fail("api-ttl")
            failed = await feed.next(timeout=10)
            assert failed.value == []
            assert failed.index > initial.index
            assert watch.failures == 0
            assert isinstance(watch.last_error, RegistryUnavailable)  # kept for diagnostics

            await client.ttl_pass("api-ttl")
            assert ids((await feed.next()).value) == ["api-1"]
        finally:
            await feed.stop()


async def test_watch_kv_prefix(client: RegistryClient) -> None:
    await client.kv_put("app/config/a", "1")
    feed = Feed(client.watch_kv_prefix("app/config/", wait=5))
    try:
        initial = await feed.next()
        assert [(p.key, p.value) for p in initial.value] == [("app/config/a", b"1")]

        # A write outside the prefix does not produce a result; the next one is the put below.
        await client.kv_put("app/other", "x")
        await client.kv_put("app/config/b", "2")
        added = await feed.next()
        assert [(p.key, p.value) for p in added.value] == [("app/config/a", b"1"), ("app/config/b", b"2")]
        assert added.index > initial.index

        await client.kv_put("app/config/a", "1b", flags=3)
        updated = await feed.next()
        assert [(p.key, p.value, p.flags) for p in updated.value] == [
            ("app/config/a", b"1b", 3),
            ("app/config/b", b"2", 0),
        ]

        await client.kv_delete("app/config/a")
        deleted = await feed.next()
        assert [p.key for p in deleted.value] == ["app/config/b"]

        await client.kv_delete("app/config/", recurse=True)
        emptied = await feed.next()
        assert emptied.value == []
    finally:
        await feed.stop()


async def test_watch_catalog_services(client: RegistryClient) -> None:
    feed = Feed(client.watch_catalog_services(wait=5))
    try:
        assert (await feed.next()).value == {}
        await client.register_service(ServiceRegistration(name="cache", id="cache-1", tags=["redis"]))
        assert (await feed.next()).value == {"cache": ("redis",)}
        await client.deregister_service("cache-1")
        assert (await feed.next()).value == {}
    finally:
        await feed.stop()
