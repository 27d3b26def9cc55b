"""/v1/catalog/*: register/deregister, nodes, services, service and node reads with index headers."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.discovery.helpers import (
    AGENT_SERVICE_FIELDS,
    CATALOG_SERVICE_FIELDS,
    NODE_FIELDS,
    catalog_register,
    get,
    ok_json,
    put,
)


def node_body(node: str = "db1", address: str = "10.0.0.10", **extra: Any) -> dict[str, Any]:
    return {"Node": node, "Address": address, **extra}


def service_body(service_id: str, name: str = "db", tags: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    return {"ID": service_id, "Service": name, "Tags": list(tags), "Port": 5432, **extra}


async def register_db(http: aiohttp.ClientSession, node: str = "db1", service_id: str = "db-1", **extra: Any) -> None:
    await catalog_register(http, node_body(node, Service=service_body(service_id), **extra))


async def deregister(http: aiohttp.ClientSession, body: dict[str, Any]) -> None:
    reply = await put(http, "/v1/catalog/deregister", body)
    assert reply.status == 200, reply.text
    assert reply.json is True


async def service_ids(http: aiohttp.ClientSession, name: str, params: Any = None) -> list[str]:
    return [e["ServiceID"] for e in await ok_json(http, f"/v1/catalog/service/{name}", params)]


# --- register and reads ---


async def test_register_node_service_and_check(http: aiohttp.ClientSession) -> None:
    await catalog_register(
        http,
        node_body(
            NodeMeta={"rack": "r1"},
            Service=service_body("db-1", tags=("primary",), Meta={"engine": "pg"}),
            Check={"CheckID": "db-ok", "Name": "db ok", "Status": "passing", "ServiceID": "db-1"},
        ),
    )
    [entry] = await ok_json(http, "/v1/catalog/service/db")
    assert set(entry) >= CATALOG_SERVICE_FIELDS
    assert entry["Node"] == "db1"
    assert entry["Address"] == "10.0.0.10"
    assert entry["Datacenter"] == "dc1"
    assert entry["NodeMeta"] == {"rack": "r1"}
    assert entry["ServiceID"] == "db-1"
    assert entry["ServiceName"] == "db"
    assert entry["ServiceTags"] == ["primary"]
    assert entry["ServiceAddress"] == ""
    assert entry["ServicePort"] == 5432
    assert entry["ServiceMeta"] == {"engine": "pg"}
    assert entry["ServiceWeights"] == {"Passing": 1, "Warning": 1}
    assert entry["CreateIndex"] <= entry["ModifyIndex"]
    [check] = await ok_json(http, "/v1/health/checks/db")
    assert (check["CheckID"], check["Status"], check["ServiceName"]) == ("db-ok", "passing", "db")


async def test_service_id_defaults_to_name_and_check_id_to_name(http: aiohttp.ClientSession) -> None:
    await catalog_register(
        http, node_body(Service={"Service": "cache"}, Check={"Name": "node-alive", "Status": "warning"})
    )
    assert await service_ids(http, "cache") == ["cache"]
    checks = await ok_json(http, "/v1/health/node/db1")
    assert [(c["CheckID"], c["Name"], c["Status"], c["ServiceID"]) for c in checks] == [
        ("node-alive", "node-alive", "warning", "")
    ]


async def test_catalog_check_status_defaults_to_critical(http: aiohttp.ClientSession) -> None:
    await catalog_register(http, node_body(Check={"Name": "n"}))
    [check] = await ok_json(http, "/v1/health/node/db1")
    assert check["Status"] == "critical"


async def test_nodes_shape_and_index(http: aiohttp.ClientSession) -> None:
    await catalog_register(
        http, node_body(ID="7f3b1c2a-0000-4000-8000-000000000001", TaggedAddresses={"wan": "1.2.3.4"})
    )
    reply = await get(http, "/v1/catalog/nodes")
    assert reply.status == 200
    assert reply.index >= 1
    by_name = {n["Node"]: n for n in reply.json}
    assert sorted(by_name) == ["db1", "node1"]
    db1 = by_name["db1"]
    assert set(db1) >= NODE_FIELDS
    assert db1["ID"] == "7f3b1c2a-0000-4000-8000-000000000001"
    assert db1["Address"] == "10.0.0.10"
    assert db1["TaggedAddresses"] == {"wan": "1.2.3.4"}
    assert db1["Meta"] == {}
    assert by_name["node1"]["Address"] == "127.0.0.1"


async def test_read_headers(http: aiohttp.ClientSession) -> None:
    reply = await get(http, "/v1/catalog/nodes")
    assert reply.headers["X-Consul-KnownLeader"] == "true"
    assert reply.headers["X-Consul-LastContact"] == "0"
    assert reply.headers["X-Consul-Effective-Consistency"] == "leader"
    assert reply.headers["Content-Type"].startswith("application/json")
    stale = await get(http, "/v1/catalog/nodes", {"stale": ""})
    assert stale.headers["X-Consul-Effective-Consistency"] == "stale"


async def test_index_moves_with_writes(http: aiohttp.ClientSession) -> None:
    before = (await get(http, "/v1/catalog/service/db")).index
    await register_db(http)
    after = (await get(http, "/v1/catalog/service/db")).index
    assert after > before
    [entry] = await ok_json(http, "/v1/catalog/service/db")
    assert entry["ModifyIndex"] == after


async def test_services_lists_names_with_unique_tags(http: aiohttp.ClientSession) -> None:
    await catalog_register(http, node_body("db1", Service=service_body("db-1", tags=("b", "a"))))
    await catalog_register(http, node_body("db2", "10.0.0.11", Service=service_body("db-2", tags=("a", "c"))))
    await catalog_register(http, node_body("db2", "10.0.0.11", Service={"Service": "plain"}))
    reply = await get(http, "/v1/catalog/services")
    assert reply.index >= 1
    assert reply.json == {"db": ["a", "b", "c"], "plain": []}


async def test_service_tag_filter_is_case_insensitive_and_anded(http: aiohttp.ClientSession) -> None:
    await catalog_register(http, node_body("n1", Service=service_body("db-1", tags=("Primary", "v1"))))
    await catalog_register(http, node_body("n2", Service=service_body("db-2", tags=("replica", "v1"))))
    assert await service_ids(http, "db", {"tag": "primary"}) == ["db-1"]
    assert await service_ids(http, "db", {"tag": "V1"}) == ["db-1", "db-2"]
    assert await service_ids(http, "db", [("tag", "v1"), ("tag", "REPLICA")]) == ["db-2"]
    assert await service_ids(http, "db", [("tag", "primary"), ("tag", "replica")]) == []


async def test_node_meta_filter(http: aiohttp.ClientSession) -> None:
    await catalog_register(http, node_body("n1", NodeMeta={"rack": "r1"}, Service=service_body("db-1")))
    await catalog_register(http, node_body("n2", NodeMeta={"rack": "r2"}, Service=service_body("db-2")))
    await catalog_register(http, node_body("n2", NodeMeta={"rack": "r2"}, Service={"Service": "cache"}))
    assert await service_ids(http, "db", {"node-meta": "rack:r2"}) == ["db-2"]
    nodes = await ok_json(http, "/v1/catalog/nodes", {"node-meta": "rack:r1"})
    assert [n["Node"] for n in nodes] == ["n1"]
    assert await ok_json(http, "/v1/catalog/services", {"node-meta": "rack:r1"}) == {"db": []}
    assert (await get(http, "/v1/catalog/nodes", {"node-meta": "rack"})).status == 400


async def test_unknown_service_is_empty_list_with_index(http: aiohttp.ClientSession) -> None:
    reply = await get(http, "/v1/catalog/service/ghost")
    assert reply.status == 200
    assert reply.json == []
    assert reply.index >= 1


async def test_node_shape(http: aiohttp.ClientSession) -> None:
    await register_db(http)
    reply = await get(http, "/v1/catalog/node/db1")
    assert reply.status == 200
    assert reply.index >= 1
    assert set(reply.json) == {"Node", "Services"}
    assert reply.json["Node"]["Node"] == "db1"
    assert set(reply.json["Node"]) >= NODE_FIELDS
    assert list(reply.json["Services"]) == ["db-1"]
    service = reply.json["Services"]["db-1"]
    assert set(service) >= AGENT_SERVICE_FIELDS
    assert (service["Service"], service["Port"]) == ("db", 5432)


async def test_unknown_node_is_null_with_index(http: aiohttp.ClientSession) -> None:
    reply = await get(http, "/v1/catalog/node/ghost")
    assert reply.status == 200
    assert reply.body == b"null"
    assert reply.index >= 1


async def test_skip_node_update_keeps_node(http: aiohttp.ClientSession) -> None:
    await catalog_register(http, node_body(NodeMeta={"rack": "r1"}))
    await catalog_register(http, node_body(address="10.9.9.9", SkipNodeUpdate=True, Service={"Service": "cache"}))
    [node] = [n for n in await ok_json(http, "/v1/catalog/nodes") if n["Node"] == "db1"]
    assert (node["Address"], node["Meta"]) == ("10.0.0.10", {"rack": "r1"})
    assert await service_ids(http, "cache") == ["cache"]


async def test_datacenters(http: aiohttp.ClientSession) -> None:
    assert await ok_json(http, "/v1/catalog/datacenters") == ["dc1"]


# --- deregister ---


async def test_deregister_service_removes_its_checks(http: aiohttp.ClientSession) -> None:
    await register_db(
        http,
        Checks=[
            {"CheckID": "svc", "Name": "svc", "ServiceID": "db-1", "Status": "passing"},
            {"CheckID": "node", "Name": "node", "Status": "passing"},
        ],
    )
    await deregister(http, {"Node": "db1", "ServiceID": "db-1"})
    assert await ok_json(http, "/v1/catalog/service/db") == []
    assert [c["CheckID"] for c in await ok_json(http, "/v1/health/node/db1")] == ["node"]


async def test_deregister_check(http: aiohttp.ClientSession) -> None:
    await register_db(http, Check={"CheckID": "svc", "Name": "svc", "ServiceID": "db-1", "Status": "passing"})
    await deregister(http, {"Node": "db1", "CheckID": "svc"})
    assert await ok_json(http, "/v1/health/node/db1") == []
    assert await service_ids(http, "db") == ["db-1"]


async def test_deregister_node_removes_everything_on_it(http: aiohttp.ClientSession) -> None:
    await register_db(http, Check={"CheckID": "c", "Name": "c", "Status": "passing"})
    await deregister(http, {"Node": "db1"})
    assert (await get(http, "/v1/catalog/node/db1")).body == b"null"
    assert await ok_json(http, "/v1/catalog/service/db") == []
    assert await ok_json(http, "/v1/health/node/db1") == []
    assert "db" not in await ok_json(http, "/v1/catalog/services")


async def test_deregister_absent_things_is_a_no_op(http: aiohttp.ClientSession) -> None:
    """Consul's state store treats deleting a missing node, service or check as done: JSON true."""
    await register_db(http)
    await deregister(http, {"Node": "ghost"})
    await deregister(http, {"Node": "db1", "ServiceID": "ghost"})
    await deregister(http, {"Node": "db1", "CheckID": "ghost"})
    assert await service_ids(http, "db") == ["db-1"]


async def test_deregister_needs_node(http: aiohttp.ClientSession) -> None:
    reply = await put(http, "/v1/catalog/deregister", {"ServiceID": "db-1"})
    assert reply.status == 400
    assert "Node" in reply.text


async def test_services_node_meta_filter_follows_new_instances(http: aiohttp.ClientSession) -> None:
    """A filtered catalog/services answer must change (and its index move) when a matching node gains an
    instance of a name that already exists elsewhere, even though the unfiltered answer is unchanged."""
    rack1 = node_body("n1", NodeMeta={"rack": "r1"})
    await catalog_register(http, {**rack1, "Service": {"Service": "cache"}})
    await catalog_register(http, node_body("n2", NodeMeta={"rack": "r2"}, Service=service_body("db-2")))
    before = await get(http, "/v1/catalog/services", {"node-meta": "rack:r1"})
    assert before.json == {"cache": []}
    await catalog_register(http, {**rack1, "Service": service_body("db-1")})
    after = await get(http, "/v1/catalog/services", {"node-meta": "rack:r1"})
    assert after.json == {"cache": [], "db": []}
    assert after.index > before.index


async def test_pretty_output(http: aiohttp.ClientSession) -> None:
    await register_db(http)
    compact = await get(http, "/v1/catalog/service/db")
    pretty = await get(http, "/v1/catalog/service/db", {"pretty": ""})
    assert b"\n" not in compact.body
    assert b"\n    " in pretty.body
    assert pretty.json == compact.json
