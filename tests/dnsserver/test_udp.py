"""udp: the socket-level UDP server (batches, backlog, overload, close) on real loopback sockets."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator

import pytest

from dnsserver import udp
from dnsserver.forward import Forwarder
from dnsserver.udp import GROUP, GROUPS, UdpServer, open_udp
from tests.dnsserver.transport_helpers import BlackHole, a_records, make_handler, query_bytes, rcode, svc

HOST = "127.0.0.1"


@pytest.fixture
async def server() -> AsyncIterator[UdpServer]:
    srv = await open_udp(make_handler(), HOST, 0)
    yield srv
    await srv.close()


@pytest.fixture
def client() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    return sock


async def receive(sock: socket.socket, count: int, timeout: float = 3.0) -> list[bytes]:
    loop = asyncio.get_running_loop()
    replies: list[bytes] = []
    async with asyncio.timeout(timeout):
        while len(replies) < count:
            replies.append(await loop.sock_recv(sock, 65535))
    return replies


async def test_burst_of_several_groups_is_answered(server: UdpServer, client: socket.socket) -> None:
    """More datagrams than one wake-up reads (several groups) are all answered, each with its own ID."""
    count = 3 * GROUP * GROUPS + 7
    names = [svc("web"), svc("api"), svc("nothing")]
    for qid in range(count):
        client.sendto(query_bytes(names[qid % 3], qid=qid), server.sockname)
    replies = await receive(client, count)
    assert sorted(struct.unpack("!H", r[:2])[0] for r in replies) == list(range(count))
    by_id = {struct.unpack("!H", r[:2])[0]: r for r in replies}
    assert a_records(by_id[0]) == ["10.1.0.1"]
    assert sorted(a_records(by_id[1])) == ["10.1.0.1", "10.1.0.2", "10.1.0.3"]
    assert rcode(by_id[2]) == "NXDOMAIN"
    client.close()


async def test_dropped_packets_get_no_reply(server: UdpServer, client: socket.socket) -> None:
    client.sendto(b"\x00\x01\x81\x00", server.sockname)  # too short: dropped
    client.sendto(query_bytes(svc("web"), qid=9), server.sockname)
    (reply,) = await receive(client, 1)
    assert reply[:2] == b"\x00\x09"
    client.close()


async def test_backlog_waits_for_a_writable_socket(
    server: UdpServer, client: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replies the kernel refused (EAGAIN) are kept in order, bounded, and sent when writable."""
    monkeypatch.setattr(udp, "MAX_BACKLOG", 5)
    address = client.getsockname()
    for i in range(3):  # as after sendto raised BlockingIOError
        server._queue(bytes([0, i]) + b"queued", address)
    server._send(b"\x00\x63later", address)  # while a backlog waits, new replies queue behind it
    for i in range(3, 8):  # beyond the bound: dropped
        server._queue(bytes([0, i]) + b"queued", address)
    assert len(server._backlog) == 5
    replies = await receive(client, 5)
    assert replies == [b"\x00\x00queued", b"\x00\x01queued", b"\x00\x02queued", b"\x00\x63later", b"\x00\x03queued"]
    await asyncio.sleep(0.05)
    assert not server._backlog
    server._send(b"\x00\x64direct", address)  # the backlog is empty again: straight to the socket
    assert await receive(client, 1) == [b"\x00\x64direct"]
    client.close()


async def test_forwards_beyond_max_pending_are_refused(client: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    hole_transport, _ = await loop.create_datagram_endpoint(BlackHole, local_addr=(HOST, 0))
    hole_port = hole_transport.get_extra_info("sockname")[1]
    forwarder = Forwarder((f"{HOST}:{hole_port}",), timeout=0.3)
    srv = await open_udp(make_handler(forwarder=forwarder), HOST, 0, max_pending=1)
    try:
        client.sendto(query_bytes("a.example.", qid=1), srv.sockname)
        await asyncio.sleep(0.05)
        client.sendto(query_bytes("b.example.", qid=2), srv.sockname)
        first, second = await receive(client, 2)
        assert (first[:2], rcode(first)) == (b"\x00\x02", "REFUSED")  # no room: refused at once
        assert (second[:2], rcode(second)) == (b"\x00\x01", "SERVFAIL")  # the upstream never answered
    finally:
        await srv.close()
        hole_transport.close()
        client.close()


async def test_close_cancels_forwards_and_frees_the_port(client: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    hole_transport, _ = await loop.create_datagram_endpoint(BlackHole, local_addr=(HOST, 0))
    hole_port = hole_transport.get_extra_info("sockname")[1]
    srv = await open_udp(make_handler(forwarder=Forwarder((f"{HOST}:{hole_port}",), timeout=30)), HOST, 0)
    port = srv.sockname[1]
    client.sendto(query_bytes("a.example."), srv.sockname)
    await asyncio.sleep(0.05)
    assert len(srv._tasks) == 1
    await asyncio.wait_for(srv.close(), 2)
    assert not srv._tasks
    await srv.close()  # twice is fine
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind((HOST, port))
    hole_transport.close()
    client.close()


async def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        srv = await open_udp(make_handler(), "::1", 0)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            sock.sendto(query_bytes(svc("web"), qid=5), srv.sockname[:2])
            reply = await asyncio.to_thread(sock.recv, 65535)
        assert a_records(reply) == ["10.1.0.1"]
    finally:
        await srv.close()
