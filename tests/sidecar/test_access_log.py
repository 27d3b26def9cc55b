"""Access logs over real sockets: JSON lines, Envoy response flags, sampling, a sink that lags."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import generate_latest

from sidecar.access_log import (
    DEFAULT_FIELDS,
    PIPE_ATOMIC,
    AccessLog,
    AccessLogSettings,
    _pieces,
    open_sink,
    parse_fields,
    parse_mode,
)
from sidecar.workers import plan_from_options
from tests.sidecar.conftest import BackendFactory, SidecarFactory
from tests.sidecar.helpers import cluster, get, get_ok, http_config, port_of, simple_config
from tests.sidecar.test_cli_sidecar import MESH, sidecar_process_env, wait_ready


class Collected:
    """A sink that keeps what the writer thread hands it."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.lock = threading.Lock()

    def __call__(self, data: bytes) -> None:
        with self.lock:
            self.data.append(data)

    def lines(self) -> list[dict[str, Any]]:
        with self.lock:
            text = b"".join(self.data).decode()
        return [json.loads(line) for line in text.splitlines()]


async def logged(log: AccessLog, sink: Collected, count: int) -> list[dict[str, Any]]:
    """Flush and wait (bounded) until the writer thread delivered ``count`` lines."""
    log.flush()
    deadline = time.monotonic() + 5.0
    while len(sink.lines()) < count and time.monotonic() < deadline:  # noqa: ASYNC110 - the writer is a thread
        await asyncio.sleep(0.01)
    return sink.lines()


def routes(*entries: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": e["name"], "domains": [e["name"]], "routes": [e["route"]]} for e in entries]


async def test_lines_carry_fields_and_response_flags(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    fast = await backend_factory("fast")
    slow = await backend_factory("slow", delay=0.5)
    config = http_config(
        [
            cluster("web", [fast]),
            cluster("empty", []),
            cluster("slow", [slow], circuit_breakers={"max_requests": 1}),
        ],
        routes(
            {"name": "web", "route": {"name": "ok", "match": {"prefix": "/"}, "cluster": "web"}},
            {"name": "empty", "route": {"name": "uh", "match": {"prefix": "/"}, "cluster": "empty"}},
            {"name": "slow", "route": {"name": "uo", "match": {"prefix": "/"}, "cluster": "slow"}},
            {"name": "late", "route": {"name": "ut", "match": {"prefix": "/"}, "cluster": "web", "timeout": "200ms"}},
            {
                "name": "fault",
                "route": {
                    "name": "fi",
                    "match": {"prefix": "/"},
                    "cluster": "web",
                    "fault": {"abort": {"http_status": 418, "percentage": 100}},
                },
            },
        ),
    )
    sink = Collected()
    log = AccessLog(AccessLogSettings(1.0), sink)
    sidecar = await sidecar_factory(config, access_log=log)
    port = port_of(sidecar)

    assert await get(port, "web", "/a?b=1", {"User-Agent": "probe/1", "x-request-id": "rid-1"}) == 200
    assert await get(port, "nowhere.example") == 404
    assert await get(port, "empty") == 503
    assert sorted(await asyncio.gather(get(port, "slow"), get(port, "slow"))) == [200, 503]
    assert await get(port, "late", "/slow?delay=2") == 504
    assert await get(port, "fault") == 418

    lines = await logged(log, sink, 7)
    assert len(lines) == 7
    assert all(set(line) == set(DEFAULT_FIELDS) for line in lines)
    by_route: dict[str | None, list[dict[str, Any]]] = {}
    for line in lines:
        by_route.setdefault(line["route_name"], []).append(line)

    [ok] = by_route["ok"]
    assert ok["response_code"] == 200
    assert ok["response_flags"] == "-"
    assert ok["method"] == "GET"
    assert ok["path"] == "/a?b=1"
    assert ok["protocol"] == "HTTP/1.1"
    assert ok["upstream_cluster"] == "web"
    assert ok["upstream_host"] == f"127.0.0.1:{fast.port}"
    assert ok["x_request_id"] == "rid-1"
    assert ok["user_agent"] == "probe/1"
    assert ok["authority"] == "web"
    assert ok["retries"] == 0
    assert ok["bytes_received"] == 0
    assert ok["bytes_sent"] > 0
    assert ok["downstream_remote_address"] == "127.0.0.1"
    assert ok["duration_ms"] >= 0
    assert ok["start_time"].endswith("Z")
    assert len(ok["trace_id"]) == 32  # the trace the outbound sidecar started
    assert fast.seen[0]["headers"]["traceparent"].split("-")[1] == ok["trace_id"]

    [no_route] = by_route[None]
    assert (no_route["response_code"], no_route["response_flags"]) == (404, "NR")
    assert len(no_route["x_request_id"]) == 36  # generated for the log even without an upstream
    [uh] = by_route["uh"]
    assert (uh["response_code"], uh["response_flags"], uh["upstream_cluster"]) == (503, "UH", "empty")
    flags = sorted((line["response_code"], line["response_flags"]) for line in by_route["uo"])
    assert flags == [(200, "-"), (503, "UO")]
    [ut] = by_route["ut"]
    assert (ut["response_code"], ut["response_flags"]) == (504, "UT")
    [fi] = by_route["fi"]
    assert (fi["response_code"], fi["response_flags"]) == (418, "FI")

    text = generate_latest(sidecar.registry).decode()
    assert "mesh_sidecar_access_log_entries_total 7.0" in text
    assert "mesh_sidecar_access_log_dropped_total 0.0" in text
    assert 'response_code="503",response_flags="UO"' in text  # the same flags in istio_requests_total


async def test_configured_fields_only(backend_factory: BackendFactory, sidecar_factory: SidecarFactory) -> None:
    backend = await backend_factory("web")
    sink = Collected()
    log = AccessLog(AccessLogSettings(1.0, fields=("response_code", "listener", "trace_id")), sink)
    sidecar = await sidecar_factory(simple_config([backend]), access_log=log)
    given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert await get(port_of(sidecar), "web", headers={"traceparent": given}) == 200
    [line] = await logged(log, sink, 1)
    assert line == {"response_code": 200, "listener": "outbound", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}


async def test_sampled_ratio_is_within_tolerance(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    backend = await backend_factory("web")
    sink = Collected()
    log = AccessLog(AccessLogSettings(0.25), sink, rng=random.Random(7))
    sidecar = await sidecar_factory(simple_config([backend]), access_log=log)
    n = 400
    await get_ok(port_of(sidecar), "web", n)
    lines = await logged(log, sink, 1)
    await asyncio.sleep(0.05)
    lines = sink.lines()
    assert abs(len(lines) - 0.25 * n) <= 4 * (n * 0.25 * 0.75) ** 0.5  # within 4 standard deviations


async def test_a_stuck_sink_never_blocks_requests_and_drops_are_counted(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    backend = await backend_factory("web")
    release = threading.Event()
    accepted: list[bytes] = []

    def stuck(data: bytes) -> None:
        release.wait(10.0)  # a full pipe: the writer thread is stuck here
        accepted.append(data)

    log = AccessLog(AccessLogSettings(1.0), stuck, flush_bytes=1, max_queued=2)
    sidecar = await sidecar_factory(simple_config([backend]), access_log=log)
    n = 40
    started = time.monotonic()
    await get_ok(port_of(sidecar), "web", n)
    elapsed = time.monotonic() - started
    assert elapsed < 5.0  # far below the 10 s the sink would hold a blocking writer
    assert log.entries == n
    assert log.dropped >= n - 3  # one line in the thread, two queued, the rest dropped
    text = generate_latest(sidecar.registry).decode()
    assert f"mesh_sidecar_access_log_dropped_total {float(log.dropped)}" in text
    release.set()
    await log.close()
    assert log.written == n - log.dropped


async def test_connect_failures_after_retries_are_uf_and_urx(
    sidecar_factory: SidecarFactory, unused_tcp_port_factory: Any
) -> None:
    down = [{"host": "127.0.0.1", "port": unused_tcp_port_factory()} for _ in range(2)]
    config = http_config(
        [{"name": "down", "endpoints": down, "connect_timeout": "1s"}],
        routes(
            {
                "name": "down",
                "route": {
                    "name": "retried",
                    "match": {"prefix": "/"},
                    "cluster": "down",
                    "retry_policy": {
                        "retry_on": ["connect-failure"],
                        "num_retries": 1,
                        "retry_back_off": {"base_interval": "1ms"},
                    },
                },
            }
        ),
    )
    sink = Collected()
    log = AccessLog(AccessLogSettings(1.0), sink)
    sidecar = await sidecar_factory(config, access_log=log)
    assert await get(port_of(sidecar), "down") in (502, 503)
    [line] = await logged(log, sink, 1)
    assert set(line["response_flags"].split(",")) == {"UF", "URX"}
    assert line["retries"] == 1


def test_mode_and_fields_parsing() -> None:
    assert parse_mode("off") == 0.0
    assert parse_mode("on") == 1.0
    assert parse_mode("sampled:0.1") == 0.1
    for bad in ("sampled:0", "sampled:2", "sampled:x", "sometimes"):
        with pytest.raises(ValueError, match="--access-log"):
            parse_mode(bad)
    assert parse_fields("") == DEFAULT_FIELDS
    assert parse_fields("method, response_code") == ("method", "response_code")
    with pytest.raises(ValueError, match="--access-log-fields: unknown field"):
        parse_fields("method,colour")


def test_plan_reads_the_access_log_flags(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text("{}")
    plan = plan_from_options(
        {"config": str(config), "access_log": "sampled:0.5", "access_log_fields": "method,response_code"}
    )
    assert plan.access_log == AccessLogSettings(0.5, "-", ("method", "response_code"))
    assert plan_from_options({"config": str(config)}).access_log.enabled is False
    with pytest.raises(ValueError, match="--access-log"):
        plan_from_options({"config": str(config), "access_log": "sampled:7"})


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
async def test_sidecar_process_logs_json_lines_to_stdout_and_exports_istio_metrics(
    workers: int, tmp_path: Path, backend_factory: BackendFactory
) -> None:
    web = await backend_factory("web")
    env, listen, admin = sidecar_process_env(
        simple_config([web], version="cli"), tmp_path, workers, MESH_ACCESS_LOG="on", MESH_SERVICE="productpage"
    )
    proc = await asyncio.create_subprocess_exec(
        *MESH, "sidecar", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        await wait_ready(admin, proc)
        n = 6
        async with aiohttp.ClientSession() as session:
            for i in range(n):
                async with (
                    aiohttp.ClientSession() as fresh,  # new connections, so workers share them
                    fresh.get(f"http://127.0.0.1:{listen}/x/{i}", headers={"Host": "web"}) as response,
                ):
                    assert response.status == 200
            async with session.get(f"http://127.0.0.1:{admin}/metrics") as response:
                metrics = await response.text()
        assert "istio_requests_total{" in metrics
        assert 'source_workload="productpage"' in metrics
        assert 'destination_service="web"' in metrics
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout is not None
        async with asyncio.timeout(15):
            out = await proc.stdout.read()
            assert await proc.wait() == 0
        lines = [json.loads(line) for line in out.decode().splitlines()]
        assert sorted(line["path"] for line in lines) == [f"/x/{i}" for i in range(n)]
        assert all(line["response_code"] == 200 and line["response_flags"] == "-" for line in lines)
        assert all(len(line["trace_id"]) == 32 for line in lines)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_pipe_writes_are_whole_lines_of_at_most_pipe_buf() -> None:
    lines = [("x" * (i % 300) + "\n").encode() for i in range(2000)] + [b"y" * 9000 + b"\n", b"z\n"]
    data = b"".join(lines)
    pieces = list(_pieces(data))
    assert b"".join(pieces) == data
    assert all(piece.endswith(b"\n") for piece in pieces)
    assert all(len(piece) <= PIPE_ATOMIC for piece in pieces if not piece.startswith(b"y"))  # a long line alone
    read_end, write_end = os.pipe()
    try:
        write = open_sink(f"/dev/fd/{write_end}")
        write(data[:30000])  # below the pipe's capacity: nothing waits for the reader
        received = b""
        while len(received) < 30000:
            received += os.read(read_end, 65536)
        assert received == data[:30000]
    finally:
        os.close(read_end)
        os.close(write_end)


async def test_file_sink_appends_lines(
    tmp_path: Path, backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    backend = await backend_factory("web")
    path = tmp_path / "access.log"
    path.write_text('{"earlier":true}\n')
    log = AccessLog(AccessLogSettings(1.0, str(path)))
    sidecar = await sidecar_factory(simple_config([backend]), access_log=log)
    for _ in range(3):
        assert await get(port_of(sidecar), "web") == 200
    await log.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {"earlier": True}
    assert [line["response_code"] for line in lines[1:]] == [200, 200, 200]
