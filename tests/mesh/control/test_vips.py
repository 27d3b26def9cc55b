"""Service virtual IPs: allocated by the control plane into the registry's KV, answered by cluster DNS,
stable across control-plane restarts, and routed by sidecars whose app calls the address."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import aiohttp
import dns.asyncquery
import dns.message
import dns.reversename
import pytest

from discovery.server import RegistryServer
from mesh.control.plane import DEFAULT_BOOTSTRAP
from mesh.control.server import ControlServer
from mesh.control.vips import VipRangeError, next_free, parse_range, wanted_services
from tests.dnsserver.test_dns_e2e import StartDns, start_dns
from tests.mesh.control.fixtures import FAST, register

__all__ = ["start_dns"]  # the fixture, used below
RANGE = "240.240.0.0/29"


def test_next_free_and_ranges() -> None:
    network = parse_range(RANGE)
    assert next_free(network, []) == "240.240.0.1"
    assert next_free(network, ["240.240.0.1", "240.240.0.3"]) == "240.240.0.2"
    assert next_free(network, [str(a) for a in network.hosts()]) is None
    assert next_free(ipaddress.ip_network("fd00::/125"), []) == "fd00::1"
    for bad in ("240.240.0.1/16", "not-a-cidr", "10.0.0.0/31"):
        with pytest.raises(VipRangeError):
            parse_range(bad)


def test_wanted_services() -> None:
    wanted = wanted_services(
        {
            "web": [{}, {"version": "v2"}],
            "cart": [{"k8s-namespace": "shop"}],
            "db": [{"k8s-headless": "true"}],
            "legacy": [{"k8s-cluster-ip": "10.0.0.50"}],
        }
    )
    assert wanted == {("default", "web"), ("shop", "cart")}


async def vips(http: aiohttp.ClientSession, count: int) -> dict[str, str]:
    for _ in range(100):
        async with http.get("/v1/kv/mesh/vips/", params={"recurse": ""}) as r:
            entries = await r.json() if r.status == 200 else []
        found = {e["Key"].removeprefix("mesh/vips/"): _decode(e["Value"]) for e in entries}
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} VIPs were assigned: {found}")


def _decode(value: str) -> str:
    return base64.b64decode(value).decode()


async def query(port: int, name: str, rdtype: str = "A") -> list[str]:
    answer = await dns.asyncquery.udp(dns.message.make_query(name, rdtype), "127.0.0.1", timeout=2, port=port)
    return sorted(item.to_text() for rrset in answer.answer for item in rrset)


async def test_vips_allocated_answered_kept_and_routed(
    start_control: Callable[..., Any], registry: RegistryServer, start_dns: StartDns
) -> None:
    settings = replace(FAST, service_vip_range=RANGE)
    async with aiohttp.ClientSession(base_url=registry.url) as http:
        await register(http, "web", "web-1", 8080, Address="127.0.0.11")
        await register(http, "web", "web-2", 8080, Address="127.0.0.12")
        await register(http, "cart", "cart-1", 9090, Address="127.0.0.13", Meta={"k8s-namespace": "shop"})
        await register(http, "db", "db-1", 5432, Address="127.0.0.14", Meta={"k8s-headless": "true"})
        await register(http, "legacy", "legacy-1", 80, Address="127.0.0.15", Meta={"k8s-cluster-ip": "10.0.0.50"})
        control: ControlServer = await start_control(settings=settings)
        assigned = await vips(http, 2)
        assert assigned == {"default/web": "240.240.0.1", "shop/cart": "240.240.0.2"}

        server = await start_dns()
        port = server.dns_port
        for _ in range(100):  # the DNS watcher follows the KV
            if await query(port, "web.default.svc.cluster.local") == ["240.240.0.1"]:
                break
            await asyncio.sleep(0.05)
        assert await query(port, "web.default.svc.cluster.local") == ["240.240.0.1"]
        assert await query(port, "cart.shop.svc.cluster.local") == ["240.240.0.2"]
        assert await query(port, "web.service.consul") == ["127.0.0.11", "127.0.0.12"]  # Consul: the instances
        assert await query(port, "db.default.svc.cluster.local") == ["127.0.0.14"]  # headless
        assert await query(port, "legacy.default.svc.cluster.local") == ["10.0.0.50"]  # its own address
        ptr = dns.reversename.from_address("240.240.0.1").to_text()
        assert await query(port, ptr, "PTR") == ["web.default.svc.cluster.local."]

        # a sidecar whose app calls the VIP: the control plane routes it to the service
        async with aiohttp.ClientSession(base_url=control.url) as api:
            registration = {"service": "client", "labels": {"app": "client"}, "bootstrap": DEFAULT_BOOTSTRAP}
            async with api.put("/v1/mesh/sidecars/c-1", json=registration) as r:
                assert r.status == 200
            async with api.post("/v1/mesh/sidecars/c-1/demand", json={"host": "240.240.0.1:8080"}) as r:
                assert (await r.json())["routed"] is True
            async with api.get("/v1/mesh/sync/c-1", params={"wait": "1s"}) as r:
                snapshot = (await r.json())["snapshot"]
            domains = {d for table in snapshot["route_tables"] for vh in table["virtual_hosts"] for d in vh["domains"]}
            assert "240.240.0.1" in domains
            # re-registration carries the address among the demanded hosts
            async with api.put("/v1/mesh/sidecars/c-1", json={**registration, "demanded": ["240.240.0.1"]}) as r:
                assert r.status == 200, await r.text()

        # a restart keeps every address; a new service gets a new one, never a taken one
        await control.stop()
        await register(http, "api", "api-1", 7070, Address="127.0.0.16")
        await start_control(settings=settings)
        assigned = await vips(http, 3)
        assert assigned == {"default/web": "240.240.0.1", "shop/cart": "240.240.0.2", "default/api": "240.240.0.3"}
        async with http.get("/v1/kv/mesh/vips-by-ip/240.240.0.3") as r:
            assert _decode((await r.json())[0]["Value"]) == "default/api"
