"""Network namespaces for tests: isolated "hosts" joined by veth pairs, processes run inside them.

Needs root and iproute2. Addresses come from 198.18.0.0/15 (RFC 2544's benchmarking range), which
exists only inside the namespaces a test creates. Everything made here is removed by ``close``,
processes first, even when a test fails half-way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest


def require_netns() -> None:
    """Skip (fail under CI) when namespaces cannot be made here."""
    missing = [tool for tool in ("ip", "iptables", "curl") if shutil.which(tool) is None]
    reason = f"missing {', '.join(missing)}" if missing else "needs root" if os.geteuid() != 0 else ""
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"network namespace tests: {reason}")
        pytest.skip(f"network namespace tests: {reason}")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class NetnsLab:
    """A set of namespaces; ``link`` joins two of them with a veth pair on one /24."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.names: dict[str, str] = {}
        self.processes: list[subprocess.Popen[bytes]] = []
        self.etc_dirs: list[Path] = []

    def add(self, role: str) -> str:
        name = f"mt-{role}-{self.tag}"
        _ip("netns", "add", name)
        self.names[role] = name
        _ip("-n", name, "link", "set", "lo", "up")
        return name

    def link(self, a: str, a_cidr: str, b: str, b_cidr: str) -> None:
        a_if, b_if = f"v{a[:4]}{self.tag}", f"v{b[:4]}{self.tag}"
        _ip("link", "add", a_if, "netns", self.names[a], "type", "veth", "peer", "name", b_if, "netns", self.names[b])
        for role, ifname, cidr in ((a, a_if, a_cidr), (b, b_if, b_cidr)):
            _ip("-n", self.names[role], "addr", "add", cidr, "dev", ifname)
            _ip("-n", self.names[role], "link", "set", ifname, "up")

    def resolv_conf(self, role: str, nameserver: str) -> None:
        """``ip netns exec`` mounts /etc/netns/<name>/resolv.conf over /etc/resolv.conf."""
        directory = Path("/etc/netns") / self.names[role]
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "resolv.conf").write_text(f"nameserver {nameserver}\noptions timeout:1 attempts:3\n")
        self.etc_dirs.append(directory)

    def command(self, role: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.names[role], *argv]

    def spawn(
        self, role: str, argv: Sequence[str], *, env: dict[str, str] | None = None, log: Path | None = None
    ) -> subprocess.Popen[bytes]:
        out = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - kept by the child
        proc = subprocess.Popen(
            self.command(role, argv), env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT
        )
        self.processes.append(proc)
        return proc

    def run(self, role: str, argv: Sequence[str], timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(role, argv), capture_output=True, text=True, timeout=timeout)

    def curl(self, role: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(role, ["curl", "-sS", "--max-time", "5", *args])

    def wait_http(self, role: str, url: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            done = self.curl(role, "-o", "/dev/null", "-w", "%{http_code}", url)
            if done.returncode == 0 and done.stdout.strip() not in ("", "000"):
                return
            last = done.stderr.strip()
            time.sleep(0.2)
        raise AssertionError(f"{url} in {role} did not answer within {timeout} s: {last}")

    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for name in self.names.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        for directory in self.etc_dirs:
            shutil.rmtree(directory, ignore_errors=True)
