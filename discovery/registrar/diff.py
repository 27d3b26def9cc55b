"""What to write so the registry matches the desired services: pure functions, no I/O.

Per container: register what is missing or different (the digest in Meta tells), set the
docker-health check where only its status differs, and deregister what we own but no longer
want, except services Registrator's ``-deregister on-success`` keeps:

- a container that exited non-zero keeps its services (it may be restarted or inspected), unless
  it was killed by a signal (exit code with bit 128: 137, 143 ...) or is already removed;
- ``--cleanup`` drops them at the next sync once the container is no longer created,
  restarting, running or paused (Registrator's Sync does the same).

``registrator_leftovers`` finds services a Registrator (or this registrar before it marked
ownership) left behind: IDs ``<our hostname>:<container name>:<port>[:udp]`` without our Meta
whose container does not run. Only ``--cleanup`` removes them.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from discovery.client_models import AgentService
from discovery.registrar.config import DeregisterMode
from discovery.registrar.container import Container
from discovery.registrar.desired import DesiredService
from discovery.registrar.ownership import HOST_KEY, OwnedService, health_check_id

KEEP_STATES: Final = frozenset({"created", "restarting", "running", "paused"})


@dataclass(frozen=True, slots=True)
class HealthUpdate:
    service_id: str
    check_id: str
    status: str
    output: str


@dataclass(frozen=True, slots=True)
class Plan:
    register: tuple[DesiredService, ...] = ()
    deregister: tuple[str, ...] = ()
    health: tuple[HealthUpdate, ...] = ()
    kept: tuple[str, ...] = ()  # owned, not wanted, kept by --deregister on-success

    @property
    def empty(self) -> bool:
        return not (self.register or self.deregister or self.health)


def keeps_services(container: Container | None, mode: DeregisterMode, *, cleanup: bool, sync: bool) -> bool:
    """Registrator's ``shouldRemove`` inverted: does a stopped container keep its registrations?"""
    if mode != "on-success" or container is None or container.running:
        return False
    if container.exit_code == 0 or container.exit_code & 0x80:
        return False
    return not (cleanup and sync and container.status not in KEEP_STATES)


def plan_container(
    container: Container | None,
    desired: Sequence[DesiredService],
    owned: Mapping[str, OwnedService],
    *,
    mode: DeregisterMode = "always",
    cleanup: bool = False,
    sync: bool = False,
) -> Plan:
    """The writes for one container. ``container`` is ``None`` when Docker no longer knows it."""
    wanted = {d.service_id: d for d in desired}
    register: list[DesiredService] = []
    health: list[HealthUpdate] = []
    for service_id, want in wanted.items():
        have = owned.get(service_id)
        if have is None or have.digest != want.digest:
            register.append(want)
        elif want.health is not None and have.health != want.health:
            health.append(HealthUpdate(service_id, health_check_id(service_id), want.health, want.health_output))
    stale = tuple(sid for sid in owned if sid not in wanted)
    if stale and not wanted and keeps_services(container, mode, cleanup=cleanup, sync=sync):
        return Plan(tuple(register), (), tuple(health), stale)
    return Plan(tuple(register), stale, tuple(health))


def registrator_leftovers(
    services: Mapping[str, AgentService], *, hostname: str, running_names: Collection[str]
) -> list[str]:
    """IDs of unmarked services in Registrator's ID form for this host whose container is not running."""
    pattern = re.compile(rf"{re.escape(hostname)}:(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*):[0-9]+(:[a-z]+)?")
    leftovers = []
    for service in services.values():
        if HOST_KEY in service.meta:
            continue  # marked: ours (handled per container) or another registrar's (never ours to touch)
        match = pattern.fullmatch(service.id)
        if match is not None and match["name"] not in running_names:
            leftovers.append(service.id)
    return sorted(leftovers)


__all__ = ["KEEP_STATES", "HealthUpdate", "Plan", "keeps_services", "plan_container", "registrator_leftovers"]
