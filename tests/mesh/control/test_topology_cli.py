"""`mesh top --once` against a real control plane scraping real sidecars."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from rich.console import Console
from typer.testing import CliRunner

from mesh.cli import app
from mesh.cli_observe import render
from tests.mesh.control.test_topology import Mesh, mesh, reviews_mesh, send

__all__ = ["mesh"]


async def test_mesh_top_once_prints_the_edges_and_services(mesh: Mesh, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as http:
        outbound = await reviews_mesh(mesh, tmp_path, http)
        await mesh.control.topology.round()
        await send(http, outbound, 20)
        await send(http, outbound, 5, user="jason")  # aborted with 503 by the rule
        await mesh.control.topology.round()
    runner = CliRunner()
    result = await asyncio.to_thread(
        runner.invoke, app, ["top", "--once", "--control-addr", mesh.control.url], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    edge = next(line for line in lines if "productpage.default" in line and "reviews.default" in line)
    assert "20.0%" in edge  # 5 of 25 failed
    assert "v1" in edge
    assert "v3" in edge
    service = next(line for line in lines if line.strip("│ ").startswith("reviews "))
    assert "2/2" in service


def test_an_unreachable_control_plane_is_a_clear_error() -> None:
    result = CliRunner().invoke(app, ["top", "--once", "--control-addr", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "cannot reach the control plane" in result.output


def test_render_without_traffic_says_it_waits() -> None:
    console = Console(record=True, width=120)
    console.print(
        render({"window_s": 0, "edges": [], "targets": [{"sidecar": "a", "error": "boom"}]}, {"services": []})
    )
    text = console.export_text()
    assert "waiting for two scrapes" in text
    assert "a: boom" in text
