"""Injection into Kubernetes objects: which get a sidecar, what it looks like, and what is left alone."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mesh.inject.documents import inject_text
from mesh.inject.kubernetes import inject_object
from mesh.inject.settings import InjectError, InjectSettings
from tests.mesh.inject.manifests import BOOKINFO

SETTINGS = InjectSettings()


def by_name(text: str) -> dict[str, dict[str, Any]]:
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in yaml.safe_load_all(text) if d}


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]
    return spec


def sidecar(obj: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in pod_spec(obj)["containers"] if c["name"] == "mesh-sidecar"), None)


@pytest.fixture(scope="module")
def injected() -> dict[str, dict[str, Any]]:
    return by_name(inject_text(BOOKINFO, SETTINGS).text)


def test_workloads_get_a_sidecar_and_other_kinds_pass_through(injected: dict[str, dict[str, Any]]) -> None:
    original = by_name(BOOKINFO)
    assert list(injected) == list(original)  # same documents, same order
    with_sidecar = {name for name, obj in injected.items() if obj["kind"] not in ("Service", "ServiceAccount")}
    with_sidecar = {name for name in with_sidecar if sidecar(injected[name])}
    assert with_sidecar == {"Deployment/details-v1", "StatefulSet/ratings-db", "DaemonSet/node-agent", "Pod/debug"}
    assert injected["Service/details"] == original["Service/details"]
    assert injected["Deployment/legacy"] == original["Deployment/legacy"]  # opted out
    assert injected["DaemonSet/node-exporter"] == original["DaemonSet/node-exporter"]  # hostNetwork


def test_the_sidecar_runs_mesh_sidecar_for_the_app(injected: dict[str, dict[str, Any]]) -> None:
    details = injected["Deployment/details-v1"]
    container = sidecar(details)
    assert container is not None
    assert pod_spec(details)["containers"][0]["name"] == "details"  # the app stays first
    assert container["image"] == "pymesh:dev"
    assert container["args"] == [
        "sidecar",
        "--service",
        "details",
        "--app-port",
        "9080",
        "--inbound-addr",
        "0.0.0.0:15006",
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["MESH_CONTROL_ADDR"]["value"] == "http://mesh-control.mesh:15010"
    assert env["MESH_CONTROL_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "mesh-control-token",
        "key": "token",
        "optional": True,
    }
    probe = container["readinessProbe"]["exec"]["command"]
    assert "http://127.0.0.1:15000/ready" in probe[-1]
    assert container["resources"]["limits"]["memory"] == "128Mi"
    assert container["ports"] == [{"name": "mesh-inbound", "containerPort": 15006, "protocol": "TCP"}]
    mount = container["volumeMounts"][0]
    assert {"name": mount["name"], "emptyDir": {}} in pod_spec(details)["volumes"]
    assert details["spec"]["template"]["metadata"]["annotations"] == {"mesh.io/injected": "true"}
    assert details["spec"]["template"]["spec"]["serviceAccountName"] == "bookinfo-details"


def test_service_name_and_port_rules(injected: dict[str, dict[str, Any]]) -> None:
    def args(name: str) -> list[str]:
        container = sidecar(injected[name])
        assert container is not None
        result: list[str] = container["args"]
        return result

    assert args("StatefulSet/ratings-db")[:5] == ["sidecar", "--service", "ratings-db", "--app-port", "27017"]
    assert args("DaemonSet/node-agent") == ["sidecar", "--service", "node-agent"]  # no label, no port: outbound only
    assert "ports" not in (sidecar(injected["DaemonSet/node-agent"]) or {})
    assert args("Pod/debug")[:5] == ["sidecar", "--service", "debug", "--app-port", "8080"]  # the first TCP port


def test_image_and_control_address_come_from_the_settings() -> None:
    settings = InjectSettings(image="registry.example/pymesh:1.2", control_addr="http://cp.example:15010")
    result = by_name(inject_text(BOOKINFO, settings).text)
    container = sidecar(result["Pod/debug"])
    assert container is not None
    assert container["image"] == "registry.example/pymesh:1.2"
    assert container["env"][0] == {"name": "MESH_CONTROL_ADDR", "value": "http://cp.example:15010"}


def test_injected_objects_are_recognised_by_annotation_or_container_name() -> None:
    def fresh_pod() -> dict[str, Any]:
        pod: dict[str, Any] = yaml.safe_load(BOOKINFO.split("---")[5])
        assert pod["kind"] == "Pod"
        return pod

    first = inject_object(fresh_pod(), SETTINGS)
    assert first.changed
    injected = copy.deepcopy(first.document)
    assert not inject_object(first.document, SETTINGS).changed  # type: ignore[arg-type]
    assert first.document == injected  # a pod left alone is not touched
    pod = fresh_pod()
    pod["spec"]["containers"].append({"name": "mesh-sidecar", "image": "x"})
    again = inject_object(pod, SETTINGS)
    assert not again.changed
    assert again.changes[0].detail == "already injected"
    assert not has_annotation(pod, "mesh.io/injected")
    pod = fresh_pod()
    pod["metadata"]["annotations"] = {"sidecar.mesh.io/inject": "false"}
    assert not inject_object(pod, SETTINGS).changed
    assert pod == {
        **fresh_pod(),
        "metadata": {**fresh_pod()["metadata"], "annotations": {"sidecar.mesh.io/inject": "false"}},
    }


def has_annotation(pod: dict[str, Any], annotation: str) -> bool:
    return annotation in (pod["metadata"].get("annotations") or {})


@pytest.mark.parametrize(
    ("obj", "path", "fragment"),
    [
        ({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}, "spec.containers", "non-empty"),
        (
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": []}},
            "spec.template",
            "expected an object",
        ),
        (
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "a", "ports": [{"containerPort": "http"}]}]},
            },
            "spec.containers[0].ports[0]",
            "expected a port number",
        ),
    ],
)
def test_bad_objects_are_errors_naming_the_field(obj: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(InjectError) as caught:
        inject_object(obj, SETTINGS, "document 3")
    assert caught.value.path == f"document 3: {path}"
    assert fragment in str(caught.value)


KUBECTL = shutil.which("kubectl")


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (Debian: kubernetes-client)")
def test_kubectl_reads_the_injected_manifests(tmp_path: Path) -> None:
    # Offline, kubectl's own parser (kustomize) must accept every injected object; with an API server,
    # `apply --dry-run=client` validates them against the real schemas too.
    assert KUBECTL is not None
    (tmp_path / "app.yaml").write_text(inject_text(BOOKINFO, SETTINGS).text)
    (tmp_path / "kustomization.yaml").write_text("resources: [app.yaml]\n")
    built = subprocess.run([KUBECTL, "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(built.stdout) if d)
    assert kinds == sorted(d["kind"] for d in yaml.safe_load_all(BOOKINFO) if d)
    server = subprocess.run([KUBECTL, "version", "--request-timeout=3s"], capture_output=True, timeout=30)
    if server.returncode == 0:
        applied = subprocess.run(
            [KUBECTL, "apply", "--dry-run=client", "-f", str(tmp_path / "app.yaml")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert applied.returncode == 0, applied.stderr


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (Debian: kubernetes-client)")
def test_kubectl_builds_the_injected_deploy_kustomization(tmp_path: Path) -> None:
    assert KUBECTL is not None
    source = Path(__file__).resolve().parents[3] / "deploy" / "k8s"
    for path in source.iterdir():
        text = path.read_text()
        (tmp_path / path.name).write_text(inject_text(text, SETTINGS).text if path.suffix == ".yaml" else text)
    built = subprocess.run([KUBECTL, "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    objects = [d for d in yaml.safe_load_all(built.stdout) if d]
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    assert workloads
    assert all(sidecar(o) is not None for o in workloads)


def test_interception_adds_the_init_container_as_istio_does() -> None:
    settings = InjectSettings(interception=True)
    text = inject_text(BOOKINFO, settings).text
    injected = [d for d in yaml.safe_load_all(text) if d]
    deployments = [d for d in injected if d["kind"] == "Deployment" and sidecar(d) is not None]
    assert deployments
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        (init,) = [c for c in pod["initContainers"] if c["name"] == "mesh-init"]
        assert init["args"][:4] == ["intercept", "init", "--proxy-uid", "10001"]
        assert init["securityContext"]["runAsUser"] == 0
        assert init["securityContext"]["capabilities"]["add"] == ["NET_ADMIN", "NET_RAW"]
        side = sidecar(deployment)
        assert side is not None
        assert side["securityContext"]["runAsUser"] == 10001  # the uid the rules let through
    assert not inject_text(text, settings).changed
