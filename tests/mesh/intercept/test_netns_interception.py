"""Transparent interception for real: iptables in a workload's namespace, an unmodified curl, a real sidecar.

Two namespaces joined by a veth pair. "svc" (198.18.77.2) runs the registry, the cluster DNS on
port 53 and a backend ``web`` on :8080 that echoes the request head. "app" (198.18.77.1) runs the
workload's sidecar in registry mode as group 1337 (its user stays root here: the test
interpreter lives under /root, which no other user may enter), an app on 127.0.0.1:9000 only, and the init step
`mesh intercept init`; its resolv.conf points at the mesh DNS. Then:

- outbound: ``curl http://web.service.consul:8080/`` from "app" resolves through the mesh DNS,
  is redirected to the sidecar's outbound port and reaches ``web`` through it (the sidecar's
  ``x-request-id`` arrives, and its metrics count the request) while the sidecar's own upstream
  connection is not looped back (the gid exclusion);
- an excluded destination port goes straight to the backend (no sidecar header);
- inbound: ``curl http://198.18.77.1:9000/`` from "svc" is redirected to the sidecar's inbound
  port, which forwards it to the app listening on loopback only;
- `mesh intercept clean` removes it all: the same curl then goes direct.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import NetnsLab, require_netns

pytestmark = pytest.mark.slow

MESH = str(Path(sys.executable).parent / "mesh")
APP_IP, SVC_IP = "198.18.77.1", "198.18.77.2"
REGISTRY = f"http://{SVC_IP}:8500"

ECHO = """
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Echo(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"who": sys.argv[3], "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Echo).serve_forever()
"""


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[NetnsLab]:
    require_netns()
    lab = NetnsLab()
    try:
        lab.add("app")
        lab.add("svc")
        lab.link("app", f"{APP_IP}/24", "svc", f"{SVC_IP}/24")
        yield lab
    finally:
        lab.close()


def start_services(lab: NetnsLab, tmp_path: Path) -> Path:
    """The "svc" side: the registry, the cluster DNS on port 53; returns the echo server script."""
    echo = tmp_path / "echo.py"
    echo.write_text(ECHO)
    lab.spawn(
        "svc",
        [MESH, "registry", "--http-addr", f"{SVC_IP}:8500", "--data-dir", str(tmp_path / "reg"), "--node", "svc"],
        log=tmp_path / "registry.log",
    )
    lab.wait_http("svc", f"{REGISTRY}/v1/status/leader")
    lab.spawn(
        "svc",
        [MESH, "dns", "--dns-addr", f"{SVC_IP}:53", "--metrics-addr", "127.0.0.1:9153", "--log-level", "warning"],
        env={"CONSUL_HTTP_ADDR": REGISTRY},
        log=tmp_path / "dns.log",
    )
    return echo


def register_web(lab: NetnsLab) -> None:
    registration = json.dumps({"Name": "web", "ID": "web-1", "Address": SVC_IP, "Port": 8080})
    done = lab.curl("svc", "-X", "PUT", "--data", registration, f"{REGISTRY}/v1/agent/service/register")
    assert done.returncode == 0, done.stderr


def start_mesh(lab: NetnsLab, tmp_path: Path) -> None:
    echo = start_services(lab, tmp_path)
    registry_env = {"CONSUL_HTTP_ADDR": REGISTRY}
    for port, who in ((8080, "web"), (8081, "web-direct")):
        lab.spawn("svc", [sys.executable, str(echo), SVC_IP, str(port), who])
        lab.wait_http("svc", f"http://{SVC_IP}:{port}/")
    register_web(lab)
    lab.resolv_conf("app", SVC_IP)
    lab.spawn("app", [sys.executable, str(echo), "127.0.0.1", "9000", "app"])
    lab.wait_http("app", "http://127.0.0.1:9000/")
    sidecar = [
        "setpriv", "--regid", "1337", "--clear-groups",
        MESH, "sidecar", "--service", "app", "--app-port", "9000", "--inbound-addr", "0.0.0.0:15006",
        "--admin-addr", "127.0.0.1:15000", "--log-level", "warning",
    ]  # fmt: skip
    lab.spawn("app", sidecar, env={**registry_env, "HOME": str(tmp_path)}, log=tmp_path / "sidecar.log")
    lab.wait_http("app", "http://127.0.0.1:15000/ready")


def echo_of(lab: NetnsLab, role: str, url: str) -> dict[str, object]:
    done = lab.curl(role, url)
    assert done.returncode == 0, f"curl {url} from {role}: {done.stderr}"
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


def sidecar_requests(lab: NetnsLab) -> str:
    done = lab.curl("app", "http://127.0.0.1:15000/metrics")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    return "\n".join(line for line in lines if line.startswith("mesh_sidecar_requests_total{") and 'code="200"' in line)


def test_curl_through_interception_both_ways(lab: NetnsLab, tmp_path: Path) -> None:
    start_mesh(lab, tmp_path)
    init = lab.run("app", [MESH, "intercept", "init", "--proxy-gid", "1337", "--exclude-outbound-ports", "8081"])
    assert init.returncode == 0, init.stderr

    # Outbound, by name: mesh DNS, then the sidecar (which adds x-request-id), then the backend.
    answer = echo_of(lab, "app", "http://web.service.consul:8080/")
    assert answer["who"] == "web"
    headers = answer["headers"]
    assert isinstance(headers, dict)
    assert "x-request-id" in headers
    assert headers["host"] == "web.service.consul:8080"
    assert 'cluster="web"' in sidecar_requests(lab)

    # An excluded port is not intercepted.
    direct = echo_of(lab, "app", f"http://{SVC_IP}:8081/")
    assert direct["who"] == "web-direct"
    assert isinstance(direct["headers"], dict)
    assert "x-request-id" not in direct["headers"]

    # Inbound: the app listens on loopback only; from the other host it is reachable only through the sidecar.
    inbound = echo_of(lab, "svc", f"http://{APP_IP}:9000/")
    assert inbound["who"] == "app"
    assert isinstance(inbound["headers"], dict)
    assert "x-request-id" in inbound["headers"]

    clean = lab.run("app", [MESH, "intercept", "clean"])
    assert clean.returncode == 0
    assert "removed" in clean.stdout
    refused = lab.curl("svc", f"http://{APP_IP}:9000/")
    assert refused.returncode != 0  # nothing listens on the app address itself
    assert lab.run("app", ["iptables-save", "-t", "nat"]).stdout.count("MESH_") == 0


def test_init_twice_changes_nothing(lab: NetnsLab) -> None:
    first = lab.run("app", [MESH, "intercept", "init", "--exclude-inbound-ports", "22"])
    assert first.returncode == 0, first.stderr
    saved = lab.run("app", ["iptables-save", "-t", "nat"]).stdout
    again = lab.run("app", [MESH, "intercept", "init", "--exclude-inbound-ports", "22"])
    assert again.returncode == 0, again.stderr
    rules = [line for line in saved.splitlines() if line.startswith("-A")]
    resaved = lab.run("app", ["iptables-save", "-t", "nat"]).stdout
    assert rules == [line for line in resaved.splitlines() if line.startswith("-A")]
    assert "-A MESH_INBOUND -p tcp -m tcp --dport 22 -j RETURN" in rules
