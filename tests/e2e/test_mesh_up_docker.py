"""The whole system from the README's own command, with real containers.

`mesh up` (registry + DNS + control plane + registrar, as one real process) on free loopback ports;
two busybox httpd containers, `web` v1 and v2, published on 127.0.0.1 only and described the
Registrator way (SERVICE_NAME, SERVICE_TAGS, SERVICE_VERSION → Meta ``version``; v1 in its
environment, v2 in labels), so the registrar registers them; dnspython resolves them through the
mesh DNS; a registry-mode `mesh sidecar` balances over both; a control-plane-mode `mesh sidecar`
follows `mesh apply -f` rules (header match to v2, 100 % v1, then 100 % v2); stopping v2's
container takes it out of DNS and of both sidecars' routing; the sidecars' and the registrar's
/metrics count what happened.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import dns.asyncresolver
import dns.resolver
import pytest

from mesh.demo.processes import free_port
from tests.docker_support import Containers, docker_command
from tests.e2e.conftest import Processes, mesh_command, metric_sum

SERVICE = "web"
CONTROL_TOKEN = "e2e-control-token"

DESTINATION_RULE = f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {SERVICE}}}
spec:
  host: {SERVICE}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
"""


def virtual_service(default_subset: str) -> str:
    """``end-user: jason`` → v2; everyone else → ``default_subset`` (weight 100)."""
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {SERVICE}}}
spec:
  hosts: [{SERVICE}]
  http:
  - match: [{{headers: {{end-user: {{exact: jason}}}}}}]
    route: [{{destination: {{host: {SERVICE}, subset: v2}}}}]
  - route:
    - {{destination: {{host: {SERVICE}, subset: {default_subset}}}, weight: 100}}
"""


@dataclass
class Mesh:
    """`mesh up`'s addresses."""

    registry: str
    control: str
    dns_port: int
    metrics: str  # DNS server's /metrics, where `mesh up` also serves the registrar's


@dataclass
class Sidecar:
    name: str
    admin: str
    outbound: str


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def answers(http: aiohttp.ClientSession, url: str, expect: int = 200) -> bool:
    try:
        async with http.get(url) as r:
            return r.status == expect
    except aiohttp.ClientError:
        return False


async def start_mesh_up(processes: Processes, http: aiohttp.ClientSession, data_dir: Path, hostname: str) -> Mesh:
    registry, dns_port, metrics, control = free_port(), free_port(), free_port(), free_port()
    argv = mesh_command("up", "--data-dir", str(data_dir), "--http-addr", f"127.0.0.1:{registry}")
    argv += ["--dns-addr", f"127.0.0.1:{dns_port}", "--metrics-addr", f"127.0.0.1:{metrics}"]
    argv += ["--control-http-addr", f"127.0.0.1:{control}", "--control-token", CONTROL_TOKEN]
    # MESH_HOSTNAME: the registrar's host name, so its service IDs are this test's alone
    env = {"MESH_HOSTNAME": hostname, "MESH_LOG_LEVEL": "warning", "MESH_UP_REGISTRAR": "auto"}
    processes.start("mesh-up", argv, env)
    mesh = Mesh(f"http://127.0.0.1:{registry}", f"http://127.0.0.1:{control}", dns_port, f"http://127.0.0.1:{metrics}")

    async def ready() -> bool:
        processes.check_running()
        return (
            await answers(http, f"{mesh.registry}/v1/status/leader")
            and await answers(http, f"{mesh.control}/healthz")
            and await answers(http, f"{mesh.metrics}/readyz")
        )

    await processes.eventually(ready, 60, "mesh up to answer on registry, control plane and DNS metrics")
    return mesh


async def start_sidecar(
    processes: Processes, http: aiohttp.ClientSession, name: str, env: dict[str, str], data_dir: Path
) -> Sidecar:
    admin, outbound, inbound = free_port(), free_port(), free_port()
    argv = mesh_command("sidecar", "--service", name, "--admin-addr", f"127.0.0.1:{admin}")
    argv += ["--outbound-addr", f"127.0.0.1:{outbound}", "--inbound-addr", f"127.0.0.1:{inbound}"]
    processes.start(name, argv, {"MESH_LOG_LEVEL": "warning", "MESH_DATA_DIR": str(data_dir / name), **env})
    sidecar = Sidecar(name, f"http://127.0.0.1:{admin}", f"http://127.0.0.1:{outbound}")

    async def ready() -> bool:
        processes.check_running()
        return await answers(http, f"{sidecar.admin}/ready")

    await processes.eventually(ready, 30, f"{name}'s admin /ready")
    return sidecar


async def call(http: aiohttp.ClientSession, sidecar: Sidecar, user: str = "") -> tuple[int, str]:
    """GET web's /version through the sidecar's outbound listener: (status, body)."""
    headers = {"Host": SERVICE, **({"end-user": user} if user else {})}
    async with http.get(f"{sidecar.outbound}/version", headers=headers) as r:
        return r.status, (await r.text()).strip()


async def versions(http: aiohttp.ClientSession, sidecar: Sidecar, count: int, user: str = "") -> Counter[str]:
    """Which version answered each of ``count`` calls (a non-200 is counted as ``"<status>"``)."""
    seen: Counter[str] = Counter()
    for _ in range(count):
        status, body = await call(http, sidecar, user)
        seen[body if status == 200 else str(status)] += 1
    return seen


async def run_web(containers: Containers, version: str, via: str) -> str:
    """A `web` container answering /version with ``version``, published on 127.0.0.1 only.

    ``via`` is ``-e`` (SERVICE_* environment variables) or ``--label`` (labels): the registrar reads both.
    """
    script = f"echo {version} > /www/version && exec httpd -f -p 80 -h /www"
    attributes = {"SERVICE_NAME": SERVICE, "SERVICE_TAGS": f"e2e,{version}", "SERVICE_VERSION": version}
    options = [item for key, value in attributes.items() for item in (via, f"{key}={value}")]
    return await containers.run("-p", "127.0.0.1::80", *options, command=("sh", "-c", script))


def resolver(mesh: Mesh) -> dns.asyncresolver.Resolver:
    r = dns.asyncresolver.Resolver(configure=False)
    r.nameservers = ["127.0.0.1"]
    r.port = mesh.dns_port
    r.lifetime = 5
    return r


async def srv_ports(mesh: Mesh, name: str = f"{SERVICE}.service.consul") -> set[int]:
    try:
        return {record.port for record in await resolver(mesh).resolve(name, "SRV")}
    except dns.resolver.NXDOMAIN:
        return set()


async def apply(processes: Processes, mesh: Mesh, tmp_path: Path, text: str) -> None:
    """`mesh apply -f FILE --wait`, as a user would run it."""
    path = tmp_path / f"rules-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(text)
    env = {"MESH_CONTROL_ADDR": mesh.control, "MESH_CONTROL_TOKEN": CONTROL_TOKEN}
    proc = await asyncio.create_subprocess_exec(
        *mesh_command("apply", "-f", str(path), "--wait", "--timeout", "20"),
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, f"mesh apply failed ({proc.returncode}): {out.decode()}\n{processes.logs()}"


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_mesh_up_registers_resolves_and_routes_real_containers(
    containers: Containers, processes: Processes, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    hostname = f"e2e-{uuid.uuid4().hex[:8]}"
    mesh = await start_mesh_up(processes, http, tmp_path / "mesh-data", hostname)
    v1 = await run_web(containers, "v1", "-e")
    v2 = await run_web(containers, "v2", "--label")
    ports = {"v1": await containers.host_port(v1), "v2": await containers.host_port(v2)}

    # the registrar inside `mesh up` registered both, Registrator style, at 127.0.0.1 and their host ports
    async def registered() -> list[dict[str, Any]] | None:
        async with http.get(f"{mesh.registry}/v1/health/service/{SERVICE}?passing") as r:
            entries: list[dict[str, Any]] = await r.json()
        return entries if len(entries) == 2 else None

    entries = await processes.eventually(registered, 60, "both containers registered")
    services = {e["Service"]["Meta"]["version"]: e["Service"] for e in entries}
    assert {v: (s["Address"], s["Port"]) for v, s in services.items()} == {
        v: ("127.0.0.1", p) for v, p in ports.items()
    }
    assert all(str(s["ID"]).startswith(f"{hostname}:") for s in services.values())
    assert set(services["v2"]["Tags"]) == {"e2e", "v2"}

    # DNS: A and SRV for the service, and the tag query for one version
    assert await srv_ports(mesh) == set(ports.values())
    addresses = {a.to_text() for a in await resolver(mesh).resolve(f"{SERVICE}.service.consul", "A")}
    assert addresses == {"127.0.0.1"}
    assert await srv_ports(mesh, f"v2.{SERVICE}.service.consul") == {ports["v2"]}

    # a registry-mode sidecar balances over both versions
    registry_env = {"CONSUL_HTTP_ADDR": mesh.registry}
    plain = await start_sidecar(processes, http, "client-registry", registry_env, tmp_path)
    assert set(await versions(http, plain, 6)) == {"v1", "v2"}

    # a control-plane sidecar follows `mesh apply`: jason → v2, everyone else → v1; then all → v2
    control_env = {"MESH_CONTROL_ADDR": mesh.control, "MESH_CONTROL_TOKEN": CONTROL_TOKEN}
    ruled = await start_sidecar(processes, http, "client-control", control_env, tmp_path)
    assert set(await versions(http, ruled, 6)) == {"v1", "v2"}  # no rule yet: both
    await apply(processes, mesh, tmp_path, DESTINATION_RULE + "---" + virtual_service("v1"))
    assert await versions(http, ruled, 8) == Counter({"v1": 8})
    assert await versions(http, ruled, 4, user="jason") == Counter({"v2": 4})
    await apply(processes, mesh, tmp_path, virtual_service("v2"))
    assert await versions(http, ruled, 8) == Counter({"v2": 8})

    # v2's container stops: the registrar deregisters it, DNS and both sidecars drop it
    await docker_command("stop", "-t", "1", v2)

    async def only_v1_in_dns() -> bool:
        return await srv_ports(mesh) == {ports["v1"]}

    await processes.eventually(only_v1_in_dns, 60, "v2 gone from DNS")

    async def plain_only_v1() -> bool:
        return await versions(http, plain, 4) == Counter({"v1": 4})

    await processes.eventually(plain_only_v1, 30, "the registry-mode sidecar to route to v1 only")

    async def subset_v2_empty() -> bool:  # the rule still says v2, which has no instance left
        return await versions(http, ruled, 2) == Counter({"503": 2})

    await processes.eventually(subset_v2_empty, 30, "the control-plane sidecar to answer 503 for the empty v2 subset")
    await apply(processes, mesh, tmp_path, virtual_service("v1"))
    assert await versions(http, ruled, 4) == Counter({"v1": 4})

    # metrics: the sidecars counted the calls by cluster and code, the registrar its writes
    async with http.get(f"{plain.admin}/metrics") as r:
        plain_metrics = await r.text()
    assert metric_sum(plain_metrics, "mesh_sidecar_requests_total", code="200") >= 10
    async with http.get(f"{ruled.admin}/metrics") as r:
        ruled_metrics = await r.text()
    assert metric_sum(ruled_metrics, "mesh_sidecar_requests_total", code="200") >= 30
    assert metric_sum(ruled_metrics, "mesh_sidecar_requests_total", code="503") >= 2
    async with http.get(f"{mesh.metrics}/metrics") as r:
        up_metrics = await r.text()
    assert metric_sum(up_metrics, "mesh_registrar_registry_writes_total", op="register") >= 2
    assert metric_sum(up_metrics, "mesh_registrar_registry_writes_total", op="deregister") >= 1
    assert metric_sum(up_metrics, "mesh_registrar_docker_events_total", action="die") >= 1
    assert metric_sum(up_metrics, "mesh_dns_requests_total") >= 4

    # SIGTERM: sidecars and `mesh up` drain and exit 0
    for name in ("client-control", "client-registry", "mesh-up"):
        assert processes.stop(name) == 0, processes.logs()
