"""The start fast path against a real Docker daemon: containers with fixed host ports are registered
from their create-time inspect, confirmed by an inspect after, and never from out-of-date configuration."""

from __future__ import annotations

from prometheus_client import REGISTRY

from discovery.client import RegistryClient
from discovery.registrar.server import Registrar
from tests.discovery.registrar.conftest import (
    Containers,
    RegistrarFactory,
    docker_command,
    eventually,
    free_tcp_port,
    services_of,
    wait_gone,
    wait_services,
)


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def events_seen(action: str) -> float:
    return counter("mesh_registrar_docker_events_total", action=action)


def predicted_starts() -> float:
    return counter("mesh_registrar_start_path_total", path="predicted")


def register_writes() -> float:
    return counter("mesh_registrar_registry_writes_total", op="register")


async def settled(registrar: Registrar, action: str, before: float, count: int = 1) -> None:
    """Wait until the registrar has read ``count`` more ``action`` events and reconciled everything queued."""

    async def seen() -> bool:
        return events_seen(action) >= before + count

    await eventually(seen, what=f"{count} {action} event(s)")
    assert registrar.reconciler is not None
    assert await registrar.reconciler.drain(15)


async def test_fixed_port_start_is_registered_from_the_create_time_inspect(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    registrar = await start_registrar()
    port, name = free_tcp_port(), containers.name()
    creates = events_seen("create")
    cid = await containers.create("--name", name, "-p", f"127.0.0.1:{port}:80", "-e", "SERVICE_NAME=fast")
    await settled(registrar, "create", creates)
    assert await services_of(client, cid) == {}  # created, not started: nothing registered
    predicted, registers, starts = predicted_starts(), register_writes(), events_seen("start")
    await docker_command("start", cid)
    services = await wait_services(client, cid, 1)
    service = services[f"{registrar.config.hostname}:{name}:80"]
    assert (service.name, service.address, service.port) == ("fast", "127.0.0.1", port)
    await settled(registrar, "start", starts)  # includes the confirming inspect
    assert predicted_starts() == predicted + 1
    assert register_writes() == registers + 1  # the confirming inspect found nothing to correct
    assert await services_of(client, cid) == services


async def test_ephemeral_ports_are_inspected_after_start(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    registrar = await start_registrar()
    creates = events_seen("create")
    cid = await containers.create("-p", "127.0.0.1::80")
    await settled(registrar, "create", creates)
    predicted, starts = predicted_starts(), events_seen("start")
    await docker_command("start", cid)
    services = await wait_services(client, cid, 1)
    assert next(iter(services.values())).port == await containers.host_port(cid)
    await settled(registrar, "start", starts)
    assert predicted_starts() == predicted


async def test_rename_between_create_and_start_registers_the_new_name(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    registrar = await start_registrar()
    old, new = containers.name("old"), containers.name("new")
    creates = events_seen("create")
    cid = await containers.create("--name", old, "-p", f"127.0.0.1:{free_tcp_port()}:80")
    await settled(registrar, "create", creates)
    await docker_command("rename", old, new)
    await docker_command("start", cid)
    host = registrar.config.hostname
    await eventually(lambda: _ids_of(client, cid, {f"{host}:{new}:80"}), what=f"{new} registered (and only {new})")
    assert registrar.reconciler is not None
    assert await registrar.reconciler.drain(15)
    assert set(await services_of(client, cid)) == {f"{host}:{new}:80"}


async def test_recreated_container_with_the_same_name_uses_its_own_configuration(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    registrar = await start_registrar()
    name, first_port, second_port = containers.name(), free_tcp_port(), free_tcp_port()
    creates = events_seen("create")
    first = await containers.create("--name", name, "-p", f"127.0.0.1:{first_port}:80")
    await settled(registrar, "create", creates)
    await docker_command("rm", first)
    creates = events_seen("create")
    second = await containers.create("--name", name, "-p", f"127.0.0.1:{second_port}:80", "-e", "SERVICE_NAME=again")
    await settled(registrar, "create", creates)
    await docker_command("start", second)
    services = await wait_services(client, second, 1)
    service = services[f"{registrar.config.hostname}:{name}:80"]
    assert (service.name, service.port, service.meta["registrar-container"]) == ("again", second_port, second)
    assert await services_of(client, first) == {}


async def test_container_whose_start_fails_is_never_registered(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    registrar = await start_registrar()
    creates = events_seen("create")
    cid = await containers.create("-p", f"127.0.0.1:{free_tcp_port()}:80", command=("/no/such/program",))
    await settled(registrar, "create", creates)
    registers, predicted = register_writes(), predicted_starts()
    assert await docker_command("start", cid, check=False) == ""  # Docker refuses: no start event
    assert registrar.reconciler is not None
    assert await registrar.reconciler.drain(15)
    assert register_writes() == registers  # not even for a moment
    assert predicted_starts() == predicted
    assert await services_of(client, cid) == {}


async def test_container_that_exits_at_once_ends_unregistered_and_restart_is_predicted(
    containers: Containers, client: RegistryClient, start_registrar: RegistrarFactory
) -> None:
    registrar = await start_registrar()
    creates = events_seen("create")
    quitter = await containers.create("-p", f"127.0.0.1:{free_tcp_port()}:80", command=("sh", "-c", "exit 3"))
    server = await containers.create("-p", f"127.0.0.1:{free_tcp_port()}:80")
    await settled(registrar, "create", creates, count=2)
    dies = events_seen("die")
    await docker_command("start", quitter)
    await docker_command("start", server)
    await wait_services(client, server, 1)
    await settled(registrar, "die", dies)
    await wait_gone(client, quitter)
    predicted, dies = predicted_starts(), events_seen("die")
    await docker_command("restart", "-t", "0", server)  # die, then start again from the known configuration
    await settled(registrar, "die", dies)
    services = await wait_services(client, server, 1)
    assert next(iter(services.values())).port == await containers.host_port(server)
    assert predicted_starts() >= predicted + 1


async def _ids_of(client: RegistryClient, container_id: str, want: set[str]) -> bool:
    return set(await services_of(client, container_id)) == want
