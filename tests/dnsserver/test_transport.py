"""UDP and TCP listeners on real loopback sockets, with dnspython as the client."""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from dnsserver.listeners import start_listeners
from tests.dnsserver.transport_helpers import make_handler, query_bytes, read_frame, serving, svc, tcp_frames

HOST = "127.0.0.1"


def make_query(name: str, rdtype: str = "A", *, payload: int | None = None) -> dns.message.QueryMessage:
    if payload is None:
        return dns.message.make_query(name, rdtype)
    return dns.message.make_query(name, rdtype, use_edns=0, payload=payload)


async def test_udp_and_tcp_answer() -> None:
    async with serving(make_handler()) as listeners:
        assert listeners.port > 0
        udp = await dns.asyncquery.udp(make_query(svc("web")), HOST, port=listeners.port, timeout=2)
        tcp = await dns.asyncquery.tcp(make_query(svc("api")), HOST, port=listeners.port, timeout=2)
    assert [r.to_text() for r in udp.answer[0]] == ["10.1.0.1"]
    assert sorted(r.to_text() for r in tcp.answer[0]) == ["10.1.0.1", "10.1.0.2", "10.1.0.3"]
    assert udp.flags & dns.flags.AA


@pytest.mark.parametrize("payload", [None, 512, 1232, 4096])
async def test_truncated_over_udp_full_over_tcp(payload: int | None) -> None:
    async with serving(make_handler()) as listeners:
        query = make_query(svc("big"), payload=payload)
        udp = await dns.asyncquery.udp(query, HOST, port=listeners.port, timeout=2)
        tcp = await dns.asyncquery.tcp(query, HOST, port=listeners.port, timeout=2)
    assert udp.flags & dns.flags.TC
    assert len(udp.to_wire()) <= (payload or 512)
    assert udp.edns == (-1 if payload is None else 0)
    assert not tcp.flags & dns.flags.TC
    assert len(tcp.answer[0]) == 300


async def test_tcp_pipelined_queries() -> None:
    handler = make_handler()
    async with serving(handler) as listeners:
        reader, writer = await asyncio.open_connection(HOST, listeners.port)
        names = ["web", "api", "big", "nope", "web"]
        writer.write(tcp_frames(*(query_bytes(svc(n), qid=100 + i) for i, n in enumerate(names))))
        replies = [dns.message.from_wire(await read_frame(reader)) for _ in names]
        writer.close()
        await writer.wait_closed()
    by_id = {r.id: r for r in replies}
    assert sorted(by_id) == [100, 101, 102, 103, 104]
    assert by_id[103].rcode() == dns.rcode.NXDOMAIN
    assert len(by_id[102].answer[0]) == 300


async def udp_exchange(port: int, packet: bytes, timeout: float = 0.3) -> bytes | None:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((HOST, port))
        await loop.sock_sendall(sock, packet)
        try:
            return await asyncio.wait_for(loop.sock_recv(sock, 65535), timeout)
        except TimeoutError:
            return None


async def still_serving(port: int) -> None:
    reply = await dns.asyncquery.udp(make_query(svc("web")), HOST, port=port, timeout=2)
    assert reply.answer
    reply = await dns.asyncquery.tcp(make_query(svc("web")), HOST, port=port, timeout=2)
    assert reply.answer


MALFORMED = [
    b"",
    b"\x12",
    b"\x12\x34\x01\x00\x00\x01",  # header cut short
    struct.pack("!6H", 1, 0x0100, 1, 0, 0, 0) + b"\x05ab",  # label runs past the end
    struct.pack("!6H", 2, 0x0100, 1, 0, 0, 0) + b"\x40" + b"x" * 70 + b"\x00\x00\x01\x00\x01",  # label 64
    struct.pack("!6H", 3, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01",  # pointer loop
    struct.pack("!6H", 4, 0x0100, 3, 0, 0, 0) + b"\x00\x00\x01\x00\x01",  # qdcount 3
    struct.pack("!6H", 5, 0x0100, 1, 5, 5, 5) + b"\x00\x00\x01\x00\x01",  # counts lie
    struct.pack("!6H", 6, 0x8100, 1, 0, 0, 0) + b"\x00\x00\x01\x00\x01",  # a response
]


async def test_malformed_udp_formerr_or_dropped() -> None:
    handler = make_handler()
    async with serving(handler) as listeners:
        for packet in MALFORMED:
            reply = await udp_exchange(listeners.port, packet)
            if reply is not None:
                parsed = dns.message.from_wire(reply, question_only=True)
                assert parsed.rcode() == dns.rcode.FORMERR
                assert reply[:2] == packet[:2]
            else:
                assert len(packet) < 12 or packet[2] & 0x80
        await still_serving(listeners.port)
    assert handler.metrics.panics == 0


async def test_malformed_tcp_formerr_then_more() -> None:
    async with serving(make_handler()) as listeners:
        reader, writer = await asyncio.open_connection(HOST, listeners.port)
        bad = [p for p in MALFORMED if len(p) >= 12]
        writer.write(tcp_frames(*bad, query_bytes(svc("web"), qid=999)))
        seen = []
        while True:
            reply = dns.message.from_wire(await read_frame(reader), question_only=True)
            seen.append(reply.id)
            if reply.id == 999:
                break
        writer.close()
        await writer.wait_closed()
    assert 999 in seen
    assert 6 not in seen  # the response-shaped packet is dropped


async def wait_closed(reader: asyncio.StreamReader, timeout: float) -> bool:
    try:
        while await asyncio.wait_for(reader.read(65536), timeout):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


async def test_tcp_tiny_length_prefix_closes() -> None:
    async with serving(make_handler()) as listeners:
        reader, writer = await asyncio.open_connection(HOST, listeners.port)
        writer.write(b"\x00\x05hello")
        assert await wait_closed(reader, 2)
        writer.close()
        await still_serving(listeners.port)


async def test_tcp_huge_prefix_and_slow_client_time_out() -> None:
    async with serving(make_handler(), tcp_frame_timeout=0.5, tcp_idle_timeout=1.0) as listeners:
        # Announces 65535 bytes and sends 3.
        r1, w1 = await asyncio.open_connection(HOST, listeners.port)
        w1.write(b"\xff\xff\x00\x01\x02")
        # Sends a valid query one byte at a time, too slowly.
        r2, w2 = await asyncio.open_connection(HOST, listeners.port)
        frame = tcp_frames(query_bytes(svc("web")))
        started = time.monotonic()

        async def drip() -> None:
            for byte in frame:
                if w2.is_closing():
                    return
                w2.write(bytes([byte]))
                await asyncio.sleep(0.2)

        dripper = asyncio.create_task(drip())
        assert await wait_closed(r1, 3)
        assert await wait_closed(r2, 3)
        assert time.monotonic() - started < 2.5
        dripper.cancel()
        await asyncio.gather(dripper, return_exceptions=True)
        # An idle connection is closed too, after the idle timeout.
        r3, w3 = await asyncio.open_connection(HOST, listeners.port)
        assert await wait_closed(r3, 3)
        assert listeners.tcp_connections == 0
        for w in (w1, w2, w3):
            w.close()
        await still_serving(listeners.port)


async def test_tcp_connection_kept_for_more_queries() -> None:
    async with serving(make_handler(), tcp_idle_timeout=1.0) as listeners:
        reader, writer = await asyncio.open_connection(HOST, listeners.port)
        for i in range(3):
            writer.write(tcp_frames(query_bytes(svc("web"), qid=i)))
            assert dns.message.from_wire(await read_frame(reader)).id == i
            await asyncio.sleep(0.3)
        writer.close()
        await writer.wait_closed()


async def test_tcp_client_not_reading_is_bounded() -> None:
    handler = make_handler()
    async with serving(handler) as listeners:
        _reader, writer = await asyncio.open_connection(HOST, listeners.port)
        frame = tcp_frames(query_bytes(svc("big"), qid=1))
        # ~25 MB of answers requested, none read: the server must stop reading, not buffer it all.
        writer.write(frame * 5000)
        await asyncio.sleep(0.5)
        answered = handler.metrics.requests_total()
        assert answered < 5000
        writer.transport.abort()
        await still_serving(listeners.port)


async def test_same_port_for_udp_and_tcp_and_close() -> None:
    handler = make_handler()
    listeners = await start_listeners(handler, HOST, 0)
    port = listeners.port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(OSError, match="in use"):
        sock.bind((HOST, port))
    await listeners.close()
    # After close both are free again.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, port))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))


async def test_fixed_port_taken_raises() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="in use"):
            await start_listeners(make_handler(), HOST, port)


async def test_works_under_uvloop() -> None:
    import uvloop

    async def scenario() -> tuple[int, int]:
        async with serving(make_handler()) as listeners:
            udp = await dns.asyncquery.udp(make_query(svc("big")), HOST, port=listeners.port, timeout=2)
            tcp = await dns.asyncquery.tcp(make_query(svc("big")), HOST, port=listeners.port, timeout=2)
            return len(udp.answer[0]) if udp.answer else 0, len(tcp.answer[0])

    loop = uvloop.new_event_loop()
    try:
        udp_count, tcp_count = await asyncio.to_thread(loop.run_until_complete, scenario())
    finally:
        loop.close()
    assert udp_count < 300
    assert tcp_count == 300
