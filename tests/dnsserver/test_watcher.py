"""ViewWatcher against the real embedded registry: every change goes over HTTP to a live server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from discovery.client import RegistryClient
from discovery.client_models import (
    CatalogRegistration,
    CheckRegistration,
    HealthServiceEntry,
    QueryResult,
    ServiceRegistration,
    Weights,
)
from discovery.server import RegistryServer
from dnsserver.view import Endpoint, RegistryView
from dnsserver.watcher import ViewWatcher, recommended_max_connections
from mesh.demo.processes import free_port

StartRegistry = Callable[..., Awaitable[RegistryServer]]
NODE = "node1"  # the registry's own agent node (conftest); its address is 127.0.0.1


@pytest.fixture(autouse=True)
def _no_consul_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CONSUL_HTTP_ADDR", "CONSUL_HTTP_TOKEN", "CONSUL_HTTP_SSL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def client(registry: RegistryServer) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(registry.url) as c:
        yield c


class Recorder:
    """An ``on_change`` hook that remembers every published view with its publish time."""

    def __init__(self) -> None:
        self.views: list[tuple[float, RegistryView]] = []

    def __call__(self, view: RegistryView) -> None:
        self.views.append((time.monotonic(), view))


@pytest.fixture
async def watcher(client: RegistryClient) -> AsyncIterator[ViewWatcher]:
    w = ViewWatcher(client, datacenter="dc1", on_change=Recorder())
    yield w
    await w.close()


def recorder(w: ViewWatcher) -> Recorder:
    hook = w._on_change
    assert isinstance(hook, Recorder)
    return hook


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> float:
    """Poll ``predicate`` every millisecond until it holds; return the seconds it took."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        await asyncio.sleep(0.001)
    return time.monotonic() - start


def ttl_service(
    name: str,
    service_id: str,
    check_id: str,
    *,
    status: str = "passing",
    port: int = 8080,
    address: str | None = None,
    tags: tuple[str, ...] = (),
    meta: dict[str, str] | None = None,
    weights: Weights | None = None,
) -> ServiceRegistration:
    return ServiceRegistration(
        name=name,
        id=service_id,
        port=port,
        address=address,
        tags=tags,
        meta=meta or {},
        weights=weights,
        checks=(CheckRegistration(name=f"{service_id} ttl", check_id=check_id, ttl=60, status=status),),
    )


def endpoint(view: RegistryView, service: str, service_id: str) -> Endpoint | None:
    for ep in view.services.get(service, ()):
        if ep.service_id == service_id:
            return ep
    return None


def status_of(w: ViewWatcher, service: str, service_id: str) -> str | None:
    ep = endpoint(w.view, service, service_id)
    return None if ep is None else ep.status


# === initial sync ===


async def test_initial_sync_builds_endpoints(client: RegistryClient, watcher: ViewWatcher) -> None:
    await client.register_service(
        ttl_service(
            "Web",
            "web-1",
            "web-1-ttl",
            port=8080,
            address="10.1.0.7",
            tags=("v1", "primary"),
            meta={"k8s-namespace": "prod", "k8s-port-http": "tcp", "version": "1.2"},
            weights=Weights(passing=5, warning=2),
        )
    )
    await client.register_service(ttl_service("web", "web-2", "web-2-ttl", port=8081, status="warning"))
    await client.register_service(ttl_service("db", "db-1", "db-1-ttl", port=5432, status="critical"))
    await client.catalog_register(
        CatalogRegistration(node="ext1", address="10.9.0.1", node_meta={"rack": "r1"}, service=None)
    )

    before = watcher.view
    assert (before.version, before.synced, dict(before.services)) == (0, False, {})
    assert not watcher.ready
    await watcher.start()
    view = await watcher.wait_synced(timeout=5)

    assert view.synced
    assert view.version == 1
    assert watcher.ready
    assert view is watcher.view
    assert isinstance(view.services, MappingProxyType)
    assert isinstance(view.nodes, MappingProxyType)
    # Names differing only in case are one DNS name: keys are lower-cased, endpoints merged.
    assert sorted(view.services) == ["db", "web"]
    assert [ep.service_id for ep in view.services["web"]] == ["web-1", "web-2"]

    web1 = endpoint(view, "web", "web-1")
    assert web1 is not None
    assert web1.service == "Web"
    assert web1.node == NODE
    assert (web1.address, web1.own_address, web1.port) == ("10.1.0.7", True, 8080)
    assert web1.status == "passing"
    assert web1.tags == ("v1", "primary")
    assert dict(web1.meta) == {"k8s-namespace": "prod", "k8s-port-http": "tcp", "version": "1.2"}
    assert isinstance(web1.meta, MappingProxyType)
    assert web1.namespace == "prod"
    assert [(p.name, p.protocol, p.port) for p in web1.named_ports()] == [("http", "tcp", 8080)]
    assert (web1.weight_passing, web1.weight_warning) == (5, 2)

    web2 = endpoint(view, "web", "web-2")
    assert web2 is not None
    # No service address: the node's address, and own_address False.
    assert (web2.address, web2.own_address, web2.port, web2.status) == ("127.0.0.1", False, 8081, "warning")
    assert web2.namespace == "default"
    assert web2.tags == ()
    assert (web2.weight_passing, web2.weight_warning) == (1, 1)

    assert status_of(watcher, "db", "db-1") == "critical"  # critical instances are kept: DNS filters

    assert sorted(view.nodes) == ["ext1", NODE]
    assert view.nodes["ext1"].address == "10.9.0.1"
    assert dict(view.nodes["ext1"].meta) == {"rack": "r1"}
    assert view.nodes[NODE].address == "127.0.0.1"
    assert watcher.service_watches == 3
    assert [v.version for _, v in recorder(watcher).views] == [1]


async def test_empty_registry_syncs(watcher: ViewWatcher) -> None:
    await watcher.start()
    view = await watcher.wait_synced(timeout=5)
    assert view.synced
    assert watcher.ready
    assert dict(view.services) == {}
    assert list(view.nodes) == [NODE]


# === changes ===


async def test_ttl_flip_shows_up_quickly(client: RegistryClient, watcher: ViewWatcher) -> None:
    await client.register_service(ttl_service("api", "api-1", "api-1-ttl"))
    await client.register_service(ttl_service("api", "api-2", "api-2-ttl"))
    await watcher.start()
    await watcher.wait_synced(timeout=5)
    assert status_of(watcher, "api", "api-1") == "passing"
    await asyncio.sleep(0.3)  # let the watches park their long polls

    version = watcher.view.version
    await client.ttl_fail("api-1-ttl")
    took = await eventually(lambda: status_of(watcher, "api", "api-1") == "critical", "the fail to show")
    assert took < 0.5, f"took {took:.3f}s"
    assert watcher.view.version == version + 1
    assert status_of(watcher, "api", "api-2") == "passing"

    await client.ttl_warn("api-1-ttl")
    took = await eventually(lambda: status_of(watcher, "api", "api-1") == "warning", "the warn to show")
    assert took < 0.5, f"took {took:.3f}s"

    await client.ttl_pass("api-1-ttl")
    await eventually(lambda: status_of(watcher, "api", "api-1") == "passing", "the pass to show")
    versions = [v.version for _, v in recorder(watcher).views]
    assert versions == list(range(1, len(versions) + 1))  # one new view per change, in order


async def test_node_check_makes_every_instance_on_the_node_critical(
    client: RegistryClient, watcher: ViewWatcher
) -> None:
    await client.register_service(ttl_service("api", "api-1", "api-1-ttl"))
    await client.register_check(CheckRegistration(name="node ttl", check_id="node-ttl", ttl=60, status="passing"))
    await watcher.start()
    await watcher.wait_synced(timeout=5)
    assert status_of(watcher, "api", "api-1") == "passing"

    await client.ttl_warn("node-ttl")
    await eventually(lambda: status_of(watcher, "api", "api-1") == "warning", "node warning to show")
    await client.ttl_fail("api-1-ttl")
    await eventually(lambda: status_of(watcher, "api", "api-1") == "critical", "critical to win")
    await client.ttl_pass("api-1-ttl")
    await eventually(lambda: status_of(watcher, "api", "api-1") == "warning", "node warning to remain")


async def test_change_is_published_within_milliseconds_of_the_watch_returning(client: RegistryClient) -> None:
    """Instrument the client: the time from a health read returning to the new view is tiny."""
    returned: list[float] = []

    class TimedClient(RegistryClient):
        async def health_service(self, *args: Any, **kwargs: Any) -> QueryResult[list[HealthServiceEntry]]:
            result = await super().health_service(*args, **kwargs)
            returned.append(time.monotonic())
            return result

    async with TimedClient(client.config) as timed:
        hook = Recorder()
        w = ViewWatcher(timed, on_change=hook)
        try:
            await client.register_service(ttl_service("api", "api-1", "api-1-ttl"))
            await w.start()
            await w.wait_synced(timeout=5)
            await asyncio.sleep(0.3)
            await client.ttl_fail("api-1-ttl")
            await eventually(lambda: status_of(w, "api", "api-1") == "critical", "the fail to show")
            published_at = hook.views[-1][0]
            assert published_at - returned[-1] < 0.010
        finally:
            await w.close()


async def test_new_and_deregistered_services(client: RegistryClient, watcher: ViewWatcher) -> None:
    await client.register_service(ttl_service("api", "api-1", "api-1-ttl"))
    await watcher.start()
    await watcher.wait_synced(timeout=5)
    assert sorted(watcher.view.services) == ["api"]

    await client.register_service(ttl_service("cache", "cache-1", "cache-1-ttl", port=6379, tags=("redis",)))
    await eventually(lambda: "cache" in watcher.view.services, "the new service to appear")
    new = endpoint(watcher.view, "cache", "cache-1")
    assert new is not None
    assert (new.port, new.tags, new.status) == (6379, ("redis",), "passing")
    assert watcher.service_watches == 2

    # A second instance, then removing one instance, then the whole service.
    await client.register_service(ttl_service("cache", "cache-2", "cache-2-ttl", port=6380))
    await eventually(lambda: len(watcher.view.services.get("cache", ())) == 2, "the second instance")
    await client.deregister_service("cache-1")
    await eventually(
        lambda: [ep.service_id for ep in watcher.view.services.get("cache", ())] == ["cache-2"], "cache-1 to go"
    )
    await client.deregister_service("cache-2")
    await eventually(lambda: "cache" not in watcher.view.services, "the service to disappear")
    await eventually(lambda: watcher.service_watches == 1, "its watch to be cancelled")
    assert sorted(watcher.view.services) == ["api"]
    assert watcher.ready

    # Re-registering a removed name starts a new watch.
    await client.register_service(ttl_service("cache", "cache-3", "cache-3-ttl"))
    await eventually(lambda: endpoint(watcher.view, "cache", "cache-3") is not None, "cache to come back")


async def test_node_address_change(client: RegistryClient, watcher: ViewWatcher) -> None:
    def register(address: str) -> CatalogRegistration:
        return CatalogRegistration(
            node="ext1",
            address=address,
            node_meta={"zone": "a"},
            service=ServiceRegistration(name="legacy", id="legacy-1", port=7000),
        )

    await client.catalog_register(register("10.0.0.1"))
    await client.catalog_register(
        CatalogRegistration(
            node="ext1", address="10.0.0.1", service=ServiceRegistration(name="pinned", id="p-1", address="10.5.5.5")
        )
    )
    await watcher.start()
    await watcher.wait_synced(timeout=5)
    legacy = endpoint(watcher.view, "legacy", "legacy-1")
    assert legacy is not None
    assert (legacy.address, legacy.own_address, legacy.node, legacy.status) == ("10.0.0.1", False, "ext1", "passing")
    assert watcher.view.nodes["ext1"].address == "10.0.0.1"

    await client.catalog_register(register("10.0.0.2"))

    def moved() -> bool:
        ep = endpoint(watcher.view, "legacy", "legacy-1")
        return ep is not None and ep.address == "10.0.0.2" and watcher.view.nodes["ext1"].address == "10.0.0.2"

    took = await eventually(moved, "the node's new address")
    assert took < 0.5
    assert dict(watcher.view.nodes["ext1"].meta) == {"zone": "a"}
    pinned = endpoint(watcher.view, "pinned", "p-1")
    assert pinned is not None
    assert (pinned.address, pinned.own_address) == ("10.5.5.5", True)  # its own address wins

    await client.catalog_deregister("ext1")
    await eventually(lambda: "ext1" not in watcher.view.nodes, "the node to go")
    await eventually(lambda: "legacy" not in watcher.view.services, "its services to go")


async def test_views_are_never_mutated(client: RegistryClient, watcher: ViewWatcher) -> None:
    await client.register_service(ttl_service("api", "api-1", "api-1-ttl"))
    await watcher.start()
    first = await watcher.wait_synced(timeout=5)
    await client.register_service(ttl_service("other", "other-1", "other-1-ttl"))
    await eventually(lambda: "other" in watcher.view.services, "other to appear")
    assert sorted(first.services) == ["api"]  # the old snapshot is untouched
    assert watcher.view is not first
    with pytest.raises(TypeError):
        first.services["x"] = ()  # type: ignore[index]


# === outages ===


async def test_registry_down_keeps_last_view_then_recovers(start_registry: StartRegistry, tmp_path: Path) -> None:
    settings: dict[str, Any] = {"http_addr": f"127.0.0.1:{free_port()}", "data_dir": tmp_path / "restart"}
    first = await start_registry(**settings)
    async with RegistryClient(first.url, request_timeout=2) as client:
        await client.register_service(ttl_service("api", "api-1", "api-1-ttl"))
        w = ViewWatcher(client, backoff_cap=0.5, probe_interval=0.2)
        try:
            await w.start()
            synced = await w.wait_synced(timeout=5)
            assert w.ready

            await first.stop()
            await eventually(lambda: not w.ready, "ready to turn False")
            assert w.view is synced  # the last view keeps being served
            assert w.view.synced
            assert status_of(w, "api", "api-1") == "passing"

            second = await start_registry(**settings)
            assert second.url == first.url
            await eventually(lambda: w.ready, "ready to turn True again", timeout=10)
            assert w.view.version == synced.version  # nothing changed while it was down

            await client.ttl_fail("api-1-ttl")
            await eventually(lambda: status_of(w, "api", "api-1") == "critical", "a fresh change", timeout=5)
            await client.register_service(ttl_service("late", "late-1", "late-1-ttl"))
            await eventually(lambda: "late" in w.view.services, "a new service after the restart")
            assert w.ready
        finally:
            await w.close()


async def test_unreachable_registry_never_syncs(start_registry: StartRegistry) -> None:
    async with RegistryClient(f"http://127.0.0.1:{free_port()}", request_timeout=1) as client:
        w = ViewWatcher(client, backoff_cap=0.2)
        try:
            await w.start()
            with pytest.raises(TimeoutError):
                await w.wait_synced(timeout=0.5)
            assert not w.ready
            assert w.view.version == 0
            assert not w.view.synced
        finally:
            await w.close()


# === scale and lifecycle ===


async def test_many_services_start_staggered(registry: RegistryServer) -> None:
    count = 300
    in_flight = 0
    peak = 0

    class CountingClient(RegistryClient):
        async def health_service(self, *args: Any, **kwargs: Any) -> QueryResult[list[HealthServiceEntry]]:
            nonlocal in_flight, peak
            if kwargs.get("index"):
                return await super().health_service(*args, **kwargs)
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return await super().health_service(*args, **kwargs)
            finally:
                in_flight -= 1

    async with RegistryClient(registry.url) as writer:
        await asyncio.gather(
            *(
                writer.catalog_register(
                    CatalogRegistration(
                        node=f"n{i % 10}",
                        address=f"10.2.0.{i % 10}",
                        service=ServiceRegistration(name=f"svc-{i}", id=f"svc-{i}", port=1000 + i),
                    )
                )
                for i in range(count)
            )
        )
    async with CountingClient(registry.url, max_connections=recommended_max_connections(count)) as client:
        hook = Recorder()
        w = ViewWatcher(client, startup_concurrency=8, on_change=hook)
        try:
            await w.start()
            view = await w.wait_synced(timeout=20)
            assert len(view.services) == count
            assert len(view.nodes) == 11
            assert peak <= 8
            assert w.ready
            assert [v.version for _, v in hook.views] == [1]  # one view for the whole first sync
            await asyncio.sleep(0.3)
            async with RegistryClient(registry.url) as writer:
                await writer.catalog_deregister("n3", service_id="svc-3")
            await eventually(lambda: "svc-3" not in w.view.services, "a removal among many")
            assert w.ready
        finally:
            await w.close()
    assert recommended_max_connections(10_000) > 10_000


async def test_close_cancels_everything(client: RegistryClient) -> None:
    await client.register_service(ttl_service("api", "api-1", "api-1-ttl"))
    before = {t for t in asyncio.all_tasks() if t.get_name().startswith("dns-watch:")}
    w = ViewWatcher(client)
    await w.start()
    await w.wait_synced(timeout=5)
    assert {t for t in asyncio.all_tasks() if t.get_name().startswith("dns-watch:")} - before
    await w.close()
    await w.close()  # idempotent
    assert not {t for t in asyncio.all_tasks() if t.get_name().startswith("dns-watch:")} - before
    assert w.view.synced  # the last view stays readable
    with pytest.raises(RuntimeError):
        await w.start()


async def test_on_change_errors_do_not_stop_the_watcher(client: RegistryClient) -> None:
    calls: list[int] = []

    def broken(view: RegistryView) -> None:
        calls.append(view.version)
        raise RuntimeError("metrics are down")

    await client.register_service(ttl_service("api", "api-1", "api-1-ttl"))
    w = ViewWatcher(client, on_change=broken)
    try:
        await w.start()
        await w.wait_synced(timeout=5)
        await client.ttl_fail("api-1-ttl")
        await eventually(lambda: status_of(w, "api", "api-1") == "critical", "the change despite the hook")
        assert calls == [1, 2]
    finally:
        await w.close()
