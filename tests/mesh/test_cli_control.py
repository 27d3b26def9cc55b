"""`mesh apply/get/delete/status/explain` against a real control plane (the CLI runs in a thread)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from typer.testing import CliRunner

from discovery.server import RegistryServer
from mesh.cli import app
from mesh.control.server import ControlServer
from sidecar.sources.control_plane import ControlPlaneSource
from sidecar.sources.defaults import SidecarSettings
from tests.mesh.control.fixtures import control, register, start_control
from tests.mesh.rules.helpers import dr, vs
from tests.sidecar.sources.recorder import Recorder

__all__ = ["control", "start_control"]

RULES = [
    dr(subsets=[{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]),
    vs(
        http=[
            {
                "match": [{"headers": {"end-user": {"exact": "jason"}}}],
                "route": [{"destination": {"host": "reviews", "subset": "v2"}}],
            },
            {"route": [{"destination": {"host": "reviews", "subset": "v1"}}], "corsPolicy": {"allowMethods": ["GET"]}},
        ]
    ),
]


async def mesh(control: ControlServer, *args: str, stdin: str | None = None) -> Any:
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, app, list(args), input=stdin, env={"MESH_CONTROL_ADDR": control.url})


@pytest.fixture
async def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "reviews.yaml"
    path.write_text(yaml.safe_dump_all(RULES))
    return path


@pytest.fixture
async def instances(registry: RegistryServer) -> None:
    async with aiohttp.ClientSession(base_url=registry.url) as http:
        await register(http, "reviews", "reviews-v1", 9081, Meta={"version": "v1"})
        await register(http, "reviews", "reviews-v2", 9082, Meta={"version": "v2"})


@pytest.fixture
async def sidecar(control: ControlServer, instances: None) -> AsyncIterator[Recorder]:
    recorder = Recorder(lambda s: "no v2 here" if any("|v2|" in n for n in s.clusters) and REJECT_V2 else None)
    source = ControlPlaneSource(SidecarSettings(service="productpage"), control.url, sidecar_id="pp-1", wait=5.0)
    task = asyncio.create_task(source.run(recorder.apply))
    await recorder.applied_count(1)
    assert await source.demand("reviews")
    yield recorder
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


REJECT_V2 = False


async def test_apply_get_delete_round_trip(control: ControlServer, rules_file: Path) -> None:
    result = await mesh(control, "apply", "-f", str(rules_file))
    assert result.exit_code == 0, result.output
    assert "DestinationRule default/reviews created" in result.stdout
    assert "VirtualService default/reviews created" in result.stdout
    assert "config version 1" in result.stdout
    assert "spec.http[1].corsPolicy" in result.stderr
    assert "not enforced" in result.stderr
    listed = await mesh(control, "get", "vs")
    assert listed.exit_code == 0
    assert "reviews" in listed.stdout
    assert "RESOURCE VERSION" in listed.stdout
    shown = await mesh(control, "get", "virtualservice", "reviews", "-o", "yaml")
    document = yaml.safe_load(shown.stdout)
    assert document["metadata"]["resourceVersion"] == "1"
    assert document["spec"]["hosts"] == ["reviews"]
    again = await mesh(control, "apply", "-f", "-", stdin=shown.stdout)
    assert again.exit_code == 0
    assert "VirtualService default/reviews unchanged" in again.stdout
    refused = await mesh(control, "delete", "dr", "reviews")
    assert refused.exit_code == 1
    assert "spec.http[0].route[0].destination.subset" in refused.stderr
    deleted = await mesh(control, "delete", "vs", "reviews")
    assert deleted.exit_code == 0
    assert "VirtualService default/reviews deleted" in deleted.stdout


async def test_errors_name_the_field_and_exit_1(control: ControlServer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(vs(http=[{"route": [{"destination": {"host": "a"}, "weight": 7}]}])))
    result = await mesh(control, "apply", "-f", str(bad))
    assert result.exit_code == 1
    assert "VirtualService default/reviews: spec.http[0].route[0].weight:" in result.stderr
    missing = await mesh(control, "apply", "-f", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 1
    assert "cannot read" in missing.stderr
    unknown = await mesh(control, "get", "widgets")
    assert unknown.exit_code == 1
    assert "unknown kind" in unknown.stderr


async def test_dry_run_changes_nothing(control: ControlServer, rules_file: Path) -> None:
    result = await mesh(control, "apply", "-f", str(rules_file), "--dry-run")
    assert result.exit_code == 0
    assert "created (dry run)" in result.stdout
    listed = await mesh(control, "get", "dr")
    assert "no DestinationRule found" in listed.stderr


async def test_apply_wait_returns_when_sidecars_acked(
    control: ControlServer, rules_file: Path, sidecar: Recorder
) -> None:
    result = await mesh(control, "apply", "-f", str(rules_file), "--wait", "--timeout", "10")
    assert result.exit_code == 0, result.output
    assert "all 1 affected sidecars applied config version 1" in result.stdout
    status = await mesh(control, "status")
    assert status.exit_code == 0
    assert "pp-1" in status.stdout
    assert "in sync" in status.stdout


async def test_apply_wait_reports_a_rejection(control: ControlServer, rules_file: Path, sidecar: Recorder) -> None:
    global REJECT_V2
    REJECT_V2 = True
    try:
        result = await mesh(control, "apply", "-f", str(rules_file), "--wait", "--timeout", "10")
    finally:
        REJECT_V2 = False
    assert result.exit_code == 1
    assert "pp-1" in result.stderr
    assert "no v2 here" in result.stderr


async def test_explain_prints_route_subset_and_endpoints(
    control: ControlServer, rules_file: Path, instances: None
) -> None:
    await mesh(control, "apply", "-f", str(rules_file))
    result = await mesh(
        control, "explain", "--from", "productpage", "--to", "http://reviews/reviews/0", "-H", "end-user:jason"
    )
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "VirtualService default/reviews spec.http[0].match[0]" in text
    assert "subset v2" in text
    assert "127.0.0.1:9082" in text
    assert "excluded reviews-v1" in text
    assert "lacks version=v2" in text
    as_json = await mesh(control, "explain", "--from", "productpage", "--to", "reviews/", "-o", "json")
    assert '"status": 200' in as_json.stdout


def test_control_help_lists_its_flags() -> None:
    result = CliRunner().invoke(app, ["control", "--help"])
    assert result.exit_code == 0
    for flag in ("--http-addr", "--data-dir", "--store", "--consul-prefix", "--log-level"):
        assert flag in result.stdout
