"""Resilience through the real proxy: aiohttp backends that fail on purpose, real sockets, a real sidecar.

Figures (error rates, hit counts) are asserted loosely; ``bench/resilience_bench.py`` measures them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sidecar.server import SidecarServer
from tests.sidecar.helpers import http_config, serve_app, start_sidecar


@dataclass
class Flaky:
    """A backend whose answer, delay and health the test sets: ``status`` for ``/``, ``health`` for ``/healthz``."""

    name: str
    status: int = 200
    delay: float = 0.0
    health: int = 200
    hits: int = 0
    hosts: list[str] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    @property
    def address(self) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port}

    async def start(self) -> Flaky:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_route("*", "/{tail:.*}", self._serve)
        self.runner, self.port = await serve_app(app, self.port)
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def _serve(self, request: web.Request) -> web.Response:
        await request.read()
        self.hits += 1
        self.hosts.append(request.host)
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=self.status, text=self.name, headers={"X-Backend": self.name})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(status=self.health, text="ok" if self.health < 400 else "sick")


@contextlib.asynccontextmanager
async def backends(*names: str) -> AsyncIterator[list[Flaky]]:
    started = [await Flaky(name).start() for name in names]
    try:
        yield started
    finally:
        for backend in started:
            await backend.stop()


@contextlib.asynccontextmanager
async def sidecar_for(config: dict[str, Any]) -> AsyncIterator[tuple[SidecarServer, str]]:
    sidecar = await start_sidecar(config)
    try:
        yield sidecar, f"http://127.0.0.1:{sidecar.listener_port('outbound')}"
    finally:
        await sidecar.stop()


def one_route(flaky: list[Flaky], *, route: dict[str, Any] | None = None, **cluster: Any) -> dict[str, Any]:
    """Host ``web`` → cluster ``web`` over ``flaky`` with ``route``'s extra keys and ``cluster``'s."""
    return http_config(
        [{"name": "web", "endpoints": [b.address for b in flaky], **cluster}],
        [
            {
                "name": "web",
                "domains": ["web"],
                "routes": [{"name": "all", "match": {"prefix": "/"}, "cluster": "web", **(route or {})}],
            }
        ],
    )


async def get(session: aiohttp.ClientSession, url: str, host: str = "web") -> tuple[int, str, dict[str, str]]:
    async with session.get(url, headers={"Host": host}, allow_redirects=False) as response:
        return response.status, await response.text(), dict(response.headers)


async def test_kill_one_of_three_under_load_keeps_errors_below_one_percent() -> None:
    async with backends("a", "b", "c") as flaky:
        config = one_route(
            flaky,
            route={"retry_policy": {"retry_on": ["5xx", "connect-failure", "reset"], "num_retries": 2}},
            outlier_detection={
                "consecutive_5xx": 3,
                "interval": "100ms",
                "base_ejection_time": "30s",
                "max_ejection_percent": 50,
            },
        )
        async with sidecar_for(config) as (sidecar, url), aiohttp.ClientSession() as session:
            statuses: list[int] = []
            stop_at = time.monotonic() + 1.5

            async def worker() -> None:
                while time.monotonic() < stop_at:
                    statuses.append((await get(session, url + "/"))[0])

            workers = [asyncio.create_task(worker()) for _ in range(8)]
            await asyncio.sleep(0.4)
            await flaky[1].stop()  # the fault: one endpoint dies under load
            await asyncio.gather(*workers)
            errors = sum(1 for s in statuses if s != 200)
            rate = errors / len(statuses)
            print(f"kill 1 of 3: {len(statuses)} requests, {errors} errors ({rate:.4%})")
            assert len(statuses) > 100
            assert rate <= 0.01
            view = sidecar.resilience.admin_view()["web"]["endpoints"][f"127.0.0.1:{flaky[1].port}"]
            assert view["available"] is False  # ejected
            clusters = sidecar.clusters_view()["clusters"][0]
            dead = next(e for e in clusters["endpoints"] if e["key"] == f"127.0.0.1:{flaky[1].port}")
            assert dead["outlier"]["ejected"] is True


async def test_slow_backend_is_cut_by_per_try_timeout_and_retried_elsewhere() -> None:
    async with backends("slow", "fast") as flaky:
        flaky[0].delay = 2.0
        config = one_route(
            flaky,
            route={"retry_policy": {"retry_on": ["5xx"], "num_retries": 1, "per_try_timeout": "100ms"}},
        )
        async with sidecar_for(config) as (_, url), aiohttp.ClientSession() as session:
            for _ in range(4):
                started = time.monotonic()
                status, body, _ = await get(session, url + "/")
                assert (status, body) == (200, "fast")
                assert time.monotonic() - started < 1.0  # never waited for the slow one's 2 s
            assert flaky[0].hits >= 1  # round robin did send some there first


async def test_per_try_timeout_without_retries_answers_504() -> None:
    async with backends("slow") as flaky:
        flaky[0].delay = 2.0
        config = one_route(flaky, route={"retry_policy": {"num_retries": 0, "per_try_timeout": "100ms"}})
        async with sidecar_for(config) as (_, url), aiohttp.ClientSession() as session:
            started = time.monotonic()
            status, body, _ = await get(session, url + "/")
            assert status == 504
            assert "upstream request timeout" in body
            assert time.monotonic() - started < 1.0


async def test_retry_budget_caps_amplification_when_every_backend_fails() -> None:
    async with backends("a", "b", "c") as flaky:
        for backend in flaky:
            backend.status = 503
            backend.delay = 0.05  # requests overlap, so the budget is a share of many in flight
        config = one_route(
            flaky,
            route={"retry_policy": {"retry_on": ["5xx"], "num_retries": 5, "retry_back_off": {"base_interval": "1ms"}}},
            circuit_breakers={"retry_budget": {"budget_percent": 20, "min_retry_concurrency": 1}},
        )
        async with sidecar_for(config) as (sidecar, url), aiohttp.ClientSession() as session:
            requests = 40
            results = await asyncio.gather(*(get(session, url + "/") for _ in range(requests)))
            assert all(status == 503 for status, _, _ in results)
            hits = sum(b.hits for b in flaky)
            print(f"retry budget: {requests} requests → {hits} backend hits (unbounded: {requests * 6})")
            assert hits > requests  # some retries were made ...
            assert hits <= requests * 2.5  # ... but far fewer than 5 per request
            state = sidecar.resilience.admin_view()["web"]["circuit_breakers"]
            assert state["retries"]["active"] == 0  # every slot given back
            async with session.get(f"http://127.0.0.1:{sidecar.admin_port}/metrics") as response:
                metrics = await response.text()
            retried = [
                line for line in metrics.splitlines() if line.startswith('mesh_sidecar_retries_total{cluster="web"}')
            ]
            assert retried
            assert float(retried[0].split()[-1]) == hits - requests  # every retry counted
            assert 'mesh_sidecar_retry_overflows_total{cluster="web"}' in metrics


async def test_breaker_trips_with_x_mesh_overflow_and_recovers() -> None:
    async with backends("a") as flaky:
        flaky[0].delay = 0.3
        config = one_route(flaky, circuit_breakers={"max_requests": 2})
        async with sidecar_for(config) as (sidecar, url), aiohttp.ClientSession() as session:
            results = await asyncio.gather(*(get(session, url + "/") for _ in range(6)))
            ok = [r for r in results if r[0] == 200]
            shed = [r for r in results if r[0] == 503]
            assert len(ok) == 2
            assert len(shed) == 4
            assert all(r[2].get("x-mesh-overflow") == "max_requests" for r in shed)
            assert "max_requests" in shed[0][1]
            flaky[0].delay = 0.0
            assert (await get(session, url + "/"))[0] == 200  # recovered once the slots were given back
            assert sidecar.resilience.admin_view()["web"]["circuit_breakers"]["requests"]["active"] == 0


async def test_max_connections_queues_as_pending_and_max_pending_sheds_with_overflow() -> None:
    async with backends("a") as flaky:
        flaky[0].delay = 0.3
        config = one_route(flaky, circuit_breakers={"max_connections": 1, "max_pending_requests": 2})
        async with sidecar_for(config) as (sidecar, url), aiohttp.ClientSession() as session:
            results = await asyncio.gather(*(get(session, url + "/") for _ in range(5)))
            statuses = sorted(r[0] for r in results)
            assert statuses == [200, 200, 200, 503, 503]  # 1 on the connection, 2 queued, 2 shed
            shed = [r for r in results if r[0] == 503]
            assert all(r[2].get("x-mesh-overflow") == "max_pending_requests" for r in shed)
            state = sidecar.resilience.admin_view()["web"]["circuit_breakers"]
            assert state["pending"]["active"] == 0
            assert state["connections"]["active"] <= 1
            flaky[0].delay = 0.0
            assert (await get(session, url + "/"))[0] == 200


async def test_ejected_endpoint_gets_no_traffic_then_returns_after_its_ejection_time() -> None:
    async with backends("bad", "good") as flaky:
        bad = flaky[0]
        bad.status = 500
        config = one_route(
            flaky,
            outlier_detection={
                "consecutive_5xx": 2,
                "interval": "50ms",
                "base_ejection_time": "600ms",
                "max_ejection_percent": 50,
            },
        )
        async with sidecar_for(config) as (sidecar, url), aiohttp.ClientSession() as session:
            for _ in range(6):
                await get(session, url + "/")
            key = f"127.0.0.1:{bad.port}"
            assert sidecar.resilience.admin_view()["web"]["endpoints"][key]["available"] is False
            bad.status = 200
            before = bad.hits
            for _ in range(10):
                assert (await get(session, url + "/"))[1] == "good"
            assert bad.hits == before  # ejected: no traffic
            await asyncio.sleep(0.8)
            assert sidecar.resilience.admin_view()["web"]["endpoints"][key]["available"] is True
            bodies = [(await get(session, url + "/"))[1] for _ in range(10)]
            assert "bad" in bodies  # back in rotation


async def test_active_health_checks_keep_traffic_off_an_unhealthy_endpoint_and_bring_it_back() -> None:
    async with backends("a", "b") as flaky:
        b = flaky[1]
        b.health = 503
        config = one_route(
            flaky,
            health_check={
                "interval": "50ms",
                "timeout": "500ms",
                "unhealthy_threshold": 1,
                "healthy_threshold": 1,
                "http": {"path": "/healthz"},
            },
        )
        async with sidecar_for(config) as (sidecar, url), aiohttp.ClientSession() as session:
            await asyncio.sleep(0.3)  # first probes decide
            for _ in range(10):
                assert (await get(session, url + "/"))[1] == "a"
            assert b.hits == 0
            b.health = 200
            await asyncio.sleep(0.3)
            bodies = {(await get(session, url + "/"))[1] for _ in range(10)}
            assert bodies == {"a", "b"}
            endpoint = sidecar.resilience.admin_view()["web"]["endpoints"][f"127.0.0.1:{b.port}"]
            assert endpoint["health_check"] is not None


async def test_fault_delay_and_abort_percentages_are_within_tolerance() -> None:
    async with backends("a") as flaky:
        config = one_route(
            flaky,
            route={
                "fault": {
                    "delay": {"fixed_delay": "250ms", "percentage": 20},
                    "abort": {"http_status": 418, "percentage": 30},
                }
            },
        )
        async with sidecar_for(config) as (sidecar, url), aiohttp.ClientSession() as session:
            n = 400

            async def timed() -> tuple[int, str, float]:
                started = time.monotonic()
                status, body, _ = await get(session, url + "/")
                return status, body, time.monotonic() - started

            results: list[tuple[int, str, float]] = []
            for start in range(0, n, 50):
                results += await asyncio.gather(*(timed() for _ in range(min(50, n - start))))
            aborted = [r for r in results if r[0] == 418]
            # the sidecar's count of injected delays, and each of those requests took the delay (on a
            # loaded machine an undelayed one may take as long, so time alone cannot tell them apart)
            delayed = sidecar.resilience.metrics.fault_stats("all").delays
            assert len([r for r in results if r[2] >= 0.25]) >= delayed
            # 4 standard deviations of a binomial: a false failure about once in 15,000 runs.
            assert abs(len(aborted) - 0.3 * n) <= 4 * (n * 0.3 * 0.7) ** 0.5
            assert abs(delayed - 0.2 * n) <= 4 * (n * 0.2 * 0.8) ** 0.5
            assert all("fault filter abort" in r[1] for r in aborted)
            assert flaky[0].hits == n - len(aborted)


async def test_mirror_gets_copies_while_the_primary_is_not_slowed() -> None:
    async with backends("primary", "shadow") as flaky:
        primary, shadow = flaky
        shadow.delay = 0.5  # a slow shadow must not hold up the primary
        config = http_config(
            [{"name": "web", "endpoints": [primary.address]}, {"name": "shadow", "endpoints": [shadow.address]}],
            [
                {
                    "name": "web",
                    "domains": ["web"],
                    "routes": [
                        {"name": "all", "match": {"prefix": "/"}, "cluster": "web", "mirrors": [{"cluster": "shadow"}]}
                    ],
                }
            ],
        )
        async with sidecar_for(config) as (_, url), aiohttp.ClientSession() as session:
            for _ in range(5):
                started = time.monotonic()
                status, body, _ = await get(session, url + "/")
                assert (status, body) == (200, "primary")
                assert time.monotonic() - started < 0.4
            for _ in range(50):
                if shadow.hits == 5:
                    break
                await asyncio.sleep(0.05)
            assert shadow.hits == 5
            assert set(shadow.hosts) == {"web-shadow"}
            assert primary.hosts == ["web"] * 5


async def test_redirect_route_answers_itself_and_host_rewrite_changes_the_upstream_host() -> None:
    async with backends("a") as flaky:
        config = http_config(
            [{"name": "web", "endpoints": [flaky[0].address]}],
            [
                {
                    "name": "web",
                    "domains": ["web"],
                    "routes": [
                        {
                            "name": "old",
                            "match": {"prefix": "/old/"},
                            "redirect": {"scheme": "https", "host": "docs.example.com", "prefix_rewrite": "/new/"},
                        },
                        {"name": "all", "match": {"prefix": "/"}, "cluster": "web", "host_rewrite": "api.internal"},
                    ],
                }
            ],
        )
        async with sidecar_for(config) as (_, url), aiohttp.ClientSession() as session:
            status, _, headers = await get(session, url + "/old/page?x=1")
            assert status == 301
            assert headers["Location"] == "https://docs.example.com/new/page?x=1"
            assert flaky[0].hits == 0
            assert (await get(session, url + "/"))[0] == 200
            assert flaky[0].hosts == ["api.internal"]


@pytest.mark.parametrize("body_size", [10, 100_000])
async def test_post_body_is_replayed_on_retry_only_within_the_buffer_limit(body_size: int) -> None:
    async with backends("bad", "good") as flaky:
        flaky[0].status = 503
        config = one_route(
            flaky,
            route={
                "retry_policy": {
                    "retry_on": ["5xx"],
                    "num_retries": 1,
                    "retry_non_idempotent": True,
                    "buffer_limit_bytes": 1000,
                }
            },
            lb={"kind": "round_robin"},
        )
        async with sidecar_for(config) as (_, url), aiohttp.ClientSession() as session:
            outcomes = []
            for _ in range(4):
                async with session.put(url + "/", data=b"x" * body_size, headers={"Host": "web"}) as response:
                    outcomes.append((response.status, await response.text()))
            if body_size <= 1000:
                assert outcomes == [(200, "good")] * 4  # a 503 from "bad" is retried on "good"
            else:
                assert (503, "bad") in outcomes  # too long to replay: forwarded once
