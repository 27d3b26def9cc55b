"""The three probe kinds against real sockets and processes: HTTP (200-399), TCP, exec (Consul's exit codes)."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from mesh.model.probes import ProbeSpec
from sidecar.probes.run import run_probe
from sidecar.probes.state import CRITICAL, PASSING, WARNING
from tests.sidecar.helpers import serve_app


@pytest.fixture
async def app_port() -> AsyncIterator[int]:
    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        headers = {"Location": "/elsewhere"} if 300 <= code < 400 else None
        return web.Response(status=code, text=f"status {code}", headers=headers)

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(text="late")

    async def header(request: web.Request) -> web.Response:
        ok = request.headers.get("X-Probe") == "yes" and request.headers["User-Agent"].startswith("kube-probe/")
        return web.Response(status=200 if ok else 400)

    app = web.Application()
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/slow", slow)
    app.router.add_get("/header", header)
    runner, port = await serve_app(app)
    yield port
    await runner.cleanup()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


@pytest.mark.parametrize(
    ("code", "status"),
    [(200, PASSING), (204, PASSING), (302, PASSING), (399, PASSING), (400, CRITICAL), (404, CRITICAL), (503, CRITICAL)],
)
async def test_http_probe_passes_on_200_to_399(app_port: int, code: int, status: str) -> None:
    result = await run_probe(ProbeSpec("http", port=app_port, path=f"/status/{code}"))
    assert result.status == status
    assert result.output.startswith(f"HTTP GET http://127.0.0.1:{app_port}/status/{code}: {code}")


async def test_http_probe_sends_its_headers(app_port: int) -> None:
    with_header = ProbeSpec("http", port=app_port, path="/header", headers=(("X-Probe", "yes"),))
    assert (await run_probe(with_header)).status == PASSING
    assert (await run_probe(ProbeSpec("http", port=app_port, path="/header"))).status == CRITICAL


async def test_http_probe_timeout_and_refused(app_port: int) -> None:
    result = await run_probe(ProbeSpec("http", port=app_port, path="/slow", timeout=0.2))
    assert result.status == CRITICAL
    assert result.output.endswith("timed out after 0.2s")
    refused = await run_probe(ProbeSpec("http", port=closed_port()))
    assert refused.status == CRITICAL
    assert "refused" in refused.output.lower()


async def test_tcp_probe(app_port: int) -> None:
    ok = await run_probe(ProbeSpec("tcp", port=app_port))
    assert ok.status == PASSING
    assert ok.output == f"TCP connect 127.0.0.1:{app_port}: Success"
    assert (await run_probe(ProbeSpec("tcp", port=closed_port()))).status == CRITICAL


@pytest.mark.parametrize(("code", "status"), [(0, PASSING), (1, WARNING), (2, CRITICAL), (137, CRITICAL)])
async def test_exec_probe_follows_consul_script_checks(code: int, status: str) -> None:
    command = (sys.executable, "-c", f"import sys; print('said {code}'); sys.exit({code})")
    result = await run_probe(ProbeSpec("exec", command=command, timeout=10))
    assert result.status == status
    assert result.output.endswith(f"exit {code}: said {code}")


async def test_exec_probe_timeout_kills_the_command() -> None:
    result = await run_probe(ProbeSpec("exec", command=("sleep", "5"), timeout=0.2))
    assert result.status == CRITICAL
    assert result.output == "exec sleep 5: timed out after 0.2s"
    missing = await run_probe(ProbeSpec("exec", command=("/nonexistent/probe",)))
    assert missing.status == CRITICAL
