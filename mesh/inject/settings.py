"""What an injected sidecar looks like, and the outcome of injecting one document."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

SIDECAR_NAME: Final = "mesh-sidecar"
INJECTED_ANNOTATION: Final = "mesh.io/injected"
OPT_OUT_ANNOTATION: Final = "sidecar.mesh.io/inject"
NAME_LABELS: Final = ("app.kubernetes.io/name", "app")  # Istio's order for the canonical service name
DEFAULT_IMAGE: Final = "pymesh:dev"  # deploy/Dockerfile: docker build -f deploy/Dockerfile -t pymesh:dev .
DEFAULT_K8S_CONTROL_ADDR: Final = "http://mesh-control.mesh:15010"  # the Service in deploy/k8s/control-plane.yaml
DEFAULT_COMPOSE_CONTROL_ADDR: Final = "http://control:15010"  # the service in deploy/compose/docker-compose.yml
INBOUND_PORT: Final = 15006
SIDECAR_UID: Final = 10001  # deploy/Dockerfile's user: interception lets its traffic through unredirected
INIT_NAME: Final = "mesh-init"
ADMIN_ADDR: Final = "127.0.0.1:15000"
DATA_DIR: Final = "/var/lib/mesh"  # the image's MESH_DATA_DIR: the last good snapshot is kept there
# The admin API stays on loopback (it serves POST /drain), so the probe runs inside the container, as in deploy/k8s.
READY_PROBE_COMMAND: Final = (
    "python",
    "-c",
    f"import urllib.request as u; u.urlopen('http://{ADMIN_ADDR}/ready', timeout=2)",
)


@dataclass(frozen=True, slots=True)
class InjectSettings:
    image: str = DEFAULT_IMAGE
    control_addr: str = ""  # empty: the default of the format (Kubernetes or compose)
    control_token_secret: str = "mesh-control-token"  # Kubernetes Secret with key `token`, optional
    interception: bool = False  # add the init step redirecting the pod's TCP through the sidecar (docs/interception.md)

    def control_for_kubernetes(self) -> str:
        return self.control_addr or DEFAULT_K8S_CONTROL_ADDR

    def control_for_compose(self) -> str:
        return self.control_addr or DEFAULT_COMPOSE_CONTROL_ADDR


def sidecar_args(service: str, app_port: int | None) -> list[str]:
    """``sidecar --service NAME [--app-port PORT --inbound-addr 0.0.0.0:15006]``: without a port, outbound only."""
    args = ["sidecar", "--service", service]
    if app_port is not None:
        args += ["--app-port", str(app_port), "--inbound-addr", f"0.0.0.0:{INBOUND_PORT}"]
    return args


def intercept_args(app_port: int | None) -> list[str]:
    """``intercept init`` for the sidecar's uid; inbound is redirected only when the sidecar has an inbound listener."""
    args = ["intercept", "init", "--proxy-uid", str(SIDECAR_UID)]
    return args if app_port is not None else [*args, "--inbound-ports", ""]


class InjectError(ValueError):
    """A document the injector cannot handle; ``path`` names the field (e.g. ``services.web.ports[0]``)."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


@dataclass(frozen=True, slots=True)
class Change:
    """What happened to one workload: ``injected`` (a sidecar added) or a reason it was left alone."""

    workload: str  # e.g. "Deployment/reviews" or "compose service reviews"
    action: str  # "inject" | "skip"
    detail: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """The rewritten document (None: unchanged) and what was decided for each workload in it."""

    document: object | None
    changes: tuple[Change, ...] = field(default=())

    @property
    def changed(self) -> bool:
        return self.document is not None
