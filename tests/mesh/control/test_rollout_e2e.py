"""Progressive delivery end to end: a registry and control plane, a real `mesh sidecar` process
for productpage, reviews v1 and v2 backends, and a load generator calling reviews through the
sidecar. The rollout is created through the API and judged on the sidecar's own Istio metrics,
which the control plane scrapes from the admin address the sidecar registered."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from discovery.server import RegistryServer
from mesh.control.server import ControlServer
from tests.mesh.control.bookinfo import BOOKINFO
from tests.mesh.control.fixtures import register
from tests.mesh.control.test_sidecar_process_e2e import SidecarProcess
from tests.sidecar.helpers import Backend, serve_app

pytestmark = pytest.mark.slow


class Load:
    """Calls reviews through the sidecar's outbound listener, a few at a time, until stopped."""

    def __init__(self, outbound: int) -> None:
        self.url = f"http://127.0.0.1:{outbound}/"
        self.seen: Counter[tuple[str, int]] = Counter()  # (backend, status)
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Load:
        self._session = aiohttp.ClientSession()
        self._tasks = [asyncio.create_task(self._run()) for _ in range(4)]
        return self

    async def __aexit__(self, *_: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._session.close()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self._session.get(self.url, headers={"Host": "reviews"}) as r:
                    self.seen[(r.headers.get("X-Backend", "?"), r.status)] += 1
                    await r.read()
            await asyncio.sleep(0.01)


async def failing_backend(name: str) -> tuple[web.AppRunner, int]:
    async def fail(_: web.Request) -> web.Response:
        return web.json_response({"backend": name}, status=500, headers={"X-Backend": name})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fail)
    return await serve_app(app)


@pytest.fixture
async def mesh(control: ControlServer, registry: RegistryServer, tmp_path: Path) -> AsyncIterator[SidecarProcess]:
    async with aiohttp.ClientSession() as http:
        for name in ("destination-rule-all.yaml", "virtual-service-all-v1.yaml"):
            async with http.put(f"{control.url}/v1/mesh/config", data=(BOOKINFO / name).read_bytes()) as r:
                assert r.status == 200, await r.text()
    sidecar = SidecarProcess(control.url, registry.url, tmp_path)
    try:
        await sidecar.live()
        yield sidecar
    finally:
        sidecar.stop()


async def start_rollout(control: ControlServer, body: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as http, http.post(f"{control.url}/v1/mesh/rollouts", json=body) as r:
        assert r.status == 201, await r.text()


async def finished(control: ControlServer, name: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"{control.url}/v1/mesh/rollouts/{name}") as r:
                rollout: dict[str, Any] = await r.json()
            if rollout["status"]["phase"] not in ("pending", "progressing"):
                return rollout
            assert time.monotonic() < deadline, rollout
            await asyncio.sleep(0.1)


async def reviews_route(control: ControlServer) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{control.url}/v1/mesh/config/VirtualService/default/reviews") as r,
    ):
        route: list[dict[str, Any]] = (await r.json())["spec"]["http"][0]["route"]
        return route


CANARY = {
    "service": "reviews",
    "canary": "v2",
    "steps": [50, 100],
    "interval": "1s",
    "max_error_rate": 0.05,
    "max_p99": "500ms",
    "min_requests": 10,
}


async def test_a_healthy_canary_is_promoted(
    control: ControlServer, registry: RegistryServer, mesh: SidecarProcess
) -> None:
    v1, v2 = await Backend("reviews-v1").start(), await Backend("reviews-v2").start()
    try:
        async with aiohttp.ClientSession(base_url=registry.url) as http:
            await register(http, "reviews", "reviews-v1", v1.port, Meta={"version": "v1"})
            await register(http, "reviews", "reviews-v2", v2.port, Meta={"version": "v2"})
        async with Load(mesh.outbound) as load:
            await asyncio.sleep(0.3)
            assert load.seen[("reviews-v1", 200)] > 0
            await start_rollout(control, CANARY)
            rollout = await finished(control, "reviews")
            assert rollout["status"]["phase"] == "promoted", rollout["events"]
            await asyncio.sleep(0.5)  # the sidecar follows the control plane's push within milliseconds
            seen_at_promotion = load.seen.copy()
            await asyncio.sleep(0.5)
        kinds = [e["kind"] for e in rollout["events"]]
        assert kinds == ["created", "step", "step", "promoted"], rollout["events"]
        for event in rollout["events"][2:]:  # each decision saw the canary's real traffic
            assert event["stats"]["requests"] >= 10
            assert event["stats"]["error_rate"] == 0
        assert await reviews_route(control) == [{"destination": {"host": "reviews", "subset": "v2"}}]
        assert seen_at_promotion[("reviews-v2", 200)] > 0
        after = load.seen - seen_at_promotion
        assert after[("reviews-v2", 200)] > 0
        assert after[("reviews-v1", 200)] == 0
    finally:
        await v1.stop()
        await v2.stop()


async def test_a_canary_answering_5xx_is_rolled_back(
    control: ControlServer, registry: RegistryServer, mesh: SidecarProcess
) -> None:
    v1 = await Backend("reviews-v1").start()
    runner, v2_port = await failing_backend("reviews-v2")
    try:
        async with aiohttp.ClientSession(base_url=registry.url) as http:
            await register(http, "reviews", "reviews-v1", v1.port, Meta={"version": "v1"})
            await register(http, "reviews", "reviews-v2", v2_port, Meta={"version": "v2"})
        async with Load(mesh.outbound) as load:
            await asyncio.sleep(0.3)
            await start_rollout(control, CANARY)
            rollout = await finished(control, "reviews")
            assert rollout["status"]["phase"] == "rolled_back", rollout["events"]
            await asyncio.sleep(0.5)  # the sidecar follows the control plane's push within milliseconds
            seen_at_rollback = load.seen.copy()
            await asyncio.sleep(0.5)
        last = rollout["events"][-1]
        assert last["kind"] == "rolled_back"
        assert "error rate" in last["message"]
        assert "above 5.00%" in last["message"]
        assert last["stats"]["error_rate"] > 0.5
        assert seen_at_rollback[("reviews-v2", 500)] > 0  # the canary really got traffic, and failed it
        assert await reviews_route(control) == [{"destination": {"host": "reviews", "subset": "v1"}}]
        after = load.seen - seen_at_rollback
        assert after[("reviews-v1", 200)] > 0
        assert after[("reviews-v2", 500)] == 0
    finally:
        await v1.stop()
        await runner.cleanup()


async def test_a_slow_canary_is_rolled_back_on_p99(
    control: ControlServer, registry: RegistryServer, mesh: SidecarProcess
) -> None:
    v1, v2 = await Backend("reviews-v1").start(), await Backend("reviews-v2", delay=0.3).start()
    try:
        async with aiohttp.ClientSession(base_url=registry.url) as http:
            await register(http, "reviews", "reviews-v1", v1.port, Meta={"version": "v1"})
            await register(http, "reviews", "reviews-v2", v2.port, Meta={"version": "v2"})
        async with Load(mesh.outbound):
            await start_rollout(control, {**CANARY, "max_p99": "100ms", "interval": "1500ms", "min_requests": 5})
            rollout = await finished(control, "reviews")
        assert rollout["status"]["phase"] == "rolled_back", rollout["events"]
        last = rollout["events"][-1]
        assert "p99" in last["message"]
        assert "above 100ms" in last["message"]
        assert last["stats"]["p99_ms"] > 250  # the backend's 300 ms, as the sidecar's histogram bucketed it
        assert last["stats"]["error_rate"] == 0
        assert await reviews_route(control) == [{"destination": {"host": "reviews", "subset": "v1"}}]
    finally:
        await v1.stop()
        await v2.stop()
