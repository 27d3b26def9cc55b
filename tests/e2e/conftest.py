"""End-to-end helpers: `mesh` commands as real processes (logs kept for failure messages), polling, metrics.

The Docker fixtures (``docker_daemon``, ``busybox_image``, ``containers``) come from
tests/docker_support.py, shared with the registrar's tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.docker_support import busybox_image, containers, docker_daemon, eventually

__all__ = ["busybox_image", "containers", "docker_daemon"]

T = TypeVar("T")

LOG_TAIL = 3000  # characters of each process's log quoted when something fails


def mesh_command(*args: str) -> list[str]:
    """``.venv/bin/mesh ARGS`` (the README's command), or ``python -m mesh.cli`` where no script is installed."""
    script = Path(sys.executable).with_name("mesh")
    return [str(script), *args] if script.is_file() else [sys.executable, "-m", "mesh.cli", *args]


@dataclass
class Processes:
    """Real processes started by one test; ``stop_all`` ends what is still running (SIGTERM, then SIGKILL)."""

    log_dir: Path
    started: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - the child writes it; closed by the OS
        process = subprocess.Popen(
            list(argv), env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        log.close()  # the child holds its own copy
        self.started[name] = process
        return process

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-LOG_TAIL:] if path.is_file() else ""

    def logs(self) -> str:
        """Every process's exit state and log tail, for assertion messages."""
        parts = []
        for name, process in self.started.items():
            state = "running" if process.poll() is None else f"exited {process.returncode}"
            parts.append(f"--- {name} ({state}):\n{self.log(name)}")
        return "\n".join(parts)

    def check_running(self) -> None:
        dead = [n for n, p in self.started.items() if p.poll() is not None]
        assert not dead, f"{', '.join(dead)} exited early\n{self.logs()}"

    async def eventually(self, probe: Callable[[], Awaitable[T | None]], timeout: float, what: str) -> T:
        """``tests.docker_support.eventually``, with every process's log tail when it times out."""
        try:
            return await eventually(probe, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def stop(self, name: str, timeout: float = 20.0) -> int:
        """SIGTERM one process and wait; its exit status (SIGKILL after ``timeout``)."""
        process = self.started[name]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def stop_all(self) -> None:
        for name in reversed(list(self.started)):
            self.stop(name)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, on_fail: Callable[[], str] = str) -> T:
    """Poll ``probe`` (blocking) until it returns something other than ``None``/``False``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last is not None and last is not False:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}\n{on_fail()}")
        time.sleep(0.1)


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of one Prometheus series (``name`` as exposed, e.g. ``mesh_sidecar_requests_total``)."""
    return [
        (dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of a series' samples whose labels include ``labels``."""
    return sum(value for got, value in metric_samples(text, name) if labels.items() <= got.items())
