"""Istio's outboundTrafficPolicy at a real outbound listener: ALLOW_ANY passes Hosts no route knows to
where they were headed (PassthroughCluster), REGISTRY_ONLY answers 404; mesh Hosts route as ever."""

from __future__ import annotations

from typing import Any

import pytest

from mesh.model.dump import snapshot_to_dict
from mesh.model.parse import parse_snapshot
from mesh.model.reader import ConfigError
from sidecar.http1.dispatch import original_destination
from tests.sidecar.conftest import BackendFactory, SidecarFactory
from tests.sidecar.helpers import simple_config
from tests.sidecar.test_observability import outbound_port, samples, send


def with_policy(config: dict[str, Any], policy: str) -> dict[str, Any]:
    return {**config, "outbound_traffic_policy": policy}


async def test_allow_any_passes_unknown_hosts_through(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    mesh, outside = await backend_factory("mesh"), await backend_factory("outside")
    sidecar = await sidecar_factory(with_policy(simple_config([mesh]), "ALLOW_ANY"))
    port = outbound_port(sidecar)
    status, body = await send(port, "web", "/in-mesh")
    assert (status, body["backend"]) == (200, "mesh")
    for host in (f"localhost:{outside.port}", f"127.0.0.1:{outside.port}"):
        status, body = await send(port, host, "/outside")
        assert (status, body["backend"]) == (200, "outside")
    assert outside.seen[-1]["headers"]["host"] == f"127.0.0.1:{outside.port}"  # the Host is kept
    passthrough = [
        labels
        for labels, value in samples(sidecar, "istio_requests_total")
        if labels["destination_service"] == "PassthroughCluster"
    ]
    assert len(passthrough) == 1
    assert passthrough[0]["response_code"] == "200"
    status, text = await send(port, "user@host", "/")
    assert status == 400
    assert "no destination in Host 'user@host'" in text


async def test_registry_only_answers_404(backend_factory: BackendFactory, sidecar_factory: SidecarFactory) -> None:
    mesh, outside = await backend_factory("mesh"), await backend_factory("outside")
    sidecar = await sidecar_factory(simple_config([mesh]))  # REGISTRY_ONLY is the default
    status, text = await send(outbound_port(sidecar), f"127.0.0.1:{outside.port}", "/")
    assert status == 404
    assert "no route for host" in text
    assert outside.seen == []


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("example.com", ("example.com", 80)),
        ("Example.COM:8080", ("example.com", 8080)),
        ("10.0.0.1:9080", ("10.0.0.1", 9080)),
        ("[::1]:8080", ("::1", 8080)),
        ("[::1]", ("::1", 80)),
        ("", None),
        ("a:b:c", None),
        ("host:0", None),
        ("host:70000", None),
        ("[::1", None),
        ("user@host", None),
    ],
)
def test_original_destination_of_a_host(host: str, expected: tuple[str, int] | None) -> None:
    endpoint = original_destination(host)
    assert (None if endpoint is None else (endpoint.host, endpoint.port)) == expected


def test_an_original_destination_cluster_has_no_endpoints() -> None:
    config = simple_config([])
    config["clusters"][0]["endpoints"] = [{"host": "127.0.0.1", "port": 1}]
    config["clusters"][0]["original_destination"] = True
    with pytest.raises(ConfigError) as info:
        parse_snapshot(config)
    assert info.value.path == "clusters[0].original_destination"


def test_allow_any_snapshots_carry_the_passthrough_cluster_and_round_trip() -> None:
    snapshot = parse_snapshot(with_policy(simple_config([]), "ALLOW_ANY"))
    assert snapshot.clusters["PassthroughCluster"].original_destination
    assert parse_snapshot(snapshot_to_dict(snapshot)) == snapshot
    with pytest.raises(ConfigError) as info:
        parse_snapshot(with_policy(simple_config([]), "allow_any"))
    assert info.value.path == "outbound_traffic_policy"


async def test_on_demand_hosts_are_asked_about_before_passing_through(
    backend_factory: BackendFactory, sidecar_factory: SidecarFactory
) -> None:
    """With a source that learns services on demand (registry or control plane), an unknown Host is first
    asked about; only a Host the mesh does not know goes out through PassthroughCluster."""
    mesh, outside = await backend_factory("mesh"), await backend_factory("outside")
    asked: list[str] = []

    async def demand(host: str) -> bool:
        asked.append(host)
        if host != "late":
            return False
        config = with_policy(simple_config([mesh], host="late", version="v2"), "ALLOW_ANY")
        assert sidecar.apply(parse_snapshot(config)).ok
        await sidecar.settle()
        return True

    sidecar = await sidecar_factory(with_policy(simple_config([mesh]), "ALLOW_ANY"), demand=demand)
    port = outbound_port(sidecar)
    status, body = await send(port, "late", "/")
    assert (status, body["backend"]) == (200, "mesh")  # a mesh service, learned on demand
    status, body = await send(port, f"127.0.0.1:{outside.port}", "/")
    assert (status, body["backend"]) == (200, "outside")
    assert asked == ["late", f"127.0.0.1:{outside.port}"]
