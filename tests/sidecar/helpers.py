"""Real peers for sidecar tests: aiohttp backends, sidecars on free ports, raw-socket clients."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from mesh.model.parse import parse_snapshot
from sidecar.http1.listener import HttpSettings
from sidecar.server import SidecarConfig, SidecarServer


async def serve_app(app: web.Application, port: int = 0) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on 127.0.0.1 (``port`` 0: a free one); returns the runner and the bound port."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, int(runner.addresses[0][1])


@dataclass
class Backend:
    """An aiohttp upstream that says who it is and what it received."""

    name: str
    delay: float = 0.0  # seconds every echo answer waits (a slow endpoint)
    runner: web.AppRunner | None = None
    port: int = 0
    seen: list[dict[str, Any]] = field(default_factory=list)
    peers: list[Any] = field(default_factory=list)  # the (host, port) each echoed request came from
    first_chunk_at: list[float] = field(default_factory=list)
    body_done_at: list[float] = field(default_factory=list)

    @property
    def address(self) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port}

    async def start(self) -> Backend:
        app = web.Application(client_max_size=1024**4)
        app.router.add_get("/ws", self._websocket)
        app.router.add_post("/sink", self._sink)
        app.router.add_get("/stream", self._stream)
        app.router.add_get("/slow", self._slow)
        app.router.add_route("*", "/{tail:.*}", self._echo)
        self.runner, self.port = await serve_app(app)
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def _echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        record = {
            "backend": self.name,
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "header_list": [[k, v] for k, v in request.headers.items()],
            "body_len": len(body),
            "body_sha": hashlib.sha256(body).hexdigest(),
        }
        self.seen.append(record)
        self.peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.json_response(record, headers={"X-Backend": self.name})

    async def _sink(self, request: web.Request) -> web.Response:
        """Read a (big) body chunk by chunk, hashing it; note when the first chunk arrived."""
        loop = asyncio.get_running_loop()
        digest = hashlib.sha256()
        total = 0
        first = True
        async for piece in request.content.iter_any():
            if first:
                self.first_chunk_at.append(loop.time())
                first = False
            digest.update(piece)
            total += len(piece)
        self.body_done_at.append(loop.time())
        return web.json_response({"backend": self.name, "body_len": total, "body_sha": digest.hexdigest()})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        """``?size=N&chunk=M``: a chunked response of N bytes of 'x' in M-byte writes."""
        size = int(request.query.get("size", "1000"))
        piece = int(request.query.get("chunk", "65536"))
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        block = b"x" * piece
        sent = 0
        while sent < size:
            n = min(piece, size - sent)
            await response.write(block[:n])
            sent += n
        await response.write_eof()
        return response

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("delay", "1")))
        return web.Response(text=f"slow {self.name}")

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(f"{self.name}:{msg.data}")
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws


def cluster(name: str, backends: Sequence[Backend], **extra: Any) -> dict[str, Any]:
    return {"name": name, "endpoints": [b.address for b in backends], **extra}


def http_config(
    clusters: Sequence[dict[str, Any]],
    virtual_hosts: Sequence[dict[str, Any]],
    *,
    version: str = "v1",
    tcp: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """One outbound HTTP listener on a free port with the given virtual hosts; extra TCP listeners."""
    listeners: list[dict[str, Any]] = [
        {"name": "outbound", "protocol": "http", "host": "127.0.0.1", "port": 0, "route_table": "out"}
    ]
    listeners += list(tcp)
    return {
        "version": version,
        "listeners": listeners,
        "route_tables": [{"name": "out", "virtual_hosts": list(virtual_hosts)}],
        "clusters": list(clusters),
    }


def simple_config(
    backends: Sequence[Backend], *, host: str = "web", version: str = "v1", **cluster_extra: Any
) -> dict[str, Any]:
    return http_config(
        [cluster("web", backends, **cluster_extra)],
        [{"name": host, "domains": [host], "routes": [{"name": "all", "match": {"prefix": "/"}, "cluster": "web"}]}],
        version=version,
    )


async def start_sidecar(config: dict[str, Any], settings: HttpSettings | None = None, **server: Any) -> SidecarServer:
    sidecar = SidecarServer(
        SidecarConfig(admin_addr="127.0.0.1:0", http=settings or HttpSettings(), drain_timeout_s=5.0), **server
    )
    await sidecar.start()
    outcome = sidecar.apply(parse_snapshot(config))
    assert outcome.ok, outcome.error
    await sidecar.settle()
    return sidecar


async def raw_request(port: int, data: bytes, *, timeout: float = 5.0, half_close: bool = False) -> bytes:
    """Send raw bytes, read until the server closes (or ``timeout``); returns everything read."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    if half_close:
        writer.write_eof()
    out = b""
    try:
        async with asyncio.timeout(timeout):
            while True:
                piece = await reader.read(65536)
                if not piece:
                    break
                out += piece
    except TimeoutError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return out


def status_codes(raw: bytes) -> list[int]:
    """The status codes of the responses in ``raw``, in order (interim ones included).

    Responses follow each other without a separator, so status lines are found anywhere.
    """
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] (\d{3}) ", raw)]


def json_body(raw: bytes) -> dict[str, Any]:
    """The JSON body of the first response in ``raw``."""
    _head, _, body = raw.partition(b"\r\n\r\n")
    decoded: dict[str, Any] = json.loads(body[: body.index(b"}\n") + 1] if b"}\n" in body else body)
    return decoded


def port_of(sidecar: SidecarServer) -> int:
    """The port of a sidecar's only listener."""
    return next(listening.port for listening in sidecar._listeners.values())


async def get(port: int, host: str, path: str = "/", headers: dict[str, str] | None = None) -> int:
    """The status of ``GET path`` with ``Host: host`` through the listener on ``port``."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host, **(headers or {})}) as response,
    ):
        await response.read()
        return response.status


async def get_ok(port: int, host: str, count: int) -> None:
    """``count`` sequential ``GET /`` with ``Host: host`` on one keep-alive session, each answered 200."""
    url = f"http://127.0.0.1:{port}/"
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            async with session.get(url, headers={"Host": host}) as response:
                assert response.status == 200
                await response.read()
