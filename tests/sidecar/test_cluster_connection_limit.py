"""The circuit breaker's ``max_connections`` is the cluster's, across its endpoints (real sockets).

A request that must wait for a connection slot proceeds when *any* connection of the cluster
frees one, whichever endpoint it targets; pending slots never leak, whatever ends the wait.
Requests are steered to an endpoint with ring-hash affinity on a header.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sidecar.server import SidecarServer
from tests.sidecar.helpers import http_config, serve_app, start_sidecar

KEY_HEADER = "x-key"


@dataclass
class Holder:
    """A backend that names itself; ``/hold?delay=S[&close=1]`` answers after S seconds (then closes)."""

    name: str
    hits: list[str] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    async def start(self) -> Holder:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._serve)
        self.runner, self.port = await serve_app(app)
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _serve(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        if request.path == "/hold":
            await asyncio.sleep(float(request.query.get("delay", "0.5")))
        response = web.Response(text=self.name, headers={"X-Backend": self.name})
        if request.query.get("close"):
            response.force_close()
        return response


def limited(holders: list[Holder], breakers: dict[str, Any], **route: Any) -> dict[str, Any]:
    return http_config(
        [
            {
                "name": "web",
                "endpoints": [{"host": "127.0.0.1", "port": h.port} for h in holders],
                "lb": {"kind": "ring_hash", "affinity": {"kind": "header", "name": KEY_HEADER}},
                "idle_timeout": "300ms",
                "circuit_breakers": breakers,
            }
        ],
        [
            {
                "name": "web",
                "domains": ["web"],
                "routes": [{"name": "all", "match": {"prefix": "/"}, "cluster": "web", **route}],
            }
        ],
    )


@contextlib.asynccontextmanager
async def cluster_of_two(breakers: dict[str, Any], **route: Any) -> AsyncIterator[tuple[SidecarServer, dict[str, str]]]:
    """Backends a and b behind one sidecar; yields it and a header key steering to each backend."""
    holders = [await Holder("a").start(), await Holder("b").start()]
    sidecar = await start_sidecar(limited(holders, breakers, **route))
    try:
        keys: dict[str, str] = {}
        async with aiohttp.ClientSession() as session:
            for i in range(64):
                status, backend, _ = await call(sidecar, session, "/probe", f"k{i}")
                assert status == 200
                keys.setdefault(backend, f"k{i}")
                if len(keys) == 2:
                    break
        assert set(keys) == {"a", "b"}, keys
        sidecar.pools.close_idle()  # start with the cluster's one slot free
        assert breaker_state(sidecar)["connections"]["active"] == 0
        yield sidecar, keys
    finally:
        await sidecar.stop()
        for holder in holders:
            await holder.stop()


async def call(
    sidecar: SidecarServer, session: aiohttp.ClientSession, path: str, key: str
) -> tuple[int, str, dict[str, str]]:
    url = f"http://127.0.0.1:{sidecar.listener_port('outbound')}{path}"
    async with session.get(url, headers={"Host": "web", KEY_HEADER: key}) as response:
        return response.status, await response.text(), dict(response.headers)


def breaker_state(sidecar: SidecarServer) -> dict[str, Any]:
    state: dict[str, Any] = sidecar.resilience.admin_view()["web"]["circuit_breakers"]
    return state


async def settle_idle(sidecar: SidecarServer, timeout: float = 5.0) -> None:
    """Wait until every upstream connection of the cluster is closed (idle timeout 300 ms)."""
    deadline = time.monotonic() + timeout
    while breaker_state(sidecar)["connections"]["active"] and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    assert breaker_state(sidecar)["connections"]["active"] == 0


@pytest.mark.parametrize("ending", ["released", "closed"])
@pytest.mark.parametrize("first", ["a", "b"])
async def test_request_queued_behind_one_endpoint_proceeds_to_the_other(first: str, ending: str) -> None:
    other = "b" if first == "a" else "a"
    async with (
        cluster_of_two({"max_connections": 1, "max_pending_requests": 8}) as (sidecar, keys),
        aiohttp.ClientSession() as session,
    ):
        hold = "/hold?delay=0.5" + ("&close=1" if ending == "closed" else "")
        holding = asyncio.create_task(call(sidecar, session, hold, keys[first]))
        await asyncio.sleep(0.15)
        started = time.monotonic()
        queued = asyncio.create_task(call(sidecar, session, "/after", keys[other]))
        await asyncio.sleep(0.15)
        state = breaker_state(sidecar)
        assert state["connections"]["active"] == 1
        assert state["pending"]["active"] == 1  # waiting for the cluster's one connection slot
        assert state["overflows"].get("max_connections", 0) >= 1
        assert not queued.done()
        first_status, first_backend, _ = await holding
        status, backend, _ = await queued
        assert (first_status, first_backend) == (200, first)
        assert (status, backend) == (200, other)  # it kept its own endpoint
        assert time.monotonic() - started >= 0.15  # it waited for the slot
        state = breaker_state(sidecar)
        assert (state["pending"]["active"], state["requests"]["active"]) == (0, 0)
        assert state["connections"]["active"] <= 1


async def test_same_endpoint_waiter_gets_the_released_connection() -> None:
    async with (
        cluster_of_two({"max_connections": 1, "max_pending_requests": 8}) as (sidecar, keys),
        aiohttp.ClientSession() as session,
    ):
        holding = asyncio.create_task(call(sidecar, session, "/hold?delay=0.3", keys["a"]))
        await asyncio.sleep(0.1)
        queued = [asyncio.create_task(call(sidecar, session, "/after", keys["a"])) for _ in range(3)]
        results = [await holding] + [await q for q in queued]
        assert [(s, b) for s, b, _ in results] == [(200, "a")] * 4
        pool = next(p for p in sidecar.pools.pools.values() if p.created)
        assert pool.created <= 2  # the probe's connection closed idle; then one, handed over
        assert breaker_state(sidecar)["pending"]["active"] == 0


async def test_pending_beyond_the_limit_gets_the_fast_overflow() -> None:
    async with (
        cluster_of_two({"max_connections": 1, "max_pending_requests": 1}) as (sidecar, keys),
        aiohttp.ClientSession() as session,
    ):
        holding = asyncio.create_task(call(sidecar, session, "/hold?delay=0.5", keys["a"]))
        await asyncio.sleep(0.1)
        queued = asyncio.create_task(call(sidecar, session, "/after", keys["b"]))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        status, body, headers = await call(sidecar, session, "/shed", keys["a"])
        assert time.monotonic() - started < 0.3  # answered at once, not after the hold
        assert status == 503
        assert headers["x-mesh-overflow"] == "max_pending_requests"
        assert "max_pending_requests" in body
        assert (await holding)[:2] == (200, "a")
        assert (await queued)[:2] == (200, "b")
        assert breaker_state(sidecar)["pending"]["active"] == 0


async def test_a_queued_request_that_waits_past_its_timeout_fails_and_gives_its_slot_back() -> None:
    async with (
        cluster_of_two({"max_connections": 1, "max_pending_requests": 4}, timeout="300ms") as (sidecar, keys),
        aiohttp.ClientSession() as session,
    ):
        holding = asyncio.create_task(call(sidecar, session, "/hold?delay=1.0", keys["a"]))
        await asyncio.sleep(0.1)
        status, _, _ = await call(sidecar, session, "/after", keys["b"])
        assert status == 504
        assert breaker_state(sidecar)["pending"]["active"] == 0
        assert (await holding)[0] == 504  # the hold itself outlives the route timeout
        await asyncio.sleep(0.05)
        # the slot is free again: a request to b gets a connection at once
        assert (await call(sidecar, session, "/again", keys["b"]))[:2] == (200, "b")


async def test_no_starvation_or_leak_under_load() -> None:
    breakers = {"max_connections": 1, "max_pending_requests": 1000}
    async with cluster_of_two(breakers, timeout="2s") as (sidecar, keys), aiohttp.ClientSession() as session:
        order = [keys["a"], keys["b"]]

        async def client(n: int) -> list[int]:
            statuses = []
            for i in range(10):
                path = "/hold?delay=0.005&close=1" if (n + i) % 5 == 0 else "/x"
                statuses.append((await call(sidecar, session, path, order[(n + i) % 2]))[0])
            return statuses

        results = await asyncio.gather(*(client(n) for n in range(12)))
        statuses = [s for r in results for s in r]
        assert statuses.count(200) == len(statuses) == 120  # every request served: none starved
        state = breaker_state(sidecar)
        assert (state["pending"]["active"], state["requests"]["active"]) == (0, 0)
        assert state["overflows"].get("max_connections", 0) > 0  # the limit was really in the way
        assert not sidecar.pools.queued  # no cluster queue left behind
        await settle_idle(sidecar)
        async with aiohttp.ClientSession() as admin:  # and the admin port shows the same
            url = f"http://127.0.0.1:{sidecar.admin_port}/clusters"
            async with admin.get(url) as response:
                view = await response.json()
        (cluster,) = view["clusters"]
        gauges = cluster["circuit_breakers"]
        assert gauges["connections"] == {"active": 0, "max": 1}
        assert gauges["pending"]["active"] == gauges["requests"]["active"] == 0


async def queue_then_hang_up(sidecar: SidecarServer, key: str, *, reset: bool) -> None:
    """A raw client sends a request, waits a little, then closes (``reset``: with an RST at once)."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.listener_port("outbound"))
    writer.write(f"GET /gone HTTP/1.1\r\nHost: web\r\n{KEY_HEADER}: {key}\r\n\r\n".encode())
    await writer.drain()
    await asyncio.sleep(0.05)
    if reset:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


@pytest.mark.parametrize("reset", [True, False])
async def test_clients_giving_up_while_queued_leak_no_pending_slot(reset: bool) -> None:
    async with (
        cluster_of_two({"max_connections": 1, "max_pending_requests": 3}) as (sidecar, keys),
        aiohttp.ClientSession() as session,
    ):
        holding = asyncio.create_task(call(sidecar, session, "/hold?delay=0.6", keys["a"]))
        await asyncio.sleep(0.1)
        for _ in range(3):
            await queue_then_hang_up(sidecar, keys["b"], reset=reset)
        await asyncio.sleep(0.1)
        if reset:  # the reset ends the exchange at once, and its wait with it
            assert breaker_state(sidecar)["pending"]["active"] == 0
        else:  # a half-closed client still gets its answer (HTTP/1.1 half-close): it keeps waiting
            assert breaker_state(sidecar)["pending"]["active"] == 3
        assert (await holding)[:2] == (200, "a")
        deadline = time.monotonic() + 3.0  # the half-closed ones are served (and answered) in turn
        while breaker_state(sidecar)["pending"]["active"] and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        assert breaker_state(sidecar)["pending"]["active"] == 0
        more = [asyncio.create_task(call(sidecar, session, "/after", keys["b"])) for _ in range(3)]
        assert [r[:2] for r in await asyncio.gather(*more)] == [(200, "b")] * 3
        state = breaker_state(sidecar)
        assert (state["pending"]["active"], state["requests"]["active"]) == (0, 0)
        assert not sidecar.pools.queued
