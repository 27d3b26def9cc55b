"""Docker inspect JSON for the pure tests, shaped like Docker 20.10-28 sends it (nulls included)."""

from __future__ import annotations

from typing import Any

from discovery.registrar.container import Container
from discovery.registrar.desired import Rules

CID = "3f4e5d6c7b8a" + "0" * 52


def inspect_json(
    *,
    cid: str = CID,
    name: str = "web-1",
    image: str = "registry.example:5000/team/nginx:1.25",
    env: list[str] | None = None,
    labels: dict[str, str] | None = None,
    exposed: list[str] | None = None,
    ports: dict[str, list[dict[str, str]] | None] | None = None,
    network_mode: str = "default",
    ip: str = "172.17.0.5",
    networks: dict[str, str] | None = None,
    status: str = "running",
    exit_code: int = 0,
    health: str | None = None,
    hostname: str = "abc123",
    port_bindings: dict[str, list[dict[str, str]] | None] | None = None,
    publish_all: bool = False,
    healthcheck: list[str] | None = None,
) -> dict[str, Any]:
    running = status in ("running", "paused")
    state: dict[str, Any] = {
        "Status": status,
        "Running": running,
        "Paused": status == "paused",
        "Restarting": status == "restarting",
        "ExitCode": exit_code,
    }
    if health is not None:
        state["Health"] = {"Status": health, "FailingStreak": 0, "Log": [{"ExitCode": 0, "Output": "ok\n"}]}
    return {
        "Id": cid,
        "Name": f"/{name}",
        "Image": "sha256:" + "1" * 64,
        "State": state,
        "Config": {
            "Hostname": hostname,
            "Image": image,
            "Env": env,
            "Labels": labels,
            "ExposedPorts": {p: {} for p in exposed} if exposed is not None else None,
            **({"Healthcheck": {"Test": healthcheck}} if healthcheck is not None else {}),
        },
        "HostConfig": {"NetworkMode": network_mode, "PortBindings": port_bindings, "PublishAllPorts": publish_all},
        "NetworkSettings": {
            "IPAddress": ip,
            "Ports": ports if ports is not None else {},
            "Networks": {n: {"IPAddress": a} for n, a in (networks or {"bridge": ip}).items()},
        },
    }


def container(**kwargs: Any) -> Container:
    return Container.from_inspect(inspect_json(**kwargs))


def bound(port: str, host_port: str, host_ip: str = "0.0.0.0") -> dict[str, list[dict[str, str]] | None]:
    return {port: [{"HostIp": host_ip, "HostPort": host_port}]}


RULES = Rules(hostname="host1", host_ip="10.0.0.9")
