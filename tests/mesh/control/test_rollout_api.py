"""The rollout API and store (mesh.control.rollout_api/_controller/_store) on a real control plane.

No sidecar is registered here, so no window ever has metrics: these tests cover creation,
validation, the route changes, abort, the "not enough traffic" rollback and resumption after a
restart. The metrics-driven paths run end to end in ``test_rollout_e2e``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from discovery.server import RegistryServer
from mesh.control.rollout_routes import ANNOTATION
from mesh.control.server import ControlServer
from tests.mesh.control.bookinfo import BOOKINFO
from tests.mesh.control.fixtures import register


async def setup(control: ControlServer, registry: RegistryServer) -> None:
    async with aiohttp.ClientSession() as http:
        for name in ("destination-rule-all.yaml", "virtual-service-all-v1.yaml"):
            async with http.put(f"{control.url}/v1/mesh/config", data=(BOOKINFO / name).read_bytes()) as r:
                assert r.status == 200, await r.text()
    async with aiohttp.ClientSession(base_url=registry.url) as http:
        for version, port in (("v1", 9101), ("v2", 9102)):
            await register(http, "reviews", f"reviews-{version}", port, Meta={"version": version})


async def call(control: ControlServer, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.request(method, control.url + path, json=body) as r:
        return r.status, await r.json()


async def routes(control: ControlServer) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    _, vs = await call(control, "GET", "/v1/mesh/config/VirtualService/default/reviews")
    return vs["spec"]["http"][0]["route"], vs["metadata"]


async def until(control: ControlServer, name: str, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        status, rollout = await call(control, "GET", f"/v1/mesh/rollouts/{name}")
        assert status == 200, rollout
        if check(rollout):
            return rollout
        assert time.monotonic() < deadline, rollout
        await asyncio.sleep(0.05)


CANARY = {"service": "reviews", "canary": "v2", "steps": [20, 100], "interval": "30s", "max_error_rate": 0.01}


async def test_create_shifts_the_first_step_and_abort_restores_stable(
    control: ControlServer, registry: RegistryServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "mesh.control.rollout")  # the log lines are built, as in production
    await setup(control, registry)
    status, created = await call(control, "POST", "/v1/mesh/rollouts", CANARY)
    assert status == 201, created
    assert created["spec"]["stable"] == "v1"  # read from the VirtualService
    assert created["events"][0]["kind"] == "created"
    rollout = await until(control, "reviews", lambda r: r["status"]["phase"] == "progressing")
    assert (rollout["status"]["step"], rollout["status"]["weight"]) == (0, 20)
    route, metadata = await routes(control)
    assert [(d["destination"]["subset"], d["weight"]) for d in route] == [("v1", 80), ("v2", 20)]
    assert metadata["annotations"] == {ANNOTATION: "reviews"}

    # One rollout per VirtualService at a time.
    status, conflict = await call(control, "POST", "/v1/mesh/rollouts", {**CANARY, "name": "other"})
    assert status == 409
    assert "already shifting" in conflict["error"]

    status, aborted = await call(control, "POST", "/v1/mesh/rollouts/reviews/abort", {"reason": "testing"})
    assert status == 200
    assert aborted["status"]["phase"] == "aborted"
    assert aborted["events"][-1]["message"] == "aborted: testing; all traffic back to v1"
    route, metadata = await routes(control)
    assert route == [{"destination": {"host": "reviews", "subset": "v1"}}]
    assert "annotations" not in metadata
    logged = [r.getMessage() for r in caplog.records if r.name == "mesh.control.rollout"]
    assert "rollout created" in logged
    assert "rollout default/reviews: aborted: testing; all traffic back to v1" in logged

    status, listing = await call(control, "GET", "/v1/mesh/rollouts")
    assert [item["name"] for item in listing["items"]] == ["reviews"]
    # A finished rollout's name can be used again.
    status, again = await call(control, "POST", "/v1/mesh/rollouts", CANARY)
    assert status == 201, again


async def test_no_traffic_extends_then_rolls_back(control: ControlServer, registry: RegistryServer) -> None:
    await setup(control, registry)
    body = {**CANARY, "interval": "200ms", "max_extensions": 1, "min_requests": 5}
    status, created = await call(control, "POST", "/v1/mesh/rollouts", body)
    assert status == 201, created
    rollout = await until(control, "reviews", lambda r: r["status"]["phase"] == "rolled_back")
    kinds = [e["kind"] for e in rollout["events"]]
    assert kinds == ["created", "step", "extended", "rolled_back"]
    assert "not enough traffic" in rollout["status"]["reason"]
    async with aiohttp.ClientSession() as http, http.get(f"{control.url}/metrics") as r:
        exposition = await r.text()
    assert 'mesh_control_rollout_decisions_total{verdict="rollback"}' in exposition
    assert 'mesh_control_rollout_canary_weight{namespace="default",rollout="reviews"}' not in exposition  # finished
    route, _ = await routes(control)
    assert route == [{"destination": {"host": "reviews", "subset": "v1"}}]


async def test_bad_requests_name_the_field(control: ControlServer, registry: RegistryServer) -> None:
    status, error = await call(control, "POST", "/v1/mesh/rollouts", CANARY)
    assert (status, error["path"]) == (400, "virtual_service")
    await setup(control, registry)
    status, error = await call(control, "POST", "/v1/mesh/rollouts", {**CANARY, "canary": "v9"})
    assert (status, error["path"]) == (400, "canary")
    assert "not defined by DestinationRule reviews" in error["error"]
    status, error = await call(control, "POST", "/v1/mesh/rollouts", {**CANARY, "steps": [50]})
    assert (status, error["path"]) == (400, "steps")
    status, error = await call(control, "GET", "/v1/mesh/rollouts/nothing")
    assert status == 404
    status, error = await call(control, "POST", "/v1/mesh/rollouts/nothing/abort")
    assert status == 404


async def test_a_restarted_control_plane_resumes_the_rollout(
    start_control: Callable[..., Any], registry: RegistryServer
) -> None:
    first: ControlServer = await start_control()
    await setup(first, registry)
    status, _ = await call(first, "POST", "/v1/mesh/rollouts", {**CANARY, "steps": [10, 40, 100]})
    assert status == 201
    await until(first, "reviews", lambda r: r["status"]["phase"] == "progressing")
    await first.stop()

    second: ControlServer = await start_control()  # same data dir
    rollout = await until(second, "reviews", lambda r: r["events"][-1]["kind"] == "resumed")
    assert (rollout["status"]["phase"], rollout["status"]["weight"]) == ("progressing", 10)
    route, _ = await routes(second)
    assert [d["weight"] for d in route] == [90, 10]
    status, aborted = await call(second, "POST", "/v1/mesh/rollouts/reviews/abort")
    assert aborted["status"]["phase"] == "aborted"
