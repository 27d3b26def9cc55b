"""Rollouts with control-plane replicas sharing the consul store (mesh.control.rollout_lease):
one replica runs them, the others show them and name the one to send changes to, and a
survivor takes them over when the leader stops."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from discovery.server import RegistryServer
from mesh.control.server import ControlServer
from tests.mesh.control.fixtures import FAST
from tests.mesh.control.test_rollout_api import CANARY, call, routes, setup, until
from tests.mesh.control.test_rollout_cli import mesh

SHARED = replace(FAST, status_ttl=1.0, status_flush=0.05)  # the rollout lease lasts 1 s, renewed every 1/3 s


async def leader_of(replica: ControlServer) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        status, answer = await call(replica, "POST", "/v1/mesh/rollouts/none/abort")
        if status == 503 and answer.get("leader"):
            return answer
        if status == 404:  # this replica leads: it looked the rollout up
            return {"leader": replica.url}
        assert time.monotonic() < deadline, answer
        await asyncio.sleep(0.05)


async def test_one_replica_runs_the_rollouts_and_another_takes_them_over(
    start_control: Callable[..., Any], registry: RegistryServer, tmp_path: Path
) -> None:
    a: ControlServer = await start_control(store="consul", data_dir=tmp_path / "a", replica_id="a", settings=SHARED)
    assert (await leader_of(a))["leader"] == a.url
    b: ControlServer = await start_control(store="consul", data_dir=tmp_path / "b", replica_id="b", settings=SHARED)
    answer = await leader_of(b)
    assert answer["leader"] == a.url
    assert "rollouts are run by replica a" in answer["error"]

    await setup(a, registry)
    status, refused = await call(b, "POST", "/v1/mesh/rollouts", CANARY)
    assert status == 503
    assert refused["leader"] == a.url
    # The CLI, pointed at b, follows the 503 to the leader.
    result = await mesh(b, "rollout", "canary", "reviews", "--to", "v2", "--steps", "20,100")
    assert result.exit_code == 0, result.output
    await until(a, "reviews", lambda r: r["status"]["phase"] == "progressing")
    shown = await until(b, "reviews", lambda r: r["status"]["phase"] == "progressing")  # read from the store
    assert shown["status"]["weight"] == 20

    await a.stop()  # releases the lease: b takes the rollouts over and resumes them
    resumed = await until(b, "reviews", lambda r: r["events"][-1]["kind"] == "resumed")
    assert resumed["status"]["weight"] == 20
    status, aborted = await call(b, "POST", "/v1/mesh/rollouts/reviews/abort", {"reason": "done testing"})
    assert status == 200, aborted
    assert aborted["status"]["phase"] == "aborted"
    route, _ = await routes(b)
    assert route == [{"destination": {"host": "reviews", "subset": "v1"}}]
