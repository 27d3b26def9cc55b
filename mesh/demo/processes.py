"""Running the demo's workloads: start each app and its `mesh sidecar`, wait until both answer,
register the workload, and on the way out deregister it and stop every child.

Children run in `mesh up`'s process group (Ctrl-C in a terminal reaches them all at once) and
under ``mesh.demo.guard`` (the kernel ends them if `mesh up` is killed outright). Stopping is
SIGTERM to every child, a bounded wait, then SIGKILL for any left: none outlives `mesh up`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from discovery.client import RegistryClient
from discovery.client_config import ClientConfig
from discovery.client_models import RegistryError
from mesh.control.tokens import TOKEN_ENV as CONTROL_TOKEN_ENV
from mesh.demo.plan import HOST, Workload, state_dir

log = logging.getLogger("mesh.demo")

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
DEMO_FILE = "demo.json"  # in the data dir while the demo runs: its workloads and ports, for tools and tests


class DemoError(Exception):
    """A workload did not start (its process exited, or it never answered)."""


@dataclass
class Child:
    name: str  # "reviews-v2 app", "reviews-v2 sidecar"
    process: subprocess.Popen[bytes]


def free_port() -> int:
    """A port free on 127.0.0.1 now, TCP and UDP (``--demo-base-port 0``; tests use it too), chosen below
    the kernel's ephemeral range:
    a port from that range (what binding port 0 gives) can be taken as the source port of any
    outgoing connection before the process it is meant for binds it."""
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(min(10000, low - 1000), low)
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                tcp.bind((HOST, port))
                udp.bind((HOST, port))  # free for UDP too (a DNS port)
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # the low range is crowded: the kernel's choice, as before
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """The parent's environment without its own MESH_*/CONSUL_* settings (``MESH_UPSTREAM`` means a
    DNS upstream to `mesh up` but an L4 upstream to a sidecar), plus ``extra``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MESH_", "CONSUL_"))}
    return {**base, **extra}


class DemoProcesses:
    def __init__(
        self,
        workloads: Sequence[Workload],
        *,
        control_url: str,
        registry: ClientConfig,
        data_dir: Path,
        log_level: str = "warning",
        control_token: str = "",
    ) -> None:
        self.workloads = tuple(workloads)
        self.control_url = control_url
        self.registry = registry
        self.data_dir = data_dir
        self.log_level = log_level
        self.control_token = control_token  # the sidecars present it to the control plane
        self.children: list[Child] = []
        self.registered: list[str] = []

    @property
    def demo_file(self) -> Path:
        return self.data_dir / DEMO_FILE

    async def start(self, stop: asyncio.Event) -> bool:
        """Start everything and register it; False if ``stop`` was set first. ``DemoError`` on failure."""
        registry_url = self.registry.base_url
        # A fresh start: a snapshot a sidecar saved last time names that run's ports (with
        # --demo-base-port 0, other ones), and it would serve it before the control plane answers.
        shutil.rmtree(state_dir(self.data_dir), ignore_errors=True)
        for workload in self.workloads:
            self._spawn(f"{workload.id} app", [*workload.app_argv(), "--log-level", self.log_level], {})
            env = workload.sidecar_env(self.control_url, registry_url, self.data_dir)
            if self.registry.token:
                env["CONSUL_HTTP_TOKEN"] = self.registry.token
            if self.control_token:
                env[CONTROL_TOKEN_ENV] = self.control_token
            self._spawn(f"{workload.id} sidecar", workload.sidecar_argv(self.log_level), env)
        checks = [(f"{w.id} app", f"http://{HOST}:{w.ports.app}/healthz", "ok") for w in self.workloads]
        checks += [(f"{w.id} sidecar", f"http://{HOST}:{w.ports.admin}/ready", "LIVE") for w in self.workloads]
        if not await self._wait_ready(checks, stop):
            return False
        async with RegistryClient(self.registry) as client:
            for workload in self.workloads:
                registration = workload.registration()
                await client.register_service(registration, replace_existing_checks=True)
                self.registered.append(str(registration.id))
        self.demo_file.write_text(
            json.dumps({"pid": os.getpid(), "workloads": [w.to_json() for w in self.workloads]}, indent=2) + "\n"
        )
        return True

    async def stop(self) -> None:
        """Deregister (while the registry still runs), then stop every child."""
        with contextlib.suppress(OSError):
            self.demo_file.unlink(missing_ok=True)
        if self.registered:
            async with RegistryClient(self.registry, request_timeout=2.0) as client:
                for service_id in self.registered:
                    try:
                        await client.deregister_service(service_id)
                    except RegistryError as exc:  # best effort: the children stop anyway
                        log.warning("could not deregister %s: %s", service_id, exc)
            self.registered.clear()
        await stop_children(self.children, STOP_TIMEOUT_S)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        guarded = [sys.executable, "-m", "mesh.demo.guard", str(os.getpid()), *argv]
        process = subprocess.Popen(guarded, env=child_env(env), stdin=subprocess.DEVNULL)
        self.children.append(Child(name, process))

    async def _wait_ready(self, checks: list[tuple[str, str, str]], stop: asyncio.Event) -> bool:
        pending = list(checks)
        deadline = time.monotonic() + READY_TIMEOUT_S
        timeout = aiohttp.ClientTimeout(total=2.0)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while pending:
                if stop.is_set():
                    return False
                for child in self.children:
                    if child.process.poll() is not None:
                        raise DemoError(f"{child.name} exited with status {child.process.returncode} while starting")
                still = []
                for name, url, expected in pending:
                    try:
                        async with http.get(url) as r:
                            if r.status == 200 and (await r.text()).strip() == expected:
                                continue
                    except (aiohttp.ClientError, TimeoutError):
                        pass
                    still.append((name, url, expected))
                pending = still
                if pending and time.monotonic() > deadline:
                    raise DemoError(f"not ready after {READY_TIMEOUT_S:.0f}s: {', '.join(n for n, _, _ in pending)}")
                if pending:
                    await asyncio.sleep(0.1)
        return True


async def stop_children(children: Sequence[Child], timeout: float) -> None:
    """SIGTERM to every live child, up to ``timeout`` seconds for them to exit, then SIGKILL the rest."""
    for child in children:
        if child.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    # Popen has no awaitable exit, and asyncio's own subprocesses would need the loop's child watcher
    while any(child.process.poll() is None for child in children) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    for child in children:
        if child.process.poll() is None:
            log.warning("%s did not stop within %.0fs: killed", child.name, timeout)
            with contextlib.suppress(ProcessLookupError):
                child.process.kill()
            await asyncio.to_thread(child.process.wait)
