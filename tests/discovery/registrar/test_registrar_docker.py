"""The registrar against a real Docker daemon and the embedded registry: Registrator's rules end to end.

Containers publish on 127.0.0.1 only (``-p 127.0.0.1::80``), so registered addresses are loopback
and the registry's own checker can reach them.
"""

from __future__ import annotations

import logging

import pytest

from discovery.client import RegistryClient
from tests.discovery.registrar.conftest import (
    DEFAULT_NAME,
    Containers,
    RegistrarFactory,
    docker_command,
    wait_check,
    wait_gone,
    wait_services,
)

PUBLISH_80 = ("-p", "127.0.0.1::80")


async def test_published_port_becomes_a_service_named_after_the_image(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    registrar = await start_registrar()
    name = containers.name()
    cid = await containers.run("--name", name, *PUBLISH_80)
    services = await wait_services(client, cid, 1)
    host_port = await containers.host_port(cid)
    service = services[f"{registrar.config.hostname}:{name}:80"]
    assert service.name == DEFAULT_NAME
    assert (service.address, service.port) == ("127.0.0.1", host_port)
    assert service.tags == ()
    assert service.meta["registrar-host"] == registrar.config.hostname
    assert service.meta["registrar-container"] == cid
    # visible through the health API too, with no checks: passing
    entries = (await client.health_service(DEFAULT_NAME, passing=True)).value
    assert any(e.service.id == service.id for e in entries)


async def test_env_and_labels_name_tag_and_describe_each_port(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    registrar = await start_registrar(tags="forced,{{.Config.Hostname}}")
    name = containers.name()
    cid = await containers.run(
        "--name",
        name,
        "--hostname",
        "box1",
        *PUBLISH_80,
        "-p",
        "127.0.0.1::81",
        "-p",
        "127.0.0.1::53/udp",
        "-e",
        "SERVICE_NAME=shop",
        "-e",
        "SERVICE_TAGS=from-env",
        "--label",
        "SERVICE_TAGS=v1,blue",  # a label beats the env var with the same key
        "-e",
        "SERVICE_REGION=eu-west",
        "-e",
        "SERVICE_81_NAME=shop-admin",  # per port: used verbatim, no suffix
        "--label",
        "SERVICE_81_TAGS=admin",
        "-e",
        "NOT_SERVICE_X=ignored",
    )
    services = await wait_services(client, cid, 3)
    host = registrar.config.hostname
    web, admin, dns = services[f"{host}:{name}:80"], services[f"{host}:{name}:81"], services[f"{host}:{name}:53:udp"]
    assert web.name == "shop-80"  # a generic SERVICE_NAME gets the port suffix in a group
    assert admin.name == "shop-admin"
    assert dns.name == "shop-53"
    assert web.tags == ("v1", "blue", "forced", "box1")
    assert admin.tags == ("admin", "forced", "box1")
    assert dns.tags == ("v1", "blue", "forced", "box1", "udp")
    assert web.meta["region"] == "eu-west"
    assert "name" not in web.meta
    assert "tags" not in web.meta
    assert dns.port == await containers.host_port(cid, "53/udp")


async def test_ignore_skips_a_container_or_one_port(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    await start_registrar()
    ignored = await containers.run(*PUBLISH_80, "-e", "SERVICE_IGNORE=1")
    partly = await containers.run(*PUBLISH_80, "-p", "127.0.0.1::81", "-e", "SERVICE_81_IGNORE=yes")
    services = await wait_services(client, partly, 1)
    assert [s.port for s in services.values()] == [await containers.host_port(partly)]
    assert next(iter(services.values())).name == f"{DEFAULT_NAME}-80"  # still a group of two ports
    assert await _services_now(client, ignored) == {}


async def test_compose_service_label_gives_the_default_name(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    await start_registrar()
    cid = await containers.run(*PUBLISH_80, "--label", "com.docker.compose.service=checkout")
    services = await wait_services(client, cid, 1)
    assert [s.name for s in services.values()] == ["checkout"]


async def test_unpublished_ports_are_skipped_unless_internal(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    await start_registrar()
    cid = await containers.run("--expose", "80", "-e", "SERVICE_NAME=hidden")
    published = await containers.run(*PUBLISH_80, "-e", "SERVICE_NAME=seen")
    await wait_services(client, published, 1)
    assert await _services_now(client, cid) == {}


async def test_internal_registers_exposed_ports_at_the_container_ip(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    await start_registrar(internal=True)
    cid = await containers.run("--expose", "80", "-e", "SERVICE_NAME=inside")
    services = await wait_services(client, cid, 1)
    container_ip = (await containers.inspect(cid))["NetworkSettings"]["IPAddress"]
    service = next(iter(services.values()))
    assert (service.name, service.address, service.port) == ("inside", container_ip, 80)


async def test_host_network_ports_register_at_the_host_ip(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    from tests.discovery.registrar.conftest import free_tcp_port

    port = free_tcp_port()
    await start_registrar(ip="127.0.0.1")
    name = containers.name()
    cid = await containers.run(
        "--name",
        name,
        "--network",
        "host",
        "--expose",
        str(port),
        "-e",
        "SERVICE_CHECK_TCP=true",
        "-e",
        "SERVICE_CHECK_INTERVAL=1s",
        command=("httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www"),
    )
    services = await wait_services(client, cid, 1)
    service = next(iter(services.values()))
    assert (service.address, service.port) == ("127.0.0.1", port)
    await wait_check(client, f"service:{service.id}", "passing")


async def test_explicit_registers_only_named_services(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    await start_registrar(explicit=True)
    unnamed = await containers.run(*PUBLISH_80)
    named = await containers.run(*PUBLISH_80, "-p", "127.0.0.1::81", "-e", "SERVICE_81_NAME=only-81")
    services = await wait_services(client, named, 1)
    assert [s.name for s in services.values()] == ["only-81"]
    assert await _services_now(client, unnamed) == {}


async def test_http_checks_follow_the_container_endpoint(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    await start_registrar()
    good = await containers.run(*PUBLISH_80, "-e", "SERVICE_CHECK_HTTP=/index.html", "-e", "SERVICE_CHECK_INTERVAL=1s")
    bad = await containers.run(*PUBLISH_80, "-e", "SERVICE_CHECK_HTTP=/missing", "-e", "SERVICE_CHECK_INTERVAL=1s")
    good_id = next(iter(await wait_services(client, good, 1)))
    bad_id = next(iter(await wait_services(client, bad, 1)))
    passing = await wait_check(client, f"service:{good_id}", "passing")
    assert f"http://127.0.0.1:{await containers.host_port(good)}/index.html" in passing.output
    failing = await wait_check(client, f"service:{bad_id}", "critical", output="404")
    assert failing.interval == 1.0


async def test_stop_kill_and_rm_deregister(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    await start_registrar()
    stopped = await containers.run(*PUBLISH_80)
    killed = await containers.run(*PUBLISH_80)
    removed = await containers.run(*PUBLISH_80)
    for cid in (stopped, killed, removed):
        await wait_services(client, cid, 1)
    await docker_command("stop", "-t", "1", stopped)
    await docker_command("kill", killed)
    await docker_command("rm", "-f", removed)
    for cid in (stopped, killed, removed):
        await wait_gone(client, cid)


async def test_deregister_on_success_keeps_failed_containers(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    await start_registrar(deregister="on-success")
    failed = await containers.run(*PUBLISH_80, command=exit_on_request(3))  # a failure: kept
    succeeded = await containers.run(*PUBLISH_80, command=exit_on_request(0))  # success: removed
    killed = await containers.run(*PUBLISH_80)  # 137, killed by a signal: removed like a success
    for cid in (failed, succeeded, killed):
        await wait_services(client, cid, 1)
    await docker_command("kill", killed)
    for cid in (failed, succeeded):
        await docker_command("exec", cid, "touch", "/tmp/exit")
        await docker_command("wait", cid)
    await wait_gone(client, succeeded)
    await wait_gone(client, killed)
    assert len(await _services_now(client, failed)) == 1
    await docker_command("rm", failed)
    await wait_gone(client, failed)


async def test_pause_deregisters_until_unpause(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    await start_registrar()
    cid = await containers.run(*PUBLISH_80)
    await wait_services(client, cid, 1)
    await docker_command("pause", cid)
    await wait_gone(client, cid)
    await docker_command("unpause", cid)
    await wait_services(client, cid, 1)


async def test_bad_attributes_are_warned_about_and_skipped(
    containers: Containers,
    client: RegistryClient,
    start_registrar: RegistrarFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="discovery.registrar")
    await start_registrar()
    name = containers.name("bad")
    cid = await containers.run(
        "--name",
        name,
        *PUBLISH_80,
        "-e",
        "SERVICE_80x_NAME=typo",
        "-e",
        "SERVICE_CHECK_HTTP=/index.html",
        "-e",
        "SERVICE_CHECK_INTERVAL=soon",
        "-e",
        "SERVICE_CHECK_TIMEOUT=-1s",
        "-e",
        "SERVICE_CHECK_INTERVALL=5s",
        "--label",
        "SERVICE_bad.key=x",
        "-e",
        "SERVICE_OWNER=team-a",
    )
    services = await wait_services(client, cid, 1)
    service = next(iter(services.values()))
    assert service.name == DEFAULT_NAME  # the typo'd name was skipped, not used
    assert service.meta["owner"] == "team-a"
    assert "80x_name" not in service.meta
    assert "bad.key" not in service.meta
    check = (await client.agent_checks())[f"service:{service.id}"]
    assert check.interval == 10.0  # the bad interval was skipped: Registrator's default applies
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for attribute in (
        "SERVICE_80x_NAME",
        "SERVICE_CHECK_INTERVAL",
        "SERVICE_CHECK_TIMEOUT",
        "SERVICE_CHECK_INTERVALL",
        "SERVICE_bad.key",
    ):
        assert any(name in w and attribute in w for w in warnings), (attribute, warnings)


async def test_unsupported_check_kind_is_skipped_but_the_service_registered(
    containers: Containers,
    client: RegistryClient,
    start_registrar: RegistrarFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="discovery.registrar")
    await start_registrar()
    cid = await containers.run(*PUBLISH_80, "-e", "SERVICE_CHECK_GRPC=true")
    service_id = next(iter(await wait_services(client, cid, 1)))
    assert f"service:{service_id}" not in await client.agent_checks()
    assert any("SERVICE_CHECK_GRPC" in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records)


async def test_docker_healthcheck_drives_a_ttl_check(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    await start_registrar()
    cid = await containers.run(
        *PUBLISH_80,
        "--health-cmd",
        "test -f /tmp/ok",
        "--health-interval",
        "200ms",
        "--health-retries",
        "1",
        "--health-start-period",
        "0s",
    )
    service_id = next(iter(await wait_services(client, cid, 1)))
    check_id = f"service:{service_id}:docker-health"
    starting = (await client.agent_checks())[check_id]
    assert starting.status == "critical"  # "starting" (or already "unhealthy"): no traffic yet
    assert not (await client.health_service(DEFAULT_NAME, passing=True)).value or all(
        e.service.id != service_id for e in (await client.health_service(DEFAULT_NAME, passing=True)).value
    )
    await docker_command("exec", cid, "touch", "/tmp/ok")
    healthy = await wait_check(client, check_id, "passing")
    assert "healthy" in healthy.output
    await docker_command("exec", cid, "rm", "/tmp/ok")
    await wait_check(client, check_id, "critical")


def exit_on_request(code: int) -> tuple[str, ...]:
    """Serve HTTP until /tmp/exit appears (``docker exec touch``), then exit with ``code``."""
    return ("sh", "-c", f"httpd -p 80 -h /www; until [ -f /tmp/exit ]; do sleep 0.1; done; exit {code}")


async def _services_now(client: RegistryClient, container_id: str) -> dict[str, object]:
    from tests.discovery.registrar.conftest import services_of

    return dict(await services_of(client, container_id))
