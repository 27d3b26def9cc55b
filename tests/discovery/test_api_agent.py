"""/v1/agent/*: services, checks, TTL updates, self and agent health, over real HTTP."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from discovery.server import RegistryServer
from tests.discovery.helpers import (
    AGENT_SERVICE_FIELDS,
    HEALTH_CHECK_FIELDS,
    agent_check,
    blocked_then,
    catalog_index,
    get,
    ok_json,
    put,
    register_check,
    register_service,
    timed,
    ttl,
    web_service,
)

TTL_CHECK = {"TTL": "30s"}


# --- services ---


async def test_register_service_lists_agent_service_shape(http: aiohttp.ClientSession) -> None:
    await register_service(
        http,
        web_service(Address="10.0.0.5", Meta={"version": "1.2"}, Weights={"Passing": 3, "Warning": 1}),
    )
    services = await ok_json(http, "/v1/agent/services")
    assert list(services) == ["web-1"]
    web = services["web-1"]
    assert set(web) >= AGENT_SERVICE_FIELDS
    assert web["ID"] == "web-1"
    assert web["Service"] == "web"
    assert web["Tags"] == ["v1"]
    assert web["Port"] == 8080
    assert web["Address"] == "10.0.0.5"
    assert web["Meta"] == {"version": "1.2"}
    assert web["Weights"] == {"Passing": 3, "Warning": 1}
    assert web["EnableTagOverride"] is False
    assert web["TaggedAddresses"] == {}
    assert web["Datacenter"] == "dc1"


async def test_register_defaults_id_to_name_and_empty_collections(http: aiohttp.ClientSession) -> None:
    await register_service(http, {"Name": "api"})
    api = (await ok_json(http, "/v1/agent/services"))["api"]
    assert api["ID"] == "api"
    assert api["Tags"] == []
    assert api["Meta"] == {}
    assert api["Port"] == 0
    assert api["Address"] == ""
    assert api["Weights"] == {"Passing": 1, "Warning": 1}


async def test_no_services_is_empty_object(http: aiohttp.ClientSession) -> None:
    assert await ok_json(http, "/v1/agent/services") == {}
    assert await ok_json(http, "/v1/agent/checks") == {}


async def test_reregister_same_id_replaces(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service(Tags=["a", "b"], Meta={"x": "1"}))
    await register_service(http, web_service(Tags=["c"], Port=9090))
    services = await ok_json(http, "/v1/agent/services")
    assert list(services) == ["web-1"]
    assert services["web-1"]["Tags"] == ["c"]
    assert services["web-1"]["Port"] == 9090
    assert services["web-1"]["Meta"] == {}


async def test_deregister_removes_service_and_its_checks(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service(Check=TTL_CHECK))
    await register_service(http, web_service("api", "api"))
    reply = await put(http, "/v1/agent/service/deregister/web-1")
    assert reply.status == 200
    assert list(await ok_json(http, "/v1/agent/services")) == ["api"]
    assert await ok_json(http, "/v1/agent/checks") == {}


async def test_deregister_unknown_service_is_404_with_consul_message(http: aiohttp.ClientSession) -> None:
    reply = await put(http, "/v1/agent/service/deregister/nope")
    assert reply.status == 404
    assert reply.text == 'Unknown service ID "nope". Ensure that the service ID is passed, not the service name.'


async def test_get_service_has_content_hash(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service())
    reply = await get(http, "/v1/agent/service/web-1")
    assert reply.status == 200
    body = reply.json
    assert set(body) >= AGENT_SERVICE_FIELDS | {"ContentHash"}
    assert body["ID"] == "web-1"
    assert body["ContentHash"] == reply.headers["X-Consul-ContentHash"]
    assert body["ContentHash"]


async def test_get_service_content_hash_follows_content(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service())
    first = (await ok_json(http, "/v1/agent/service/web-1"))["ContentHash"]
    assert (await ok_json(http, "/v1/agent/service/web-1"))["ContentHash"] == first
    await register_service(http, web_service(Port=1))
    assert (await ok_json(http, "/v1/agent/service/web-1"))["ContentHash"] != first


async def test_get_unknown_service_is_404(http: aiohttp.ClientSession) -> None:
    assert (await get(http, "/v1/agent/service/nope")).status == 404


async def test_hash_blocking_returns_early_on_change(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service())
    digest = (await ok_json(http, "/v1/agent/service/web-1"))["ContentHash"]
    query = get(http, "/v1/agent/service/web-1", {"hash": digest, "wait": "5s"})
    reply, elapsed = await blocked_then(query, lambda: register_service(http, web_service(Tags=["v2"])))
    assert elapsed < 1.5
    assert reply.status == 200
    assert reply.json["Tags"] == ["v2"]
    assert reply.json["ContentHash"] != digest


async def test_hash_blocking_waits_out_when_unchanged(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service())
    digest = (await ok_json(http, "/v1/agent/service/web-1"))["ContentHash"]
    reply, elapsed = await timed(get(http, "/v1/agent/service/web-1", {"hash": digest, "wait": "300ms"}))
    assert 0.29 <= elapsed < 2.0
    assert reply.json["ContentHash"] == digest


async def test_hash_blocking_bad_wait_is_400(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service())
    for params in ({"hash": "stale", "wait": "10x"}, {"wait": "10x"}):
        reply = await get(http, "/v1/agent/service/web-1", params)
        assert reply.status == 400
        assert "wait" in reply.text


async def test_hash_blocking_with_stale_hash_returns_at_once(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service())
    reply, elapsed = await timed(get(http, "/v1/agent/service/web-1", {"hash": "old", "wait": "5s"}))
    assert elapsed < 1.5
    assert reply.status == 200


# --- service checks ---


async def test_single_service_check_gets_default_id_and_name(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service(Check=TTL_CHECK))
    check = await agent_check(http, "service:web-1")
    assert set(check) >= HEALTH_CHECK_FIELDS
    assert check["Name"] == "Service 'web' check"
    assert check["ServiceID"] == "web-1"
    assert check["ServiceName"] == "web"
    assert check["ServiceTags"] == ["v1"]
    assert check["Type"] == "ttl"
    assert check["Status"] == "critical"  # TTL checks start critical
    assert check["Node"] == "node1"


async def test_multiple_service_checks_get_numbered_ids(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service(Checks=[TTL_CHECK, {"TTL": "1m"}]))
    checks = await ok_json(http, "/v1/agent/checks")
    assert sorted(checks) == ["service:web-1:1", "service:web-1:2"]
    assert checks["service:web-1:2"]["Definition"]["TTL"] == "1m0s"


async def test_explicit_check_ids_and_status_are_kept(http: aiohttp.ClientSession) -> None:
    await register_service(
        http, web_service(Checks=[{"CheckID": "alive", "Name": "Alive", "TTL": "10s", "Status": "passing"}])
    )
    check = await agent_check(http, "alive")
    assert check["Name"] == "Alive"
    assert check["Status"] == "passing"


async def test_reregister_keeps_existing_checks_by_default(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service(Checks=[{"CheckID": "a", **TTL_CHECK}, {"CheckID": "b", **TTL_CHECK}]))
    await register_service(http, web_service(Checks=[{"CheckID": "a", **TTL_CHECK}]))
    assert sorted(await ok_json(http, "/v1/agent/checks")) == ["a", "b"]


@pytest.mark.parametrize("flag", ["true", ""])
async def test_replace_existing_checks_drops_unlisted_checks(http: aiohttp.ClientSession, flag: str) -> None:
    await register_service(http, web_service(Checks=[{"CheckID": "a", **TTL_CHECK}, {"CheckID": "b", **TTL_CHECK}]))
    await register_service(
        http, web_service(Checks=[{"CheckID": "a", **TTL_CHECK}]), params={"replace-existing-checks": flag}
    )
    assert sorted(await ok_json(http, "/v1/agent/checks")) == ["a"]


@pytest.mark.parametrize("flag", ["false", "0"])
async def test_replace_existing_checks_false_keeps_checks(http: aiohttp.ClientSession, flag: str) -> None:
    """Consul replaces only for a bare ?replace-existing-checks or =true."""
    await register_service(http, web_service(Checks=[{"CheckID": "a", **TTL_CHECK}, {"CheckID": "b", **TTL_CHECK}]))
    await register_service(
        http, web_service(Checks=[{"CheckID": "a", **TTL_CHECK}]), params={"replace-existing-checks": flag}
    )
    assert sorted(await ok_json(http, "/v1/agent/checks")) == ["a", "b"]


async def test_reregister_keeps_check_status(http: aiohttp.ClientSession, registry: RegistryServer) -> None:
    """Consul restores a re-registered check's Status/Output: an identical re-register is a no-op."""
    await register_service(http, web_service(Check=TTL_CHECK))
    assert (await ttl(http, "pass", "service:web-1", "ok")).status == 200
    index = catalog_index(registry)
    await register_service(http, web_service(Check=TTL_CHECK))
    check = await agent_check(http, "service:web-1")
    assert (check["Status"], check["Output"]) == ("passing", "ok")
    assert catalog_index(registry) == index


# --- agent/check/register ---


async def test_check_register_defaults_id_to_name(http: aiohttp.ClientSession) -> None:
    await register_check(http, {"Name": "disk", "TTL": "10s", "Notes": "root fs"})
    check = await agent_check(http, "disk")
    assert check["Name"] == "disk"
    assert check["Notes"] == "root fs"
    assert check["ServiceID"] == ""
    assert check["ServiceName"] == ""
    assert check["ServiceTags"] == []


async def test_check_register_attaches_to_service(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service())
    await register_check(http, {"Name": "web-ttl", "CheckID": "wt", "ServiceID": "web-1", "TTL": "10s"})
    check = await agent_check(http, "wt")
    assert (check["ServiceID"], check["ServiceName"], check["ServiceTags"]) == ("web-1", "web", ["v1"])


async def test_check_register_needs_name(http: aiohttp.ClientSession) -> None:
    reply = await put(http, "/v1/agent/check/register", {"TTL": "10s"})
    assert reply.status == 400
    assert "Name" in reply.text


async def test_check_deregister(http: aiohttp.ClientSession) -> None:
    await register_check(http, {"Name": "disk", "TTL": "10s"})
    assert (await put(http, "/v1/agent/check/deregister/disk")).status == 200
    assert await ok_json(http, "/v1/agent/checks") == {}


async def test_check_deregister_unknown_is_404(http: aiohttp.ClientSession) -> None:
    reply = await put(http, "/v1/agent/check/deregister/nope")
    assert reply.status == 404
    assert 'Unknown check ID "nope"' in reply.text


# --- TTL updates ---


async def test_ttl_pass_warn_fail_set_status_and_note(http: aiohttp.ClientSession) -> None:
    await register_check(http, {"Name": "job", "TTL": "30s"})
    for action, status in (("pass", "passing"), ("warn", "warning"), ("fail", "critical")):
        reply = await ttl(http, action, "job", note=f"{action} note")
        assert reply.status == 200, reply.text
        check = await agent_check(http, "job")
        assert (check["Status"], check["Output"]) == (status, f"{action} note")


async def test_ttl_pass_without_note_clears_output(http: aiohttp.ClientSession) -> None:
    await register_check(http, {"Name": "job", "TTL": "30s"})
    await ttl(http, "warn", "job", note="slow")
    await ttl(http, "pass", "job")
    check = await agent_check(http, "job")
    assert (check["Status"], check["Output"]) == ("passing", "")


async def test_ttl_update_sets_status_and_output(http: aiohttp.ClientSession) -> None:
    await register_check(http, {"Name": "job", "TTL": "30s"})
    reply = await put(http, "/v1/agent/check/update/job", {"Status": "warning", "Output": "queue deep"})
    assert reply.status == 200, reply.text
    check = await agent_check(http, "job")
    assert (check["Status"], check["Output"]) == ("warning", "queue deep")


async def test_ttl_update_rejects_bad_status(http: aiohttp.ClientSession) -> None:
    await register_check(http, {"Name": "job", "TTL": "30s"})
    reply = await put(http, "/v1/agent/check/update/job", {"Status": "fine"})
    assert reply.status == 400
    assert "Status" in reply.text
    assert (await agent_check(http, "job"))["Status"] == "critical"


async def test_ttl_action_on_non_ttl_check_is_500(http: aiohttp.ClientSession) -> None:
    await register_check(http, {"Name": "port", "TCP": "127.0.0.1:9", "Interval": "10s"})
    reply = await ttl(http, "pass", "port")
    assert reply.status == 500
    assert reply.text == 'CheckID "port" does not have associated TTL'


async def test_ttl_action_on_unknown_check_is_404(http: aiohttp.ClientSession) -> None:
    for action in ("pass", "warn", "fail"):
        reply = await ttl(http, action, "ghost")
        assert reply.status == 404
        assert reply.text == 'Unknown check ID "ghost". Ensure that the check ID is passed, not the check name.'
    reply = await put(http, "/v1/agent/check/update/ghost", {"Status": "passing"})
    assert reply.status == 404


# --- self and agent health ---


async def test_agent_self_shape(http: aiohttp.ClientSession, registry: RegistryServer) -> None:
    body = await ok_json(http, "/v1/agent/self")
    config, member = body["Config"], body["Member"]
    assert config["Datacenter"] == "dc1"
    assert config["NodeName"] == "node1"
    assert config["NodeID"]
    assert config["Server"] is True
    assert isinstance(config["Version"], str)
    assert isinstance(config["Revision"], str)
    assert member["Name"] == "node1"
    assert member["Addr"] == "127.0.0.1"
    assert isinstance(member["Port"], int)
    assert member["Tags"]["dc"] == "dc1"
    assert member["Status"] == 1
    assert isinstance(body["Meta"], dict)
    node = await ok_json(http, "/v1/catalog/node/node1")
    assert node["Node"]["ID"] == config["NodeID"]


async def _health_by_name(http: aiohttp.ClientSession, name: str, text: bool = False) -> tuple[int, object]:
    reply = await get(http, f"/v1/agent/health/service/name/{name}", {"format": "text"} if text else None)
    return reply.status, (reply.text if text else reply.json)


async def test_agent_health_by_name_follows_worst_check(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service(Check=TTL_CHECK))
    for action, code, status in (("pass", 200, "passing"), ("warn", 429, "warning"), ("fail", 503, "critical")):
        await ttl(http, action, "service:web-1")
        assert await _health_by_name(http, "web", text=True) == (code, status)
        got_code, body = await _health_by_name(http, "web")
        assert got_code == code
        assert isinstance(body, list)
        assert [e["AggregatedStatus"] for e in body] == [status]
        assert body[0]["Service"]["ID"] == "web-1"
        assert {c["CheckID"] for c in body[0]["Checks"]} >= {"service:web-1"}


async def test_agent_health_aggregates_instances(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service("web-1", Check=TTL_CHECK))
    await register_service(http, web_service("web-2", Check=TTL_CHECK))
    await ttl(http, "pass", "service:web-1")
    await ttl(http, "warn", "service:web-2")
    assert await _health_by_name(http, "web", text=True) == (429, "warning")


async def test_agent_health_without_checks_is_passing(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service())
    assert await _health_by_name(http, "web", text=True) == (200, "passing")


async def test_agent_health_unknown_name_is_404(http: aiohttp.ClientSession) -> None:
    status, text = await _health_by_name(http, "ghost", text=True)
    assert status == 404
    assert "ghost" in str(text)
    assert (await get(http, "/v1/agent/health/service/name/ghost")).status == 404


async def test_agent_endpoints_answer_promptly(http: aiohttp.ClientSession) -> None:
    """Non-blocking agent reads ignore ?index and answer at once."""
    _, elapsed = await timed(
        asyncio.gather(
            get(http, "/v1/agent/services", {"index": "999", "wait": "5s"}),
            get(http, "/v1/agent/checks", {"index": "999", "wait": "5s"}),
        )
    )
    assert elapsed < 1.5


async def test_agent_health_by_id(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service(Check=TTL_CHECK))
    await ttl(http, "warn", "service:web-1")
    reply = await get(http, "/v1/agent/health/service/id/web-1")
    assert reply.status == 429
    assert reply.json["AggregatedStatus"] == "warning"
    assert reply.json["Service"]["ID"] == "web-1"
    text = await get(http, "/v1/agent/health/service/id/web-1", {"format": "text"})
    assert (text.status, text.text) == (429, "warning")
    assert (await get(http, "/v1/agent/health/service/id/ghost")).status == 404


async def test_reregister_with_new_name_moves_the_instance(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service(Check=TTL_CHECK))
    await register_service(http, web_service(name="api", Check=TTL_CHECK))
    assert await ok_json(http, "/v1/catalog/services") == {"api": ["v1"]}
    assert await ok_json(http, "/v1/health/service/web") == []
    [entry] = await ok_json(http, "/v1/health/service/api")
    assert {c["CheckID"]: c["ServiceName"] for c in entry["Checks"]}["service:web-1"] == "api"
    assert (await agent_check(http, "service:web-1"))["ServiceName"] == "api"


async def test_replace_existing_checks_drops_separately_registered_checks(http: aiohttp.ClientSession) -> None:
    await register_service(http, web_service(Check=TTL_CHECK))
    await register_check(http, {"Name": "extra", "ServiceID": "web-1", "TTL": "10s"})
    await register_check(http, {"Name": "node-level", "TTL": "10s"})
    await register_service(http, web_service(Check=TTL_CHECK), params={"replace-existing-checks": ""})
    assert sorted(await ok_json(http, "/v1/agent/checks")) == ["node-level", "service:web-1"]
