"""The whole DNS server in-process: a real registry, data registered over its HTTP API, and a
``DnsServer`` on loopback queried with dnspython over real UDP and TCP sockets.

Every test starts its own registry (conftest ``registry``) and its own ``DnsServer`` (the server
registers its metrics in the global Prometheus registry, so only one runs at a time).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

import aiohttp
import dns.asyncquery
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from discovery.client_config import ClientConfig
from discovery.server import RegistryServer
from dnsserver import server as server_module
from dnsserver.config import DnsConfig
from dnsserver.server import DnsServer, DnsServerConfig

HOST = "127.0.0.1"
TIMEOUT = 2.0
StartDns = Callable[..., Awaitable[DnsServer]]
StartRegistry = Callable[..., Awaitable[RegistryServer]]


# === fixtures and helpers ===


@pytest.fixture
async def start_dns(registry: RegistryServer) -> AsyncIterator[StartDns]:
    """Start a ``DnsServer`` on free loopback ports for ``registry``; keyword arguments go to ``DnsConfig``."""
    servers: list[DnsServer] = []

    async def start(**dns: Any) -> DnsServer:
        assert not servers, "one DnsServer at a time (its metrics live in the global Prometheus registry)"
        config = DnsServerConfig(
            dns=DnsConfig(**dns),
            dns_addr=f"{HOST}:0",
            metrics_addr=f"{HOST}:0",
            registry=ClientConfig.from_address(registry.url),
        )
        server = DnsServer(config)
        await server.start()
        servers.append(server)
        assert server.watcher.view.synced, "the registry is local: the first sync must finish during start()"
        return server

    yield start
    for server in reversed(servers):
        await server.stop()


async def put(http: aiohttp.ClientSession, path: str, body: Any = None) -> None:
    async with http.put(path, json=body) as response:
        assert response.status == 200, (path, response.status, await response.text())


async def register(http: aiohttp.ClientSession, **service: Any) -> None:
    await put(http, "/v1/agent/service/register", service)


async def catalog_register(http: aiohttp.ClientSession, **body: Any) -> None:
    await put(http, "/v1/catalog/register", body)


def k8s_meta(namespace: str, *, cluster_ip: str = "", hostname: str = "", **ports: str) -> dict[str, str]:
    meta = {"k8s-namespace": namespace}
    if cluster_ip:
        meta["k8s-cluster-ip"] = cluster_ip
    if hostname:
        meta["k8s-hostname"] = hostname
    meta.update({f"k8s-port-{name}": value for name, value in ports.items()})
    return meta


async def populate(http: aiohttp.ClientSession) -> None:
    """The data most tests answer from.

    - ``web``: web-1 with its own address 10.0.0.5:8080 (tags primary, v1), web-2 on the agent node's
      address 127.0.0.1:8081 (tag v2);
    - node ``rack1`` (10.9.0.1, meta rack=r1 and rfc1035-note) running ``cache`` (no own address);
    - ``db``: headless in namespace ``prod``: db-0 10.2.0.1 (hostname db-0), 10.2.0.2 (no hostname),
      named port ``pg`` 5432/tcp;
    - ``api``: ClusterIP 10.96.0.10 in ``prod``, endpoints 10.3.0.1 and 10.3.0.2, named port ``http``
      (tcp, the instance port 8080) and ``metrics`` 9090/tcp.
    """
    await register(http, ID="web-1", Name="web", Address="10.0.0.5", Port=8080, Tags=["primary", "v1"])
    await register(http, ID="web-2", Name="web", Port=8081, Tags=["v2"])
    await catalog_register(
        http,
        Node="rack1",
        Address="10.9.0.1",
        NodeMeta={"rack": "r1", "rfc1035-note": "plain text"},
        Service={"ID": "cache-1", "Service": "cache", "Port": 6379},
    )
    await register(
        http, ID="db-0", Name="db", Address="10.2.0.1", Port=5432, Meta=k8s_meta("prod", hostname="db-0", pg="tcp")
    )
    await register(http, ID="db-1", Name="db", Address="10.2.0.2", Port=5432, Meta=k8s_meta("prod", pg="5432/tcp"))
    for i, address in enumerate(("10.3.0.1", "10.3.0.2")):
        meta = k8s_meta("prod", cluster_ip="10.96.0.10", http="tcp", metrics="9090/tcp")
        await register(http, ID=f"api-{i}", Name="api", Address=address, Port=8080, Meta=meta)


@pytest.fixture
async def dns_server(http: aiohttp.ClientSession, start_dns: StartDns) -> DnsServer:
    """``populate``d registry, then a DNS server synced to it."""
    await populate(http)
    return await start_dns()


async def udp(
    server: DnsServer, name: str, rdtype: str = "A", *, use_edns: int | bool = False, payload: int = 1232
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, use_edns=use_edns, payload=payload)
    return await dns.asyncquery.udp(query, HOST, timeout=TIMEOUT, port=server.dns_port)


async def tcp(server: DnsServer, name: str, rdtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return await dns.asyncquery.tcp(query, HOST, timeout=TIMEOUT, port=server.dns_port)


class _OneDatagram(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.reply.done():
            self.reply.set_result(data)


async def udp_raw(port: int, packet: bytes) -> bytes:
    """Send one datagram, return the raw reply (to measure its size exactly)."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_OneDatagram, remote_addr=(HOST, port))
    try:
        transport.sendto(packet)
        async with asyncio.timeout(TIMEOUT):
            return await protocol.reply
    finally:
        transport.close()


def texts(message: dns.message.Message, rdtype: str, section: str = "answer") -> list[str]:
    wanted = dns.rdatatype.from_text(rdtype)
    return sorted(rd.to_text() for rrset in getattr(message, section) if rrset.rdtype == wanted for rd in rrset)


def owners(message: dns.message.Message, section: str = "answer") -> list[str]:
    return [rrset.name.to_text() for rrset in getattr(message, section)]


def rcode(message: dns.message.Message) -> str:
    return dns.rcode.to_text(message.rcode())


def assert_soa_authority(message: dns.message.Message, zone: str) -> None:
    assert not message.answer
    soas = [rrset for rrset in message.authority if rrset.rdtype == dns.rdatatype.SOA]
    assert len(soas) == 1, message.to_text()
    assert soas[0].name == dns.name.from_text(zone)
    assert message.flags & dns.flags.AA


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 5.0) -> float:
    """Poll ``check`` until it returns True; the seconds it took."""
    start = time.monotonic()
    while not await check():
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


# === Consul names ===


async def test_service_a_records_over_udp_and_tcp(dns_server: DnsServer) -> None:
    for ask in (udp, tcp):
        reply = await ask(dns_server, "web.service.consul")
        assert rcode(reply) == "NOERROR"
        assert reply.flags & dns.flags.AA
        assert not reply.flags & dns.flags.RA
        assert texts(reply, "A") == ["10.0.0.5", "127.0.0.1"]
        assert owners(reply) == ["web.service.consul."]
        assert reply.answer[0].ttl == 0  # Consul's default service TTL


async def test_tag_filter_and_datacenter_label(dns_server: DnsServer) -> None:
    assert texts(await udp(dns_server, "primary.web.service.consul"), "A") == ["10.0.0.5"]
    assert texts(await udp(dns_server, "v2.web.service.consul"), "A") == ["127.0.0.1"]
    assert texts(await udp(dns_server, "V1.web.service.dc1.consul"), "A") == ["10.0.0.5"]  # tags match any case
    assert texts(await udp(dns_server, "web.service.dc1.consul"), "A") == ["10.0.0.5", "127.0.0.1"]
    assert texts(await udp(dns_server, "web.service.dc1.dc.consul"), "A") == ["10.0.0.5", "127.0.0.1"]
    missing_tag = await udp(dns_server, "nope.web.service.consul")
    assert rcode(missing_tag) == "NXDOMAIN"
    assert_soa_authority(missing_tag, "consul.")
    other_dc = await udp(dns_server, "web.service.dc2.consul")
    assert rcode(other_dc) == "NXDOMAIN"
    assert_soa_authority(other_dc, "consul.")


async def test_rfc2782_names(dns_server: DnsServer) -> None:
    tcp_form = await udp(dns_server, "_web._tcp.service.consul", "SRV")
    assert texts(tcp_form, "SRV") == ["1 1 8080 0a000005.addr.dc1.consul.", "1 1 8081 node1.node.dc1.consul."]
    short_form = await udp(dns_server, "_web._tcp.consul", "SRV")
    assert texts(short_form, "SRV") == texts(tcp_form, "SRV")
    tagged = await udp(dns_server, "_web._primary.service.consul", "SRV")
    assert texts(tagged, "SRV") == ["1 1 8080 0a000005.addr.dc1.consul."]
    tagged_dc = await udp(dns_server, "_web._v2.service.dc1.consul", "SRV")
    assert texts(tagged_dc, "SRV") == ["1 1 8081 node1.node.dc1.consul."]
    assert rcode(await udp(dns_server, "_web._nosuchtag.service.consul", "SRV")) == "NXDOMAIN"


async def test_srv_carries_target_addresses_in_additional(dns_server: DnsServer) -> None:
    for ask in (udp, tcp):
        reply = await ask(dns_server, "web.service.consul", "SRV")
        assert texts(reply, "SRV") == ["1 1 8080 0a000005.addr.dc1.consul.", "1 1 8081 node1.node.dc1.consul."]
        glue = {rrset.name.to_text(): sorted(rd.to_text() for rd in rrset) for rrset in reply.additional}
        assert glue == {"0a000005.addr.dc1.consul.": ["10.0.0.5"], "node1.node.dc1.consul.": ["127.0.0.1"]}
    # a service without an address of its own points at its node, glued with the node's address
    cache = await udp(dns_server, "cache.service.consul", "SRV")
    assert texts(cache, "SRV") == ["1 1 6379 rack1.node.dc1.consul."]
    assert texts(cache, "A", "additional") == ["10.9.0.1"]


async def test_srv_targets_resolve(dns_server: DnsServer) -> None:
    """The SRV targets are names we answer: ``<hex-ip>.addr`` and ``<node>.node``."""
    assert texts(await udp(dns_server, "0a000005.addr.dc1.consul"), "A") == ["10.0.0.5"]
    assert texts(await udp(dns_server, "rack1.node.dc1.consul"), "A") == ["10.9.0.1"]
    assert texts(await udp(dns_server, "rack1.node.consul"), "A") == ["10.9.0.1"]
    assert texts(await udp(dns_server, "node1.node.consul"), "A") == ["127.0.0.1"]
    bad_hex = await udp(dns_server, "zz000005.addr.dc1.consul")
    assert rcode(bad_hex) == "NXDOMAIN"
    # node meta as TXT: k=v, or the bare value for rfc1035- keys
    assert texts(await udp(dns_server, "rack1.node.consul", "TXT"), "TXT") == ['"plain text"', '"rack=r1"']
    unknown_node = await udp(dns_server, "ghost.node.consul")
    assert rcode(unknown_node) == "NXDOMAIN"
    assert_soa_authority(unknown_node, "consul.")


async def test_srv_weights_follow_registration(http: aiohttp.ClientSession, start_dns: StartDns) -> None:
    await register(http, ID="w-1", Name="weighted", Address="10.4.0.1", Port=1, Weights={"Passing": 7, "Warning": 2})
    dns_server = await start_dns()
    assert texts(await udp(dns_server, "weighted.service.consul", "SRV"), "SRV") == ["1 7 1 0a040001.addr.dc1.consul."]


async def test_configured_ttls(http: aiohttp.ClientSession, start_dns: StartDns) -> None:
    await populate(http)
    dns_server = await start_dns(consul_ttl=30, node_ttl=9, cluster_ttl=11, service_ttls=MappingProxyType({"web": 7}))
    assert (await udp(dns_server, "web.service.consul")).answer[0].ttl == 7
    assert (await udp(dns_server, "cache.service.consul")).answer[0].ttl == 30
    assert (await udp(dns_server, "rack1.node.consul")).answer[0].ttl == 9
    assert (await udp(dns_server, "db.prod.svc.cluster.local")).answer[0].ttl == 11
    negative = await udp(dns_server, "nosuch.service.consul")
    assert negative.authority[0].ttl == 30
    assert negative.authority[0][0].minimum == 30  # SOA MINIMUM = negative-caching TTL (RFC 2308)
    assert (await udp(dns_server, "nosuch.prod.svc.cluster.local")).authority[0][0].minimum == 11


# === Kubernetes names ===


async def test_k8s_headless_service_answers_endpoints(dns_server: DnsServer) -> None:
    reply = await udp(dns_server, "db.prod.svc.cluster.local")
    assert rcode(reply) == "NOERROR"
    assert reply.flags & dns.flags.AA
    assert texts(reply, "A") == ["10.2.0.1", "10.2.0.2"]
    assert reply.answer[0].ttl == 5  # CoreDNS default cluster TTL


async def test_k8s_cluster_ip_service_answers_the_virtual_ip(dns_server: DnsServer) -> None:
    assert texts(await tcp(dns_server, "api.prod.svc.cluster.local"), "A") == ["10.96.0.10"]


async def test_k8s_endpoint_hostnames(dns_server: DnsServer) -> None:
    assert texts(await udp(dns_server, "db-0.db.prod.svc.cluster.local"), "A") == ["10.2.0.1"]
    # no k8s-hostname: the dashed IP
    assert texts(await udp(dns_server, "10-2-0-2.db.prod.svc.cluster.local"), "A") == ["10.2.0.2"]
    unknown = await udp(dns_server, "db-9.db.prod.svc.cluster.local")
    assert rcode(unknown) == "NXDOMAIN"
    assert_soa_authority(unknown, "cluster.local.")


async def test_k8s_port_srv(dns_server: DnsServer) -> None:
    headless = await udp(dns_server, "_pg._tcp.db.prod.svc.cluster.local", "SRV")
    assert texts(headless, "SRV") == [
        "0 50 5432 10-2-0-2.db.prod.svc.cluster.local.",
        "0 50 5432 db-0.db.prod.svc.cluster.local.",
    ]
    assert texts(headless, "A", "additional") == ["10.2.0.1", "10.2.0.2"]
    cluster = await udp(dns_server, "_http._tcp.api.prod.svc.cluster.local", "SRV")
    assert texts(cluster, "SRV") == ["0 100 8080 api.prod.svc.cluster.local."]
    assert texts(cluster, "A", "additional") == ["10.96.0.10"]
    every_port = await udp(dns_server, "api.prod.svc.cluster.local", "SRV")
    assert texts(every_port, "SRV") == [
        "0 50 8080 api.prod.svc.cluster.local.",
        "0 50 9090 api.prod.svc.cluster.local.",
    ]
    wrong_proto = await udp(dns_server, "_pg._udp.db.prod.svc.cluster.local", "SRV")
    assert rcode(wrong_proto) == "NXDOMAIN"
    assert_soa_authority(wrong_proto, "cluster.local.")


async def test_k8s_dns_version_and_namespaces(dns_server: DnsServer) -> None:
    version = await udp(dns_server, "dns-version.cluster.local", "TXT")
    assert texts(version, "TXT") == ['"1.1.0"']
    namespace = await udp(dns_server, "prod.svc.cluster.local")
    assert rcode(namespace) == "NOERROR"
    assert_soa_authority(namespace, "cluster.local.")
    for name in ("db.staging.svc.cluster.local", "nope.prod.svc.cluster.local", "staging.svc.cluster.local"):
        reply = await udp(dns_server, name)
        assert rcode(reply) == "NXDOMAIN", name
        assert_soa_authority(reply, "cluster.local.")


# === reverse ===


async def test_ptr_for_nodes_and_service_addresses(dns_server: DnsServer) -> None:
    async def ptr(address: str) -> dns.message.Message:
        return await udp(dns_server, dns.reversename.from_address(address).to_text(), "PTR")

    assert texts(await ptr("10.9.0.1"), "PTR") == ["rack1.node.dc1.consul."]
    assert texts(await ptr("127.0.0.1"), "PTR") == ["node1.node.dc1.consul."]
    assert texts(await ptr("10.0.0.5"), "PTR") == ["web.service.dc1.consul."]
    assert texts(await ptr("10.2.0.1"), "PTR") == ["db-0.db.prod.svc.cluster.local.", "db.service.dc1.consul."]
    assert texts(await ptr("10.96.0.10"), "PTR") == ["api.prod.svc.cluster.local."]
    unknown = await ptr("192.0.2.77")  # nothing known there and no upstream: not ours -> REFUSED
    assert rcode(unknown) == "REFUSED"


# === negative answers ===


async def test_nxdomain_vs_nodata(dns_server: DnsServer) -> None:
    nodata = await udp(dns_server, "web.service.consul", "AAAA")
    assert rcode(nodata) == "NOERROR"
    assert_soa_authority(nodata, "consul.")
    soa = nodata.authority[0][0]
    assert soa.mname.to_text() == "ns.dns.consul."
    nxdomain = await udp(dns_server, "nosuch.service.consul")
    assert rcode(nxdomain) == "NXDOMAIN"
    assert_soa_authority(nxdomain, "consul.")
    k8s_nodata = await udp(dns_server, "db.prod.svc.cluster.local", "AAAA")
    assert rcode(k8s_nodata) == "NOERROR"
    assert_soa_authority(k8s_nodata, "cluster.local.")
    assert k8s_nodata.authority[0].ttl == 5
    txt_on_service = await tcp(dns_server, "api.prod.svc.cluster.local", "TXT")
    assert rcode(txt_on_service) == "NOERROR"
    assert_soa_authority(txt_on_service, "cluster.local.")
    apex = await udp(dns_server, "consul", "SOA")
    assert texts(apex, "SOA")[0].startswith("ns.dns.consul. hostmaster.consul.")


# === case ===


async def test_case_insensitive_and_question_echoed_in_query_case(dns_server: DnsServer) -> None:
    for name in ("WeB.SeRvIcE.CoNsUl.", "web.service.consul.", "WEB.SERVICE.CONSUL.", "wEb.sErViCe.cOnSuL."):
        for ask in (udp, tcp):
            reply = await ask(dns_server, name)  # the second spelling of a name comes from the answer cache
            assert reply.question[0].name.to_text() == name
            assert texts(reply, "A") == ["10.0.0.5", "127.0.0.1"]
            assert owners(reply) == [name]
    k8s = "DB.Prod.SVC.Cluster.Local."
    reply = await udp(dns_server, k8s)
    assert reply.question[0].name.to_text() == k8s
    assert owners(reply) == [k8s]
    negative = await udp(dns_server, "Nope.Service.CONSUL.")
    assert negative.question[0].name.to_text() == "Nope.Service.CONSUL."
    assert negative.authority[0].name.to_text() == "CONSUL."  # the zone as the query wrote it


# === health ===


async def test_critical_instance_disappears_warning_stays(http: aiohttp.ClientSession, start_dns: StartDns) -> None:
    await register(http, ID="pay-1", Name="pay", Address="10.5.0.1", Port=80, Check={"TTL": "30s", "Status": "passing"})
    await register(http, ID="pay-2", Name="pay", Address="10.5.0.2", Port=80)
    dns_server = await start_dns()

    async def addresses() -> list[str]:
        return texts(await udp(dns_server, "pay.service.consul"), "A")

    assert await addresses() == ["10.5.0.1", "10.5.0.2"]
    await put(http, "/v1/agent/check/fail/service:pay-1")

    async def dropped() -> bool:
        return await addresses() == ["10.5.0.2"]

    assert await eventually(dropped, "critical pay-1 to leave the answer", timeout=3.0) < 3.0
    await put(http, "/v1/agent/check/warn/service:pay-1")

    async def back() -> bool:
        return await addresses() == ["10.5.0.1", "10.5.0.2"]

    await eventually(back, "warning pay-1 to be answered again (only_passing is off)", timeout=3.0)
    srv = await udp(dns_server, "pay.service.consul", "SRV")
    assert len(srv.answer[0]) == 2
    # both critical: NXDOMAIN (Consul), SOA in authority
    await put(http, "/v1/agent/check/fail/service:pay-1")
    await register(
        http, ID="pay-2", Name="pay", Address="10.5.0.2", Port=80, Check={"TTL": "30s", "Status": "critical"}
    )

    async def gone() -> bool:
        return rcode(await udp(dns_server, "pay.service.consul")) == "NXDOMAIN"

    await eventually(gone, "an all-critical service to be NXDOMAIN", timeout=3.0)


async def test_only_passing_drops_warning(http: aiohttp.ClientSession, start_dns: StartDns) -> None:
    await register(http, ID="pay-1", Name="pay", Address="10.5.0.1", Port=80, Check={"TTL": "30s", "Status": "passing"})
    await register(http, ID="pay-2", Name="pay", Address="10.5.0.2", Port=80)
    dns_server = await start_dns(only_passing=True)
    assert texts(await udp(dns_server, "pay.service.consul"), "A") == ["10.5.0.1", "10.5.0.2"]
    await put(http, "/v1/agent/check/warn/service:pay-1")

    async def dropped() -> bool:
        return texts(await udp(dns_server, "pay.service.consul"), "A") == ["10.5.0.2"]

    await eventually(dropped, "warning pay-1 to leave the answer with only_passing", timeout=3.0)


async def test_k8s_headless_follows_health(http: aiohttp.ClientSession, start_dns: StartDns) -> None:
    meta = k8s_meta("prod", pg="tcp")
    await register(
        http, ID="q-0", Name="queue", Address="10.6.0.1", Port=1, Meta=meta, Check={"TTL": "30s", "Status": "passing"}
    )
    dns_server = await start_dns()
    assert texts(await udp(dns_server, "queue.prod.svc.cluster.local"), "A") == ["10.6.0.1"]
    await put(http, "/v1/agent/check/fail/service:q-0")

    async def nxdomain() -> bool:
        return rcode(await udp(dns_server, "queue.prod.svc.cluster.local")) == "NXDOMAIN"

    await eventually(nxdomain, "headless service without ready endpoints to be NXDOMAIN", timeout=3.0)


async def test_k8s_cluster_ip_answered_without_ready_endpoints(
    http: aiohttp.ClientSession, start_dns: StartDns
) -> None:
    meta = k8s_meta("prod", cluster_ip="10.96.0.20", http="tcp")
    check = {"TTL": "30s", "Status": "passing"}
    await register(http, ID="vip-0", Name="vip", Address="10.6.1.1", Port=80, Meta=meta, Check=check)
    dns_server = await start_dns()
    await put(http, "/v1/agent/check/fail/service:vip-0")

    async def consul_gone() -> bool:
        return rcode(await udp(dns_server, "vip.service.consul")) == "NXDOMAIN"

    await eventually(consul_gone, "the critical instance to leave the Consul answer", timeout=3.0)
    # CoreDNS: a ClusterIP service is answered with its virtual IP even with no ready endpoint
    assert texts(await udp(dns_server, "vip.prod.svc.cluster.local"), "A") == ["10.96.0.20"]


async def test_critical_node_check_drops_every_service_on_the_node(
    http: aiohttp.ClientSession, start_dns: StartDns
) -> None:
    await register(http, ID="web-1", Name="web", Address="10.0.0.5", Port=80)
    await put(
        http, "/v1/agent/check/register", {"ID": "node-ttl", "Name": "node-ttl", "TTL": "30s", "Status": "passing"}
    )
    dns_server = await start_dns()
    assert texts(await udp(dns_server, "web.service.consul"), "A") == ["10.0.0.5"]
    await put(http, "/v1/agent/check/fail/node-ttl")

    async def gone() -> bool:
        return rcode(await udp(dns_server, "web.service.consul")) == "NXDOMAIN"

    await eventually(gone, "services of a node with a critical node check to go", timeout=3.0)
    await put(http, "/v1/agent/check/pass/node-ttl")

    async def back() -> bool:
        return texts(await udp(dns_server, "web.service.consul"), "A") == ["10.0.0.5"]

    await eventually(back, "services to come back with the node check passing", timeout=3.0)
    await put(http, "/v1/agent/service/deregister/web-1")
    await eventually(gone, "a deregistered service to be NXDOMAIN", timeout=3.0)


# === sizes, EDNS, truncation ===


@pytest.fixture
async def big_service(http: aiohttp.ClientSession, start_dns: StartDns) -> DnsServer:
    """``big``: 200 healthy instances with distinct addresses."""
    semaphore = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        async with semaphore:
            await register(http, ID=f"big-{i}", Name="big", Address=f"10.100.{i // 250}.{i % 250 + 1}", Port=80)

    await asyncio.gather(*(one(i) for i in range(200)))
    return await start_dns()


async def test_plain_udp_truncates_at_512(big_service: DnsServer) -> None:
    query = dns.message.make_query("big.service.consul", "A")
    data = await udp_raw(big_service.dns_port, query.to_wire())
    assert len(data) <= 512
    reply = dns.message.from_wire(data)
    assert reply.flags & dns.flags.TC
    assert reply.edns < 0  # no OPT without one in the query
    assert 0 < len(reply.answer[0]) < 200
    # the same via dnspython's UDP helper
    again = await udp(big_service, "big.service.consul")
    assert again.flags & dns.flags.TC


async def test_edns_1232_fits_more_and_stays_under_the_limit(big_service: DnsServer) -> None:
    plain = dns.message.from_wire(
        await udp_raw(big_service.dns_port, dns.message.make_query("big.service.consul", "A").to_wire())
    )
    query = dns.message.make_query("big.service.consul", "A", use_edns=0, payload=1232)
    data = await udp_raw(big_service.dns_port, query.to_wire())
    assert 512 < len(data) <= 1232
    reply = dns.message.from_wire(data)
    assert reply.edns == 0
    assert reply.flags & dns.flags.TC  # 200 A records do not fit 1232 bytes either
    assert len(plain.answer[0]) < len(reply.answer[0]) < 200
    # a large EDNS buffer fits everything without TC
    roomy = dns.message.make_query("big.service.consul", "A", use_edns=0, payload=4096)
    data = await udp_raw(big_service.dns_port, roomy.to_wire())
    reply = dns.message.from_wire(data)
    assert not reply.flags & dns.flags.TC
    assert len(reply.answer[0]) == 200
    assert len(data) <= 4096


async def test_tcp_returns_every_record(big_service: DnsServer) -> None:
    reply = await tcp(big_service, "big.service.consul")
    assert not reply.flags & dns.flags.TC
    assert len(texts(reply, "A")) == 200
    srv = await tcp(big_service, "big.service.consul", "SRV")
    assert len(texts(srv, "SRV")) == 200
    assert len(texts(srv, "A", "additional")) == 200


async def test_protocol_edges_over_the_wire(dns_server: DnsServer) -> None:
    port = dns_server.dns_port

    async def raw(message: dns.message.Message) -> dns.message.Message:
        return dns.message.from_wire(await udp_raw(port, message.to_wire()))

    tiny = await udp(dns_server, "web.service.consul", use_edns=0, payload=100)  # < 512 counts as 512
    assert tiny.payload == 512
    assert texts(tiny, "A") == ["10.0.0.5", "127.0.0.1"]
    badvers = await raw(dns.message.make_query("web.service.consul", "A", use_edns=1))
    assert badvers.rcode() == dns.rcode.BADVERS
    assert badvers.edns == 0
    chaos = await raw(dns.message.make_query("web.service.consul", "A", rdclass="CH"))
    assert rcode(chaos) == "REFUSED"
    axfr = await raw(dns.message.make_query("consul", "AXFR"))
    assert rcode(axfr) == "REFUSED"
    notify = dns.message.make_query("web.service.consul", "A")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert rcode(await raw(notify)) == "NOTIMP"
    ns = await udp(dns_server, "consul", "NS")
    assert texts(ns, "NS") == ["ns.dns.consul."]
    assert texts(ns, "A", "additional") == ["127.0.0.1"]
    do = await udp(dns_server, "web.service.consul", use_edns=0)
    assert do.edns == 0
    assert texts(do, "A") == ["10.0.0.5", "127.0.0.1"]


# === forwarding ===


class _Upstream(asyncio.DatagramProtocol):
    """A tiny authoritative server for ``example.test``: A 192.0.2.53, NXDOMAIN for anything else."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.queries: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        request = DNSRecord.parse(data)
        name = str(request.q.qname).lower()
        self.queries.append(name)
        reply = request.reply()
        if name == "example.test." and request.q.qtype == QTYPE.A:
            reply.add_answer(RR(request.q.qname, QTYPE.A, ttl=60, rdata=A("192.0.2.53")))
        elif name != "example.test.":
            reply.header.rcode = RCODE.NXDOMAIN
        assert self.transport is not None
        self.transport.sendto(reply.pack(), addr)


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[int, _Upstream]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_Upstream, local_addr=(HOST, 0))
    yield transport.get_extra_info("sockname")[1], protocol
    transport.close()


async def test_forwards_other_zones_to_upstream(
    http: aiohttp.ClientSession, start_dns: StartDns, upstream: tuple[int, _Upstream]
) -> None:
    port, fake = upstream
    await register(http, ID="web-1", Name="web", Address="10.0.0.5", Port=80)
    dns_server = await start_dns(upstreams=(f"{HOST}:{port}",))
    for ask in (udp, tcp):
        reply = await ask(dns_server, "example.test")
        assert rcode(reply) == "NOERROR"
        assert texts(reply, "A") == ["192.0.2.53"]
        assert reply.flags & dns.flags.RA
    missing = await udp(dns_server, "missing.example.test")
    assert rcode(missing) == "NXDOMAIN"
    assert "example.test." in fake.queries
    # the question comes back in the client's spelling
    mixed = await udp(dns_server, "ExAmPlE.TeSt.")
    assert mixed.question[0].name.to_text() == "ExAmPlE.TeSt."
    assert texts(mixed, "A") == ["192.0.2.53"]
    # reverse names of addresses we know nothing about go upstream (CoreDNS fallthrough)
    unknown_ptr = await udp(dns_server, "77.2.0.192.in-addr.arpa", "PTR")
    assert rcode(unknown_ptr) == "NXDOMAIN"
    assert "77.2.0.192.in-addr.arpa." in fake.queries
    # our own zones are never forwarded
    assert texts(await udp(dns_server, "web.service.consul"), "A") == ["10.0.0.5"]
    assert texts(await udp(dns_server, "5.0.0.10.in-addr.arpa", "PTR"), "PTR") == ["web.service.dc1.consul."]
    assert not any(q.endswith(("consul.", "10.in-addr.arpa.")) for q in fake.queries)


async def test_dead_upstream_is_servfail(start_dns: StartDns) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        dead = sock.getsockname()[1]
    dns_server = await start_dns(upstreams=(f"{HOST}:{dead}",))
    for ask in (udp, tcp):
        started = time.monotonic()
        assert rcode(await ask(dns_server, "example.test")) == "SERVFAIL"
        assert time.monotonic() - started < TIMEOUT


async def test_refused_without_upstream(dns_server: DnsServer) -> None:
    for ask in (udp, tcp):
        reply = await ask(dns_server, "example.test")
        assert rcode(reply) == "REFUSED"
        assert not reply.answer
        assert not reply.flags & dns.flags.AA


async def test_refused_without_upstream_does_not_advertise_recursion(dns_server: DnsServer) -> None:
    reply = await udp(dns_server, "example.test")
    assert rcode(reply) == "REFUSED"
    assert not reply.flags & dns.flags.RA


# === ops endpoints ===


async def test_metrics_endpoint_has_mesh_dns_series(dns_server: DnsServer) -> None:
    await udp(dns_server, "web.service.consul")
    await udp(dns_server, "web.service.consul")  # cache hit
    await tcp(dns_server, "nosuch.service.consul")
    await udp(dns_server, "example.test")
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{HOST}:{dns_server.metrics_port}/metrics") as response,
    ):
        assert response.status == 200
        body = await response.text()
    series = [line for line in body.splitlines() if line.startswith("mesh_dns_")]
    assert series
    assert any(line.startswith("mesh_dns_requests_total{") and 'proto="udp"' in line for line in series)
    assert any(line.startswith("mesh_dns_requests_total{") and 'proto="tcp"' in line for line in series)
    assert any('rcode="NXDOMAIN"' in line and 'zone="consul."' in line for line in series)
    assert any('rcode="REFUSED"' in line for line in series)
    assert any(line.startswith("mesh_dns_request_duration_seconds_bucket") for line in series)
    assert any(line.startswith("mesh_dns_cache_hits_total") for line in series)


async def test_readyz_follows_the_registry_and_answers_survive(
    registry: RegistryServer, start_registry: StartRegistry, dns_server: DnsServer
) -> None:
    base = f"http://{HOST}:{dns_server.metrics_port}"
    async with aiohttp.ClientSession() as session:

        async def status(path: str) -> int:
            async with session.get(base + path) as response:
                return response.status

        assert await status("/readyz") == 200
        assert await status("/healthz") == 200
        await registry.stop()

        async def not_ready() -> bool:
            return await status("/readyz") == 503

        await eventually(not_ready, "/readyz to turn 503 once the registry is gone", timeout=8.0)
        assert await status("/healthz") == 200
        # still answering from the last view
        for ask in (udp, tcp):
            assert texts(await ask(dns_server, "web.service.consul"), "A") == ["10.0.0.5", "127.0.0.1"]
            assert texts(await ask(dns_server, "db.prod.svc.cluster.local"), "A") == ["10.2.0.1", "10.2.0.2"]

        # the registry comes back on the same address with the same data: ready again within seconds
        # (nothing changed there, so a long poll on the old index would park for minutes)
        await start_registry(data_dir=registry.config.data_dir, http_addr=f"{HOST}:{registry.port}")

        async def ready() -> bool:
            return await status("/readyz") == 200

        await eventually(ready, "/readyz to recover once the registry is back", timeout=8.0)
    async with aiohttp.ClientSession(base_url=registry.url) as http:
        await register(http, ID="web-3", Name="web", Address="10.0.0.7", Port=80)

    async def seen() -> bool:
        return texts(await udp(dns_server, "web.service.consul"), "A") == ["10.0.0.5", "10.0.0.7", "127.0.0.1"]

    await eventually(seen, "a service registered after the outage", timeout=3.0)


async def test_servfail_until_first_sync(
    start_registry: StartRegistry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Started before its registry: SERVFAIL for our zones (CoreDNS before informer sync), then real answers."""
    monkeypatch.setattr(server_module, "STARTUP_SYNC_TIMEOUT", 0.1)
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        registry_port = sock.getsockname()[1]
    config = DnsServerConfig(
        dns_addr=f"{HOST}:0",
        metrics_addr=f"{HOST}:0",
        registry=ClientConfig.from_address(f"http://{HOST}:{registry_port}"),
    )
    dns_server = DnsServer(config)
    await dns_server.start()
    try:
        assert not dns_server.watcher.view.synced
        for ask in (udp, tcp):
            assert rcode(await ask(dns_server, "web.service.consul")) == "SERVFAIL"
            assert rcode(await ask(dns_server, "db.prod.svc.cluster.local")) == "SERVFAIL"
            assert rcode(await ask(dns_server, "example.test")) == "REFUSED"  # not ours: unaffected
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://{HOST}:{dns_server.metrics_port}/readyz") as response:
                assert response.status == 503
            registry = await start_registry(http_addr=f"{HOST}:{registry_port}", data_dir=tmp_path / "late")
            async with session.put(
                f"{registry.url}/v1/agent/service/register", json={"ID": "web-1", "Name": "web", "Address": "10.0.0.5"}
            ) as response:
                assert response.status == 200

            async def answered() -> bool:
                return texts(await udp(dns_server, "web.service.consul"), "A") == ["10.0.0.5"]

            await eventually(answered, "answers once the registry appears", timeout=10.0)
            assert rcode(await udp(dns_server, "nosuch.service.consul")) == "NXDOMAIN"
            async with session.get(f"http://{HOST}:{dns_server.metrics_port}/readyz") as response:
                assert response.status == 200
    finally:
        await dns_server.stop()
