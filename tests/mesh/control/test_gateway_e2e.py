"""An ingress gateway end to end: `mesh gateway` as a real process following the control plane, a
Gateway with HTTPS (SNI certificates from files) and an httpsRedirect HTTP server, a VirtualService
bound to it routing to a service in the registry, reached with curl; bad certificates are NACKed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from discovery.server import RegistryServer
from mesh.control.server import ControlServer
from mesh.demo.processes import free_port
from tests.mesh.control.fixtures import register
from tests.mesh.rules.helpers import doc, vs
from tests.sidecar.helpers import Backend
from tests.web_certs import TestCA

pytestmark = pytest.mark.slow
MESH = str(Path(sys.executable).with_name("mesh"))


class GatewayProcess:
    def __init__(self, control_url: str, data_dir: Path) -> None:
        self.admin = free_port()
        env = {**os.environ, "MESH_DATA_DIR": str(data_dir), "MESH_LOG_LEVEL": "warning"}
        argv = [MESH, "gateway", "--control-addr", control_url, "--bind-addr", "127.0.0.1"]
        argv += ["--admin-addr", f"127.0.0.1:{self.admin}"]
        self.proc = subprocess.Popen(argv, env=env)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(timeout=30) == 0


def gateway(http: int, https: int, ca: TestCA, bookinfo_cert: Any, shop_cert: Any, **overrides: Any) -> dict[str, Any]:
    def tls(files: Any) -> dict[str, str]:
        return {"mode": "SIMPLE", "serverCertificate": str(files.cert), "privateKey": str(files.key)}

    servers = [
        {"port": {"number": http, "name": "http", "protocol": "HTTP"}, "hosts": ["*"], "tls": {"httpsRedirect": True}},
        {
            "port": {"number": https, "name": "https", "protocol": "HTTPS"},
            "hosts": ["bookinfo.example.com"],
            "tls": tls(bookinfo_cert),
        },
        {
            "port": {"number": https, "name": "https-shop", "protocol": "HTTPS"},
            "hosts": ["shop.example.com"],
            "tls": tls(shop_cert),
        },
    ]
    return doc(
        "Gateway", "bookinfo-gateway", {"selector": {"istio": "ingressgateway"}, "servers": servers, **overrides}
    )


BOUND = vs(
    "bookinfo",
    hosts=["bookinfo.example.com", "shop.example.com"],
    gateways=["bookinfo-gateway"],
    http=[
        {
            "match": [{"uri": {"exact": "/productpage"}}, {"uri": {"prefix": "/static"}}],
            "route": [{"destination": {"host": "productpage"}}],
        }
    ],
)


async def curl(ca: TestCA, host: str, port: int, path: str, *extra: str) -> tuple[int, str, str]:
    """(status, body, server certificate subject) of one request by curl, resolving ``host`` to 127.0.0.1
    (in a thread: the backend answering it runs on this test's event loop)."""
    return await asyncio.to_thread(_curl, ca, host, port, path, *extra)


def _curl(ca: TestCA, host: str, port: int, path: str, *extra: str) -> tuple[int, str, str]:
    scheme = "http" if "--http" in extra else "https"
    argv = ["curl", "-sS", "--max-time", "5", "--cacert", str(ca.cert), "--resolve", f"{host}:{port}:127.0.0.1"]
    argv += ["-o", "-", "-w", "\n%{http_code} %{redirect_url}", "-v", f"{scheme}://{host}:{port}{path}"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    body, _, tail = done.stdout.rpartition("\n")
    code, _, redirect = tail.partition(" ")
    subject = next((line for line in done.stderr.splitlines() if "subject:" in line), "")
    return int(code or 0), body + (f" -> {redirect}" if redirect else ""), subject


async def until(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        result = await asyncio.to_thread(check)
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"never: {what}")


async def test_mesh_gateway_terminates_tls_routes_and_redirects(
    start_control: Callable[..., Any], registry: RegistryServer, tmp_path: Path
) -> None:
    ca = TestCA(tmp_path / "certs")
    bookinfo_cert, shop_cert = ca.issue("bookinfo.example.com"), ca.issue("shop.example.com")
    backend = await Backend("productpage-v1").start()
    async with aiohttp.ClientSession(base_url=registry.url) as http:
        await register(http, "productpage", "productpage-1", backend.port)
    control: ControlServer = await start_control()
    http_port, https_port = free_port(), free_port()
    rules = [gateway(http_port, https_port, ca, bookinfo_cert, shop_cert), BOUND]
    async with (
        aiohttp.ClientSession() as session,
        session.put(f"{control.url}/v1/mesh/config", data=yaml.safe_dump_all(rules)) as r,
    ):
        assert r.status == 200, await r.text()
    process = GatewayProcess(control.url, tmp_path / "gw")
    try:
        status, body, subject = await until(
            lambda: (answer := _curl(ca, "bookinfo.example.com", https_port, "/productpage"))[0] == 200 and answer,
            "the gateway serves HTTPS",
        )
        assert '"backend": "productpage-v1"' in body
        assert "CN=bookinfo.example.com" in subject
        status, body, subject = await curl(ca, "shop.example.com", https_port, "/static/app.css")
        assert status == 200
        assert "CN=shop.example.com" in subject  # SNI picked the other certificate
        assert (await curl(ca, "bookinfo.example.com", https_port, "/admin"))[0] == 404  # no route
        status, body, _ = await curl(ca, "bookinfo.example.com", http_port, "/productpage", "--http")
        assert status == 301
        assert body.endswith(f" -> https://bookinfo.example.com:{https_port}/productpage")
        assert backend.seen[0]["headers"]["host"] == f"bookinfo.example.com:{https_port}"
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{process.admin}/metrics") as r:
            metrics = await r.text()
        assert 'destination_service="productpage.default.svc.cluster.local"' in metrics

        # a certificate file the gateway cannot read: NACKed with the file named, the old one serves on
        broken = gateway(http_port, https_port, ca, bookinfo_cert, shop_cert)
        broken["spec"]["servers"][1]["tls"]["serverCertificate"] = str(tmp_path / "missing.pem")
        async with (
            aiohttp.ClientSession() as session,
            session.put(f"{control.url}/v1/mesh/config", data=yaml.safe_dump(broken)) as r,
        ):
            assert r.status == 200, await r.text()

        async def nacked() -> str:
            async with aiohttp.ClientSession() as session, session.get(f"{control.url}/v1/mesh/status") as r:
                status_doc = await r.json()
            (entry,) = status_doc["sidecars"]
            return str((entry.get("last_nack") or {}).get("error", ""))

        for _ in range(100):
            error = await nacked()
            if error:
                break
            await asyncio.sleep(0.1)
        assert f"cannot read {tmp_path / 'missing.pem'}: no such file" in error
        assert (await curl(ca, "bookinfo.example.com", https_port, "/productpage"))[0] == 200
    finally:
        process.stop()
        await backend.stop()
