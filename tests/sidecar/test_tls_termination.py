"""HTTPS listeners (a gateway's): TLS terminated with certificates from files, picked by SNI; bad files NACK."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path
from typing import Any

from mesh.model.parse import parse_snapshot
from sidecar.server import SidecarServer
from sidecar.tls_termination import match_rank
from tests.sidecar.conftest import BackendFactory, SidecarFactory
from tests.sidecar.helpers import Backend
from tests.web_certs import TestCA


def https_config(backend: Backend, certificates: list[dict[str, Any]], version: str = "v1") -> dict[str, Any]:
    return {
        "version": version,
        "listeners": [
            {
                "name": "https",
                "protocol": "http",
                "host": "127.0.0.1",
                "port": 0,
                "route_table": "rt",
                "tls": certificates,
            }
        ],
        "route_tables": [
            {
                "name": "rt",
                "virtual_hosts": [
                    {
                        "name": "all",
                        "domains": ["*"],
                        "routes": [{"name": "all", "match": {"prefix": "/"}, "cluster": "app"}],
                    }
                ],
            }
        ],
        "clusters": [{"name": "app", "endpoints": [backend.address]}],
    }


def certificate(ca: TestCA, name: str, *server_names: str) -> dict[str, Any]:
    files = ca.issue(name, name)
    return {
        "server_names": list(server_names or (name,)),
        "certificate": str(files.cert),
        "private_key": str(files.key),
    }


async def fetch(port: int, ca: TestCA, server_name: str | None) -> tuple[str, bytes]:
    """The certificate's subject CN the server presented for ``server_name``, and the HTTP answer."""
    context = ssl.create_default_context(cafile=str(ca.cert))
    context.check_hostname = False
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=server_name)
    try:
        cert = writer.get_extra_info("peercert")
        subject = dict(item[0] for item in cert["subject"])["commonName"]
        writer.write(b"GET /hello HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        async with asyncio.timeout(5):
            return subject, await reader.read(-1)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def test_sni_picks_the_certificate(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory, tmp_path: Path
) -> None:
    ca = TestCA(tmp_path)
    backend = await backend_factory("app")
    config = https_config(
        backend,
        [
            certificate(ca, "bookinfo.example.com"),
            certificate(ca, "wild.example.com", "*.shop.example.com"),
        ],
    )
    sidecar = await sidecar_factory(config)
    port = sidecar.listener_port("https")
    subject, answer = await fetch(port, ca, "bookinfo.example.com")
    assert subject == "bookinfo.example.com"
    assert answer.startswith(b"HTTP/1.1 200")
    assert (await fetch(port, ca, "cart.shop.example.com"))[0] == "wild.example.com"
    assert (await fetch(port, ca, "unknown.example.org"))[0] == "bookinfo.example.com"  # the first one
    assert (await fetch(port, ca, None))[0] == "bookinfo.example.com"
    assert backend.seen[0]["path"] == "/hello"


async def test_unloadable_files_reject_the_snapshot_and_new_certificates_swap_in(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory, tmp_path: Path
) -> None:
    ca = TestCA(tmp_path)
    backend = await backend_factory("app")
    sidecar: SidecarServer = await sidecar_factory(https_config(backend, [certificate(ca, "one.example.com")]))
    port = sidecar.listener_port("https")
    missing = {
        "server_names": ["*"],
        "certificate": str(tmp_path / "nope.pem"),
        "private_key": str(tmp_path / "nope.key"),
    }
    outcome = sidecar.apply(parse_snapshot(https_config(backend, [missing], "v2")))
    assert not outcome.ok
    assert f"listeners[0].tls ('https'): cannot read {tmp_path / 'nope.pem'}: no such file" in (outcome.error or "")
    mismatched = certificate(ca, "two.example.com")
    mismatched["private_key"] = str(ca.issue("three.example.com").key)
    outcome = sidecar.apply(parse_snapshot(https_config(backend, [mismatched], "v3")))
    assert not outcome.ok
    assert "not a usable PEM certificate and matching key" in (outcome.error or "")
    assert (await fetch(port, ca, "one.example.com"))[0] == "one.example.com"  # the old config serves on
    assert sidecar.apply(parse_snapshot(https_config(backend, [certificate(ca, "four.example.com")], "v4"))).ok
    await sidecar.settle()
    assert sidecar.listener_port("https") == port  # same listener, new certificate
    assert (await fetch(port, ca, "four.example.com"))[0] == "four.example.com"
    assert (await fetch(port, ca, None))[0] == "four.example.com"


def test_match_rank() -> None:
    assert match_rank("a.example.com", "a.example.com") == 3
    assert match_rank("a.example.com", "*.example.com") == 2
    assert match_rank("example.com", "*.example.com") == 0
    assert match_rank("a.example.com", "*") == 1
    assert match_rank("a.example.com", "b.example.com") == 0
