"""`mesh sidecar` as a real process: static config, requests, SIGTERM → drain → exit 0; workers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from typer.testing import CliRunner

from mesh.cli import app
from mesh.demo.processes import free_port
from tests.sidecar.conftest import BackendFactory
from tests.sidecar.helpers import simple_config

MESH = [sys.executable, "-c", "from mesh.cli import main; main()"]


def sidecar_process_env(
    config: dict[str, Any], tmp_path: Path, workers: int = 1, **extra: str
) -> tuple[dict[str, str], int, int]:
    """Environment for a `mesh sidecar` process serving ``config`` (its first listener on a free
    port) from a file; returns (env, listener port, admin port). ``extra``: more MESH_* variables."""
    listen, admin = free_port(), free_port()
    config["listeners"][0]["port"] = listen
    path = tmp_path / "sidecar.json"
    path.write_text(json.dumps(config))
    env = {
        **os.environ,
        "MESH_CONFIG": str(path),
        "MESH_ADMIN_ADDR": f"127.0.0.1:{admin}",
        "MESH_WORKERS": str(workers),
        **extra,
    }
    return env, listen, admin


def test_bad_flags_are_named() -> None:
    result = CliRunner().invoke(app, ["sidecar", "--upstream", "db:5432", "--config", "/nonexistent.yaml"])
    assert result.exit_code == 2
    assert "--upstream" in result.output
    result = CliRunner().invoke(app, ["sidecar", "--config", "/nonexistent.yaml"])
    assert result.exit_code == 2
    assert "no such file" in result.output


async def wait_ready(admin: int, proc: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            if proc.returncode is not None:
                raise AssertionError(f"sidecar exited with {proc.returncode}")
            try:
                async with session.get(f"http://127.0.0.1:{admin}/ready") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("sidecar did not become ready")


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
async def test_sidecar_process_serves_and_exits_cleanly(
    workers: int, tmp_path: Path, backend_factory: BackendFactory
) -> None:
    web = await backend_factory("web")
    env, listen, admin = sidecar_process_env(simple_config([web], version="cli"), tmp_path, workers)
    proc = await asyncio.create_subprocess_exec(*MESH, "sidecar", env=env, stderr=asyncio.subprocess.PIPE)
    try:
        await wait_ready(admin, proc)
        async with aiohttp.ClientSession() as session:
            for _ in range(10):
                async with (
                    aiohttp.ClientSession() as fresh,  # new connections, so workers share them
                    fresh.get(f"http://127.0.0.1:{listen}/x", headers={"Host": "web"}) as response,
                ):
                    assert response.status == 200
            async with session.get(f"http://127.0.0.1:{admin}/metrics") as response:
                metrics = await response.text()
            async with session.get(f"http://127.0.0.1:{admin}/config_dump") as response:
                assert (await response.json())["version"] == "cli"
        assert 'code="200"' in metrics
        if workers > 1:
            assert 'worker="1"' in metrics
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            code = await proc.wait()
        assert code == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
