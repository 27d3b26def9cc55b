"""The Docker edge: one Engine API session (aiodocker) for listing, inspecting and the event stream.

Every failure to talk to the daemon becomes ``DockerUnavailable`` here, in one place, so the
registrar can tell "reconnect and resync" apart from "this container is gone" (``None``).
The event stream is opened with ``since`` set to the daemon's own clock before the initial
listing: events that happen while we list are replayed, never lost, whatever the order in
which the daemon registers our subscription.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError

from discovery.registrar.container import Container

log = logging.getLogger(__name__)

# The container actions that can change what a container should have in the registry.
WATCHED_ACTIONS: Final = (
    "create",  # inspected then, so the start needs no round trip when its configuration says enough
    "start",
    "die",
    "stop",
    "kill",
    "destroy",
    "pause",
    "unpause",
    "health_status",
    "rename",
)
# "kill" only says a signal was sent and "stop" always follows a "die": neither changes what a
# container should have, and inspecting a container that is being torn down waits for Docker's
# cleanup (~100-300 ms). They are counted, not acted on.
COUNTED_ONLY: Final = frozenset({"kill", "stop"})
REQUEST_TIMEOUT: Final = 10.0
_RFC3339: Final = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")


class DockerUnavailable(Exception):
    """The daemon cannot be reached or answered with an error: reconnect, then resync."""


@dataclass(frozen=True, slots=True)
class DockerEvent:
    action: str  # "start", "die", "health_status" (Docker's "health_status: healthy" cut at ':')
    container_id: str
    time_ns: int  # the daemon's timestamp (timeNano)
    name: str = ""  # the container's name
    exit_code: int | None = None  # on "die"
    received_ns: int = field(default=0, compare=False)  # our realtime clock when it came off the stream

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DockerEvent | None:
        if data.get("Type", "container") != "container":
            return None
        actor = data.get("Actor") or {}
        container_id = str(actor.get("ID") or data.get("id") or "")
        action = str(data.get("Action") or data.get("status") or "").split(":", 1)[0].strip()
        if not container_id or not action:
            return None
        time_ns = data.get("timeNano")
        if not isinstance(time_ns, int):
            raw = data.get("time")
            time_ns = int(raw.timestamp() * 1e9) if isinstance(raw, datetime) else 0
        attributes = actor.get("Attributes") or {}
        exit_code = str(attributes.get("exitCode") or "")
        return cls(
            action,
            container_id,
            time_ns,
            name=str(attributes.get("name") or ""),
            exit_code=int(exit_code) if exit_code.lstrip("-").isdigit() else None,
            received_ns=time.time_ns(),
        )


@dataclass(frozen=True, slots=True)
class ContainerSummary:
    id: str
    name: str
    state: str  # created, running, paused, restarting, removing, exited, dead


def parse_rfc3339_ns(text: str) -> int:
    """Docker's ``SystemTime`` (RFC 3339 with up to 9 fraction digits) in ns since the epoch."""
    match = _RFC3339.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    seconds, fraction, zone = match.groups()
    base = datetime.fromisoformat(seconds + ("+00:00" if zone == "Z" else zone))
    return int(base.timestamp()) * 1_000_000_000 + int((fraction or "0").ljust(9, "0")[:9])


class DockerClient:
    """One connection's worth of Docker access. Create a new one to reconnect."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._docker: aiodocker.Docker | None = None

    async def open(self) -> None:
        self._docker = aiodocker.Docker(url=self.url, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT))
        await self._call(self._docker.version())

    async def close(self) -> None:
        if self._docker is not None:
            docker, self._docker = self._docker, None
            await docker.close()

    async def daemon_time_ns(self) -> int:
        info = await self._call(self._api.system.info())
        try:
            return parse_rfc3339_ns(str(info["SystemTime"]))
        except (KeyError, ValueError) as exc:
            raise DockerUnavailable(f"cannot read the daemon's clock from /info: {exc}") from exc

    async def list_containers(self) -> list[ContainerSummary]:
        """Every container the daemon knows (running or not)."""
        found = await self._call(self._api.containers.list(all=True))
        summaries = []
        for item in found:
            names = item["Names"] or ["/"]
            summaries.append(ContainerSummary(item.id, str(names[0]).removeprefix("/"), str(item["State"] or "")))
        return summaries

    async def inspect(self, container_id: str) -> Container | None:
        """The container's current state, or ``None`` if Docker no longer has it."""
        data = await self._inspect_raw(container_id)
        if data is None:
            return None
        container = Container.from_inspect(data)
        if container.network_container:
            # NetworkMode container:<id> (a pod's shared network): that container holds the IP.
            other = await self._inspect_raw(container.network_container)
            if other is not None:
                settings = other.get("NetworkSettings") or {}
                ip = str(settings.get("IPAddress") or "") or next(
                    (str(n.get("IPAddress")) for n in (settings.get("Networks") or {}).values() if n.get("IPAddress")),
                    "",
                )
                container = replace(container, network_container_ip=ip)
        return container

    @asynccontextmanager
    async def events(self, since_ns: int) -> AsyncIterator[AsyncIterator[DockerEvent]]:
        """The container event stream from ``since_ns`` (daemon clock) on; it ends when the daemon goes."""
        events = self._api.events
        subscriber = events.subscribe(create_task=False)  # type: ignore[no-untyped-call]
        filters = {"type": ["container"], "event": list(WATCHED_ACTIONS)}
        since = f"{since_ns // 1_000_000_000}.{since_ns % 1_000_000_000:09d}"
        reader = asyncio.create_task(events.run(since=since, filters=filters), name="docker-events")

        async def stream() -> AsyncIterator[DockerEvent]:
            while True:
                item = await subscriber.get()
                if item is None:  # aiodocker publishes None when the stream ends
                    break
                event = DockerEvent.from_json(item)
                if event is not None:
                    yield event
            await asyncio.gather(reader, return_exceptions=True)
            error = reader.exception() if not reader.cancelled() else None
            if error is not None:
                raise DockerUnavailable(f"event stream failed: {error}") from error

        try:
            yield stream()
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    @property
    def _api(self) -> aiodocker.Docker:
        if self._docker is None:
            raise DockerUnavailable("not connected to Docker")
        return self._docker

    async def _inspect_raw(self, container_id: str) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = await self._call(self._api.containers.container(container_id).show())
        except DockerUnavailable as exc:
            if isinstance(exc.__cause__, DockerError) and exc.__cause__.status == 404:
                return None
            raise
        return data

    async def _call(self, request: Any) -> Any:
        """Await one Engine API call; the single place where its failures are mapped."""
        try:
            return await request
        except DockerError as exc:
            raise DockerUnavailable(f"docker at {self.url}: {exc.message} (status {exc.status})") from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise DockerUnavailable(f"docker at {self.url}: {exc or type(exc).__name__}") from exc


async def docker_reachable(url: str, timeout: float = 1.0) -> bool:
    """Does a Docker daemon answer at ``url`` within ``timeout``? (``mesh up`` asks before starting us.)"""
    client = DockerClient(url)
    try:
        async with asyncio.timeout(timeout):
            await client.open()
        return True
    except (DockerUnavailable, TimeoutError, ValueError):
        return False
    finally:
        await client.close()


__all__ = [
    "WATCHED_ACTIONS",
    "ContainerSummary",
    "DockerClient",
    "DockerEvent",
    "DockerUnavailable",
    "docker_reachable",
    "parse_rfc3339_ns",
]
