"""The static file source: edits, bad edits (NACK, old kept), SIGHUP, rename-replace, missing files."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from mesh.model.parse import ConfigError
from sidecar.sources.static_file import StaticFileSource
from tests.sidecar.sources.recorder import Recorder


def config(port: int = 8080, **extra: Any) -> dict[str, Any]:
    return {
        "listeners": [{"name": "out", "protocol": "http", "port": 0, "route_table": "out"}],
        "route_tables": [
            {"name": "out", "virtual_hosts": [{"name": "any", "domains": ["*"], "routes": [{"cluster": "app"}]}]}
        ],
        "clusters": [{"name": "app", "endpoints": [{"host": "127.0.0.1", "port": port}]}],
        **extra,
    }


def endpoint_port(recorder: Recorder) -> int:
    assert recorder.current is not None
    return recorder.current.clusters["app"].endpoints[0].port


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start a source on a file (default sidecar.yaml); every started source is cancelled after the test."""
    tasks: list[asyncio.Task[None]] = []

    async def start(
        name: str = "sidecar.yaml", recorder: Recorder | None = None, **options: Any
    ) -> tuple[StaticFileSource, Recorder, Path]:
        options.setdefault("poll_interval", 0.05)
        path = tmp_path / name
        source = StaticFileSource(path, **options)
        recorder = recorder or Recorder()
        tasks.append(asyncio.create_task(source.run(recorder.apply)))
        return source, recorder, path

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def write(path: Path, data: dict[str, Any] | str) -> None:
    path.write_text(data if isinstance(data, str) else json.dumps(data))


async def test_initial_load_then_edit_gives_a_new_snapshot(running: Callable[..., Any], tmp_path: Path) -> None:
    write(tmp_path / "sidecar.json", config(8080))
    source, recorder, path = await running("sidecar.json")
    first = await recorder.applied_count(1)
    assert first.version.startswith("sha256:")
    assert endpoint_port(recorder) == 8080
    write(path, config(8081))
    second = await recorder.applied_count(2)
    assert second.version != first.version
    assert endpoint_port(recorder) == 8081
    assert (source.stats.attempts, source.stats.accepted, source.stats.rejected) == (2, 2, 0)
    assert source.stats.version == second.version


async def test_bad_edit_is_rejected_and_the_old_snapshot_stays(
    running: Callable[..., Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path / "sidecar.yaml", config(8080))
    source, recorder, path = await running()
    await recorder.applied_count(1)
    bad = config(8080)
    bad["clusters"][0]["lb"] = {"kind": "fastest"}
    with caplog.at_level(logging.ERROR, logger="sidecar.sources"):
        write(path, bad)
        await recorder.until(lambda: source.stats.rejected == 1)
    assert len(recorder.applied) == 1  # nothing new was applied
    assert len(recorder.offered) == 1  # and nothing invalid was even offered
    assert "clusters[0].lb.kind: unknown policy 'fastest'" in source.stats.last_error
    assert any("clusters[0].lb.kind" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    write(path, config(9090))  # fixed: accepted again
    await recorder.applied_count(2)
    assert endpoint_port(recorder) == 9090


async def test_yaml_syntax_error_is_a_nack(running: Callable[..., Any], tmp_path: Path) -> None:
    write(tmp_path / "sidecar.yaml", config(8080))
    source, recorder, path = await running()
    await recorder.applied_count(1)
    write(path, "listeners: [\n")
    await recorder.until(lambda: source.stats.rejected == 1)
    assert "invalid YAML" in source.stats.last_error
    assert str(path) in source.stats.last_error


async def test_sighup_rereads_at_once(running: Callable[..., Any], tmp_path: Path) -> None:
    write(tmp_path / "sidecar.yaml", config(8080))
    # Polling every minute: only the signal can make the source notice the edit in time.
    _source, recorder, path = await running(poll_interval=60.0)
    await recorder.applied_count(1)
    write(path, config(8081))
    os.kill(os.getpid(), signal.SIGHUP)
    await recorder.applied_count(2, timeout=3.0)
    assert endpoint_port(recorder) == 8081


async def test_reload_method_does_what_sighup_does(running: Callable[..., Any], tmp_path: Path) -> None:
    write(tmp_path / "sidecar.yaml", config(8080))
    source, recorder, path = await running(poll_interval=60.0, reload_on_sighup=False)
    await recorder.applied_count(1)
    write(path, config(8082))
    source.reload()
    await recorder.applied_count(2, timeout=3.0)
    assert endpoint_port(recorder) == 8082


async def test_atomic_rename_replace_is_seen(running: Callable[..., Any], tmp_path: Path) -> None:
    write(tmp_path / "sidecar.yaml", config(8080))
    _source, recorder, path = await running()
    await recorder.applied_count(1)
    staged = tmp_path / ".sidecar.yaml.tmp"
    write(staged, config(7070))
    os.replace(staged, path)
    await recorder.applied_count(2)
    assert endpoint_port(recorder) == 7070
    # Same size, same second: the new inode still gives it away.
    write(staged, config(7071))
    os.replace(staged, path)
    await recorder.applied_count(3)
    assert endpoint_port(recorder) == 7071


async def test_unchanged_content_is_not_offered_again(running: Callable[..., Any], tmp_path: Path) -> None:
    write(tmp_path / "sidecar.yaml", config(8080))
    source, recorder, path = await running()
    await recorder.applied_count(1)
    write(path, config(8080))  # a rewrite with the same bytes: new mtime, same content
    source.reload()
    write(path, config(8081))
    await recorder.applied_count(2)
    assert len(recorder.offered) == 2


async def test_apply_nack_keeps_going(running: Callable[..., Any], tmp_path: Path) -> None:
    write(tmp_path / "sidecar.yaml", config(8080))
    recorder = Recorder(reject=lambda s: "port busy" if s.clusters["app"].endpoints[0].port == 6666 else None)
    source, recorder, path = await running(recorder=recorder)
    await recorder.applied_count(1)
    write(path, config(6666))
    await recorder.until(lambda: source.stats.rejected == 1)
    assert source.stats.last_error == "port busy"
    assert endpoint_port(recorder) == 8080
    write(path, config(8083))
    await recorder.applied_count(2)
    assert endpoint_port(recorder) == 8083


async def test_missing_file_then_created(running: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="sidecar.sources"):
        _source, recorder, path = await running()
        await recorder.until(lambda: any("missing" in r.getMessage() for r in caplog.records))
    assert recorder.offered == []
    write(path, config(8080))
    await recorder.applied_count(1)


async def test_version_from_the_file_wins_over_the_hash(running: Callable[..., Any], tmp_path: Path) -> None:
    write(tmp_path / "sidecar.yaml", config(8080, version="release-42"))
    _, recorder, _ = await running()
    assert (await recorder.applied_count(1)).version == "release-42"


def test_load_fails_fast_with_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    bad = config(8080)
    bad["listeners"][0]["port"] = -1
    write(path, bad)
    with pytest.raises(ConfigError, match=r"listeners\[0\]\.port"):
        StaticFileSource(path).load()
    with pytest.raises(ConfigError, match="cannot read"):
        StaticFileSource(tmp_path / "absent.yaml").load()
    write(path, config(8080))
    assert StaticFileSource(path).load().clusters["app"].endpoints[0].port == 8080
