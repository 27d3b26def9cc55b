"""`mesh env` against a real embedded registry, and the pure rules behind it (names, address choice, quoting)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from typing import Any

import aiohttp
import pytest
from typer.testing import CliRunner

from discovery.client_models import AgentService, CatalogNode, HealthCheck, HealthServiceEntry
from discovery.server import RegistryServer
from mesh.cli import app
from mesh.envvars import EnvError, ServiceTarget, choose_target, render, service_variables, variable_prefix
from tests.discovery.helpers import register_service


async def mesh_env(registry_url: str, *args: str) -> Any:
    runner = CliRunner()
    env = {"CONSUL_HTTP_ADDR": registry_url, "CONSUL_HTTP_TOKEN": ""}
    return await asyncio.to_thread(runner.invoke, app, ["env", *args], env=env)


def instance(
    service: str, sid: str, status: str, node: str = "n1", address: str = "", **meta: str
) -> HealthServiceEntry:
    checks = (HealthCheck.from_json({"Node": node, "CheckID": f"c-{sid}", "Name": "c", "Status": status}),)
    return HealthServiceEntry(
        node=CatalogNode.from_json({"Node": node, "Address": "10.0.0.1"}),
        service=AgentService(id=sid, name=service, port=9080, address=address, meta=meta),
        checks=checks,
    )


# === pure rules ===


@pytest.mark.parametrize(
    ("service", "prefix"),
    [("reviews", "REVIEWS"), ("reviews-api", "REVIEWS_API"), ("my.svc-v2", "MY_SVC_V2"), ("Web_1", "WEB_1")],
)
def test_names_are_upper_cased_with_dashes_as_underscores(service: str, prefix: str) -> None:
    assert variable_prefix(service) == prefix


def test_a_name_that_cannot_be_a_variable_is_refused() -> None:
    with pytest.raises(EnvError, match=r"'9lives'.*starts with a digit"):
        variable_prefix("9lives")


def test_a_passing_instance_wins_over_warning_and_critical_ones_stably() -> None:
    entries = [
        instance("web", "web-c", "critical", address="10.0.0.9"),
        instance("web", "web-w", "warning", address="10.0.0.8"),
        instance("web", "web-p2", "passing", node="n2", address="10.0.0.7"),
        instance("web", "web-p1", "passing", node="n2", address="10.0.0.6"),
    ]
    target = choose_target("web", entries)
    assert (target.host, target.instance, target.source) == ("10.0.0.6", "web-p1", "instance")
    assert choose_target("web", list(reversed(entries))) == target
    assert choose_target("web", entries[:2]).instance == "web-w"


def test_the_cluster_ip_is_given_when_the_service_has_one() -> None:
    entries = [instance("db", "db-1", "passing", address="10.0.0.5", **{"k8s-cluster-ip": "10.96.0.20"})]
    target = choose_target("db", entries)
    assert (target.host, target.port, target.source) == ("10.96.0.20", 9080, "cluster-ip")


def test_unknown_and_unhealthy_services_are_errors_naming_them() -> None:
    with pytest.raises(EnvError, match="service 'nope': not found in the registry"):
        choose_target("nope", [])
    with pytest.raises(EnvError, match="service 'web': no healthy instance \\(1 registered, all critical\\)"):
        choose_target("web", [instance("web", "w", "critical")])


def test_variables_follow_kubernetes_for_the_main_and_named_ports() -> None:
    target = choose_target(
        "reviews-api",
        [
            instance(
                "reviews-api",
                "r1",
                "passing",
                address="10.0.0.7",
                **{"k8s-port-grpc": "9090/tcp", "k8s-port-dns": "53/udp"},
            )
        ],
    )
    assert service_variables(target) == {
        "REVIEWS_API_SERVICE_HOST": "10.0.0.7",
        "REVIEWS_API_SERVICE_PORT": "9080",
        "REVIEWS_API_SERVICE_PORT_DNS": "53",
        "REVIEWS_API_SERVICE_PORT_GRPC": "9090",
        "REVIEWS_API_PORT": "tcp://10.0.0.7:9080",
        "REVIEWS_API_PORT_9080_TCP": "tcp://10.0.0.7:9080",
        "REVIEWS_API_PORT_9080_TCP_PROTO": "tcp",
        "REVIEWS_API_PORT_9080_TCP_PORT": "9080",
        "REVIEWS_API_PORT_9080_TCP_ADDR": "10.0.0.7",
        "REVIEWS_API_PORT_53_UDP": "udp://10.0.0.7:53",
        "REVIEWS_API_PORT_53_UDP_PROTO": "udp",
        "REVIEWS_API_PORT_53_UDP_PORT": "53",
        "REVIEWS_API_PORT_53_UDP_ADDR": "10.0.0.7",
        "REVIEWS_API_PORT_9090_TCP": "tcp://10.0.0.7:9090",
        "REVIEWS_API_PORT_9090_TCP_PROTO": "tcp",
        "REVIEWS_API_PORT_9090_TCP_PORT": "9090",
        "REVIEWS_API_PORT_9090_TCP_ADDR": "10.0.0.7",
    }


def test_ipv6_hosts_are_bracketed_in_urls_only() -> None:
    variables = service_variables(ServiceTarget("v6", "fd00::1", 80))
    assert variables["V6_SERVICE_HOST"] == "fd00::1"
    assert variables["V6_PORT"] == "tcp://[fd00::1]:80"


def test_render_quotes_for_the_shell_and_for_dotenv() -> None:
    variables = {"A": "plain:1", "B": "it's a value", "C": ""}
    assert render(variables, "export") == "export A=plain:1\nexport B='it'\"'\"'s a value'\nexport C=''\n"
    assert render(variables, "dotenv") == 'A=plain:1\nB="it\'s a value"\nC=\n'
    assert json.loads(render(variables, "json")) == variables


# === against a real registry ===


async def _register_demo(registry: RegistryServer) -> None:
    async with aiohttp.ClientSession(base_url=registry.url) as http:
        common = {"Address": "127.0.0.2", "Meta": {"k8s-port-grpc": "9090/tcp"}}
        await register_service(
            http,
            {
                "Name": "reviews-api",
                "ID": "r-bad",
                "Port": 9081,
                **common,
                "Check": {"TTL": "30s", "Status": "critical"},
            },
        )
        await register_service(
            http,
            {
                "Name": "reviews-api",
                "ID": "r-good",
                "Port": 9080,
                "Address": "127.0.0.3",
                "Meta": {"k8s-port-grpc": "9090/tcp"},
                "Check": {"TTL": "30s", "Status": "passing"},
            },
        )
        await register_service(
            http, {"Name": "ratings", "ID": "ratings-1", "Port": 8080, "Meta": {"k8s-cluster-ip": "10.96.0.11"}}
        )
        await register_service(http, {"Name": "down", "ID": "down-1", "Port": 1, "Check": {"TTL": "30s"}})


async def test_env_prints_export_lines_a_shell_can_eval(registry: RegistryServer) -> None:
    await _register_demo(registry)
    result = await mesh_env(registry.url, "reviews-api", "ratings")
    assert result.exit_code == 0, result.output
    assert "export REVIEWS_API_SERVICE_HOST=127.0.0.3\n" in result.stdout  # the passing instance, not the critical
    assert "export REVIEWS_API_SERVICE_PORT=9080\n" in result.stdout
    assert "export REVIEWS_API_SERVICE_PORT_GRPC=9090\n" in result.stdout
    assert "export RATINGS_SERVICE_HOST=10.96.0.11\n" in result.stdout  # the ClusterIP
    bash = shutil.which("bash")
    assert bash is not None
    shell = await asyncio.to_thread(
        subprocess.run,
        [bash, "-c", 'eval "$(cat)"; echo "$REVIEWS_API_PORT $RATINGS_SERVICE_PORT $RATINGS_PORT_8080_TCP_ADDR"'],
        input=result.stdout,
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout == "tcp://127.0.0.3:9080 8080 10.96.0.11\n"


async def test_env_json_and_dotenv_formats(registry: RegistryServer) -> None:
    await _register_demo(registry)
    as_json = await mesh_env(registry.url, "ratings", "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    variables = json.loads(as_json.stdout)
    assert variables["RATINGS_SERVICE_HOST"] == "10.96.0.11"
    assert variables["RATINGS_PORT"] == "tcp://10.96.0.11:8080"
    dotenv = await mesh_env(registry.url, "ratings", "-o", "dotenv")
    assert dotenv.exit_code == 0
    assert dict(line.split("=", 1) for line in dotenv.stdout.splitlines()) == variables
    bad = await mesh_env(registry.url, "ratings", "--format", "yaml")
    assert bad.exit_code == 2
    assert "expected one of export, dotenv, json" in bad.output


async def test_an_unknown_service_exits_2_naming_it_unless_ignored(registry: RegistryServer) -> None:
    await _register_demo(registry)
    missing = await mesh_env(registry.url, "ratings", "nosuch")
    assert missing.exit_code == 2
    assert missing.stdout == ""
    assert "error: service 'nosuch': not found in the registry" in missing.stderr
    down = await mesh_env(registry.url, "down")
    assert down.exit_code == 2
    assert "service 'down': no healthy instance" in down.stderr
    ignored = await mesh_env(registry.url, "nosuch", "ratings", "down", "--ignore-missing")
    assert ignored.exit_code == 0, ignored.output
    assert "RATINGS_SERVICE_HOST" in ignored.stdout
    assert "NOSUCH" not in ignored.stdout
    assert "DOWN_" not in ignored.stdout
    assert "skipped service 'nosuch'" in ignored.stderr
    assert "skipped service 'down'" in ignored.stderr


async def test_an_unreachable_registry_exits_1() -> None:
    result = await mesh_env("http://127.0.0.1:1", "web")
    assert result.exit_code == 1
    assert "error: registry:" in result.stderr
