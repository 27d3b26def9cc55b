"""deploy/k8s/: the manifests' structure (PyYAML), the registration hook against a real registry, and
kubectl where it is installed (``kubectl kustomize`` offline; ``apply --dry-run=client`` needs an API
server for discovery, so it runs only when one answers)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from discovery.server import RegistryServer
from tests.deploy.helpers import DEPLOY, ROOT, check_invocation

K8S = DEPLOY / "k8s"
NAMESPACED = {"Service", "Deployment", "StatefulSet", "ConfigMap", "Job"}
WORKLOADS = {"Deployment", "StatefulSet", "Job"}


def documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                yield path.name, doc


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in documents() if doc["kind"] == kind]


def pod_specs() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, template metadata, pod spec) of every workload."""
    for _, doc in documents():
        if doc["kind"] in WORKLOADS:
            template = doc["spec"]["template"]
            yield doc["metadata"]["name"], template.get("metadata", {}), template["spec"]


def test_every_document_has_its_required_fields() -> None:
    kinds = {doc["kind"] for _, doc in documents()}
    assert {"Namespace", "Service", "Deployment", "StatefulSet", "ConfigMap", "Job"} <= kinds
    for filename, doc in documents():
        where = f"{filename}: {doc.get('kind')} {doc.get('metadata', {}).get('name')}"
        assert doc["apiVersion"] in {"v1", "apps/v1", "batch/v1"}, where
        assert doc["metadata"]["name"], where
        if doc["kind"] in NAMESPACED:
            assert doc["metadata"]["namespace"] == "mesh", where
        if doc["kind"] in {"Deployment", "StatefulSet"}:
            selector = doc["spec"]["selector"]["matchLabels"]
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert selector.items() <= labels.items(), f"{where}: the selector does not match the pod labels"


def test_the_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == on_disk


def test_containers_run_real_mesh_commands_without_root() -> None:
    for name, _, spec in pod_specs():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        for container in spec["containers"]:
            where = f"{name}/{container['name']}"
            assert container["image"] == "pymesh:dev", where
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], where
            env = {e["name"]: e.get("value", "") for e in container.get("env", [])}
            command = container.get("command")
            if command == ["python", "-m", "mesh.demo.app"]:
                continue
            if command is None:  # the image's entrypoint: mesh
                check_invocation(list(container["args"]), env, where)


def test_services_select_pods_and_target_ports_they_declare() -> None:
    pods = [(meta.get("labels", {}), spec) for _, meta, spec in pod_specs()]
    for service in by_kind("Service"):
        name = service["metadata"]["name"]
        chosen = [spec for labels, spec in pods if service["spec"]["selector"].items() <= labels.items()]
        assert chosen, f"Service {name} selects no pod"
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            for spec in chosen:
                declared = {p.get("name") for c in spec["containers"] for p in c.get("ports", [])}
                declared |= {p["containerPort"] for c in spec["containers"] for p in c.get("ports", [])}
                assert target in declared, f"Service {name}: targetPort {target} is not a port of its pods"


def test_mounted_config_maps_exist_and_the_rules_are_the_examples() -> None:
    maps = {cm["metadata"]["name"]: cm for cm in by_kind("ConfigMap")}
    for name, _, spec in pod_specs():
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in maps, f"{name}: no ConfigMap {volume['configMap']['name']}"
    rules = maps["mesh-rules"]["data"]
    bookinfo = ROOT / "examples" / "bookinfo"
    assert rules["10-destination-rules.yaml"] == (bookinfo / "destination-rule-all.yaml").read_text()
    assert rules["20-reviews-test-v2.yaml"] == (bookinfo / "virtual-service-reviews-test-v2.yaml").read_text()


def test_sample_pods_pair_the_app_with_a_sidecar_that_follows_the_control_plane() -> None:
    samples = [(name, spec) for name, _, spec in pod_specs() if name.startswith(("reviews-", "ratings-"))]
    assert {name for name, _ in samples} == {"reviews-v1", "reviews-v2", "ratings-v1"}
    for name, spec in samples:
        containers = {c["name"]: c for c in spec["containers"]}
        assert set(containers) == {"app", "sidecar"}, name
        service, version = name.split("-")
        assert containers["app"]["args"][:4] == ["--service", service, "--version", version]
        sidecar = containers["sidecar"]
        env = {e["name"]: e.get("value") for e in sidecar["env"]}
        assert env["MESH_CONTROL_ADDR"] == "http://mesh-control.mesh:15010"
        assert (env["SERVICE_NAME"], env["SERVICE_VERSION"]) == (service, version)
        assert f"--service={service}" in sidecar["args"]
        assert "--admin-addr=127.0.0.1:15000" in sidecar["args"]  # POST /drain stays off the network
        hooks = sidecar["lifecycle"]
        assert hooks["postStart"]["exec"]["command"][-1] == "register"
        assert hooks["preStop"]["exec"]["command"][-1] == "deregister"


@pytest.fixture
def register_script(tmp_path: Path) -> Path:
    (register,) = [cm for cm in by_kind("ConfigMap") if cm["metadata"]["name"] == "mesh-register"]
    script = tmp_path / "register.py"
    script.write_text(register["data"]["register.py"])
    return script


async def test_the_registration_hook_registers_and_deregisters_against_a_real_registry(
    start_registry: Callable[..., Any], register_script: Path
) -> None:
    registry: RegistryServer = await start_registry()
    env = {
        **os.environ,
        "CONSUL_HTTP_ADDR": registry.url,
        "SERVICE_NAME": "reviews",
        "SERVICE_VERSION": "v2",
        "SERVICE_PORT": "15006",
        "POD_NAME": "reviews-v2-abc",
        "POD_IP": "127.0.0.1",
    }

    def run(action: str) -> None:
        subprocess.run([sys.executable, str(register_script), action], env=env, check=True, timeout=30)

    await asyncio.to_thread(run, "register")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{registry.url}/v1/health/service/reviews") as r:
            (entry,) = await r.json()
        assert entry["Service"]["ID"] == "reviews-reviews-v2-abc"
        assert (entry["Service"]["Address"], entry["Service"]["Port"]) == ("127.0.0.1", 15006)
        assert entry["Service"]["Meta"]["version"] == "v2"
        (check,) = [c for c in entry["Checks"] if c["ServiceID"] == "reviews-reviews-v2-abc"]
        assert check["Definition"]["HTTP"] == "http://127.0.0.1:15006/healthz"
        await asyncio.to_thread(run, "deregister")
        async with http.get(f"{registry.url}/v1/health/service/reviews") as r:
            assert await r.json() == []


KUBECTL = shutil.which("kubectl")


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (Debian: kubernetes-client)")
def test_kubectl_builds_the_kustomization_offline() -> None:
    assert KUBECTL is not None
    result = subprocess.run([KUBECTL, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    built = [doc["kind"] for doc in yaml.safe_load_all(result.stdout) if doc]
    assert len(built) == len(list(documents()))


def api_server_answers() -> bool:
    if KUBECTL is None:
        return False
    probe = [KUBECTL, "version", "--request-timeout=3s"]
    return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0


@pytest.mark.skipif(
    not api_server_answers(),
    reason="kubectl apply --dry-run=client needs an API server for resource discovery, and none answers here",
)
def test_kubectl_apply_dry_run_client_accepts_every_manifest() -> None:
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, "apply", "--dry-run=client", "-k", str(K8S)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_everything_that_talks_to_the_control_plane_reads_its_token_from_one_secret() -> None:
    users = 0
    for name, _, spec in pod_specs():
        for container in spec["containers"]:
            env = {e["name"]: e for e in container.get("env", [])}
            if "MESH_CONTROL_ADDR" in env or container.get("args", [""])[0] == "control":
                users += 1
                ref = env["MESH_CONTROL_TOKEN"]["valueFrom"]["secretKeyRef"]
                assert ref == {"name": "mesh-control-token", "key": "token", "optional": True}, name
    assert users == 5  # the control plane, the rules Job and the three sample sidecars
