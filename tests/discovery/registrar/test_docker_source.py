"""The Docker edge: event and clock parsing (pure), then the real daemon: inspect, list, events."""

from __future__ import annotations

import asyncio
import time

import pytest

from discovery.registrar.docker_source import (
    DockerClient,
    DockerEvent,
    DockerUnavailable,
    docker_reachable,
    parse_rfc3339_ns,
)
from tests.discovery.registrar.conftest import Containers, docker_command


def test_event_parsing() -> None:
    event = DockerEvent.from_json(
        {
            "Type": "container",
            "Action": "health_status: healthy",
            "Actor": {"ID": "abc", "Attributes": {"name": "web", "exitCode": "3"}},
            "timeNano": 1700000000123456789,
        }
    )
    assert event == DockerEvent("health_status", "abc", 1700000000123456789, name="web", exit_code=3)
    assert DockerEvent.from_json({"Type": "network", "Action": "connect", "Actor": {"ID": "n"}}) is None
    assert DockerEvent.from_json({"Type": "container", "Action": "", "Actor": {"ID": "x"}}) is None


def test_rfc3339_with_nanoseconds() -> None:
    assert parse_rfc3339_ns("2023-11-14T22:13:20.123456789Z") == 1700000000123456789
    assert parse_rfc3339_ns("2023-11-14T23:13:20.5+01:00") == 1700000000500000000
    assert parse_rfc3339_ns("2023-11-14T22:13:20Z") == 1700000000000000000
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_rfc3339_ns("yesterday")


async def test_unreachable_daemon_is_reported_as_unavailable(tmp_path: object) -> None:
    client = DockerClient("unix:///nonexistent/docker.sock")
    with pytest.raises(DockerUnavailable, match="nonexistent"):
        await client.open()
    await client.close()
    assert not await docker_reachable("unix:///nonexistent/docker.sock")


async def test_inspect_list_and_missing_container(containers: Containers, docker_daemon: str) -> None:
    client = DockerClient("unix:///var/run/docker.sock")
    await client.open()
    try:
        cid = await containers.run("-p", "127.0.0.1::80", "-e", "SERVICE_NAME=x")
        container = await client.inspect(cid)
        assert container is not None
        assert container.running
        assert container.ports["80/tcp"] is not None
        assert "SERVICE_NAME=x" in container.env
        summaries = {s.id: s for s in await client.list_containers()}
        assert summaries[cid].state == "running"
        assert await client.inspect("0" * 64) is None
        now = time.time_ns()
        assert abs(await client.daemon_time_ns() - now) < 5e9
    finally:
        await client.close()


async def test_events_since_replays_what_happened_before_subscribing(
    containers: Containers, docker_daemon: str
) -> None:
    client = DockerClient("unix:///var/run/docker.sock")
    await client.open()
    try:
        since = await client.daemon_time_ns()
        cid = await containers.run()  # started before we subscribe...
        async with client.events(since) as events:
            # ...yet its start arrives: the stream begins at `since`
            async def first_start() -> DockerEvent:
                async for event in events:
                    if event.container_id == cid and event.action == "start":
                        return event
                raise AssertionError("stream ended")

            event = await asyncio.wait_for(first_start(), 20)
            assert event.time_ns >= since
            await docker_command("kill", cid)

            async def die() -> DockerEvent:
                async for event in events:
                    if event.container_id == cid and event.action == "die":
                        return event
                raise AssertionError("stream ended")

            died = await asyncio.wait_for(die(), 20)
            assert died.exit_code == 137
    finally:
        await client.close()
