"""`mesh registrar` on the command line: flags, their errors, the backend URI, and a real process."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from discovery.client import RegistryClient
from discovery.client_config import ClientConfigError
from discovery.server import RegistryServer
from mesh.cli import app
from mesh.cli_registrar import registry_from_uri
from tests.discovery.registrar.conftest import Containers, free_tcp_port, wait_gone, wait_services

MESH = Path(sys.executable).parent / "mesh"
RUNNER = CliRunner()


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    """The command configures logging onto CliRunner's stream, which closes after the call: undo it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_help_documents_every_registrator_flag_and_its_variable() -> None:
    result = RUNNER.invoke(app, ["registrar", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag, var in (
        ("--internal", "MESH_INTERNAL"),
        ("--ip", "MESH_IP"),
        ("--resync", "MESH_RESYNC"),
        ("--cleanup", "MESH_CLEANUP"),
        ("--deregister", "MESH_DEREGISTER"),
        ("--tags", "MESH_TAGS"),
        ("--ttl", "MESH_TTL"),
        ("--ttl-refresh", "MESH_TTL_REFRESH"),
        ("--retry-attempts", "MESH_RETRY_ATTEMPTS"),
        ("--retry-interval", "MESH_RETRY_INTERVAL"),
        ("--explicit", "MESH_EXPLICIT"),
        ("--metrics-addr", "MESH_METRICS_ADDR"),
    ):
        assert flag in result.output, flag
        assert var in result.output, var


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--ttl", "30"], {}, "--ttl"),
        (["--ttl", "5", "--ttl-refresh", "10"], {}, "--ttl"),
        (["--deregister", "never"], {}, "--deregister"),
        ([], {"MESH_DEREGISTER": "never"}, "--deregister"),
        (["--retry-interval", "0"], {}, "--retry-interval"),
        (["--tags", "{{call .X}}"], {}, "--tags"),
        (["--ip", "not-an-ip"], {}, "--ip"),
        (["etcd://127.0.0.1:2379"], {}, "REGISTRY_URI"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(args: list[str], env: dict[str, str], named: str) -> None:
    result = RUNNER.invoke(app, ["registrar", *args], env=env)
    assert result.exit_code == 2, result.output
    assert named in result.output


def test_registrator_backend_uris() -> None:
    plain = registry_from_uri("consul://10.0.0.1:8500")
    assert (plain.scheme, plain.host, plain.port) == ("http", "10.0.0.1", 8500)
    tls = registry_from_uri("consul-tls://consul.example")
    assert (tls.scheme, tls.host, tls.port) == ("https", "consul.example", 8500)
    unix = registry_from_uri("consul-unix:///run/consul.sock")
    assert unix.unix_socket == "/run/consul.sock"
    for bad in ("etcd://h:2379", "127.0.0.1:8500", "zookeeper://z"):
        with pytest.raises(ClientConfigError):
            registry_from_uri(bad)


def test_unreachable_registry_fails_after_the_retries() -> None:
    port = free_tcp_port()
    result = subprocess.run(
        [str(MESH), "registrar", "--retry-attempts", "1", "--retry-interval", "100", "--metrics-addr", ""],
        env={**os.environ, "CONSUL_HTTP_ADDR": f"127.0.0.1:{port}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "unreachable after 2 attempt(s)" in result.stderr


@pytest.mark.slow
async def test_process_registers_and_honours_deregister_on_exit_at_sigterm(
    containers: Containers, registry: RegistryServer, tmp_path: Path
) -> None:
    metrics_port = free_tcp_port()
    log = (tmp_path / "registrar.log").open("wb")
    proc = subprocess.Popen(  # noqa: ASYNC220 - starting it is instant; waiting happens in a thread
        [
            str(MESH),
            "registrar",
            "--deregister-on-exit",
            "--hostname",
            "proc-host",
            "--metrics-addr",
            f"127.0.0.1:{metrics_port}",
        ],
        env={**os.environ, "CONSUL_HTTP_ADDR": registry.url},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        async with RegistryClient(registry.url) as client:
            cid = await containers.run("-p", "127.0.0.1::80")
            services = await wait_services(client, cid, 1, timeout=30)
            assert next(iter(services)).startswith("proc-host:")
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 20) == 0
            await wait_gone(client, cid, timeout=1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    text = (tmp_path / "registrar.log").read_text()
    assert "deregistered our services on exit" in text, text
