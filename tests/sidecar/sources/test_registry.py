"""The registry source against the real embedded registry: every change goes over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from discovery.client import RegistryClient
from discovery.client_models import CheckRegistration, ServiceRegistration, Weights
from discovery.server import RegistryServer
from mesh.model.dump import snapshot_to_dict
from mesh.model.parse import parse_snapshot
from mesh.model.routing import select_route
from mesh.model.snapshot import Snapshot
from sidecar.sources.defaults import SidecarSettings
from sidecar.sources.registry import RegistrySource
from tests.sidecar.sources.recorder import Recorder


@pytest.fixture(autouse=True)
def _no_consul_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CONSUL_HTTP_ADDR", "CONSUL_HTTP_TOKEN", "CONSUL_HTTP_SSL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def client(registry: RegistryServer) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(registry.url, max_connections=0) as c:
        yield c


@pytest.fixture
async def start(client: RegistryClient) -> AsyncIterator[Callable[..., Any]]:
    """Run a RegistrySource (and its recorder) until the test ends."""
    tasks: list[asyncio.Task[None]] = []

    async def run(
        settings: SidecarSettings | None = None, recorder: Recorder | None = None, **options: Any
    ) -> tuple[RegistrySource, Recorder]:
        source = RegistrySource(settings or SidecarSettings(app_port=8080), client, **options)
        recorder = recorder or Recorder()
        tasks.append(asyncio.create_task(source.run(recorder.apply)))
        await recorder.until(lambda: bool(recorder.offered))
        return source, recorder

    yield run
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def instance(
    name: str,
    service_id: str,
    *,
    port: int = 8080,
    status: str = "passing",
    address: str | None = None,
    meta: dict[str, str] | None = None,
    weight: int | None = None,
) -> ServiceRegistration:
    return ServiceRegistration(
        name=name,
        id=service_id,
        port=port,
        address=address,
        meta=meta or {},
        weights=None if weight is None else Weights(passing=weight, warning=1),
        checks=(CheckRegistration(name="ttl", check_id=f"{service_id}-ttl", ttl=60, status=status),),
    )


def endpoints(snapshot: Snapshot | None, cluster: str) -> list[tuple[str, int, int]]:
    assert snapshot is not None
    return [(e.host, e.port, e.weight) for e in snapshot.clusters[cluster].endpoints]


def routes(snapshot: Snapshot | None, host: str) -> str | None:
    """The cluster an outbound request for ``host`` goes to under ``snapshot``."""
    assert snapshot is not None
    selection = select_route(snapshot.route_tables["outbound"], host, "GET", "/", "", {})
    return None if selection is None else selection.route.clusters[0].name


async def test_first_snapshot_has_the_standard_listeners(start: Callable[..., Any]) -> None:
    settings = SidecarSettings(service="me", app_port=9000, upstreams=(("db", 15432),))
    source, recorder = await start(settings)
    snapshot = recorder.current
    assert snapshot is not None
    assert snapshot.version == "registry:1"
    assert [(li.name, li.protocol, li.port, li.direction) for li in snapshot.listeners] == [
        ("outbound", "http", 15001, "outbound"),
        ("inbound", "http", 15006, "inbound"),
        ("upstream|db", "tcp", 15432, "outbound"),
    ]
    assert endpoints(snapshot, "inbound|9000") == [("127.0.0.1", 9000, 1)]
    assert endpoints(snapshot, "tcp|db") == []  # db is not registered yet
    assert routes(snapshot, "anything") is None
    assert source.watched == {"db"}
    assert source.unknown == ()  # upstreams are never "unknown" names
    assert parse_snapshot(snapshot_to_dict(snapshot)) == snapshot  # every reference resolves


async def test_upstream_is_watched_eagerly(client: RegistryClient, start: Callable[..., Any]) -> None:
    await client.register_service(instance("db", "db-1", port=5432, address="10.0.0.5"))
    _, recorder = await start(SidecarSettings(upstreams=(("db", 15432),)))
    assert endpoints(recorder.current, "tcp|db") == [("10.0.0.5", 5432, 1)]
    assert recorder.current is not None
    assert recorder.current.clusters["tcp|db"].protocol == "tcp"
    await client.register_service(instance("db", "db-2", port=5433, address="10.0.0.6"))
    await recorder.until(lambda: len(endpoints(recorder.current, "tcp|db")) == 2)


async def test_demand_for_a_registered_service(client: RegistryClient, start: Callable[..., Any]) -> None:
    await client.register_service(instance("web", "web-1", port=8081, address="10.0.0.7", weight=5))
    await client.register_service(instance("web", "web-2", port=8082))  # no address: the node's
    source, recorder = await start()
    assert routes(recorder.current, "web") is None
    assert await source.demand("web.service.consul:80")
    snapshot = recorder.current
    assert sorted(endpoints(snapshot, "web")) == [("10.0.0.7", 8081, 5), ("127.0.0.1", 8082, 1)]
    for host in (
        "web",
        "WEB:8080",
        "web.service.consul",
        "web.service.dc1.consul",
        "web.default",
        "web.default.svc",
        "web.default.svc.cluster.local:80",
    ):
        assert routes(snapshot, host) == "web", host
    assert routes(snapshot, "web.other.svc.cluster.local") is None
    assert snapshot is not None
    assert snapshot.clusters["web"].service == "web"
    assert snapshot.clusters["web"].lb.kind == "round_robin"
    endpoint = snapshot.clusters["web"].endpoints[0]
    assert dict(endpoint.metadata)["consul.node"] == "node1"
    assert parse_snapshot(snapshot_to_dict(snapshot)) == snapshot


async def test_demand_for_an_unknown_service_then_it_registers(
    client: RegistryClient, start: Callable[..., Any]
) -> None:
    source, recorder = await start()
    assert not await source.demand("api")
    assert source.unknown == ("api",)
    assert source.watched == {"api"}  # still watched, so it appears when registered
    await client.register_service(instance("api", "api-1", port=9001, address="10.0.0.9"))
    await recorder.until(lambda: "api" in recorder.current.clusters)
    assert endpoints(recorder.current, "api") == [("10.0.0.9", 9001, 1)]
    assert source.unknown == ()
    assert await source.demand("api")


async def test_known_service_with_nothing_passing_has_an_empty_cluster(
    client: RegistryClient, start: Callable[..., Any]
) -> None:
    await client.register_service(instance("web", "web-1", status="critical"))
    await client.register_service(instance("web", "web-2", status="warning"))
    source, recorder = await start()
    assert await source.demand("web")  # known: routed (the proxy answers 503, not 404)
    assert endpoints(recorder.current, "web") == []
    assert routes(recorder.current, "web") == "web"


async def test_health_flips_and_deregistration(client: RegistryClient, start: Callable[..., Any]) -> None:
    await client.register_service(instance("web", "web-1", status="critical", address="10.0.0.1"))
    source, recorder = await start()
    assert await source.demand("web")
    assert endpoints(recorder.current, "web") == []
    await client.ttl_pass("web-1-ttl")
    await recorder.until(lambda: endpoints(recorder.current, "web") == [("10.0.0.1", 8080, 1)])
    await client.ttl_fail("web-1-ttl")
    await recorder.until(lambda: endpoints(recorder.current, "web") == [])
    await client.deregister_service("web-1")
    await recorder.until(lambda: "web" not in recorder.current.clusters)
    assert routes(recorder.current, "web") is None  # gone: 404 again
    assert source.unknown == ("web",)


async def test_namespace_from_meta(client: RegistryClient, start: Callable[..., Any]) -> None:
    await client.register_service(instance("pay", "pay-1", meta={"k8s-namespace": "billing"}))
    source, recorder = await start()
    assert await source.demand("pay.billing.svc.cluster.local")
    assert not await source.demand("pay.default.svc.cluster.local")
    assert routes(recorder.current, "pay.billing") == "pay"


async def test_hosts_that_name_no_service_start_no_watch(start: Callable[..., Any]) -> None:
    source, _ = await start()
    for host in ("10.0.0.1:80", "www.example.com", "[::1]:8080", "bad host", ""):
        assert not await source.demand(host)
    assert source.watched == frozenset()


async def test_unknown_names_are_bounded(client: RegistryClient, start: Callable[..., Any]) -> None:
    await client.register_service(instance("web", "web-1"))
    source, _ = await start(max_unknown=3)
    assert await source.demand("web")
    for name in ("n1", "n2", "n3", "n4", "n5"):
        assert not await source.demand(name)
    assert source.unknown == ("n3", "n4", "n5")
    assert source.watched == {"web", "n3", "n4", "n5"}  # known services are never dropped
    assert not await source.demand("n3")  # asking again makes it the most recent
    assert source.unknown == ("n4", "n5", "n3")


async def test_concurrent_demands_share_one_watch(client: RegistryClient, start: Callable[..., Any]) -> None:
    await client.register_service(instance("web", "web-1"))
    source, recorder = await start()
    results = await asyncio.gather(*(source.demand("web") for _ in range(20)))
    assert all(results)
    assert source.watched == {"web"}
    assert len(recorder.offered) == 2  # the first snapshot and the one with web


async def test_bursts_are_coalesced(client: RegistryClient, start: Callable[..., Any]) -> None:
    names = [f"s{i}" for i in range(5)]
    for name in names:
        await client.register_service(instance(name, f"{name}-1", status="critical"))
    source, recorder = await start(coalesce=0.5)
    assert all(await asyncio.gather(*(source.demand(name) for name in names)))
    before = len(recorder.offered)
    await asyncio.gather(*(client.ttl_pass(f"{name}-1-ttl") for name in names))
    await recorder.until(lambda: all(endpoints(recorder.current, name) for name in names))
    assert len(recorder.offered) == before + 1  # five changes, one snapshot


async def test_a_rejected_snapshot_is_not_reported_as_routed(client: RegistryClient, start: Callable[..., Any]) -> None:
    await client.register_service(instance("web", "web-1"))
    recorder = Recorder(reject=lambda s: "no room" if "web" in s.clusters else None)
    source, _ = await start(recorder=recorder)
    assert not await source.demand("web")
    assert source.stats.rejected == 1
    assert source.stats.last_error == "no room"
    assert source.stats.version == "registry:1"


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="--upstream"):
        RegistrySource(SidecarSettings(upstreams=(("db", 15001),)), RegistryClient("127.0.0.1:1"))


async def test_a_flap_inside_the_window_never_shows(client: RegistryClient, start: Callable[..., Any]) -> None:
    await client.register_service(instance("web", "web-1", address="10.0.0.1"))
    source, recorder = await start(coalesce=1.0)
    assert await source.demand("web")
    offered = len(recorder.offered)
    await client.ttl_fail("web-1-ttl")
    await client.ttl_pass("web-1-ttl")
    await client.register_service(instance("web", "web-2", address="10.0.0.2"))  # a real change, to wait on
    await recorder.until(lambda: len(endpoints(recorder.current, "web")) == 2)
    assert all(endpoints(s, "web") for s in recorder.offered[offered:])  # never an empty web
