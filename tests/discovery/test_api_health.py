"""/v1/health/*: service entries with instance + node checks, passing/tag filters, checks by state and node."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.discovery.helpers import (
    HEALTH_CHECK_FIELDS,
    NODE_FIELDS,
    catalog_register,
    get,
    ok_json,
    register_check,
    register_service,
    ttl,
    web_service,
)


async def web_with_ttl(
    http: aiohttp.ClientSession, service_id: str, status: str, tags: list[str] | None = None
) -> None:
    """An agent service whose single TTL check is put into ``status``."""
    await register_service(http, web_service(service_id, Tags=tags or ["v1"], Check={"TTL": "30s"}))
    action = {"passing": "pass", "warning": "warn", "critical": "fail"}[status]
    assert (await ttl(http, action, f"service:{service_id}")).status == 200


async def health_ids(http: aiohttp.ClientSession, name: str, params: Any = None) -> list[str]:
    return [e["Service"]["ID"] for e in await ok_json(http, f"/v1/health/service/{name}", params)]


async def test_service_entry_shape_includes_node_checks(http: aiohttp.ClientSession) -> None:
    await web_with_ttl(http, "web-1", "passing")
    reply = await get(http, "/v1/health/service/web")
    assert reply.status == 200
    assert reply.index >= 1
    [entry] = reply.json
    assert set(entry) == {"Node", "Service", "Checks"}
    assert set(entry["Node"]) >= NODE_FIELDS
    assert entry["Node"]["Node"] == "node1"
    service = entry["Service"]
    assert (service["ID"], service["Service"], service["Port"], service["Tags"]) == ("web-1", "web", 8080, ["v1"])
    assert {"CreateIndex", "ModifyIndex", "Weights", "Meta", "Address"} <= set(service)
    checks = {c["CheckID"]: c for c in entry["Checks"]}
    assert sorted(checks) == ["serfHealth", "service:web-1"]
    for check in checks.values():
        assert set(check) >= HEALTH_CHECK_FIELDS
    assert checks["serfHealth"]["ServiceID"] == ""
    assert checks["serfHealth"]["Name"] == "Serf Health Status"
    assert checks["service:web-1"]["ServiceTags"] == ["v1"]


async def test_service_entry_checks_are_only_its_own(http: aiohttp.ClientSession) -> None:
    await web_with_ttl(http, "web-1", "passing")
    await web_with_ttl(http, "web-2", "critical")
    by_id = {e["Service"]["ID"]: e for e in await ok_json(http, "/v1/health/service/web")}
    assert {c["CheckID"] for c in by_id["web-1"]["Checks"]} == {"serfHealth", "service:web-1"}
    assert {c["CheckID"] for c in by_id["web-2"]["Checks"]} == {"serfHealth", "service:web-2"}


async def test_unknown_service_is_empty_list_with_index(http: aiohttp.ClientSession) -> None:
    reply = await get(http, "/v1/health/service/ghost")
    assert (reply.status, reply.json) == (200, [])
    assert reply.index >= 1


async def test_health_is_not_filtered_without_passing(http: aiohttp.ClientSession) -> None:
    await web_with_ttl(http, "web-1", "passing")
    await web_with_ttl(http, "web-2", "warning")
    await web_with_ttl(http, "web-3", "critical")
    assert await health_ids(http, "web") == ["web-1", "web-2", "web-3"]


@pytest.mark.parametrize("value", ["", "1", "true", "True", "t"])
async def test_passing_keeps_only_all_passing_instances(http: aiohttp.ClientSession, value: str) -> None:
    await web_with_ttl(http, "web-1", "passing")
    await web_with_ttl(http, "web-2", "warning")
    await web_with_ttl(http, "web-3", "critical")
    assert await health_ids(http, "web", {"passing": value}) == ["web-1"]


@pytest.mark.parametrize("value", ["false", "0", "F"])
async def test_passing_false_keeps_everything(http: aiohttp.ClientSession, value: str) -> None:
    await web_with_ttl(http, "web-1", "passing")
    await web_with_ttl(http, "web-2", "critical")
    assert await health_ids(http, "web", {"passing": value}) == ["web-1", "web-2"]


async def test_passing_bad_value_is_400(http: aiohttp.ClientSession) -> None:
    reply = await get(http, "/v1/health/service/web", {"passing": "yes"})
    assert reply.status == 400
    assert "passing" in reply.text


async def test_warning_node_check_drops_instances_from_passing(http: aiohttp.ClientSession) -> None:
    await web_with_ttl(http, "web-1", "passing")
    await register_check(http, {"Name": "node-load", "TTL": "30s"})
    await ttl(http, "warn", "node-load")
    [entry] = await ok_json(http, "/v1/health/service/web")
    assert {c["CheckID"] for c in entry["Checks"]} == {"serfHealth", "service:web-1", "node-load"}
    assert await health_ids(http, "web", {"passing": "1"}) == []
    await ttl(http, "pass", "node-load")
    assert await health_ids(http, "web", {"passing": "1"}) == ["web-1"]


async def test_instance_without_checks_is_passing(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service())
    assert await health_ids(http, "web", {"passing": "1"}) == ["web-1"]


async def test_tag_filter(http: aiohttp.ClientSession) -> None:
    await web_with_ttl(http, "web-1", "passing", ["primary", "v1"])
    await web_with_ttl(http, "web-2", "passing", ["v1"])
    assert await health_ids(http, "web", {"tag": "PRIMARY"}) == ["web-1"]
    assert await health_ids(http, "web", [("tag", "v1"), ("tag", "primary")]) == ["web-1"]
    assert await health_ids(http, "web", [("tag", "v1"), ("tag", "nope")]) == []
    assert await health_ids(http, "web", {"tag": "v1", "passing": "1"}) == ["web-1", "web-2"]


async def test_node_meta_filter(http: aiohttp.ClientSession) -> None:
    await catalog_register(
        http, {"Node": "n2", "Address": "10.0.0.2", "NodeMeta": {"zone": "b"}, "Service": {"Service": "web"}}
    )
    await register_service(http, web_service())
    assert sorted(await health_ids(http, "web")) == ["web", "web-1"]
    assert await health_ids(http, "web", {"node-meta": "zone:b"}) == ["web"]


async def test_checks_of_service(http: aiohttp.ClientSession) -> None:
    await web_with_ttl(http, "web-1", "passing")
    await register_service(http, web_service("api", "api", Check={"TTL": "30s"}))
    reply = await get(http, "/v1/health/checks/web")
    assert reply.status == 200
    assert reply.index >= 1
    assert [(c["CheckID"], c["Status"], c["ServiceName"]) for c in reply.json] == [("service:web-1", "passing", "web")]
    assert await ok_json(http, "/v1/health/checks/ghost") == []


async def test_checks_by_state(http: aiohttp.ClientSession) -> None:
    await web_with_ttl(http, "web-1", "passing")
    await web_with_ttl(http, "web-2", "warning")
    await web_with_ttl(http, "web-3", "critical")

    async def ids(state: str) -> set[str]:
        reply = await get(http, f"/v1/health/state/{state}")
        assert reply.status == 200, reply.text
        assert reply.index >= 1
        return {c["CheckID"] for c in reply.json}

    assert await ids("passing") == {"serfHealth", "service:web-1"}
    assert await ids("warning") == {"service:web-2"}
    assert await ids("critical") == {"service:web-3"}
    assert await ids("any") == {"serfHealth", "service:web-1", "service:web-2", "service:web-3"}


async def test_checks_by_state_follow_status_changes(http: aiohttp.ClientSession) -> None:
    await web_with_ttl(http, "web-1", "critical")
    await ttl(http, "pass", "service:web-1")
    assert await ok_json(http, "/v1/health/state/critical") == []


@pytest.mark.parametrize("state", ["unknown", "PASSING", "maintenance"])
async def test_bad_state_is_400(http: aiohttp.ClientSession, state: str) -> None:
    reply = await get(http, f"/v1/health/state/{state}")
    assert reply.status == 400
    assert state in reply.text


async def test_checks_of_node(http: aiohttp.ClientSession) -> None:
    await web_with_ttl(http, "web-1", "warning")
    reply = await get(http, "/v1/health/node/node1")
    assert reply.status == 200
    assert reply.index >= 1
    assert [(c["CheckID"], c["Status"]) for c in reply.json] == [
        ("serfHealth", "passing"),
        ("service:web-1", "warning"),
    ]
    assert await ok_json(http, "/v1/health/node/ghost") == []


async def test_state_node_meta_filter_follows_node_meta_changes(http: aiohttp.ClientSession) -> None:
    """health/state?node-meta must see a node whose meta changes to match (and move its index)."""
    node = {"Node": "n2", "Address": "10.0.0.2", "Check": {"Name": "alive", "Status": "passing"}}
    await catalog_register(http, {**node, "NodeMeta": {"zone": "a"}})
    before = await get(http, "/v1/health/state/any", {"node-meta": "zone:b"})
    assert before.json == []
    await catalog_register(http, {**node, "NodeMeta": {"zone": "b"}})
    after = await get(http, "/v1/health/state/any", {"node-meta": "zone:b"})
    assert [c["CheckID"] for c in after.json] == ["alive"]
    assert after.index > before.index
