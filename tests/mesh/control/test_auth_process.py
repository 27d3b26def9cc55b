"""`mesh control --token-file` as a real process: writes need the token, the CLI sends it from the
environment, and the token appears nowhere in the process's own (debug) log."""

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
import yaml

from discovery.server import RegistryServer
from mesh.demo.processes import free_port
from tests.mesh.rules.helpers import vs

TOKEN = "process-token-7d2b0c"


@pytest.mark.slow
async def test_mesh_control_process_requires_its_token_and_never_logs_it(
    registry: RegistryServer, tmp_path: Path
) -> None:
    mesh_bin = str(Path(sys.executable).with_name("mesh"))
    token_file = tmp_path / "token"
    token_file.write_text(f"\n{TOKEN}  \n")
    token_file.chmod(0o600)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("MESH_")}
    proc = await asyncio.create_subprocess_exec(
        mesh_bin,
        "control",
        "--http-addr",
        "127.0.0.1:0",
        "--data-dir",
        str(tmp_path / "data"),
        "--token-file",
        str(token_file),
        "--log-level",
        "debug",
        stderr=asyncio.subprocess.PIPE,
        env={**base_env, "CONSUL_HTTP_ADDR": registry.url},
    )
    assert proc.stderr is not None
    log_lines: list[bytes] = []
    try:
        listening: dict[str, Any] = {}
        while listening.get("msg") != "control plane listening":
            line = await asyncio.wait_for(proc.stderr.readline(), 30.0)
            assert line, "mesh control exited before it listened"
            log_lines.append(line)
            listening = json.loads(line)
        url = listening["url"]
        assert listening["auth"] == "token for writes and sidecars"
        rules = tmp_path / "vs.yaml"
        rules.write_text(yaml.safe_dump(vs(http=[{"route": [{"destination": {"host": "reviews"}}]}])))
        async with aiohttp.ClientSession(base_url=url) as http:
            async with http.put("/v1/mesh/config", data=rules.read_bytes()) as response:
                assert response.status == 401
            async with http.put("/v1/mesh/config", data=rules.read_bytes(), headers={"X-Mesh-Token": "x"}) as response:
                assert response.status == 403
            async with http.get("/v1/mesh/status") as response:
                assert response.status == 200

        async def cli(*args: str, **env: str) -> tuple[int, str]:
            child = await asyncio.create_subprocess_exec(
                mesh_bin,
                *args,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env={**base_env, "MESH_CONTROL_ADDR": url, "COLUMNS": "200", **env},
            )
            out, _ = await asyncio.wait_for(child.communicate(), 60.0)
            return await child.wait(), out.decode()

        code, out = await cli("apply", "-f", str(rules))
        assert code == 1
        assert "requires a token" in out
        code, out = await cli("apply", "-f", str(rules), MESH_CONTROL_TOKEN=TOKEN)
        assert code == 0, out
        assert "VirtualService default/reviews created" in out
        code, out = await cli("get", "vs", "reviews", "-o", "json", MESH_CONTROL_TOKEN_FILE=str(token_file))
        assert code == 0, out
        assert json.loads(out)["metadata"]["name"] == "reviews"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(proc.communicate(), 30.0)
        assert proc.returncode == 0
    logged = b"".join(log_lines) + rest
    assert b"request refused" in logged  # the wrong token was logged as refused ...
    assert TOKEN.encode() not in logged  # ... and the token itself never


@pytest.mark.slow
async def test_mesh_up_passes_its_control_token_to_the_control_plane(tmp_path: Path) -> None:
    mesh_bin = str(Path(sys.executable).with_name("mesh"))
    http_port, dns_port, metrics_port, control_port = free_port(), free_port(), free_port(), free_port()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("MESH_", "CONSUL_"))}
    proc = await asyncio.create_subprocess_exec(
        mesh_bin,
        "up",
        "--data-dir",
        str(tmp_path / "data"),
        "--http-addr",
        f"127.0.0.1:{http_port}",
        "--dns-addr",
        f"127.0.0.1:{dns_port}",
        "--metrics-addr",
        f"127.0.0.1:{metrics_port}",
        "--control-http-addr",
        f"127.0.0.1:{control_port}",
        stderr=asyncio.subprocess.PIPE,
        env={**base_env, "MESH_UP_REGISTRAR": "off", "MESH_CONTROL_TOKEN": TOKEN},
    )
    assert proc.stderr is not None
    lines: list[bytes] = []
    try:
        while b"control plane listening" not in (lines[-1] if lines else b""):
            line = await asyncio.wait_for(proc.stderr.readline(), 30.0)
            assert line, b"".join(lines).decode()
            lines.append(line)
        body = yaml.safe_dump(vs(http=[{"route": [{"destination": {"host": "reviews"}}]}]))
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{control_port}") as http:
            async with http.put("/v1/mesh/config", data=body) as response:
                assert response.status == 401
            async with http.put("/v1/mesh/config", data=body, headers={"Authorization": f"Bearer {TOKEN}"}) as response:
                assert response.status == 200, await response.text()
            async with http.get("/v1/mesh/status") as response:
                assert response.status == 200
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(proc.communicate(), 30.0)
    assert proc.returncode == 0, (b"".join(lines) + rest).decode()
    assert TOKEN.encode() not in b"".join(lines) + rest
