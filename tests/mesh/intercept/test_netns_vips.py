"""Service VIPs for real: an unmodified curl in a workload's network namespace reaches a service by
its cluster DNS name (answered with the service's VIP) and by the VIP itself, intercepted into the
workload's sidecar, which follows the control plane that allocated the VIP."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.mesh.intercept.test_netns_interception import (
    MESH,
    REGISTRY,
    SVC_IP,
    echo_of,
    lab,
    register_web,
    start_services,
)
from tests.netns import NetnsLab

__all__ = ["lab"]  # the fixture, used below
pytestmark = pytest.mark.slow
CONTROL = f"http://{SVC_IP}:15010"
VIP_RANGE = "240.240.0.0/24"


def start_mesh(lab: NetnsLab, tmp_path: Path) -> None:
    echo = start_services(lab, tmp_path)
    registry_env = {"CONSUL_HTTP_ADDR": REGISTRY}
    lab.spawn("svc", [sys.executable, str(echo), SVC_IP, "8080", "web"])
    lab.wait_http("svc", f"http://{SVC_IP}:8080/")
    register_web(lab)
    control = [MESH, "control", "--http-addr", f"{SVC_IP}:15010", "--data-dir", str(tmp_path / "control")]
    control += ["--service-vip-range", VIP_RANGE, "--log-level", "warning"]
    lab.spawn("svc", control, env=registry_env, log=tmp_path / "control.log")
    lab.wait_http("svc", f"{CONTROL}/readyz")
    lab.resolv_conf("app", SVC_IP)
    # the VIP range is routed towards the services' side (kube-proxy's addresses are routable the same
    # way); the sidecar's interception redirects the connections before they leave
    assert lab.run("app", ["ip", "route", "add", VIP_RANGE, "via", SVC_IP]).returncode == 0
    # the init step first, as Istio's init container: connections opened before the rules exist (the
    # sidecar's long poll) would have their packets caught mid-stream once conntrack starts
    init = lab.run("app", [MESH, "intercept", "init", "--proxy-gid", "1337"])
    assert init.returncode == 0, init.stderr
    sidecar = [
        "setpriv", "--regid", "1337", "--clear-groups",
        MESH, "sidecar", "--service", "app", "--admin-addr", "127.0.0.1:15000", "--log-level", "warning",
    ]  # fmt: skip
    env = {**registry_env, "MESH_CONTROL_ADDR": CONTROL, "MESH_DATA_DIR": str(tmp_path / "app"), "HOME": str(tmp_path)}
    lab.spawn("app", sidecar, env=env, log=tmp_path / "sidecar.log")
    lab.wait_http("app", "http://127.0.0.1:15000/ready")


def test_curl_reaches_a_service_by_name_and_by_vip(lab: NetnsLab, tmp_path: Path) -> None:
    start_mesh(lab, tmp_path)
    vip = ""
    for _ in range(100):  # the control plane assigns the VIP and the DNS follows the KV
        resolved = lab.run("app", ["getent", "hosts", "web.default.svc.cluster.local"])
        vip = resolved.stdout.split()[0] if resolved.returncode == 0 and resolved.stdout else ""
        if vip.startswith("240.240.0."):
            break
        lab.run("app", ["sleep", "0.1"])
    assert vip == "240.240.0.1"

    by_name = echo_of(lab, "app", "http://web.default.svc.cluster.local:8080/")
    assert by_name["who"] == "web"
    assert isinstance(by_name["headers"], dict)
    assert "x-request-id" in by_name["headers"]  # through the sidecar

    by_vip = echo_of(lab, "app", f"http://{vip}:8080/")
    assert by_vip["who"] == "web"
    assert isinstance(by_vip["headers"], dict)
    assert by_vip["headers"]["host"] == f"{vip}:8080"
    assert "x-request-id" in by_vip["headers"]
