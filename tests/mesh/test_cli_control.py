"""`mesh apply/get/delete/status/explain` against a real control plane (the CLI runs in a thread)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from discovery.server import RegistryServer
from mesh.cli import app
from mesh.control.server import ControlServer
from mesh.security.ca import generate_root
from sidecar.sources.control_plane import ControlPlaneSource
from sidecar.sources.defaults import SidecarSettings
from tests.mesh.control.fixtures import FAST, control, register, start_control
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
    result = CliRunner().invoke(app, ["control", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag in ("--http-addr", "--data-dir", "--store", "--consul-prefix", "--replica-id", "--log-level"):
        assert flag in result.stdout
    assert "MESH_CONTROL_REPLICA_ID" in result.stdout


def test_a_replica_id_with_a_slash_is_refused_before_anything_starts() -> None:
    result = CliRunner().invoke(app, ["control"], env={"MESH_CONTROL_REPLICA_ID": "a/b"})
    assert result.exit_code == 2
    assert "--replica-id" in result.output
    assert "without '/'" in result.output


async def sidecar_on(control: ControlServer, sidecar_id: str) -> tuple[asyncio.Task[None], Recorder]:
    recorder = Recorder()
    source = ControlPlaneSource(SidecarSettings(service="productpage"), control.url, sidecar_id=sidecar_id, wait=2.0)
    task = asyncio.create_task(source.run(recorder.apply))
    await recorder.applied_count(1)
    return task, recorder


async def until_mesh_status(control: ControlServer, check: Callable[[Any], bool]) -> Any:
    for _ in range(100):
        result = await mesh(control, "status")
        if check(result):
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"mesh status never got there: {result.output}")


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The first line of each sidecar's row (narrow terminals fold long cells onto more lines), by id."""
    return {cells[0]: cells for cells in map(str.split, stdout.splitlines()) if cells and cells[0].startswith("pp-")}


async def test_status_names_the_replica_serving_each_sidecar(start_control: Callable[..., Any]) -> None:
    plane: ControlServer = await start_control(replica_id="cp-east")
    task, _ = await sidecar_on(plane, "pp-1")
    try:
        result = await until_mesh_status(plane, lambda r: "in sync" in r.stdout)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert result.exit_code == 0, result.output
    header = next(line.split() for line in result.stdout.splitlines() if "SIDECAR" in line)
    assert header[:4] == ["SIDECAR", "SERVICE", "REPLICA", "VERSION"]
    assert table_rows(result.stdout)["pp-1"][2] == "cp-east"
    assert "replicas" not in result.stdout  # one SQLite replica: no replica list
    assert "warning" not in result.stderr


async def test_status_lists_live_replicas_and_warns_when_the_shared_status_cannot_be_read(
    start_control: Callable[..., Any], registry: RegistryServer, tmp_path: Path
) -> None:
    settings = replace(FAST, status_ttl=1.0, status_flush=0.05)
    a: ControlServer = await start_control(store="consul", data_dir=tmp_path / "a", replica_id="a", settings=settings)
    b: ControlServer = await start_control(store="consul", data_dir=tmp_path / "b", replica_id="b", settings=settings)
    tasks = [(await sidecar_on(a, "pp-on-a"))[0], (await sidecar_on(b, "pp-on-b"))[0]]
    try:
        shared = await until_mesh_status(a, lambda r: "pp-on-b" in r.stdout and r.stdout.count("in sync") == 2)
        assert "2 live control plane replicas: a (this one), b" in shared.stdout
        rows = table_rows(shared.stdout)
        assert (rows["pp-on-a"][2], rows["pp-on-b"][2]) == ("a", "b")
        assert "warning" not in shared.stderr
        await registry.stop()
        alone = await until_mesh_status(a, lambda r: "warning" in r.stderr)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert alone.exit_code == 0, alone.output
    assert "cannot read the other replicas' status" in alone.stderr
    assert "showing the sidecars of replica a only" in alone.stderr
    assert "pp-on-a" in alone.stdout
    assert "pp-on-b" not in alone.stdout


@pytest.mark.slow
async def test_mesh_control_process_uses_the_replica_id_flag(registry: RegistryServer, tmp_path: Path) -> None:
    """The real command line: ``mesh control --replica-id`` names the replica in status and its log."""
    proc, url = await start_control_process(registry, tmp_path / "data", "--replica-id", "cp-west")
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{url}/v1/mesh/status") as response:
            assert (await response.json())["replica"] == "cp-west"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30.0) == 0


async def spawn_control(registry: RegistryServer, data_dir: Path, *extra: str) -> asyncio.subprocess.Process:
    """``mesh control`` as a real process on a free port, its stderr (JSON log lines) piped."""
    return await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("mesh")),
        "control",
        "--http-addr",
        "127.0.0.1:0",
        "--data-dir",
        str(data_dir),
        *extra,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "CONSUL_HTTP_ADDR": registry.url},
    )


async def start_control_process(registry: RegistryServer, data_dir: Path, *extra: str) -> tuple[Any, str]:
    """``mesh control`` as a real process; returns it and its URL once it listens."""
    proc = await spawn_control(registry, data_dir, *extra)
    assert proc.stderr is not None
    listening: dict[str, Any] = {}
    while listening.get("msg") != "control plane listening":
        line = await asyncio.wait_for(proc.stderr.readline(), 30.0)
        assert line, "mesh control exited before it listened"
        listening = json.loads(line)
    return proc, str(listening["url"])


async def test_replicas_given_one_ca_by_flags_serve_the_same_trust_bundle(
    registry: RegistryServer, tmp_path: Path
) -> None:
    certificate, key = generate_root("example.org")
    cert_path, key_path = tmp_path / "ca-cert.pem", tmp_path / "ca-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    flags = ("--ca-cert", str(cert_path), "--ca-key", str(key_path), "--trust-domain", "example.org")
    procs = []
    try:
        bundles = []
        for replica in ("a", "b"):
            proc, url = await start_control_process(registry, tmp_path / replica, *flags, "--replica-id", replica)
            procs.append(proc)
            async with aiohttp.ClientSession() as http, http.get(f"{url}/v1/mesh/ca/bundle") as response:
                body = await response.json()
            assert body["trust_domain"] == "example.org"
            bundles.append(body["trust_bundle"])
        assert bundles[0] == bundles[1] == certificate.public_bytes(serialization.Encoding.PEM).decode()
        assert not (tmp_path / "a" / "ca").exists()  # no root generated
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30.0)


def test_ca_flags_are_checked_before_anything_starts(tmp_path: Path) -> None:
    wide = {"COLUMNS": "200"}
    half = CliRunner().invoke(app, ["control", "--ca-cert", str(tmp_path / "c.pem")], env=wide)
    assert half.exit_code == 2
    assert "needs both --ca-cert and --ca-key" in half.output
    domain = CliRunner().invoke(app, ["control", "--trust-domain", "Example.org:8080"], env=wide)
    assert domain.exit_code == 2
    assert "--trust-domain" in domain.output


async def test_an_unreadable_ca_file_is_a_clear_error(registry: RegistryServer, tmp_path: Path) -> None:
    missing = ("--ca-cert", str(tmp_path / "missing.pem"), "--ca-key", str(tmp_path / "missing-key.pem"))
    proc = await spawn_control(registry, tmp_path / "data", *missing)
    _, err = await asyncio.wait_for(proc.communicate(), 30.0)
    assert proc.returncode == 1
    assert "CA: cannot read the CA certificate" in err.decode()
    assert "missing.pem" in err.decode()
    assert "Traceback" not in err.decode()
