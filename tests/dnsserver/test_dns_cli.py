"""The real processes: `mesh registry` + `mesh dns`, and `mesh up`, resolved with the real `dig`.

Also: hostile packets over UDP and TCP never kill `mesh dns`, and SIGTERM ends it with exit code 0.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

pytestmark = pytest.mark.slow

MESH = Path(sys.executable).parent / "mesh"
DIG = shutil.which("dig")
HOST = "127.0.0.1"
START_TIMEOUT = 15.0


# === processes ===


def free_port(*, udp_too: bool = False) -> int:
    """A loopback port free for TCP (and UDP as well when asked: DNS binds both)."""
    for _ in range(50):
        with socket.socket() as tcp_sock:
            tcp_sock.bind((HOST, 0))
            port = int(tcp_sock.getsockname()[1])
            if not udp_too:
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp_sock:
                try:
                    udp_sock.bind((HOST, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESH_", "CONSUL_"))}
    env.update(extra)
    return env


@dataclass
class Proc:
    """One `mesh` subprocess with its output in a log file."""

    name: str
    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=clean_env)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([str(MESH), *self.args], stdout=log, stderr=subprocess.STDOUT, env=self.env)
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def wait_http(self, url: str, timeout: float = START_TIMEOUT) -> None:
        """Poll ``url`` until it answers 200 (this process must stay alive meanwhile)."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.alive, f"{self.name} exited with {self.proc and self.proc.returncode}:\n{self.log()}"
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            assert time.monotonic() < deadline, f"{self.name}: {url} never answered 200:\n{self.log()}"
            time.sleep(0.05)

    def terminate(self, timeout: float = 5.0) -> int:
        """SIGTERM; the exit code (the process must be gone within ``timeout``)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            pytest.fail(f"{self.name} did not exit within {timeout}s of SIGTERM:\n{self.log()}")

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(5)


@dataclass
class Stack:
    registry_url: str
    dns_port: int
    metrics_url: str
    registry: Proc
    dns: Proc


def start_stack(tmp: Path) -> Stack:
    http_port, dns_port, metrics_port = free_port(), free_port(udp_too=True), free_port()
    registry_url = f"http://{HOST}:{http_port}"
    registry = Proc(
        "mesh registry",
        ["registry", "--data-dir", str(tmp / "data"), "--http-addr", f"{HOST}:{http_port}", "--node", "n1"],
        tmp / "registry.log",
    ).start()
    dns_proc = Proc(
        "mesh dns",
        ["dns", "--dns-addr", f"{HOST}:{dns_port}", "--metrics-addr", f"{HOST}:{metrics_port}"],
        tmp / "dns.log",
        env=clean_env(CONSUL_HTTP_ADDR=registry_url),
    )
    stack = Stack(registry_url, dns_port, f"http://{HOST}:{metrics_port}", registry, dns_proc)
    try:
        registry.wait_http(f"{registry_url}/v1/status/leader")
        dns_proc.start()
        dns_proc.wait_http(f"{stack.metrics_url}/readyz")
    except BaseException:
        dns_proc.kill()
        registry.kill()
        raise
    return stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`mesh registry` and `mesh dns` shared by the module's tests (none of them stops these two)."""
    assert MESH.exists(), f"{MESH} is missing: install the project into the venv"
    started = start_stack(tmp_path_factory.mktemp("stack"))
    yield started
    started.dns.kill()
    started.registry.kill()


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[aiohttp.ClientSession]:
    """Overrides conftest's ``http``: a session for the subprocess registry."""
    async with aiohttp.ClientSession(base_url=stack.registry_url) as session:
        yield session


async def register(http: aiohttp.ClientSession, **service: Any) -> None:
    async with http.put("/v1/agent/service/register", json=service) as response:
        assert response.status == 200, await response.text()


# === clients ===


async def dig(port: int, *args: str) -> str:
    """Run the real ``dig`` against ``127.0.0.1:port``; its stdout."""
    if DIG is None:
        pytest.skip("dig is not installed")
    proc = await asyncio.create_subprocess_exec(
        DIG, f"@{HOST}", "-p", str(port), "+time=2", "+tries=1", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    async with asyncio.timeout(10):
        out, err = await proc.communicate()
    assert proc.returncode == 0, (args, out, err)
    return out.decode()


def lines(output: str) -> list[str]:
    """dig's output lines with runs of whitespace collapsed to one space."""
    return [" ".join(line.split()) for line in output.splitlines()]


def short(output: str) -> list[str]:
    return sorted(line for line in output.splitlines() if line.strip())


async def eventually_dig(port: int, expected: list[str], *args: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = short(await dig(port, *args))
        if got == expected:
            return
        assert time.monotonic() < deadline, f"dig {' '.join(args)}: {got} != {expected}"
        await asyncio.sleep(0.05)


async def query(port: int, name: str, rdtype: str = "A", *, tcp: bool = False) -> dns.message.Message:
    message = dns.message.make_query(name, rdtype)
    if tcp:
        return await dns.asyncquery.tcp(message, HOST, timeout=2, port=port)
    return await dns.asyncquery.udp(message, HOST, timeout=2, port=port)


def a_records(message: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in message.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset)


async def assert_still_answers(stack: Stack) -> None:
    assert stack.dns.alive, f"mesh dns died:\n{stack.dns.log()}"
    assert a_records(await query(stack.dns_port, "web.service.consul")) == ["10.0.0.5", "127.0.0.1"]
    assert a_records(await query(stack.dns_port, "web.service.consul", tcp=True)) == ["10.0.0.5", "127.0.0.1"]


@pytest.fixture
async def web(stack: Stack, http: aiohttp.ClientSession) -> Stack:
    """``web``: web-1 at 10.0.0.5:8080 and web-2 on the node's address (127.0.0.1) :8081, visible in DNS."""
    await register(http, ID="web-1", Name="web", Address="10.0.0.5", Port=8080, Tags=["primary"])
    await register(http, ID="web-2", Name="web", Port=8081)
    await eventually_dig(stack.dns_port, ["10.0.0.5", "127.0.0.1"], "web.service.consul", "+short")
    return stack


# === tests ===


async def test_dig_resolves_registered_service(web: Stack) -> None:
    port = web.dns_port
    assert short(await dig(port, "web.service.consul", "+short")) == ["10.0.0.5", "127.0.0.1"]
    assert short(await dig(port, "web.service.consul", "+short", "+tcp")) == ["10.0.0.5", "127.0.0.1"]
    assert short(await dig(port, "primary.web.service.dc1.consul", "+short")) == ["10.0.0.5"]
    assert short(await dig(port, "web.service.consul", "SRV", "+short")) == [
        "1 1 8080 0a000005.addr.dc1.consul.",
        "1 1 8081 n1.node.dc1.consul.",
    ]
    assert short(await dig(port, "-x", "10.0.0.5", "+short")) == ["web.service.dc1.consul."]
    assert short(await dig(port, "-x", "127.0.0.1", "+short")) == ["n1.node.dc1.consul."]
    full = await dig(port, "web.service.consul", "SRV")
    assert "status: NOERROR" in full
    assert "flags: qr aa rd;" in full  # authoritative, no recursion offered
    assert "ADDITIONAL: 3" in full  # the two targets' addresses and our OPT (dig sends EDNS by default)
    assert "; EDNS: version: 0, flags:; udp: 1232" in full
    assert "0a000005.addr.dc1.consul. 0 IN A 10.0.0.5" in lines(full)
    assert "n1.node.dc1.consul. 0 IN A 127.0.0.1" in lines(full)
    missing = await dig(port, "nosuch.service.consul")
    assert "status: NXDOMAIN" in missing
    assert any(line.startswith("consul. 0 IN SOA ns.dns.consul. hostmaster.consul.") for line in lines(missing))
    nodata = await dig(port, "web.service.consul", "AAAA")
    assert "status: NOERROR" in nodata
    assert "ANSWER: 0, AUTHORITY: 1" in nodata
    assert "status: REFUSED" in await dig(port, "example.test")


async def test_dnspython_against_the_process(web: Stack) -> None:
    for tcp in (False, True):
        reply = await query(web.dns_port, "WEB.Service.Consul.", tcp=tcp)
        assert reply.question[0].name.to_text() == "WEB.Service.Consul."
        assert a_records(reply) == ["10.0.0.5", "127.0.0.1"]
        assert reply.flags & dns.flags.AA
    version = await query(web.dns_port, "dns-version.cluster.local", "TXT")
    assert [rd.to_text() for rrset in version.answer for rd in rrset] == ['"1.1.0"']
    async with aiohttp.ClientSession() as session, session.get(f"{web.metrics_url}/metrics") as response:
        assert response.status == 200
        body = await response.text()
    assert "mesh_dns_requests_total{" in body


def _compression_loop(qid: int) -> bytes:
    # one question whose name is a pointer to itself (offset 12)
    return struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c" + struct.pack("!HH", 1, 1)


def _forward_pointer(qid: int) -> bytes:
    return struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0) + b"\x03web\xc0\x20" + struct.pack("!HH", 1, 1) + b"\x00" * 20


async def _udp_send(port: int, packets: list[bytes], *, wait: float = 0.0) -> list[bytes]:
    """Send datagrams from one socket; collect whatever comes back within ``wait`` seconds."""
    replies: list[bytes] = []

    class Collect(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            replies.append(data)

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Collect, remote_addr=(HOST, port))
    try:
        for packet in packets:
            transport.sendto(packet)
        await asyncio.sleep(wait)
    finally:
        transport.close()
    return replies


async def test_malformed_udp_never_kills_the_server(web: Stack) -> None:
    rng = random.Random(1234)
    garbage = [rng.randbytes(rng.randrange(1, 600)) for _ in range(300)]
    garbage += [b"", b"\x00", b"\x12\x34\x01", b"\x12\x34\x01\x00\x00"]  # empty, then truncated headers
    garbage += [rng.randbytes(4000), rng.randbytes(65000)]
    await _udp_send(web.dns_port, garbage)
    await assert_still_answers(web)

    # FORMERR for a question that is a compression loop or a forward pointer; the ID is echoed
    replies = await _udp_send(web.dns_port, [_compression_loop(0xBEEF)], wait=0.3)
    assert len(replies) == 1
    assert replies[0][:2] == b"\xbe\xef"
    assert replies[0][3] & 0x0F == dns.rcode.FORMERR
    replies = await _udp_send(web.dns_port, [_forward_pointer(0xCAFE)], wait=0.3)
    assert [r[3] & 0x0F for r in replies] == [dns.rcode.FORMERR]
    # a response (QR set) is dropped, never answered (no reflection ping-pong)
    response = dns.message.make_response(dns.message.make_query("web.service.consul", "A")).to_wire()
    assert await _udp_send(web.dns_port, [response], wait=0.3) == []
    # header says 1 question, the packet ends there; a label longer than 63; too many questions
    header_only = struct.pack("!6H", 7, 0x0100, 1, 0, 0, 0)
    long_label = header_only + b"\x50" + b"a" * 80 + b"\x00\x00\x01\x00\x01"
    two_questions = struct.pack("!6H", 8, 0x0100, 2, 0, 0, 0) + (b"\x03web\x00\x00\x01\x00\x01" * 2)
    replies = await _udp_send(web.dns_port, [header_only, long_label, two_questions], wait=0.3)
    assert sorted(r[3] & 0x0F for r in replies) == [dns.rcode.FORMERR] * 3
    await assert_still_answers(web)


async def test_malformed_tcp_never_kills_the_server(web: Stack) -> None:
    port = web.dns_port
    rng = random.Random(99)
    # half a frame, then silence: the server gives up on it (frame timeout) without affecting others
    half_reader, half_writer = await asyncio.open_connection(HOST, port)
    half_writer.write(struct.pack("!H", 40) + rng.randbytes(10))
    await half_writer.drain()
    opened = time.monotonic()

    # a huge length prefix with a little data, then the client hangs up
    _, writer = await asyncio.open_connection(HOST, port)
    writer.write(b"\xff\xff" + rng.randbytes(300))
    await writer.drain()
    writer.close()
    # a length prefix shorter than a header: the server closes the connection
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(b"\x00\x05hello")
    await writer.drain()
    async with asyncio.timeout(2):
        assert await reader.read() == b""
    writer.close()
    # a complete frame of garbage: an error reply or a close, never a crash
    reader, writer = await asyncio.open_connection(HOST, port)
    body = rng.randbytes(100)
    writer.write(struct.pack("!H", len(body)) + body)
    await writer.drain()
    async with asyncio.timeout(2):
        await reader.read(2)
    writer.close()
    # abortive closes (RST) in the middle of frames
    for _ in range(30):
        sock = socket.create_connection((HOST, port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(b"\x00\x30" + rng.randbytes(20))
        sock.close()
    # valid queries pipelined on one connection with a garbage frame between them
    good = dns.message.make_query("web.service.consul", "A")
    good.id = 1
    frames = good.to_wire()
    garbage = struct.pack("!6H", 2, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01"
    good.id = 3
    stream = b"".join(struct.pack("!H", len(f)) + f for f in (frames, garbage, good.to_wire()))
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(stream)
    await writer.drain()
    ids_rcodes = []
    async with asyncio.timeout(2):
        for _ in range(3):
            length = struct.unpack("!H", await reader.readexactly(2))[0]
            reply = await reader.readexactly(length)
            ids_rcodes.append((struct.unpack("!H", reply[:2])[0], reply[3] & 0x0F))
    writer.close()
    assert sorted(ids_rcodes) == [(1, dns.rcode.NOERROR), (2, dns.rcode.FORMERR), (3, dns.rcode.NOERROR)]

    await assert_still_answers(web)
    # the half-sent frame's connection is closed by the server (5 s frame timeout)
    async with asyncio.timeout(max(0.5, opened + 7.0 - time.monotonic())):
        assert await half_reader.read() == b""
    half_writer.close()
    await assert_still_answers(web)


async def test_sigterm_exits_cleanly(tmp_path: Path) -> None:
    own = start_stack(tmp_path)
    try:
        # a client parked mid-frame must not hold up shutdown
        _, writer = await asyncio.open_connection(HOST, own.dns_port)
        writer.write(b"\x00\x40abc")
        await writer.drain()
        started = time.monotonic()
        assert await asyncio.to_thread(own.dns.terminate, 5.0) == 0, own.dns.log()
        assert time.monotonic() - started < 5.0
        writer.close()
        assert await asyncio.to_thread(own.registry.terminate, 5.0) == 0, own.registry.log()
    finally:
        own.dns.kill()
        own.registry.kill()


async def test_registry_outage_and_recovery(tmp_path: Path) -> None:
    """Registry gone: /readyz 503, DNS keeps answering its last view; registry back on the same port: ready again."""
    own = start_stack(tmp_path)
    try:
        async with aiohttp.ClientSession(base_url=own.registry_url) as session:
            await register(session, ID="web-1", Name="web", Address="10.0.0.5", Port=8080)
        await eventually_dig(own.dns_port, ["10.0.0.5"], "web.service.consul", "+short")
        assert await asyncio.to_thread(own.registry.terminate) == 0, own.registry.log()

        async def readyz() -> int:
            async with aiohttp.ClientSession() as session, session.get(f"{own.metrics_url}/readyz") as response:
                return response.status

        deadline = time.monotonic() + 8
        while await readyz() != 503:
            assert time.monotonic() < deadline, "/readyz stayed 200 with the registry gone"
            await asyncio.sleep(0.05)
        assert short(await dig(own.dns_port, "web.service.consul", "+short")) == ["10.0.0.5"]
        assert short(await dig(own.dns_port, "web.service.consul", "+short", "+tcp")) == ["10.0.0.5"]
        assert own.dns.alive

        own.registry.log_path = tmp_path / "registry-2.log"
        own.registry.start()
        own.registry.wait_http(f"{own.registry_url}/v1/status/leader")
        deadline = time.monotonic() + 10
        while await readyz() != 200:
            assert time.monotonic() < deadline, f"/readyz never recovered:\n{own.dns.log()}"
            await asyncio.sleep(0.05)
        async with aiohttp.ClientSession(base_url=own.registry_url) as session:
            await register(session, ID="web-2", Name="web", Address="10.0.0.6", Port=8080)
        await eventually_dig(own.dns_port, ["10.0.0.5", "10.0.0.6"], "web.service.consul", "+short")
        assert await asyncio.to_thread(own.dns.terminate) == 0, own.dns.log()
        assert await asyncio.to_thread(own.registry.terminate) == 0, own.registry.log()
    finally:
        own.dns.kill()
        own.registry.kill()


async def test_mesh_up_answers_dns_for_its_registry(tmp_path: Path) -> None:
    http_port, dns_port, metrics_port, control_port = free_port(), free_port(udp_too=True), free_port(), free_port()
    up = Proc(
        "mesh up",
        [
            "up",
            "--data-dir",
            str(tmp_path / "data"),
            "--http-addr",
            f"{HOST}:{http_port}",
            "--node",
            "n1",
            "--dns-addr",
            f"{HOST}:{dns_port}",
            "--metrics-addr",
            f"{HOST}:{metrics_port}",
            "--control-http-addr",
            f"{HOST}:{control_port}",
        ],
        tmp_path / "up.log",
    ).start()
    try:
        up.wait_http(f"http://{HOST}:{http_port}/v1/status/leader")
        up.wait_http(f"http://{HOST}:{metrics_port}/readyz")
        up.wait_http(f"http://{HOST}:{control_port}/v1/mesh/status")  # the control plane runs in it too
        async with aiohttp.ClientSession(base_url=f"http://{HOST}:{http_port}") as session:
            await register(session, ID="api-1", Name="api", Address="10.7.0.1", Port=9000)
        await eventually_dig(dns_port, ["10.7.0.1"], "api.service.consul", "+short")
        assert short(await dig(dns_port, "api.service.consul", "+short", "+tcp")) == ["10.7.0.1"]
        assert short(await dig(dns_port, "_api._tcp.service.consul", "SRV", "+short")) == [
            "1 1 9000 0a070001.addr.dc1.consul."
        ]
        assert await asyncio.to_thread(up.terminate, 5.0) == 0, up.log()
    finally:
        up.kill()
