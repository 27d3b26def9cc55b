"""Config swaps, listener changes, NACKs and drain on a running sidecar."""

from __future__ import annotations

import asyncio
import collections
import copy
import socket
import time

import aiohttp
import pytest

from mesh.model.parse import parse_snapshot
from tests.sidecar.conftest import BackendFactory, SidecarFactory
from tests.sidecar.helpers import cluster, http_config, simple_config


def two_way_config(version: str, weights: tuple[int, int], backends: list, extra_route: bool) -> dict:  # type: ignore[type-arg]
    routes = [
        {
            "name": "split",
            "match": {"prefix": "/"},
            "clusters": [{"name": "blue", "weight": weights[0]}, {"name": "green", "weight": weights[1]}],
        }
    ]
    if extra_route:
        routes.insert(0, {"name": "extra", "match": {"prefix": "/extra"}, "cluster": "green"})
    return http_config(
        [
            cluster("blue", backends[:2], lb={"kind": "round_robin"}),
            cluster("green", backends[2:], lb={"kind": "least_request"}),
        ],
        [{"name": "web", "domains": ["web"], "routes": routes}],
        version=version,
    )


@pytest.mark.slow
async def test_100_swaps_under_load_fail_no_request(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    """A load loop runs while the config is swapped 100 times (weights, routes, policies, endpoint
    sets change each time): every request must succeed."""
    backends = [await backend_factory(name) for name in ("b1", "b2", "g1", "g2")]
    sidecar = await sidecar_factory(two_way_config("v0", (50, 50), backends, False))
    port = sidecar.listener_port("outbound")
    outcomes: collections.Counter[object] = collections.Counter()
    stop = asyncio.Event()

    async def load(session: aiohttp.ClientSession, worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            path = "/extra/x" if n % 3 == 0 else f"/w{worker}/{n}"
            body = b"p" * (n % 5) * 100
            try:
                async with session.post(f"http://127.0.0.1:{port}{path}", headers={"Host": "web"}, data=body) as r:
                    payload = await r.json()
                    outcomes[r.status] += 1
                    assert payload["body_len"] == len(body)
            except Exception as exc:  # any failure is counted, not raised: the test reports them all
                outcomes[type(exc).__name__] += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as session:
        workers = [asyncio.create_task(load(session, i)) for i in range(16)]
        await asyncio.sleep(0.2)
        versions = []
        for i in range(1, 101):
            subset = backends if i % 2 else [backends[0], backends[1], backends[2], backends[2]][:3]
            config = two_way_config(f"v{i}", (i % 7 + 1, 7 - i % 7 + 1), subset, bool(i % 2))
            result = sidecar.apply(parse_snapshot(config))
            assert result.ok, result.error
            versions.append(sidecar.active.version)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*workers)
    assert versions[-1] == "v100"
    assert sidecar.metrics.config_applied == 101
    assert set(outcomes) == {200}, outcomes
    assert outcomes[200] > 300


async def test_in_flight_requests_finish_on_their_snapshot(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    old, new = await backend_factory("old"), await backend_factory("new")
    sidecar = await sidecar_factory(simple_config([old], version="a"))
    port = sidecar.listener_port("outbound")
    async with aiohttp.ClientSession() as session:
        slow = asyncio.create_task(session.get(f"http://127.0.0.1:{port}/slow?delay=0.5", headers={"Host": "web"}))
        await asyncio.sleep(0.15)
        assert sidecar.apply(parse_snapshot(simple_config([new], version="b"))).ok
        async with session.get(f"http://127.0.0.1:{port}/now", headers={"Host": "web"}) as after:
            assert (await after.json())["backend"] == "new"
        response = await slow
        assert response.status == 200
        assert await response.text() == "slow old"


async def test_bad_snapshot_is_rejected_and_the_old_one_stays(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    web = await backend_factory("web")
    sidecar = await sidecar_factory(simple_config([web], version="good"))
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    config = simple_config([web], version="bad")
    config["listeners"].append(
        {"name": "extra", "protocol": "http", "host": "127.0.0.1", "port": taken, "route_table": "out"}
    )
    result = sidecar.apply(parse_snapshot(config))
    blocker.close()
    assert not result.ok
    assert "cannot listen on 127.0.0.1" in (result.error or "")
    assert sidecar.active.version == "good"
    dump = sidecar.config_dump()
    assert dump["version"] == "good"
    assert dump["last_rejected"]["version"] == "bad"
    assert sidecar.metrics.config_rejected == 1


async def test_listeners_are_added_and_removed_by_swaps(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    web = await backend_factory("web")
    base = simple_config([web], version="1")
    sidecar = await sidecar_factory(base)
    more = copy.deepcopy(base)
    more["version"] = "2"
    more["listeners"].append(
        {"name": "second", "protocol": "http", "host": "127.0.0.1", "port": 0, "route_table": "out"}
    )
    assert sidecar.apply(parse_snapshot(more)).ok
    await sidecar.settle()
    second = sidecar.listener_port("second")
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{second}/", headers={"Host": "web"}) as response,
    ):
        assert response.status == 200
    assert sidecar.apply(parse_snapshot({**base, "version": "3"})).ok
    await sidecar.settle()
    with pytest.raises(KeyError):
        sidecar.listener_port("second")
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", second)


async def test_drain_finishes_in_flight_and_stops_accepting(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    web = await backend_factory("web")
    sidecar = await sidecar_factory(simple_config([web]))
    port = sidecar.listener_port("outbound")
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
    async with aiohttp.ClientSession() as session:
        slow = asyncio.create_task(session.get(f"http://127.0.0.1:{port}/slow?delay=0.5", headers={"Host": "web"}))
        await asyncio.sleep(0.15)
        started = time.monotonic()
        sidecar.start_drain()
        assert sidecar.readiness() == "DRAINING"
        async with asyncio.timeout(2):
            assert await idle_reader.read() == b""  # idle keep-alive connection closed at once
        assert time.monotonic() - started < 0.3
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
        response = await slow
        assert response.status == 200
        assert response.headers["Connection"] == "close"
        assert await response.text() == "slow web"
    idle_writer.close()
    assert await sidecar.wait_drained(2.0)
