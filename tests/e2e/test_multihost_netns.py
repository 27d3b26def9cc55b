"""Three "hosts" on one machine: network namespaces joined by one bridge, the mesh spread across them.

- ``host1`` (10.250.0.1): `mesh up` (registry, DNS, control plane) on its namespace address;
- ``host2`` (10.250.0.2) and ``host3`` (10.250.0.3): each a `web` backend (busybox httpd on the
  namespace's own 127.0.0.1, so only its sidecar can reach it) behind a `mesh sidecar` whose inbound
  listens on the host's address, registered in host1's registry from inside the host (the Consul
  HTTP API, as the README does with curl) with a TCP check that host1's registry runs across the
  bridge. host2's sidecar runs in registry mode, host3's follows host1's control plane.

Shown: DNS on host1 answers both hosts' addresses to dnspython running in host2; a client in host3
reaches host2's backend through host3's sidecar and host2's sidecar inbound (host2's app itself is
unreachable from host3); a rule applied on host1 sends all of host3's calls to host2; when host2's
sidecar stops, host1's check marks it critical and DNS and routing leave host2.

The switch is a bridge in a fourth namespace, so the root namespace gets no interface or address.
Registrars per host are left out: one dockerd serves the whole machine (its unix socket is not
namespaced), so a registrar per namespace would see the same containers; tests/e2e/test_mesh_up_docker.py
covers the registrar end to end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import mesh_command, metric_sum, wait_for
from tests.netns import NetnsLab, require_netns

SUBNET = "10.250.0"
HOSTS = {"host1": f"{SUBNET}.1", "host2": f"{SUBNET}.2", "host3": f"{SUBNET}.3"}
REGISTRY = f"http://{HOSTS['host1']}:8500"
CONTROL = f"http://{HOSTS['host1']}:15010"
CONTROL_TOKEN = "e2e-multihost-token"
APP_PORT = 8080  # each backend, on its own namespace's loopback
INBOUND_PORT = 15006  # each sidecar's inbound, on its host's address
BUSYBOX = "busybox"  # the backends: its httpd applet

RULES = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web}
spec:
  host: web
  subsets:
  - {name: host2, labels: {host: host2}}
  - {name: host3, labels: {host: host3}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
  - route: [{destination: {host: web, subset: host2}}]
"""

DIG = """
import json, sys
import dns.resolver
r = dns.resolver.Resolver(configure=False)
r.nameservers, r.port, r.lifetime = [sys.argv[1]], 8600, 3
def ask(kind):
    try:
        return sorted(x.to_text() for x in r.resolve("web.service.consul", kind))
    except dns.resolver.NXDOMAIN:
        return []
print(json.dumps({"A": ask("A"), "SRV": ask("SRV")}))
"""


class Hosts(NetnsLab):
    """Namespaces as hosts on one /24, every host's veth plugged into a bridge in a switch namespace."""

    def __init__(self, log_dir: Path) -> None:
        super().__init__()
        self.log_dir = log_dir
        self.started: dict[str, subprocess.Popen[bytes]] = {}

    def build(self, hosts: dict[str, str]) -> None:
        """The switch (a bridge in its own namespace), then one namespace per host plugged into it."""
        switch = self.add("switch")
        self._ip("-n", switch, "link", "add", "br0", "type", "bridge")
        self._ip("-n", switch, "link", "set", "br0", "up")
        for role, address in hosts.items():
            self.plug(role, address)

    @staticmethod
    def _ip(*args: str) -> None:
        done = subprocess.run(["ip", *args], capture_output=True, text=True)
        assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr.strip()}"

    def plug(self, role: str, address: str) -> None:
        host, switch = self.add(role), self.names["switch"]
        port = f"p{role[-1]}{self.tag}"
        self._ip("link", "add", "eth0", "netns", host, "type", "veth", "peer", "name", port, "netns", switch)
        self._ip("-n", switch, "link", "set", port, "master", "br0", "up")
        self._ip("-n", host, "addr", "add", f"{address}/24", "dev", "eth0")
        self._ip("-n", host, "link", "set", "eth0", "up")

    def start(self, role: str, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.started[f"{role}-{name}"] = self.spawn(role, argv, env=env, log=self.log_dir / f"{role}-{name}.log")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}:\n{p.read_text(errors='replace')[-2000:]}" for p in self.log_dir.glob("*.log"))

    def http(self, role: str, url: str, *curl_args: str) -> tuple[int, str]:
        """(status, body) of a request made from inside ``role``; status 0 when it could not connect."""
        done = self.curl(role, "-w", "\n%{http_code}", *curl_args, url)
        body, _, code = done.stdout.rpartition("\n")
        return (int(code) if code.isdigit() else 0), body


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Hosts]:
    require_netns()
    if shutil.which(BUSYBOX) is None:
        if os.environ.get("CI"):
            pytest.fail("busybox is needed for the backends (apt-get install busybox-static)")
        pytest.skip("busybox is needed for the backends (apt-get install busybox-static)")
    lab = Hosts(tmp_path)
    try:
        lab.build(HOSTS)
        yield lab
    finally:
        lab.close()  # processes, then namespaces (and with them the bridge and veths), even on failure


def start_backend(hosts: Hosts, role: str, tmp_path: Path, sidecar_env: dict[str, str]) -> None:
    """``role``'s web app on its loopback, its sidecar on its address, and its registration in host1's registry."""
    www = tmp_path / f"www-{role}"
    www.mkdir()
    (www / "index.html").write_text(f"served by {role}\n")
    hosts.start(role, "app", [BUSYBOX, "httpd", "-f", "-p", f"127.0.0.1:{APP_PORT}", "-h", str(www)])
    argv = mesh_command("sidecar", "--service", "web", "--app-port", str(APP_PORT))
    argv += ["--inbound-addr", f"{HOSTS[role]}:{INBOUND_PORT}"]
    env = {"MESH_LOG_LEVEL": "warning", "MESH_DATA_DIR": str(tmp_path / f"sidecar-{role}"), **sidecar_env}
    hosts.start(role, "sidecar", argv, env)
    hosts.wait_http(role, "http://127.0.0.1:15000/ready")
    registration = {
        "ID": f"web-{role}",
        "Name": "web",
        "Address": HOSTS[role],
        "Port": INBOUND_PORT,
        "Meta": {"host": role},
        "Check": {"TCP": f"{HOSTS[role]}:{INBOUND_PORT}", "Interval": "1s", "Timeout": "1s"},
    }
    status, body = hosts.http(
        role, f"{REGISTRY}/v1/agent/service/register", "-X", "PUT", "--data-binary", json.dumps(registration)
    )
    assert status == 200, f"registering {role}: {status} {body}"


def control_cli(*args: str) -> list[str]:
    """``mesh ARGS`` against host1's control plane (``env`` sets its address and token inside the namespace)."""
    return ["env", f"MESH_CONTROL_ADDR={CONTROL}", f"MESH_CONTROL_TOKEN={CONTROL_TOKEN}", *mesh_command(*args)]


def dig(hosts: Hosts, role: str) -> dict[str, list[str]]:
    """A and SRV of web.service.consul, asked by dnspython from inside ``role``."""
    done = hosts.run(role, [sys.executable, "-c", DIG, HOSTS["host1"]])
    assert done.returncode == 0, done.stderr
    answer: dict[str, list[str]] = json.loads(done.stdout)
    return answer


def served_by(hosts: Hosts, role: str, count: int) -> Counter[str]:
    """Who answered ``count`` calls to ``web`` made in ``role`` through its sidecar's outbound listener."""
    seen: Counter[str] = Counter()
    for _ in range(count):
        status, body = hosts.http(role, "http://127.0.0.1:15001/", "-H", "Host: web")
        seen[body.removeprefix("served by ").strip() if status == 200 else str(status)] += 1
    return seen


def passing(hosts: Hosts) -> list[str]:
    status, body = hosts.http("host3", f"{REGISTRY}/v1/health/service/web?passing")
    assert status == 200, body
    entries: list[dict[str, Any]] = json.loads(body)
    return sorted(e["Service"]["ID"] for e in entries)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_three_hosts_discover_and_route_across_namespaces(hosts: Hosts, tmp_path: Path) -> None:
    # host1: registry, DNS and control plane on its namespace address (no registrar: see the docstring)
    argv = mesh_command("up", "--data-dir", str(tmp_path / "host1-data"), "--http-addr", f"{HOSTS['host1']}:8500")
    argv += ["--dns-addr", f"{HOSTS['host1']}:8600", "--control-http-addr", f"{HOSTS['host1']}:15010"]
    argv += ["--control-token", CONTROL_TOKEN]
    hosts.start("host1", "mesh-up", argv, {"MESH_UP_REGISTRAR": "off", "MESH_LOG_LEVEL": "warning"})
    hosts.wait_http("host2", f"{REGISTRY}/v1/status/leader", timeout=60)
    hosts.wait_http("host3", f"{CONTROL}/healthz", timeout=30)

    start_backend(hosts, "host2", tmp_path, {"CONSUL_HTTP_ADDR": REGISTRY})
    control_env = {"MESH_CONTROL_ADDR": CONTROL, "MESH_CONTROL_TOKEN": CONTROL_TOKEN}
    start_backend(hosts, "host3", tmp_path, control_env)
    wait_for(lambda: passing(hosts) == ["web-host2", "web-host3"] or None, 20, "both checks passing", hosts.logs)

    # cross-host discovery: host1's DNS gives dnspython in host2 both hosts' addresses
    answer = dig(hosts, "host2")
    assert answer["A"] == [HOSTS["host2"], HOSTS["host3"]]
    assert len(answer["SRV"]) == 2
    assert all(record.split()[2] == str(INBOUND_PORT) for record in answer["SRV"])

    # cross-host routing: host3's client → host3's sidecar → host2's sidecar inbound → host2's app
    assert hosts.http("host3", f"http://{HOSTS['host2']}:{APP_PORT}/")[0] == 0  # the app is not reachable itself

    def both_hosts() -> Counter[str] | None:
        got = served_by(hosts, "host3", 8)
        return got if set(got) == {"host2", "host3"} else None

    wait_for(both_hosts, 20, "host3's calls to reach both hosts", hosts.logs)

    # a rule applied on host1's control plane, from host3: every call of host3's to web goes to host2
    rules = tmp_path / "web-to-host2.yaml"
    rules.write_text(RULES)
    apply = hosts.run("host3", control_cli("apply", "-f", str(rules), "--wait", "--timeout", "20"), timeout=40)
    assert apply.returncode == 0, f"{apply.stdout}{apply.stderr}\n{hosts.logs()}"
    assert served_by(hosts, "host3", 8) == Counter({"host2": 8})

    # host2's sidecar counted what came in from host3 (inbound listener, 200s)
    status, metrics = hosts.http("host2", "http://127.0.0.1:15000/metrics")
    assert status == 200
    assert metric_sum(metrics, "mesh_sidecar_requests_total", listener="inbound", code="200") >= 8

    # host2's sidecar stops: host1's TCP check across the bridge fails, DNS and routing leave host2
    sidecar2 = hosts.started["host2-sidecar"]
    sidecar2.terminate()
    assert sidecar2.wait(timeout=30) == 0
    wait_for(lambda: passing(hosts) == ["web-host3"] or None, 20, "host2's instance to turn critical", hosts.logs)
    assert dig(hosts, "host2")["A"] == [HOSTS["host3"]]
    assert served_by(hosts, "host3", 2) == Counter({"503": 2})  # the rule still says host2: no healthy endpoint
    assert hosts.run("host3", control_cli("delete", "virtualservice", "web")).returncode == 0
    wait_for(lambda: served_by(hosts, "host3", 4) == Counter({"host3": 4}) or None, 20, "routing to host3", hosts.logs)
