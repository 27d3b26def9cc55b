"""The config API over real HTTP: apply/get/delete, dry run, errors with paths, 409s, versions, durability."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import yaml

from mesh.control.server import ControlServer
from tests.mesh.rules.helpers import dr, vs, with_path

ROUTE_V1 = vs(http=[{"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}])


def body(*docs: dict[str, Any]) -> bytes:
    return yaml.safe_dump_all(docs).encode()


async def call(
    http: aiohttp.ClientSession, method: str, path: str, data: bytes | None = None, **params: str
) -> tuple[int, Any]:
    async with http.request(method, path, data=data, params=params or None) as response:
        text = await response.text()
        return response.status, json.loads(text) if text else None


async def test_apply_get_list_and_versions(api: aiohttp.ClientSession) -> None:
    status, result = await call(api, "PUT", "/v1/mesh/config", body(dr(), ROUTE_V1))
    assert status == 200, result
    assert result["version"] == 1
    assert result["changed"]
    assert [r["action"] for r in result["resources"]] == ["created", "created"]
    status, again = await call(api, "PUT", "/v1/mesh/config", body(dr(), ROUTE_V1))
    assert again["version"] == 1
    assert not again["changed"]
    assert [r["action"] for r in again["resources"]] == ["unchanged", "unchanged"]
    status, edited = await call(api, "PUT", "/v1/mesh/config", body(with_path(ROUTE_V1, "spec.http[0].timeout", "2s")))
    assert edited["version"] == 2
    assert edited["resources"][0]["action"] == "configured"
    status, one = await call(api, "GET", "/v1/mesh/config/vs/default/reviews")
    assert status == 200
    assert one["metadata"]["resourceVersion"] == "2"
    assert one["metadata"]["generation"] == 2
    assert one["spec"]["http"][0]["timeout"] == "2s"
    assert "creationTimestamp" in one["metadata"]
    status, listed = await call(api, "GET", "/v1/mesh/config", kind="DestinationRule")
    assert listed["version"] == 2
    assert [i["kind"] for i in listed["items"]] == ["DestinationRule"]
    status, everything = await call(api, "GET", "/v1/mesh/config")
    assert len(everything["items"]) == 2


async def test_dry_run_validates_without_changing_anything(api: aiohttp.ClientSession) -> None:
    status, result = await call(api, "PUT", "/v1/mesh/config", body(dr(), ROUTE_V1), dry_run="true")
    assert status == 200
    assert result["dry_run"]
    assert result["version"] == 1
    status, listed = await call(api, "GET", "/v1/mesh/config")
    assert listed == {"version": 0, "items": []}
    status, error = await call(api, "PUT", "/v1/mesh/config", body(ROUTE_V1), dry_run="true")
    assert status == 400
    assert error["path"] == "spec.http[0].route[0].destination.subset"


async def test_errors_name_the_path_document_and_resource(api: aiohttp.ClientSession) -> None:
    bad = with_path(
        vs(
            http=[
                {
                    "route": [
                        {"destination": {"host": "reviews"}, "weight": 60},
                        {"destination": {"host": "ratings"}, "weight": 30},
                    ]
                }
            ]
        ),
        "metadata.name",
        "split",
    )
    status, error = await call(api, "PUT", "/v1/mesh/config", body(dr(), bad))
    assert status == 400
    assert error == {
        "error": "destination weights must add up to 100, got 90 (route[0].weight=60, route[1].weight=30)",
        "path": "spec.http[0].route",
        "document": 1,
        "resource": "VirtualService default/split",
    }
    status, error = await call(api, "PUT", "/v1/mesh/config", b"kind: [oops")
    assert status == 400
    assert "invalid YAML" in error["error"]
    status, error = await call(api, "PUT", "/v1/mesh/config", body(with_path(dr(), "spec.subsets[0].lables", {})))
    assert status == 400
    assert error["path"] == "spec.subsets[0].lables"
    assert "unknown key 'lables'" in error["error"]


async def test_an_apply_is_all_or_nothing(api: aiohttp.ClientSession) -> None:
    good = vs("ratings")
    bad = with_path(vs("details"), "spec.http[0].timeout", "soon")
    status, _ = await call(api, "PUT", "/v1/mesh/config", body(good, bad))
    assert status == 400
    status, listed = await call(api, "GET", "/v1/mesh/config")
    assert listed["items"] == []
    assert listed["version"] == 0
    conflicting = vs("reviews-2", hosts=["reviews"])
    status, error = await call(api, "PUT", "/v1/mesh/config", body(vs(), conflicting))
    assert status == 400
    assert error["resource"] == "VirtualService default/reviews-2"
    assert error["document"] == 1
    status, listed = await call(api, "GET", "/v1/mesh/config")
    assert listed["items"] == []


async def test_resource_version_conflicts_are_409(api: aiohttp.ClientSession) -> None:
    await call(api, "PUT", "/v1/mesh/config", body(vs()))
    status, current = await call(api, "GET", "/v1/mesh/config/VirtualService/default/reviews")
    edit = with_path(current, "spec.http[0].timeout", "1s")
    status, result = await call(api, "PUT", "/v1/mesh/config", body(edit))
    assert status == 200
    assert result["version"] == 2
    status, error = await call(api, "PUT", "/v1/mesh/config", body(with_path(edit, "spec.http[0].timeout", "9s")))
    assert status == 409
    assert error["path"] == "metadata.resourceVersion"
    assert "out of date" in error["error"]
    status, error = await call(api, "DELETE", "/v1/mesh/config/vs/default/reviews", resourceVersion="1")
    assert status == 409
    status, done = await call(api, "DELETE", "/v1/mesh/config/vs/default/reviews", resourceVersion="2")
    assert status == 200
    assert done["version"] == 3
    assert done["resources"][0]["action"] == "deleted"


async def test_not_found_answers(api: aiohttp.ClientSession) -> None:
    status, error = await call(api, "GET", "/v1/mesh/config/vs/default/nothing")
    assert status == 404
    assert "not found" in error["error"]
    status, error = await call(api, "GET", "/v1/mesh/config/Widget/default/x")
    assert status == 404
    assert "unknown kind" in error["error"]
    status, error = await call(api, "DELETE", "/v1/mesh/config/dr/default/nothing")
    assert status == 404
    status, error = await call(api, "GET", "/v1/mesh/sync/nobody")
    assert status == 404
    assert "register" in error["error"]
    status, error = await call(api, "GET", "/v1/mesh/nowhere")
    assert status == 404
    assert "error" in error


async def test_deleting_a_rule_in_use_is_refused(api: aiohttp.ClientSession) -> None:
    await call(api, "PUT", "/v1/mesh/config", body(dr(), ROUTE_V1))
    status, error = await call(api, "DELETE", "/v1/mesh/config/DestinationRule/default/reviews")
    assert status == 400
    assert error["resource"] == "VirtualService default/reviews"
    assert error["path"] == "spec.http[0].route[0].destination.subset"


async def test_versions_are_monotonic_under_concurrent_applies(api: aiohttp.ClientSession) -> None:
    async def one(i: int) -> int:
        status, result = await call(api, "PUT", "/v1/mesh/config", body(vs(f"svc-{i}")))
        assert status == 200, result
        return int(result["version"])

    versions = await asyncio.gather(*(one(i) for i in range(10)))
    assert sorted(versions) == list(range(1, 11))


async def test_configuration_survives_a_restart(start_control: Callable[..., Any]) -> None:
    first: ControlServer = await start_control()
    async with aiohttp.ClientSession(base_url=first.url) as http:
        await call(http, "PUT", "/v1/mesh/config", body(dr(), ROUTE_V1))
        await call(http, "PUT", "/v1/mesh/config", body(vs("ratings")))
    await first.stop()
    second: ControlServer = await start_control()
    async with aiohttp.ClientSession(base_url=second.url) as http:
        _, listed = await call(http, "GET", "/v1/mesh/config")
        assert listed["version"] == 2
        assert len(listed["items"]) == 3
        _status, result = await call(http, "PUT", "/v1/mesh/config", body(vs("details")))
        assert result["version"] == 3


async def test_openapi_and_ops_endpoints(api: aiohttp.ClientSession) -> None:
    status, spec = await call(api, "GET", "/openapi.json")
    assert status == 200
    assert "/v1/mesh/config" in spec["paths"]
    assert spec["openapi"].startswith("3.")
    for path in ("/healthz", "/readyz"):
        async with api.get(path) as response:
            assert response.status == 200
    await call(api, "PUT", "/v1/mesh/config", body(vs()))
    async with api.get("/metrics") as response:
        text = await response.text()
    assert "mesh_control_config_version 1.0" in text
    assert 'mesh_control_resources{kind="VirtualService"} 1.0' in text


async def test_explain_requires_source_and_host(api: aiohttp.ClientSession) -> None:
    status, error = await call(api, "GET", "/v1/mesh/explain", host="reviews")
    assert status == 400
    assert error["path"] == "source"
    status, error = await call(api, "GET", "/v1/mesh/explain", source="a", host="reviews", headers="broken")
    assert status == 400
    assert error["path"] == "headers"


async def test_two_control_planes_share_a_consul_store(start_control: Callable[..., Any], tmp_path: Any) -> None:
    a: ControlServer = await start_control(store="consul", consul_prefix="shared/mesh", data_dir=tmp_path / "a")
    b: ControlServer = await start_control(store="consul", consul_prefix="shared/mesh", data_dir=tmp_path / "b")
    async with aiohttp.ClientSession(base_url=a.url) as http_a, aiohttp.ClientSession(base_url=b.url) as http_b:
        status, result = await call(http_a, "PUT", "/v1/mesh/config", body(dr()))
        assert status == 200
        assert result["version"] == 1
        # b plans on its own view; its CAS loses if it has not seen a's commit yet, and it re-plans
        status, result = await call(http_b, "PUT", "/v1/mesh/config", body(ROUTE_V1))
        assert status == 200, result
        assert result["version"] == 2
        for _ in range(100):
            status, listed = await call(http_a, "GET", "/v1/mesh/config")
            if listed["version"] == 2:
                break
            await asyncio.sleep(0.02)
        assert listed["version"] == 2
        assert len(listed["items"]) == 2

        async def apply(http: aiohttp.ClientSession, name: str) -> int:
            status, result = await call(http, "PUT", "/v1/mesh/config", body(vs(name)))
            assert status == 200, result
            return int(result["version"])

        versions = await asyncio.gather(*(apply(http_a if i % 2 else http_b, f"svc-{i}") for i in range(6)))
        assert sorted(versions) == list(range(3, 9))
        conflict = with_path(vs("svc-0"), "metadata.resourceVersion", "1")
        status, _error = await call(http_a, "PUT", "/v1/mesh/config", body(conflict))
        assert status == 409


async def test_sidecar_registration_and_reports_over_http(api: aiohttp.ClientSession) -> None:
    registration = {
        "service": "productpage",
        "labels": {"app": "productpage"},
        "bootstrap": {"listeners": [{"name": "l", "protocol": "tcp", "port": 1, "cluster": "nope"}]},
    }
    status, error = await call(api, "PUT", "/v1/mesh/sidecars/pp-1", json.dumps(registration).encode())
    assert status == 400
    assert error["path"] == "bootstrap.listeners[0].cluster"
    registration["bootstrap"] = {}
    status, _ = await call(api, "PUT", "/v1/mesh/sidecars/pp-1", json.dumps(registration).encode())
    assert status == 200
    status, snapshot = await call(api, "GET", "/v1/mesh/sync/pp-1", wait="5s")
    assert status == 200
    version = snapshot["version"]
    status, _ = await call(api, "GET", "/v1/mesh/sync/pp-1", version=version, wait="0s", nack=version, error="bad")
    assert status == 304
    _, report = await call(api, "GET", "/v1/mesh/status")
    assert report["sidecars"][0]["last_nack"]["error"] == "bad"
    status, _ = await call(api, "POST", "/v1/mesh/sync/pp-1/ack", json.dumps({"version": version}).encode())
    assert status == 204
    _, report = await call(api, "GET", "/v1/mesh/status")
    assert report["sidecars"][0]["in_sync"]
    status, _ = await call(api, "DELETE", "/v1/mesh/sidecars/pp-1")
    assert status == 200
    status, _ = await call(api, "GET", "/v1/mesh/sync/pp-1")
    assert status == 404


async def test_every_api_route_is_in_the_openapi_document(control: ControlServer) -> None:
    async with aiohttp.ClientSession(base_url=control.url) as http:
        _, spec = await call(http, "GET", "/openapi.json")
    runner = control._runner
    assert runner is not None
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in runner.app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/v1/") and route.method != "HEAD"
    }
    documented = {(method, path) for path, item in spec["paths"].items() for method in item}
    assert served - documented == set()
