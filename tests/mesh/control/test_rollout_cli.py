"""`mesh rollout canary/bluegreen/status/abort` against a real control plane (the CLI runs in a thread)."""

from __future__ import annotations

import asyncio
from typing import Any

from typer.testing import CliRunner

from discovery.server import RegistryServer
from mesh.cli import app
from mesh.control.server import ControlServer
from tests.mesh.control.test_rollout_api import routes, setup


async def mesh(control: ControlServer, *args: str) -> Any:
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, app, list(args), env={"MESH_CONTROL_ADDR": control.url})


async def test_canary_status_and_abort(control: ControlServer, registry: RegistryServer) -> None:
    await setup(control, registry)
    result = await mesh(
        control,
        "rollout",
        "canary",
        "reviews",
        "--to",
        "v2",
        "--steps",
        "20,100",
        "--max-error-rate",
        "2%",
        "--max-p99",
        "200ms",
    )
    assert result.exit_code == 0, result.output
    assert "rollout default/reviews created: reviews v1 → v2, steps 20,100, 30s each" in result.output
    for _ in range(100):
        result = await mesh(control, "rollout", "status")
        if "progressing" in result.output:
            break
        await asyncio.sleep(0.05)
    assert result.exit_code == 0, result.output
    assert "reviews" in result.output
    assert "progressing" in result.output
    assert "1/2" in result.output
    assert "20%" in result.output

    result = await mesh(control, "rollout", "status", "reviews")
    assert "default/reviews: progressing, 20% to v2 (step 1/2, window ends in" in result.output
    assert "created" in result.output
    assert "step 1/2: 20% to v2" in result.output

    result = await mesh(control, "rollout", "abort", "reviews", "--reason", "looks wrong")
    assert result.exit_code == 0, result.output
    assert "aborted: looks wrong" in result.output
    route, _ = await routes(control)
    assert route == [{"destination": {"host": "reviews", "subset": "v1"}}]

    result = await mesh(control, "rollout", "status", "reviews", "-o", "json")
    assert '"phase": "aborted"' in result.output


async def test_bluegreen_watch_exits_1_when_rolled_back(control: ControlServer, registry: RegistryServer) -> None:
    await setup(control, registry)
    result = await mesh(
        control,
        "rollout",
        "bluegreen",
        "reviews",
        "--to",
        "v2",
        "--interval",
        "200ms",
        "--max-extensions",
        "0",
        "--watch",
    )
    assert result.exit_code == 1, result.output
    assert "step 1/1: 100% to v2" in result.output
    assert "not enough traffic to judge v2: no metrics after 1 window(s), 20 needed" in result.output
    assert "default/reviews: rolled_back, 0% to v2" in result.output


async def test_errors_name_the_flag(control: ControlServer, registry: RegistryServer) -> None:
    await setup(control, registry)
    result = await mesh(control, "rollout", "canary", "reviews", "--to", "v9")
    assert result.exit_code == 1
    assert "--to: subset 'v9' is not defined by DestinationRule reviews" in result.output
    result = await mesh(control, "rollout", "canary", "reviews", "--to", "v2", "--max-error-rate", "5")
    assert result.exit_code == 2
    assert "percentage" in result.output
    result = await mesh(control, "rollout", "canary", "reviews", "--to", "v2", "--steps", "50,20,100")
    assert result.exit_code == 1
    assert "--steps: steps[1]: must be larger than the step before (50), got 20" in result.output
    result = await mesh(control, "rollout", "status", "nothing")
    assert result.exit_code == 1
    assert "rollout default/nothing not found" in result.output
