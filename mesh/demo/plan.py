"""What `mesh up --demo` runs (pure): the workloads, their ports, command lines and registrations.

Bookinfo's shape: ``productpage`` calls ``details`` and ``reviews``; ``reviews`` v2 and v3 call
``ratings``. Each workload is an app (``python -m mesh.demo.app``) on 127.0.0.1 plus its own
``mesh sidecar`` fed by the control plane. The app calls out only through its sidecar's outbound
listener; the registry holds the sidecar's *inbound* port, so every hop crosses two sidecars, as
in Istio.

Ports come in blocks of ten from a base (default 19080, clear of the mesh's own 8500, 8600, 9153
and 15000-15010): workload ``i`` has its app on ``base + 10·i``, the sidecar's inbound, outbound
and admin listeners on ``+1``, ``+2``, ``+3``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from discovery.client_models import CheckRegistration, ServiceRegistration
from mesh.control.client import DEFAULT_CONTROL_ADDR
from mesh.model.security import TLS_MODE_MESH, TLS_MODE_META

DEFAULT_BASE_PORT = 19080
HOST = "127.0.0.1"
PORT_BLOCK = 10
# (service, version, the services its app calls)
WORKLOADS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("productpage", "v1", ("details", "reviews")),
    ("details", "v1", ()),
    ("reviews", "v1", ()),
    ("reviews", "v2", ("ratings",)),
    ("reviews", "v3", ("ratings",)),
    ("ratings", "v1", ()),
)


def state_dir(data_dir: Path) -> Path:
    """Where the demo's sidecars keep their snapshots, one directory per workload."""
    return data_dir / "demo"


@dataclass(frozen=True)
class Ports:
    app: int
    inbound: int
    outbound: int
    admin: int


@dataclass(frozen=True)
class Workload:
    service: str
    version: str
    calls: tuple[str, ...]
    ports: Ports

    @property
    def id(self) -> str:
        return f"{self.service}-{self.version}"

    def app_argv(self) -> list[str]:
        argv = [sys.executable, "-m", "mesh.demo.app", "--service", self.service, "--version", self.version]
        argv += ["--port", str(self.ports.app), "--outbound", f"{HOST}:{self.ports.outbound}"]
        return argv

    def sidecar_argv(self, log_level: str) -> list[str]:
        """`mesh sidecar` (the project's own command, run by this interpreter) for this workload."""
        return [
            sys.executable,
            "-m",
            "mesh.demo.sidecar",
            "--service",
            self.service,
            "--app-port",
            str(self.ports.app),
            "--inbound-addr",
            f"{HOST}:{self.ports.inbound}",
            "--outbound-addr",
            f"{HOST}:{self.ports.outbound}",
            "--admin-addr",
            f"{HOST}:{self.ports.admin}",
            "--drain-timeout",
            "2",
            "--log-level",
            log_level,
        ]

    def sidecar_env(self, control_url: str, registry_url: str, data_dir: Path) -> dict[str, str]:
        """The sidecar follows the control plane; each keeps its snapshot in its own directory."""
        return {
            "MESH_CONTROL_ADDR": control_url,
            "CONSUL_HTTP_ADDR": registry_url,
            "MESH_DATA_DIR": str(state_dir(data_dir) / self.id),
        }

    def registration(self) -> ServiceRegistration:
        """The registry entry: the sidecar's inbound port, ``Meta.version`` for subsets, a check on the app."""
        return ServiceRegistration(
            name=self.service,
            id=f"demo-{self.id}",
            address=HOST,
            port=self.ports.inbound,
            tags=("demo", f"version={self.version}"),
            meta={"version": self.version, "demo": "bookinfo", TLS_MODE_META: TLS_MODE_MESH},
            checks=(
                CheckRegistration(
                    name=f"{self.id} app",
                    http=f"http://{HOST}:{self.ports.app}/healthz",
                    interval=5.0,
                    timeout=2.0,
                    status="passing",  # registered only once the app answered
                ),
            ),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "service": self.service,
            "version": self.version,
            "calls": list(self.calls),
            "app": self.ports.app,
            "inbound": self.ports.inbound,
            "outbound": self.ports.outbound,
            "admin": self.ports.admin,
        }


def plan_workloads(base_port: int, free_port: Callable[[], int]) -> tuple[Workload, ...]:
    """The demo's workloads on ports from ``base_port`` (``0``: each port from ``free_port()``)."""
    if base_port and not 1024 <= base_port <= 65535 - PORT_BLOCK * len(WORKLOADS):
        raise ValueError(
            f"--demo-base-port: must be 0 (free ports) or 1024-{65535 - PORT_BLOCK * len(WORKLOADS)}, got {base_port}"
        )
    workloads = []
    for index, (service, version, calls) in enumerate(WORKLOADS):
        if base_port:
            first = base_port + PORT_BLOCK * index
            ports = Ports(first, first + 1, first + 2, first + 3)
        else:
            ports = Ports(free_port(), free_port(), free_port(), free_port())
        workloads.append(Workload(service, version, calls, ports))
    return tuple(workloads)


def find(workloads: Sequence[Workload], service: str) -> Workload:
    return next(w for w in workloads if w.service == service)


def next_steps(workloads: Sequence[Workload], registry_url: str, dns_addr: tuple[str, int], control_url: str) -> str:
    """What to try once the demo is up (printed by `mesh up --demo`)."""
    page = find(workloads, "productpage")
    entry = f"http://{HOST}:{page.ports.inbound}/productpage"
    dns_host, dns_port = dns_addr
    # `mesh apply` finds the control plane by MESH_CONTROL_ADDR when it is not on its default
    env = "" if control_url == DEFAULT_CONTROL_ADDR else f"MESH_CONTROL_ADDR={control_url} "
    table = [
        f"  {w.id:<15} app {w.ports.app:<6} sidecar: inbound {w.ports.inbound:<6} outbound {w.ports.outbound:<6} "
        f"admin {w.ports.admin}"
        for w in workloads
    ]
    return "\n".join(
        (
            "mesh up: Bookinfo demo ready, each app behind its own sidecar (registered: the inbound port):",
            *table,
            "next steps:",
            f"  curl -s {entry}   # productpage through its sidecar: details and a reviews version",
            f"  curl -s -H 'end-user: jason' '{entry}?format=json'",
            f"  curl -s -H 'Host: reviews' http://{HOST}:{page.ports.outbound}/reviews/0"
            "   # through productpage's outbound listener",
            f"  dig @{dns_host} -p {dns_port} reviews.service.consul SRV",
            f"  curl -s '{registry_url}/v1/health/service/reviews?passing'",
            f"  {env}mesh apply -f examples/bookinfo/destination-rule-all.yaml --wait",
            f"  {env}mesh apply -f examples/bookinfo/virtual-service-reviews-test-v2.yaml --wait   # jason -> v2",
            f"  {env}mesh apply -f examples/bookinfo/virtual-service-ratings-test-abort.yaml --wait"
            "  # faults for jason",
            f"  {env}mesh status",
            f"  curl -s http://{HOST}:{page.ports.admin}/clusters   # productpage sidecar's endpoints",
        )
    )
